"""Per-activity overhead of the executors on no-op Python tasks (not a test: run it).

    .venv/bin/python bench/executors_bench.py [n] [processes]

Prints, per executor, wall time per activity (submit of all n to the last outcome, amortised) and
CPU time per activity summed over this process and its children (robust when other work shares
the machine: wall time then rises, CPU time does not).
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from pathlib import Path

import psutil

from skyweave.executors.base import ExecutionEnv, Executor
from skyweave.executors.local import LocalExecutor
from skyweave.executors.threads import ThreadExecutor
from skyweave.model.messages import ActivityStarted, DispatchActivity
from skyweave.model.specs import TaskSpec

NOOP = f"{Path(__file__).resolve().parent / 'workloads' / 'common.py'}:noop"
"""The W1 no-op task, by path: the executors' children import it from its file."""
_ids = iter(range(10**9))


def dispatch() -> DispatchActivity:
    i = next(_ids)
    return DispatchActivity(activity_id=f"act-bench{i:09d}", attempt=1, run_id="run-bench",
                            task=TaskSpec(name="noop", version="1", ref=NOOP), arguments={"i": i})


def _cpu() -> float:
    """CPU seconds of this process and all its descendants (worker processes are forked by the
    forkserver, so they are grandchildren: ``RUSAGE_CHILDREN`` would not see them)."""
    me = psutil.Process()
    total = 0.0
    for process in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def measure(executor: Executor, n: int) -> tuple[float, float]:
    """(wall s, CPU s) per activity."""
    executor.start()
    warm = dispatch()
    executor.submit([warm])
    while not any(not isinstance(o, ActivityStarted) for o in executor.collect(5.0)):
        pass
    batch: list[DispatchActivity] = [dispatch() for _ in range(n)]
    cpu = _cpu()
    began = time.perf_counter()
    executor.submit(batch)
    done = 0
    while done < n:
        done += sum(1 for o in executor.collect(1.0) if not isinstance(o, ActivityStarted))
    wall = time.perf_counter() - began
    cpu = _cpu() - cpu
    executor.close()
    return wall / n, cpu / n


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    processes = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = ExecutionEnv(worker="bench", storage_root=root / "s", work_root=root / "w", log_root=root / "l")
        for name, executor in (
            (f"local ({processes} processes)", LocalExecutor(env, processes=processes)),
            (f"threads ({processes} threads)", ThreadExecutor(env, threads=processes)),
        ):
            wall, cpu = measure(executor, n)
            print(f"{name:24} {n} no-op activities: {wall * 1e6:6.1f} µs wall, {cpu * 1e6:6.1f} µs CPU each")


if __name__ == "__main__":
    main()
