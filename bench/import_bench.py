"""Import time of skyweave for task authors: what a task module, every worker process and every
container pays before the first line of science runs.

Each measurement is a fresh interpreter (``-X frozen_modules=on``, bytecode already compiled by a
warm-up run) timing only the import statement itself with ``time.perf_counter``, so the
interpreter's own start-up is left out.  Prints, per statement, the median and minimum over the
repetitions, the median CPU time (steadier than wall time when other work shares the machine),
how many modules the statement loaded (``skyweave.*`` apart) and whether SQLAlchemy
came with it.  Target (issue 12): ``from skyweave import task, Product`` under 0.15 s.

    .venv/bin/python bench/import_bench.py [--reps 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

STATEMENTS = (
    "from skyweave import task, Product",
    "import skyweave",
    "from skyweave import Client",
)

PROBE = """
import json, sys, time
before = set(sys.modules)
t0, c0 = time.perf_counter(), time.process_time()
exec(sys.argv[1])
took, cpu = time.perf_counter() - t0, time.process_time() - c0
new = set(sys.modules) - before
own = [m for m in new if m.startswith("skyweave")]
print(json.dumps({"s": took, "cpu": cpu, "modules": len(new), "own": len(own),
                  "sqlalchemy": "sqlalchemy" in sys.modules}))
"""


def measure(statement: str, reps: int) -> dict[str, float | int | bool]:
    runs = []
    for _ in range(reps + 1):  # the first one only warms the bytecode caches
        out = subprocess.run([sys.executable, "-c", PROBE, statement], check=True, capture_output=True,
                             text=True).stdout
        runs.append(json.loads(out))
    runs = runs[1:]
    times = [r["s"] for r in runs]
    return {"median_s": statistics.median(times), "min_s": min(times),
            "cpu_s": statistics.median(r["cpu"] for r in runs), "modules": runs[0]["modules"],
            "own": runs[0]["own"], "sqlalchemy": runs[0]["sqlalchemy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args()
    for statement in STATEMENTS:
        r = measure(statement, args.reps)
        print(f"{statement:36} wall median {r['median_s']:.3f} s, min {r['min_s']:.3f} s; "
              f"CPU {r['cpu_s']:.3f} s; "
              f"{r['modules']:4} modules ({r['own']} skyweave); "
              f"sqlalchemy: {'yes' if r['sqlalchemy'] else 'no'}")


if __name__ == "__main__":
    main()
