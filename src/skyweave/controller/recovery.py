"""Recovery after a restart: rebuild a run's state from the store and re-publish in-flight work."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from skyweave.controller import loops
from skyweave.controller.decisions import Timer
from skyweave.controller.runstate import CANCELLED, DONE, FAILED, SKIPPED, Instance, Key, RunState
from skyweave.model import messages as m
from skyweave.model.records import ActivityRecord, ProductRecord, RunRecord
from skyweave.model.states import ActivityState as A

if TYPE_CHECKING:
    from skyweave.controller.core import Controller


def restore(ctrl: Controller, record: RunRecord, activities: Sequence[ActivityRecord],
            products: Sequence[ProductRecord]) -> None:
    """Rebuild a run after a restart from what the store holds."""
    run = RunState.from_record(record)
    ctrl.runs[record.id] = run
    for p in products:
        ctrl.products[p.id] = m.product_ref(p)
    by_inst: dict[tuple[str, Key], list[ActivityRecord]] = {}
    for rec in activities:
        if rec.node:
            key = tuple(int(x) for x in rec.key.split(".")) if rec.key else ()
            by_inst.setdefault((rec.node, key), []).append(rec)
    for (node, key), recs in by_inst.items():
        if node not in run.nodes:
            continue
        recs.sort(key=lambda r: (r.iteration, r.created_at))
        last = recs[-1]
        inst = Instance(node=node, key=key, activity=last.id, iteration=last.iteration)
        state = last.state
        if state == A.SUCCEEDED and not loops.loop_continues(run, inst, last):
            inst.state, inst.value = DONE, last.result
        elif state in (A.FAILED, A.SKIPPED, A.CANCELLED):
            inst.state = {A.FAILED: FAILED, A.SKIPPED: SKIPPED, A.CANCELLED: CANCELLED}[A(state)]
        run.add_instance(inst)
    for rec in activities:
        if rec.state in (A.SUCCEEDED, A.SKIPPED):
            continue
        if rec.node:
            ctrl.where[rec.id] = (rec.node, tuple(int(x) for x in rec.key.split(".")) if rec.key else ())
        ctrl.activities[rec.id] = rec
        if rec.state in (A.FAILED, A.CANCELLED):
            if rec.state == A.FAILED:
                run.failures += 1
            continue
        run.active += 1
        ctrl.bt.restore(rec)
        if rec.state in (A.DISPATCHED, A.RUNNING):
            ctrl.in_flight += 1
        elif rec.state == A.QUEUED:
            ctrl.queue.push(rec.id, rec.priority, rec.queued_at)
        elif rec.state == A.RETRY_WAIT:
            ctrl._d.timers.append(Timer(at=ctrl._now, kind="retry", activity_id=rec.id))
    # loops whose last iteration succeeded but did not conclude, instances never created
    for node_id in run.order:
        for key in run.candidate_keys(node_id):
            ctrl._try_create(run, node_id, key)
    ctrl.check_all_gathers(run)


def redispatch_in_flight(ctrl: Controller) -> int:
    """After a restart: publish every in-flight dispatch again, under the same message id.

    A bus that kept the message ignores the copy (enqueue is idempotent by id); a bus that lost
    it (in-process, or another bus than before) gets it back.  If the first copy was already
    done, its report wins and the second is ignored as a stale duplicate.
    """
    n = 0
    for rec in ctrl.activities.values():
        if rec.state in (A.DISPATCHED, A.RUNNING):
            spec = ctrl.registry.get(rec.task_name, {}).get(rec.task_version)
            if spec is not None:
                ctrl._emit_dispatch(rec, spec)
                n += 1
    return n
