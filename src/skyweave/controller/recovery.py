"""Recovery after a restart: rebuild each run's state from the store (``RunRestored``), then, once
the outcomes reported while no controller ran are handled, settle what was in flight
(``Recovered``).

An in-flight dispatch the bus still holds is left alone: it waits for a worker, is running, or
is done with its outcome on the bus (kept until the controller acks it), so it is never handed
out twice.  One the bus no longer holds (an in-process bus died with the controller, or the bus
was replaced) may have run: its attempt is closed as lost and the activity runs again as the next
attempt.  Workers holding dispatches are watched from now on like workers heard from, so a
worker that died meanwhile is found by its silence, and dispatches not started yet are watched
for their site (``sitewatch.SiteWatch.adopt``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from skyweave.controller import dispatch, loops
from skyweave.controller.backtrack import Backtracker
from skyweave.controller.decisions import Decisions, Recovered, Timer
from skyweave.controller.liveness import Liveness
from skyweave.controller.placement import Sites
from skyweave.controller.queue import ReadyQueue
from skyweave.controller.runstate import CANCELLED, DONE, FAILED, SKIPPED, Instance, Key, RunState
from skyweave.controller.sitewatch import SiteWatch
from skyweave.model import messages as m
from skyweave.model.records import ActivityRecord, ProductRecord, RunRecord
from skyweave.model.specs import TaskSpec
from skyweave.model.states import ActivityState as A


class Host(Protocol):
    """What recovery needs of the controller: the state it rebuilds, and the rules that create a
    run's missing instances and settle lost attempts."""

    now: float
    out: Decisions
    queue: ReadyQueue
    runs: dict[str, RunState]
    activities: dict[str, ActivityRecord]
    where: dict[str, tuple[str, Key]]
    products: dict[str, m.ProductRef]
    in_flight: int
    bt: Backtracker
    live: Liveness
    registry: dict[str, dict[str, TaskSpec]]
    sitewatch: SiteWatch
    sites: Sites

    def try_create(self, run: RunState, node_id: str, key: Key) -> None: ...
    def check_all_gathers(self, run: RunState) -> None: ...


def restore(ctrl: Host, record: RunRecord, activities: Sequence[ActivityRecord],
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
            ctrl.out.timers.append(Timer(at=ctrl.now, kind="retry", activity_id=rec.id))
    # loops whose last iteration succeeded but did not conclude, instances never created
    for node_id in run.order:
        for key in run.candidate_keys(node_id):
            ctrl.try_create(run, node_id, key)
    ctrl.check_all_gathers(run)


def in_flight_dispatches(ctrl: Host) -> list[str]:
    """The bus message ids of every dispatched or running activity's current attempt."""
    return [m.dispatch_id(rec.id, rec.attempt) for rec in ctrl.activities.values()
            if rec.state in (A.DISPATCHED, A.RUNNING)]


def recovered(ctrl: Host, ev: Recovered) -> None:
    on_bus = set(ev.present)
    for rec in list(ctrl.activities.values()):
        if rec.state in (A.DISPATCHED, A.RUNNING) and m.dispatch_id(rec.id, rec.attempt) not in on_bus:
            ctrl.live.lose(rec, rec.worker or "", "its dispatch was not on the bus when the controller "
                                                  "restarted (an in-process bus, or a new one)")
        elif rec.state == A.DISPATCHED and (ctrl.sites.roots or ctrl.sites.home):
            spec = ctrl.registry.get(rec.task_name, {}).get(rec.task_version)
            if spec is not None and rec.run_id in ctrl.runs:  # not started yet: watched for its site
                sent, refs = dispatch.message(ctrl.runs[rec.run_id], ctrl.products, rec, spec)
                ctrl.sitewatch.adopt(rec, spec.site, refs, sent)
    ctrl.live.watch(ev.holders)
