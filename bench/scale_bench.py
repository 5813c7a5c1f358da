"""Per-activity cost of the controller's pure core and of graph building, by graph shape and size.

Three shapes, each ending in one activity that sums everything:

``flat``    ``total(xs=noop.map(i=indices(n)))``: a fan-out of N and a gather (N + 2 activities)
``nested``  ``indices -> split.map -> noop.map(each) -> total.map(gather) -> total``: groups of
            ``--group`` leaves, one gather per group, then a gather of the groups
``loop``    ``total(xs=[noop(i=i) for i in range(n)])``: the graph built by a Python loop, one node
            per call (the way Dask, Prefect and Ray users write it), N + 1 activities

For each shape and size it reports the time to build the graph (``Workflow.build``) and the time
the core (``Controller.handle``) spends deciding, per activity.  The outside world is simulated
the way the service batches it (every dispatch the core makes is answered in the next batch, task
functions run inline and are trivial), so the figures are the controller's own cost, without the
store, the bus or worker processes.  ``--budget`` stops a measurement that runs too long and
reports the per-activity cost so far (marked ``stopped``): a quadratic core at 100,000 activities
would take hours.

    .venv/bin/python bench/scale_bench.py                      # 1k, 10k, 100k, all shapes
    .venv/bin/python bench/scale_bench.py --sizes 1000,10000 --shapes nested --budget 120
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from workloads.scale_wl import SHAPES, TASKS

from skyweave import Client
from skyweave.controller.core import Controller
from skyweave.controller.decisions import CacheChecked, RunLoaded
from skyweave.model import messages as m
from skyweave.model.records import RunRecord


def expected(shape: str, n: int, group: int) -> int:
    if shape == "nested":
        return max(1, n // group) * sum(range(group))
    return sum(range(n))


def _outcome(d: m.DispatchActivity) -> m.ActivityFinished:
    return m.ActivityFinished(activity_id=d.activity_id, attempt=d.attempt,
                              result=TASKS[d.task.name].fn(**d.arguments))


class BudgetExceeded(BaseException):  # not wrapped by Workflow.build
    pass


def _too_long(signum: int, frame: Any) -> None:
    raise BudgetExceeded


def measure(shape: str, n: int, group: int, budget: float) -> dict[str, Any]:
    wf = SHAPES[shape]
    params: dict[str, Any] = {"n": n, "group": group} if shape == "nested" else {"n": n}
    t0 = time.perf_counter()
    signal.signal(signal.SIGALRM, _too_long)
    signal.setitimer(signal.ITIMER_REAL, budget)
    try:
        graph, _ = wf.build(params)
    except BudgetExceeded:
        return {"shape": shape, "n": n, "error": f"building the graph took more than {budget:.0f} s"}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    build_s = time.perf_counter() - t0
    core = Controller(publish_activity_events=True)
    for t in TASKS.values():
        core.register_task(t.spec, current=True)
    run = RunRecord(id="run-bench", workflow=wf.name, state="submitted", graph=graph,
                    params=graph["params"])
    core_s = 0.0
    activities = 0
    events: list[Any] = [RunLoaded(run=run)]
    final: Any = None
    stopped = False
    while events:
        t1 = time.perf_counter()
        d = core.handle(events, 1000.0)
        core_s += time.perf_counter() - t1
        events = [CacheChecked(activity_id=c.activity_id) for c in d.cache_checks]
        for _, _, data in d.dispatches:
            body = m.decode_message(data).body
            assert isinstance(body, m.DispatchActivity)
            outcome = _outcome(body)
            events.append(outcome)
            activities += 1
            final = outcome.result
        if core_s > budget:
            stopped = bool(events)
            break
    if not stopped and final != expected(shape, n, group):
        raise AssertionError(f"{shape} n={n}: result {final!r}, expected {expected(shape, n, group)}")
    return {"shape": shape, "n": n, "nodes": len(graph["nodes"]), "activities": activities,
            "build_s": round(build_s, 4), "core_s": round(core_s, 4),
            "build_us_per_node": round(build_s / len(graph["nodes"]) * 1e6, 2),
            "core_us_per_activity": round(core_s / max(activities, 1) * 1e6, 2),
            "stopped": stopped}


def measure_e2e(shape: str, n: int, group: int, timeout: float) -> dict[str, Any]:
    """The same shape through a real ``Client``: embedded engine, SQLite store and bus, two
    worker processes (``executor="local"``); wall time of ``client.run`` per activity."""
    wf = SHAPES[shape]
    params: dict[str, Any] = {"n": n, "group": group} if shape == "nested" else {"n": n}
    tmp = Path(tempfile.mkdtemp(prefix="skyweave-scale-"))
    try:
        with Client(str(tmp / "store"), workers=2, executor="local") as client:
            t0 = time.perf_counter()
            handle = client.run(wf, params, timeout=timeout)
            wall = time.perf_counter() - t0
            summary = handle.summary()
        if summary["status"] != "succeeded":
            return {"shape": shape, "n": n, "error": f"run ended {summary['status']}: {summary['error']}"}
        activities = int(summary["activities"])
        return {"shape": shape, "n": n, "activities": activities, "e2e_s": round(wall, 3),
                "e2e_us_per_activity": round(wall / activities * 1e6, 1)}
    except Exception as exc:  # a timeout of a quadratic run: recorded, the next one goes on
        return {"shape": shape, "n": n, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--shapes", default="flat,nested,loop")
    ap.add_argument("--group", type=int, default=100, help="leaves per group of the nested shape")
    ap.add_argument("--budget", type=float, default=300.0, help="seconds of core time per measurement")
    ap.add_argument("--e2e", action="store_true",
                    help="run each shape through a Client (SQLite, 2 worker processes) instead")
    ap.add_argument("--json", help="also write the records to this file")
    args = ap.parse_args(argv)
    if args.e2e:
        return main_e2e(args)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    records = []
    print(f"{'shape':<7} {'N':>8} {'activities':>10} {'build s':>9} {'us/node':>8} "
          f"{'core s':>9} {'us/activity':>12}  (load {os.getloadavg()[0]:.1f})")
    for shape in args.shapes.split(","):
        for n in (int(s) for s in args.sizes.split(",")):
            try:
                rec = measure(shape, n, args.group, args.budget)
            except RecursionError as exc:
                rec = {"shape": shape, "n": n, "error": f"RecursionError: {exc}"}
            records.append(rec)
            if "error" in rec:
                print(f"{shape:<7} {n:>8} FAILED {rec['error']}", flush=True)
                continue
            print(f"{shape:<7} {n:>8} {rec['activities']:>10} {rec['build_s']:>9.4f} "
                  f"{rec['build_us_per_node']:>8.1f} {rec['core_s']:>9.3f} "
                  f"{rec['core_us_per_activity']:>12.1f}{'  (stopped: budget)' if rec['stopped'] else ''}",
                  flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(records, fh, indent=1)
    return 0


def main_e2e(args: argparse.Namespace) -> int:
    records = []
    print(f"{'shape':<7} {'N':>8} {'activities':>10} {'wall s':>9} {'us/activity':>12}  "
          f"(load {os.getloadavg()[0]:.1f})")
    for shape in args.shapes.split(","):
        for n in (int(s) for s in args.sizes.split(",")):
            rec = measure_e2e(shape, n, args.group, args.budget)
            records.append(rec)
            if "error" in rec:
                print(f"{shape:<7} {n:>8} FAILED {rec['error']}", flush=True)
            else:
                print(f"{shape:<7} {n:>8} {rec['activities']:>10} {rec['e2e_s']:>9.2f} "
                      f"{rec['e2e_us_per_activity']:>12.1f}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(records, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
