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
import signal
import sys
import time
from typing import Any

from skyweave import each, gather, task, workflow
from skyweave.authoring.workflow import Workflow
from skyweave.controller.core import Controller
from skyweave.controller.decisions import CacheChecked, RunLoaded
from skyweave.model import messages as m
from skyweave.model.records import RunRecord


@task(version="1")
def sc_indices(n: int) -> list[int]:
    return list(range(n))


@task(version="1")
def sc_split(x: int, group: int) -> list[int]:
    return list(range(group))


@task(version="1")
def sc_noop(i: int) -> int:
    return i


@task(version="1")
def sc_total(xs: list[int]) -> int:
    return sum(xs)


@workflow
def sc_flat(n: int = 1000) -> Any:
    return sc_total(xs=sc_noop.map(i=sc_indices(n=n)))


@workflow
def sc_nested(n: int = 1000, group: int = 100) -> Any:
    groups = sc_split.map(x=sc_indices(n=max(1, n // group)), group=group)
    leaves = sc_noop.map(i=each(groups))
    return sc_total(xs=sc_total.map(xs=gather(leaves)))


@workflow
def sc_loop(n: int = 1000) -> Any:
    return sc_total(xs=[sc_noop(i=i) for i in range(n)])


SHAPES: dict[str, Workflow] = {"flat": sc_flat, "nested": sc_nested, "loop": sc_loop}
TASKS = {t.spec.name: t for t in (sc_indices, sc_split, sc_noop, sc_total)}


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--shapes", default="flat,nested,loop")
    ap.add_argument("--group", type=int, default=100, help="leaves per group of the nested shape")
    ap.add_argument("--budget", type=float, default=300.0, help="seconds of core time per measurement")
    ap.add_argument("--json", help="also write the records to this file")
    args = ap.parse_args(argv)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    records = []
    print(f"{'shape':<7} {'N':>8} {'activities':>10} {'build s':>9} {'us/node':>8} "
          f"{'core s':>9} {'us/activity':>12}")
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


if __name__ == "__main__":
    raise SystemExit(main())
