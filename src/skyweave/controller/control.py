"""Run control while runs go on: pause, resume, cancel, priority changes, retry of an activity.

Functions of the controller's state (``Controller`` delegates to them); pure like the rest of the
core: they change state and record decisions, nothing else.
"""

from __future__ import annotations

from typing import Any, Protocol

from skyweave.controller import recovery
from skyweave.controller.decisions import Held, RetryLoaded
from skyweave.controller.runstate import CANCELLED, RunState
from skyweave.model import messages as m
from skyweave.model.records import ActivityRecord, AttemptRecord
from skyweave.model.specs import TaskSpec
from skyweave.model.states import ActivityState as A
from skyweave.model.states import AttemptState, activity_transition, run_transition
from skyweave.model.states import RunState as R


class Host(recovery.Host, Protocol):
    """What run control needs of the controller."""

    registry: dict[str, dict[str, TaskSpec]]

    def current_attempt(self, activity_id: str, attempt: int) -> ActivityRecord | None: ...
    def touch(self, rec: ActivityRecord) -> None: ...
    def touch_run(self, run: RunState) -> None: ...
    def emit(self, message: Any) -> None: ...
    def announce(self, rec: ActivityRecord) -> None: ...
    def check_run_done(self, run: RunState) -> None: ...
    def requeue(self, rec: ActivityRecord, *, retry: bool = False) -> None: ...

_NOT_STARTED = frozenset({A.QUEUED, A.RETRY_WAIT, A.BACKTRACKING, A.PARKED})


def on_control(ctrl: Host, ev: m.RunControlRequested) -> None:
    run = ctrl.runs.get(ev.run_id)
    if run is None:
        return
    rec = run.record
    if ev.action == "pause" and rec.state == R.RUNNING:
        rec.state = run_transition(rec.state, R.PAUSED)
        # work on the bus that no worker has started yet is held too (``Decisions.hold``)
        ctrl.out.hold.extend(m.dispatch_id(a.id, a.attempt) for a in ctrl.activities.values()
                            if a.run_id == rec.id and a.state == A.DISPATCHED)
    elif ev.action == "resume" and rec.state == R.PAUSED:
        rec.state = run_transition(rec.state, R.RUNNING)
        ctrl.out.release.extend(m.dispatch_id(a.id, a.attempt) for a in ctrl.activities.values()
                               if a.run_id == rec.id and a.state == A.DISPATCHED)
        for aid in run.held:
            act = ctrl.activities.get(aid)
            if act is not None and act.state == A.QUEUED:
                ctrl.queue.push(aid, act.priority, act.queued_at)
        run.held.clear()
    elif ev.action == "cancel" and rec.state in (R.RUNNING, R.PAUSED):
        cancel_run(ctrl, run)
    else:
        return
    ctrl.touch_run(run)
    ctrl.emit(m.RunStateChanged(run_id=rec.id, state=rec.state, at=ctrl.now))
    ctrl.check_run_done(run)


def on_held(ctrl: Host, ev: Held) -> None:
    """Dispatches of a paused run taken back from the bus: queued again, held until resume (or
    queued at once if the run was resumed meanwhile).  They never reached a worker, so the attempt
    they were sent as is taken back too."""
    for message_id in ev.dispatches:
        aid, _, attempt = message_id.rpartition(":")
        rec = ctrl.current_attempt(aid, int(attempt) if attempt.isdigit() else -1)
        run = ctrl.runs.get(rec.run_id) if rec is not None else None
        if rec is None or run is None or rec.state != A.DISPATCHED:
            continue
        ctrl.in_flight -= 1
        rec.attempt -= 1
        rec.state = activity_transition(rec.state, A.QUEUED)
        ctrl.touch(rec)
        if run.record.state == R.PAUSED:
            run.held.append(aid)
        else:
            ctrl.queue.push(aid, rec.priority, rec.queued_at, first=True)


