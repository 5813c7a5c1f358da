"""A wide fan-out unfolds a chunk at a time as the ready queue drains, not all at once.

All at once, a fan-out of a million made a million activity records in one step of the
controller: gigabytes of memory, and one store transaction that outlasted the controller's lease
(the controller of a 100,000-item run on PostgreSQL stopped with ``LeaseLostError``).  Counted
here: the activities the core holds at any moment and the rows one step writes, with the chunk
made small so the test is quick.
"""

from __future__ import annotations

from typing import Any

import pytest

from skyweave import each, gather, task, workflow
from skyweave.authoring.workflow import Workflow
from skyweave.controller import unfold
from skyweave.controller.core import Controller
from skyweave.controller.decisions import CacheChecked, RunLoaded
from skyweave.model import messages as m
from skyweave.model.records import RunRecord

CHUNK = 50
N = 3_000
BOUND = 1_024
"""At most this many activities held or written at once: the window of 256 in flight, the queue
refilled to twice that, their outcomes (without chunks: ``N``)."""


@task(version="1")
def fc_items(n: int) -> list[int]:
    return list(range(n))


@task(version="1")
def fc_split(x: int, size: int) -> list[int]:
    return list(range(size))


@task(version="1")
def fc_inc(i: int) -> int:
    if i < 0:
        raise ValueError("negative")
    return i + 1


@task(version="1")
def fc_total(xs: list[int]) -> int:
    return sum(xs)


@workflow
def fc_flat(n: int) -> Any:
    return fc_total(xs=fc_inc.map(i=fc_items(n=n)))


@workflow
def fc_nested(groups: int, size: int) -> Any:
    leaves = fc_inc.map(i=each(fc_split.map(x=fc_items(n=groups), size=size)))
    return fc_total(xs=fc_total.map(xs=gather(leaves)))


@workflow
def fc_two_fanouts(n: int) -> Any:
    """Two wide fan-outs over the same list, both gathered by one activity."""
    items = fc_items(n=n)
    return fc_total(xs=[fc_total(xs=fc_inc.map(i=items)), fc_total(xs=fc_inc.map(i=items))])


TASKS = {t.spec.name: t for t in (fc_items, fc_split, fc_inc, fc_total)}


def run(wf: Workflow, params: dict[str, Any], *, fail: frozenset[int] = frozenset()) -> dict[str, Any]:
    """Run ``wf`` on the core, every dispatch answered in the next batch (``fail``: fc_inc items
    that fail); the most activities held at once, the most rows one step wrote, the result."""
    graph, _ = wf.build(params)
    core = Controller()
    for t in TASKS.values():
        core.register_task(t.spec, current=True)
    record = RunRecord(id="run-1", workflow=wf.name, state="submitted", graph=graph, params=params)
    events: list[Any] = [RunLoaded(run=record)]
    held = rows = executed = 0
    result = None
    while events:
        d = core.handle(events, 1000.0)
        held = max(held, len(core.activities))
        rows = max(rows, len(d.changes.activities))
        events = [CacheChecked(activity_id=c.activity_id) for c in d.cache_checks]
        for _, _, data in d.dispatches:
            body = m.decode_message(data).body
            assert isinstance(body, m.DispatchActivity)
            executed += 1
            if body.task.name == "fc_inc" and body.arguments["i"] in fail:
                events.append(m.ActivityFailed(activity_id=body.activity_id, attempt=body.attempt,
                                               error_type="ValueError", message="no", retryable=False))
                continue
            result = TASKS[body.task.name].fn(**body.arguments)
            events.append(m.ActivityFinished(activity_id=body.activity_id, attempt=body.attempt,
                                             result=result))
    return {"state": core.runs["run-1"].record.state if "run-1" in core.runs else record.state,
            "result": result, "held": held, "rows": rows, "executed": executed}


@pytest.fixture(autouse=True)
def small_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(unfold, "FANOUT_CHUNK", CHUNK)


def test_a_wide_fanout_unfolds_in_chunks_and_gathers_every_item() -> None:
    out = run(fc_flat, {"n": N})
    assert out["state"] == "succeeded"
    assert out["result"] == sum(range(1, N + 1))
    assert out["executed"] == N + 2
    assert out["held"] <= BOUND, out
    assert out["rows"] <= BOUND, out


def test_nested_fanouts_and_two_wide_fanouts_gather_everything() -> None:
    nested = run(fc_nested, {"groups": 3 * CHUNK, "size": 4})
    assert nested["state"] == "succeeded"
    assert nested["result"] == 3 * CHUNK * sum(range(1, 5))
    two = run(fc_two_fanouts, {"n": 5 * CHUNK})
    assert two["state"] == "succeeded"
    assert two["result"] == 2 * sum(range(1, 5 * CHUNK + 1))


def test_many_narrow_fanouts_finishing_together_are_deferred_too() -> None:
    """40 groups of 40 leaves: each under the chunk, together 1,600 created in one step (as
    1,024 groups of 100 made 100,000 in a million-activity run) unless deferred as well."""
    out = run(fc_nested, {"groups": 40, "size": 40})
    assert out["state"] == "succeeded"
    assert out["result"] == 40 * sum(range(1, 41))
    assert out["held"] <= BOUND, out
    assert out["rows"] <= BOUND, out


def test_a_run_with_a_failed_item_ends_failed_only_after_every_item_ran() -> None:
    out = run(fc_flat, {"n": 4 * CHUNK}, fail=frozenset({7}))
    assert out["state"] == "failed"
    assert out["executed"] == 4 * CHUNK + 1  # every item, no total: one of its inputs failed
