"""What provenance recording costs on W1 (fan-out of N no-op tasks + reduce).

Runs W1 with ``provenance=True`` (the default: built-in aspects for timing, resource usage, log
capture and input validation, plus the record of which products each activity used) and with
``provenance=False``, alternating, each in a fresh interpreter and store, and prints the medians and
their ratio.  The issue's target: recording adds at most 20 % to W1.

    .venv/bin/python bench/provenance_cost.py [--n 10000] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent

CHILD = """
import json, sys, tempfile, time
sys.path.insert(0, {bench!r})
from workloads.skyweave_wl import w1_fanout, warmup
from skyweave import Client
with Client(tempfile.mkdtemp() + "/st", workers=2, provenance={prov}) as c:
    c.run(warmup, {{}})
    t = time.perf_counter()
    r = c.run(w1_fanout, {{"n": {n}}})
    wall = time.perf_counter() - t
    assert r.status == "succeeded"
print(json.dumps({{"wall": wall}}))
"""


def once(n: int, prov: bool) -> float:
    code = CHILD.format(bench=str(BENCH), prov=prov, n=n)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["wall"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    on: list[float] = []
    off: list[float] = []
    for _ in range(args.reps):
        on.append(once(args.n, True))
        off.append(once(args.n, False))
    m_on, m_off = statistics.median(on), statistics.median(off)
    print(f"W1 n={args.n}: provenance on {m_on:.3f} s, off {m_off:.3f} s (medians of {args.reps}); "
          f"recording adds {100 * (m_on / m_off - 1):+.1f} %")
    print(json.dumps({"n": args.n, "on": on, "off": off, "ratio": m_on / m_off}))


if __name__ == "__main__":
    main()
