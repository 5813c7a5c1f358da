"""The four benchmark workloads on skyweave (tasks at module level, so workers can import them).

Each run uses a fresh temporary store directory, the default executor (``local``: a process pool)
with ``workers=2``, and the embedded engine, so every activity is persisted to SQLite.
Imported by ``bench/run.py`` in a fresh interpreter with ``bench/`` on ``PYTHONPATH``.
"""

from __future__ import annotations

import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from skyweave import Client, task, workflow
from workloads import common


@task(version="1.0")
def sw_indices(n: int) -> list[int]:
    return list(range(n))


@task(version="1.0")
def sw_noop(i: int) -> int:
    return common.noop(i)


@task(version="1.0")
def sw_total(xs: list[int]) -> int:
    return common.total(xs)


@task(version="1.0")
def sw_step(x: int) -> int:
    return common.step(x)


@task(version="1.0")
def sw_numpy(i: int, reps: int) -> float:
    return common.numpy_work(i, reps)


@task(version="1.0")
def sw_merge(xs: list[float]) -> float:
    return common.merge(xs)


@workflow
def w1_fanout(n: int = 1000) -> Any:
    return sw_total(xs=sw_noop.map(i=sw_indices(n=n)))


@workflow
def w2_chain(length: int = common.W2_LENGTH) -> Any:
    x: Any = 0
    for _ in range(length):
        x = sw_step(x=x)
    return x


@workflow
def w3_numpy(n: int = common.W3_TASKS, reps: int = common.W3_REPS) -> Any:
    return sw_merge(xs=sw_numpy.map(i=sw_indices(n=n), reps=reps))


@workflow
def warmup() -> Any:
    return sw_step(x=0)


WORKFLOWS = {
    "W1": lambda n: (w1_fanout, {"n": n}),
    "W2": lambda n: (w2_chain, {"length": common.W2_LENGTH}),
    "W3": lambda n: (w3_numpy, {"n": common.W3_TASKS, "reps": common.W3_REPS}),
    "W4": lambda n: (w3_numpy, {"n": common.W4_TASKS, "reps": common.W4_REPS}),
}


def _one(client: Client, workload: str, n: int, timeout: float) -> tuple[float, Any, dict[str, Any]]:
    wf, params = WORKFLOWS[workload](n)
    started = time.perf_counter()
    handle = client.run(wf, params, timeout=timeout)
    wall = time.perf_counter() - started
    summary = handle.summary()
    if summary["status"] != "succeeded":
        raise RuntimeError(f"run {handle.id} ended {summary['status']}: {summary['error']}")
    return wall, handle.results(), summary


def run(workload: str, n: int, timeout: float = 600.0) -> dict[str, Any]:
    """Run one workload; return wall times (W4: both runs) and what the harness records."""
    tmp = Path(tempfile.mkdtemp(prefix="skyweave-bench-"))
    try:
        t0 = time.perf_counter()
        client = Client(str(tmp / "store"), workers=2, executor="local")
        client.run(warmup, {}, timeout=timeout)  # start the process pool, as every tool warms up
        setup = time.perf_counter() - t0
        try:
            walls, notes = [], []
            wall, result, summary = _one(client, workload, n, timeout)
            walls.append(wall)
            notes.append(f"activities={summary['activities']}")
            # the run's own duration in the store (created -> ended), beside the wall time
            notes.append(f"store created->ended {summary['ended_at'] - summary['created_at']:.3f} s")
            if workload == "W4":
                wall2, result, summary2 = _one(client, workload, n, timeout)
                walls.append(wall2)
                acts = client.store.list_activities(run_id=summary2["run_id"])
                reused = sum(1 for a in acts if a.detours and a.detours[-1].kind == "reused")
                notes.append(f"second run: {reused} of {summary2['activities']} activities reused "
                             "(cache key match + integrity check of every reused output)")
        finally:
            t1 = time.perf_counter()
            client.close()
            teardown = time.perf_counter() - t1
        return {"walls": walls, "result": result, "setup_s": setup, "teardown_s": teardown,
                "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "notes": notes}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
