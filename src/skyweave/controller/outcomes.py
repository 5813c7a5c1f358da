"""What the reports of workers do: an attempt started, finished, failed; timers; products.

Functions of the controller's state, pure like the rest of the core.  ``Host`` is all they use of
the controller: the ledger of activities and runs, the decisions being made (``out``) and the
rules that end an activity (``succeed``, ``fail``) or queue it again (``requeue``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from skyweave.authoring.external import IN_PLACE
from skyweave.controller import liveness, loops, sitewatch
from skyweave.controller.backtrack import Backtracker
from skyweave.controller.decisions import Decisions, Timer, TimerFired, walk_products
from skyweave.controller.liveness import Liveness
from skyweave.controller.runstate import RunState
from skyweave.controller.sitewatch import SiteWatch
from skyweave.model import messages as m
from skyweave.model.records import ActivityRecord, AttemptRecord, ProductRecord, UsageRecord
from skyweave.model.specs import TaskSpec
from skyweave.model.states import ActivityState as A
from skyweave.model.states import activity_transition


class Host(loops.Host, Protocol):
    """What reports need of the controller."""

    now: float
    out: Decisions
    runs: dict[str, RunState]
    activities: dict[str, ActivityRecord]
    where: dict[str, tuple[str, tuple[int, ...]]]
    registry: dict[str, dict[str, TaskSpec]]
    products: dict[str, m.ProductRef]
    in_flight: int
    record_usages: bool
    bt: Backtracker
    live: Liveness
    sitewatch: SiteWatch

    def current_attempt(self, activity_id: str, attempt: int) -> ActivityRecord | None: ...
    def succeed(self, rec: ActivityRecord, result: Any, *, finish_instance: bool = True,
                check_done: bool = True) -> None: ...
    def fail(self, rec: ActivityRecord, error: dict[str, Any]) -> None: ...
    def requeue(self, rec: ActivityRecord, *, retry: bool = False) -> None: ...
    def announce(self, rec: ActivityRecord) -> None: ...
    def emit(self, message: Any) -> None: ...


def on_started(ctrl: Host, ev: m.ActivityStarted) -> None:
    rec = ctrl.current_attempt(ev.activity_id, ev.attempt)
    if rec is None or rec.state != A.DISPATCHED:
        return
    rec.state = activity_transition(rec.state, A.RUNNING)
    rec.started_at = ev.at or ctrl.now
    rec.worker, rec.host = ev.worker, ev.host
    rec.image_digest = ev.image_digest or None
    ctrl.sitewatch.started(rec)
    ctrl.out.changes.attempts.append(AttemptRecord(
        activity_id=rec.id, attempt=rec.attempt, state=A.RUNNING, worker=ev.worker, host=ev.host,
        pid=ev.pid, started_at=rec.started_at, image_digest=rec.image_digest))
    ctrl.touch(rec)


def end_attempt(ctrl: Host, rec: ActivityRecord, ev: Any, state: str) -> None:
    """Record the facts of a finished attempt on the activity and its attempt row."""
    ctrl.in_flight -= 1
    rec.worker, rec.host = ev.worker or rec.worker, ev.host or rec.host
    rec.started_at = ev.started_at or rec.started_at
    rec.log_uri = ev.log_uri or rec.log_uri
    rec.usage = dict(ev.usage.as_dict())
    rec.aspects = list(ev.aspects)
    # command and image tasks: what ran, and its exit status (0 included)
    rec.exit_code, rec.command = getattr(ev, "exit_code", None), getattr(ev, "command", "") or None
    # the image content that ran (containers): reported at the end, or already at the start
    rec.image_digest = ev.image_digest or (rec.image_digest if rec.state == A.RUNNING else None)
    error = None
    if isinstance(ev, m.ActivityFailed):
        error = {"type": ev.error_type, "message": ev.message, "traceback": ev.traceback,
                 "retryable": ev.retryable}
    ctrl.out.changes.attempts.append(AttemptRecord(
        activity_id=rec.id, attempt=rec.attempt, state=state, worker=rec.worker, host=rec.host,
        pid=ev.pid or None, started_at=rec.started_at, ended_at=ev.at or ctrl.now,
        exit_code=rec.exit_code, error=error, usage=rec.usage, image_digest=rec.image_digest))


def on_finished(ctrl: Host, ev: m.ActivityFinished) -> None:
    rec = ctrl.current_attempt(ev.activity_id, ev.attempt)
    if rec is None:
        return
    end_attempt(ctrl, rec, ev, A.SUCCEEDED)
    run = ctrl.runs[rec.run_id]
    register_products(ctrl, ev.products, rec)
    write_usages(ctrl, rec)
    where = ctrl.where.get(rec.id)
    if where is None:  # a provider made what a blocked activity asked for
        ctrl.succeed(rec, ev.result)
        ctrl.bt.on_provider_done(rec, ev.products)
        return
    node_id, key = where
    inst = run.insts[node_id][key]
    problem = run.fanout_problem(node_id, ev.result)
    if problem:
        ctrl.fail(rec, {"type": "skyweave.DefinitionError", "message": problem, "retryable": False})
        return
    loop = run.nodes[node_id].get("loop")
    if loop:
        ctrl.succeed(rec, ev.result, finish_instance=False, check_done=False)
        loops.loop_step(ctrl, run, inst, rec, ev.result)
        return
    ctrl.succeed(rec, ev.result)


def on_failed(ctrl: Host, ev: m.ActivityFailed) -> None:
    rec = ctrl.current_attempt(ev.activity_id, ev.attempt)
    if rec is None:
        return
    end_attempt(ctrl, rec, ev, A.FAILED)
    error = {"type": ev.error_type, "message": ev.message, "traceback": ev.traceback,
             "retryable": ev.retryable, "attempt": ev.attempt}
    if ev.retryable and rec.attempt < rec.max_attempts:
        spec = ctrl.registry.get(rec.task_name, {}).get(rec.task_version)
        delay = spec.retry.delay(rec.attempt) if spec else 1.0
        rec.state = activity_transition(rec.state, A.RETRY_WAIT)
        rec.error = error
        ctrl.touch(rec)
        ctrl.announce(rec)
        ctrl.out.timers.append(Timer(at=ctrl.now + delay, kind="retry", activity_id=rec.id))
        return
    if ev.retryable and rec.max_attempts > 1:
        error["message"] = f"{ev.message} (gave up after {rec.attempt} attempts)"
    ctrl.fail(rec, error)


def on_timer(ctrl: Host, ev: TimerFired) -> None:
    if ev.kind == liveness.LIVENESS:
        ctrl.live.check()
        return
    if ev.kind == sitewatch.SITES:
        ctrl.sitewatch.check()
        return
    rec = ctrl.activities.get(ev.activity_id)
    if rec is None:
        return
    if ev.kind == "retry" and rec.state == A.RETRY_WAIT:
        ctrl.requeue(rec)
    elif ev.kind == "park" and rec.state == A.PARKED:
        ctrl.bt.on_deadline(rec)


def register_products(ctrl: Host, products: Sequence[m.NewProduct], rec: ActivityRecord | None) -> None:
    for p in products:
        # a File/Folder a task returned was found, not made, by it: no generating activity
        maker = None if rec is None or IN_PLACE in p.attributes else rec
        record = ProductRecord(
            id=p.id, uri=p.uri, type=p.type, name=p.name, obs_id=p.obs_id, detector=p.detector,
            version=p.version, checksum=p.checksum, size=p.size, created_at=ctrl.now,
            activity_id=maker.id if maker else None, run_id=maker.run_id if maker else None,
            attributes=dict(p.attributes))
        ctrl.out.changes.products.append(record)
        ctrl.products[p.id] = m.product_ref(record)
        ctrl.emit(m.ProductCreated(product=p, run_id=record.run_id, activity_id=record.activity_id,
                                   at=ctrl.now))
        ctrl.bt.on_product(record)


def write_usages(ctrl: Host, rec: ActivityRecord) -> None:
    if not ctrl.record_usages:
        return
    for role, value in rec.arguments.items():
        for pid in walk_products(value):
            ctrl.out.changes.usages.append(UsageRecord(activity_id=rec.id, product_id=pid, role=role))
