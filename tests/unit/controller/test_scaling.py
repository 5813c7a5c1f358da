"""The core's cost per activity does not grow with the size of the run.

Cost is counted, not timed: the lines of skyweave's own code executed while the graph is built
(``Workflow.build``) and while the core decides (``Controller.handle``), divided by the number of
activities, at two sizes four times apart.  A quadratic path (a scan of every instance of a node
on each event, a name probed from ``_2`` on each call) makes the larger size cost ~4x per
activity; a linear core costs the same or less (fixed costs spread thinner).  Built-in work in C
(a sort of a gathered list) is not counted, so O(n log n) collection passes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import skyweave
from skyweave import each, gather, task, workflow
from skyweave.authoring.workflow import Workflow
from skyweave.controller import unfold
from skyweave.controller.core import Controller
from skyweave.controller.decisions import CacheChecked, RunLoaded
from skyweave.controller.runstate import Instance, RunState
from skyweave.model import messages as m
from skyweave.model.records import RunRecord

SRC = str(Path(skyweave.__file__).parent)
SMALL, LARGE = 200, 800
FLAT_RATIO = 1.25
"""Largest allowed growth of the per-activity cost from SMALL to LARGE (quadratic: ~4)."""


@task(version="1")
def s_items(n: int) -> list[int]:
    return list(range(n))


@task(version="1")
def s_split(x: int, size: int) -> list[int]:
    return list(range(size))


@task(version="1")
def s_inc(i: int) -> int:
    return i + 1


@task(version="1")
def s_add(a: int, b: int) -> int:
    return a + b


@task(version="1")
def s_total(xs: list[int]) -> int:
    return sum(xs)


@workflow
def s_flat(n: int) -> Any:
    return s_total(xs=s_inc.map(i=s_items(n=n)))


@workflow
def s_nested(n: int, size: int) -> Any:
    """Groups of ``size`` leaves, a gather per group, a gather of the groups."""
    leaves = s_inc.map(i=each(s_split.map(x=s_items(n=n // size), size=size)))
    return s_total(xs=s_total.map(xs=gather(leaves)))


@workflow
def s_zipped(n: int) -> Any:
    """Two fan-outs over the same list, zipped item by item."""
    items = s_items(n=n)
    return s_total(xs=s_add.map(a=s_inc.map(i=items), b=s_inc.map(i=items)))


@workflow
def s_loop(n: int) -> Any:
    """One node per call of a Python loop, all gathered by one list argument."""
    return s_total(xs=[s_inc(i=i) for i in range(n)])


@workflow
def s_loop_then_gather(n: int) -> Any:
    """A loop-built list summed, fanned out over a short list and gathered: every loop node is
    upstream of the gather, which must not look at them all on each event."""
    items = s_split(x=s_total(xs=[s_inc(i=i) for i in range(n)]), size=3)
    return s_total(xs=s_inc.map(i=items))


@workflow
def s_chain(n: int) -> Any:
    """A chain built by a Python loop, as deep as it is long."""
    x: Any = 0
    for _ in range(n):
        x = s_inc(i=x)
    return x


TASKS = {t.spec.name: t for t in (s_items, s_split, s_inc, s_add, s_total)}


def counted(fn: Callable[[], Any]) -> tuple[Any, int]:
    """``fn()`` and the number of lines of skyweave's code it executed."""
    lines = 0

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal lines
        if event == "line":
            lines += 1
        return local

    def calls(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename.startswith(SRC) else None

    sys.settrace(calls)
    try:
        return fn(), lines
    finally:
        sys.settrace(None)


def run_counted(wf: Workflow, params: dict[str, Any]) -> tuple[Any, int, int]:
    """Build and run ``wf`` on the core with tasks answered inline in the service's batches:
    ``(final result, activities, lines executed per activity by build + handle)``."""
    (graph, _), lines = counted(lambda: wf.build(params))
    core = Controller()
    for t in TASKS.values():
        core.register_task(t.spec, current=True)
    run = RunRecord(id="run-1", workflow=wf.name, state="submitted", graph=graph, params=params)
    events: list[Any] = [RunLoaded(run=run)]
    activities, result = 0, None
    while events:
        d, n = counted(lambda evs=events: core.handle(evs, 1000.0))  # type: ignore[misc]
        lines += n
        events = [CacheChecked(activity_id=c.activity_id) for c in d.cache_checks]
        for _, _, data in d.dispatches:
            body = m.decode_message(data).body
            assert isinstance(body, m.DispatchActivity)
            result = TASKS[body.task.name].fn(**body.arguments)
            events.append(m.ActivityFinished(activity_id=body.activity_id, attempt=body.attempt,
                                             result=result))
            activities += 1
    assert core.runs["run-1"].record.state == "succeeded"
    return result, activities, lines // activities


SHAPES: dict[str, tuple[Workflow, Callable[[int], dict[str, Any]], Callable[[int], int]]] = {
    "flat": (s_flat, lambda n: {"n": n}, lambda n: sum(range(1, n + 1))),
    "nested, groups of 10": (s_nested, lambda n: {"n": n, "size": 10},
                             lambda n: n // 10 * sum(range(1, 11))),
    "nested, 2 groups": (s_nested, lambda n: {"n": n, "size": n // 2},
                         lambda n: 2 * sum(range(1, n // 2 + 1))),
    "zipped fan-outs": (s_zipped, lambda n: {"n": n}, lambda n: 2 * sum(range(1, n + 1))),
    "loop-built": (s_loop, lambda n: {"n": n}, lambda n: sum(range(1, n + 1))),
    "loop-built chain": (s_chain, lambda n: {"n": n}, lambda n: n),
    "loop-built, then gathered": (s_loop_then_gather, lambda n: {"n": n}, lambda n: 6),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_cost_per_activity_is_flat(shape: str) -> None:
    wf, params, expected = SHAPES[shape]
    per_activity = []
    for n in (SMALL, LARGE):
        result, activities, cost = run_counted(wf, params(n))
        assert result == expected(n)
        assert activities >= n
        per_activity.append(cost)
    small, large = per_activity
    assert large <= FLAT_RATIO * small, (
        f"{shape}: {small} lines per activity at {SMALL}, {large} at {LARGE}: cost grows with size")


def test_the_measure_sees_a_quadratic_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The count is not blind: the gather check of before (every candidate key of every gather
    on every event, a scan of the gathered node's instances) fails the bound."""

    def rescanning(ctrl: unfold.Host, run: RunState, inst: Instance) -> None:
        for node_id in run.gather_nodes:
            for key in run.candidate_keys(node_id):
                unfold.try_create(ctrl, run, node_id, key)

    monkeypatch.setattr(unfold, "_check_gathers", rescanning)
    wf, params, _ = SHAPES["nested, groups of 10"]
    small = run_counted(wf, params(SMALL))[2]
    large = run_counted(wf, params(LARGE))[2]
    assert large > 2 * FLAT_RATIO * small
