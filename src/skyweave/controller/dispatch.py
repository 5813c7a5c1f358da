"""Dispatch: queued activities go to the bus, highest effective priority first, while fewer than
the window are in flight; a paused run's are held back, and nothing of lower priority overtakes
work whose cache check is still out.

Functions of the controller's state, pure like the rest of the core; ``Host`` is what they use of
the controller.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Protocol

from skyweave.controller.decisions import Decisions, walk_products
from skyweave.controller.liveness import Liveness
from skyweave.controller.placement import Sites
from skyweave.controller.queue import ReadyQueue
from skyweave.controller.runstate import RunState
from skyweave.controller.sitewatch import SiteWatch
from skyweave.model import messages as m
from skyweave.model.messages import ProductRef
from skyweave.model.records import ActivityRecord
from skyweave.model.specs import TaskSpec
from skyweave.model.states import ActivityState as A
from skyweave.model.states import RunState as R
from skyweave.model.states import activity_transition


class Host(Protocol):
    """What dispatching needs of the controller."""

    now: float
    out: Decisions
    queue: ReadyQueue
    runs: dict[str, RunState]
    activities: dict[str, ActivityRecord]
    registry: dict[str, dict[str, TaskSpec]]
    products: dict[str, ProductRef]
    checking: dict[str, int]
    in_flight: int
    default_window: int
    live: Liveness
    sites: Sites
    sitewatch: SiteWatch

    def fail(self, rec: ActivityRecord, error: dict[str, Any]) -> None: ...
    def touch(self, rec: ActivityRecord) -> None: ...


def window(ctrl: Host) -> int:
    """How many dispatches may be in flight: at least 4 per live worker slot."""
    return max(ctrl.default_window, 4 * ctrl.live.slots())


def _held(ctrl: Host, activity_id: str) -> bool:
    rec = ctrl.activities.get(activity_id)
    if rec is None or rec.state != A.QUEUED:
        return True
    run = ctrl.runs.get(rec.run_id)
    if run is None:
        return True
    if run.record.state == R.PAUSED:
        run.held.append(activity_id)
        return True
    return False


def dispatch(ctrl: Host) -> None:
    limit = window(ctrl)
    held = partial(_held, ctrl)
    # work still being checked against the cache keeps its rank: nothing of lower priority
    # takes the window meanwhile (its answer comes with the next batch)
    waiting = max(ctrl.checking.values(), default=None)
    while ctrl.in_flight < limit:
        aid = ctrl.queue.pop(ctrl.now, held)
        if aid is None:
            return
        rec = ctrl.activities[aid]
        if waiting is not None and rec.priority < waiting:
            ctrl.queue.unpop(aid, rec.priority, rec.queued_at)
            return
        try:
            spec = ctrl.registry[rec.task_name][rec.task_version]
        except KeyError:
            ctrl.fail(rec, {"type": "skyweave.UnknownTaskError", "retryable": False,
                        "message": f"task {rec.task_name}@{rec.task_version} is not registered"})
            continue
        rec.state = activity_transition(rec.state, A.DISPATCHED)
        rec.attempt += 1
        ctrl.in_flight += 1
        _send(ctrl, rec, spec)
        ctrl.touch(rec)


def message(run: RunState, products: dict[str, ProductRef], rec: ActivityRecord, spec: TaskSpec
            ) -> tuple[tuple[str, int, bytes], list[ProductRef]]:
    """The dispatch of ``rec``'s current attempt as ``(message id, priority, data)``, and its inputs
    (of ``products``, the controller's)."""
    refs = {pid: products[pid] for pid in walk_products(rec.arguments) if pid in products}
    obs_id = rec.arguments.get("obs_id")
    obs_id = obs_id if isinstance(obs_id, str) else run.record.params.get("obs_id")
    msg = m.DispatchActivity(activity_id=rec.id, attempt=rec.attempt, run_id=rec.run_id, task=spec,
                             arguments=rec.arguments, products=refs, priority=rec.priority,
                             obs_id=obs_id if isinstance(obs_id, str) else None)
    mid = m.dispatch_id(rec.id, rec.attempt)
    return (mid, rec.priority, m.encode_message(mid, msg)), list(refs.values())


def _send(ctrl: Host, rec: ActivityRecord, spec: TaskSpec) -> None:
    sent, refs = message(ctrl.runs[rec.run_id], ctrl.products, rec, spec)
    mid = sent[0]
    ctrl.out.dispatches.append(sent)
    if site := ctrl.sitewatch.place(rec, spec.site, refs, sent):
        ctrl.out.dispatch_sites.append((mid, site))
    if rec.attempt - 1 in ctrl.live.lost.get(rec.id, ()):
        ctrl.out.dispatch_first.append(mid)  # its last attempt was lost with a worker: its turn now