def cancel_run(ctrl: Host, run: RunState) -> None:
    run.record.state = run_transition(run.record.state, R.CANCELLED)
    run.record.ended_at = ctrl.now
    for aid, rec in list(ctrl.activities.items()):
        if rec.run_id != run.record.id or rec.state in (A.FAILED, A.CANCELLED, A.SUCCEEDED):
            continue
        if rec.state in (A.DISPATCHED, A.RUNNING):
            ctrl.in_flight -= 1
            ctrl.out.withdraw.append(m.dispatch_id(aid, rec.attempt))
        if rec.state == A.RUNNING:  # its attempt row is closed now, not left "running" forever
            ctrl.out.changes.attempts.append(AttemptRecord(
                activity_id=aid, attempt=rec.attempt, state=AttemptState.CANCELLED, worker=rec.worker,
                host=rec.host, started_at=rec.started_at, ended_at=ctrl.now, image_digest=rec.image_digest,
                error={"type": "skyweave.Cancelled", "retryable": False,
                       "message": f"its run {run.record.id} was cancelled while it ran; its worker was "
                                  "asked to stop it"}))
        ctrl.queue.discard(aid)
        rec.state = activity_transition(rec.state, A.CANCELLED)
        rec.ended_at = ctrl.now
        run.active -= 1
        where = ctrl.where.get(aid)
        if where is not None:
            run.finish_instance(run.insts[where[0]][where[1]], CANCELLED)
        ctrl.bt.forget(aid)
        ctrl.touch(rec)
        ctrl.announce(rec)
    ctrl.out.finished_runs.append(run.record.id)


def on_priority(ctrl: Host, ev: m.PriorityChangeRequested) -> None:
    targets: list[ActivityRecord] = []
    if ev.activity_id:
        rec = ctrl.activities.get(ev.activity_id)
        if rec is not None:
            targets.append(rec)
    if ev.run_id and ev.run_id in ctrl.runs:
        run = ctrl.runs[ev.run_id]
        run.record.priority = ev.priority
        ctrl.touch_run(run)
        targets.extend(a for a in ctrl.activities.values() if a.run_id == ev.run_id)
    for rec in targets:
        if rec.state in _NOT_STARTED:
            rec.priority = ev.priority
            if rec.state == A.QUEUED and rec.id in ctrl.queue:
                ctrl.queue.push(rec.id, rec.priority, rec.queued_at)
            ctrl.touch(rec)
        elif rec.state == A.DISPATCHED:  # on the bus: changed there unless a worker took it
            rec.priority = ev.priority
            ctrl.out.reprioritize.append((m.dispatch_id(rec.id, rec.attempt), ev.priority))
            ctrl.touch(rec)


def on_retry(ctrl: Host, ev: RetryLoaded) -> None:
    """A retry the shell loaded from the store: the run is rebuilt first if it had been forgotten."""
    if ev.restore is not None and ev.activity.run_id not in ctrl.runs:
        r = ev.restore
        recovery.restore(ctrl, r.run, r.activities, r.products)
    retry(ctrl, ctrl.activities.get(ev.activity.id, ev.activity))


def retry(ctrl: Host, rec: ActivityRecord) -> None:
    """Run a failed or cancelled activity again (its run reopens)."""
    run = ctrl.runs.get(rec.run_id)
    if run is None or rec.state not in (A.FAILED, A.CANCELLED):
        return
    ctrl.activities[rec.id] = rec
    if rec.node:
        key = tuple(int(x) for x in rec.key.split(".")) if rec.key else ()
        ctrl.where[rec.id] = (rec.node, key)
        inst = run.insts[rec.node].get(key)
        if inst is not None:
            run.reopen_instance(inst)
    if rec.state == A.FAILED:
        run.failures = max(0, run.failures - 1)
    spec = ctrl.registry.get(rec.task_name, {}).get(rec.task_version)
    rec.max_attempts = rec.attempt + (spec.retry.max_attempts if spec else 1)
    rec.error = None
    run.active += 1
    if run.record.state in (R.FAILED, R.CANCELLED, R.SUCCEEDED):
        run.record.state = run_transition(run.record.state, R.RUNNING, retry=True)
        run.record.ended_at = None
        run.record.error = None
        ctrl.touch_run(run)
        ctrl.emit(m.RunStateChanged(run_id=run.record.id, state=run.record.state, at=ctrl.now))
    ctrl.requeue(rec, retry=True)
