"""The controller's pure core: ``handle(events, now) -> Decisions``.

No I/O, no clocks, no random source, no threads: the service loop (``controller/service.py``)
reads events from the bus, calls ``handle``, writes the changeset in one transaction and only
then publishes what it decided.  Ids come from the controller's ``IdMint`` and the ``now`` it is
given, so the same events at the same times give the same decisions (``tests/unit/controller/
test_purity.py``).  Every decision costs O(1) in the size of the run (gathers collect once; a
fan-out of N creates N activities once).

The controller holds the state (runs, the activities not yet over, the ready queue) and the
rules that every part uses (succeed, fail, requeue, dispatch); each kind of event is handled by
one collaborator, which declares what it uses of the controller as a ``Host`` protocol:
``outcomes`` (workers' reports, timers, products), ``unfold`` (graph to activities),
``backtrack``, ``cache``, ``control`` (pause, resume, cancel, priority, retry), ``loops``,
``liveness`` and ``recovery`` (restart).  An event of a kind no rule handles raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from skyweave.controller import (
    backtrack,
    cache,
    control,
    dispatch,
    liveness,
    outcomes,
    recovery,
    sitewatch,
    unfold,
)
from skyweave.controller.decisions import (
    BusRestored,
    CacheChecked,
    Decisions,
    Held,
    ProductsFound,
    Recovered,
    RetryLoaded,
    RunLoaded,
    RunRestored,
    TimerFired,
    WorkerLost,
)
from skyweave.controller.placement import Sites
from skyweave.controller.queue import ReadyQueue
from skyweave.controller.runstate import DONE, FAILED, Instance, Key, RunState
from skyweave.errors import DefinitionError
from skyweave.model import messages as m
from skyweave.model.ids import EVENT, IdMint
from skyweave.model.messages import ProductRef
from skyweave.model.records import ActivityRecord, RunRecord
from skyweave.model.specs import TaskSpec
from skyweave.model.states import ActivityState as A
from skyweave.model.states import RunState as R
from skyweave.model.states import activity_transition, run_transition

_REPORTS = (m.ActivityFinished, m.ActivityFailed, m.ActivityNeedsInput)
"""Reports of an attempt's end that only its current attempt may make (others are late)."""


class Controller:
    """Decides what runs next.  One instance owns the runs it has loaded."""

    def __init__(self, *, aging_s: float = 60.0, default_window: int = 256,
                 publish_activity_events: bool = True, worker_timeout_s: float = 5.0,
                 ids: IdMint | None = None) -> None:
        self.ids = ids if ids is not None else IdMint.random()
        """Where activity and event ids come from (a seeded mint: give one to replay decisions)."""
        self.queue = ReadyQueue(aging_s)
        self.runs: dict[str, RunState] = {}
        self.activities: dict[str, ActivityRecord] = {}
        """Activities not yet terminal (plus failed ones, so they can be retried)."""
        self.where: dict[str, tuple[str, Key]] = {}
        """Activity id -> (node, key) of its instance; providers are not in the map."""
        self.registry: dict[str, dict[str, TaskSpec]] = {}
        self.sites = Sites()
        """Where activities run when there are several sites (``placement.py``); none by default."""
        self.current_version: dict[str, str] = {}
        """Task name -> the version new activations run (unless a run pins another)."""
        self.products: dict[str, ProductRef] = {}
        self.checking: dict[str, int] = {}
        """Queued activities waiting for the answer of a cache check (not in the ready queue yet)."""
        self.in_flight = 0
        self.default_window = default_window
        self.live = liveness.Liveness(self, worker_timeout_s)
        self.sitewatch = sitewatch.SiteWatch(self)
        """Work placed at a site with no live worker: moved elsewhere or said to wait."""
        self.live.on_site_gone = self.sitewatch.site_gone
        self.live.on_site_worker = self.sitewatch.site_worker
        self.publish_activity_events = publish_activity_events
        self.record_usages = True
        """Write which products each activity used (off only to measure provenance's cost)."""
        self.bt = backtrack.Backtracker(self)
        self.now = 0.0
        """The time of the ``handle`` call under way (the shell's clock, never read here)."""
        self.out = Decisions()
        """The decisions of the ``handle`` call under way."""
        self._touched_acts: dict[str, ActivityRecord] = {}
        self._touched_runs: dict[str, RunRecord] = {}
        self._rules: dict[type, Callable[[Any], None]] = {
            m.ActivityFinished: lambda ev: outcomes.on_finished(self, ev),
            m.ActivityFailed: lambda ev: outcomes.on_failed(self, ev),
            m.ActivityStarted: lambda ev: outcomes.on_started(self, ev),
            m.ActivityNeedsInput: self.bt.on_needs_input,
            ProductsFound: self.bt.on_products_found,
            CacheChecked: lambda ev: cache.on_cache_checked(self, ev),
            TimerFired: lambda ev: outcomes.on_timer(self, ev),
            m.ProductRegistered: lambda ev: outcomes.register_products(self, [ev.product], None),
            RunLoaded: self._on_run_loaded,
            m.RunControlRequested: lambda ev: control.on_control(self, ev),
            m.PriorityChangeRequested: lambda ev: control.on_priority(self, ev),
            m.TaskVersionRegistered: lambda ev: self.register_task(ev.task, current=True),
            m.WorkerHeartbeat: self.live.heard,
            Held: lambda ev: control.on_held(self, ev),
            WorkerLost: self.live.on_worker_lost,
            m.ActivityReturned: self.live.on_returned,
            RunRestored: lambda ev: recovery.restore(self, ev.run, ev.activities, ev.products),
            RetryLoaded: lambda ev: control.on_retry(self, ev),
            Recovered: lambda ev: recovery.recovered(self, ev),
            BusRestored: lambda _ev: self.live.excuse(),
        }
        """One rule per kind of event; the shell turns what needs the store (a submitted run, a
        retry) into events that carry what it read (``RunLoaded``, ``RetryLoaded``)."""

    # ============================================================================================
    # entry point
    def handle(self, events: Iterable[Any], now: float) -> Decisions:
        """Apply events at time ``now``; return every decision they led to."""
        self.now = now
        for event in events:
            if isinstance(event, _REPORTS) and self.current_attempt(event.activity_id,
                                                                      event.attempt) is None:
                self.live.late(event)  # a duplicate, or the report of an attempt judged lost
                continue
            rule = self._rules.get(type(event))
            if rule is None:
                raise TypeError(f"the controller has no rule for {type(event).__name__} events; known: "
                                f"{', '.join(sorted(t.__name__ for t in self._rules))}")
            rule(event)
        unfold.refill(self, max(unfold.FANOUT_CHUNK, 2 * dispatch.window(self)))
        dispatch.dispatch(self)
        d = self.out
        d.changes.activities = list(self._touched_acts.values())
        d.changes.runs = list(self._touched_runs.values())
        self.out = Decisions()
        self._touched_acts = {}
        self._touched_runs = {}
        return d

    # ============================================================================================
    # registry
    def register_task(self, spec: TaskSpec, *, current: bool) -> None:
        self.registry.setdefault(spec.name, {})[spec.version] = spec
        if current or spec.name not in self.current_version:
            self.current_version[spec.name] = spec.version

    def spec_for(self, run: RunState, task_name: str) -> TaskSpec:
        versions = self.registry.get(task_name)
        if not versions:
            raise DefinitionError(f"no task named {task_name!r} is registered",
                                  hint=f"registered: {', '.join(sorted(self.registry)) or 'none'}")
        version = run.record.pins.get(task_name) or self.current_version[task_name]
        spec = versions.get(version)
        if spec is None:
            raise DefinitionError(f"task {task_name!r} has no version {version!r}",
                                  hint=f"versions: {', '.join(sorted(versions))}")
        return spec

    # ============================================================================================
    # persistence helpers
    def new_id(self, prefix: str) -> str:
        """A new id, from the controller's own mint and the time it was given: no clock read."""
        return self.ids.new(prefix, self.now)

    def touch(self, rec: ActivityRecord) -> None:
        self._touched_acts[rec.id] = rec

    def touch_run(self, run: RunState) -> None:
        self._touched_runs[run.record.id] = run.record

    def emit(self, message: Any) -> None:
        self.out.announcements.append(m.encode_message(self.new_id(EVENT), message))

    def announce(self, rec: ActivityRecord) -> None:
        """Tell listeners and watchers the activity's new state (``activity.<state>``): terminal
        states and the waiting ones (retry_wait, backtracking, parked), not the hot path's queued,
        dispatched and running."""
        if self.publish_activity_events:
            self.emit(m.ActivityStateChanged(activity_id=rec.id, run_id=rec.run_id, task=rec.task_name,
                                             state=rec.state, at=self.now))

    # ============================================================================================
    # runs
    def start_run(self, record: RunRecord) -> None:
        if record.id in self.runs:
            return
        run = RunState.from_record(record)
        self.runs[record.id] = run
        if record.state in (R.SUBMITTED,):
            record.state = run_transition(record.state, R.RUNNING)
            record.started_at = self.now
            self.touch_run(run)
            self.emit(m.RunStateChanged(run_id=record.id, state=record.state, at=self.now))
        for node_id in run.order:
            spec = run.nodes[node_id]
            if spec["depth"] == 0 and not unfold.has_refs(spec):
                self.try_create(run, node_id, ())
        self.check_all_gathers(run)
        self.check_run_done(run)

    def _on_run_loaded(self, ev: RunLoaded) -> None:
        for ref in ev.products:
            self.products[ref.id] = ref
        self.start_run(ev.run)

    def check_run_done(self, run: RunState) -> None:
        rec = run.record
        if run.active > 0 or rec.state not in (R.RUNNING, R.PAUSED):
            return  # (a paused run with nothing left to hold is over: "paused" would say otherwise)
        rec.state = run_transition(rec.state, R.FAILED if run.failures > 0 else R.SUCCEEDED)
        if run.failures:
            rec.error = f"{run.failures} activit{'y' if run.failures == 1 else 'ies'} failed"
        rec.ended_at = self.now
        self.touch_run(run)
        self.emit(m.RunStateChanged(run_id=rec.id, state=rec.state, at=self.now))
        self.out.finished_runs.append(rec.id)

    def forget_run(self, run_id: str) -> None:
        """Drop a finished run's memory (its rows stay in the store)."""
        run = self.runs.pop(run_id, None)
        if run is None:
            return
        for node_insts in run.insts.values():
            for inst in node_insts.values():
                if inst.activity:
                    self.activities.pop(inst.activity, None)
                    self.where.pop(inst.activity, None)

    # ============================================================================================
    # rules the collaborators share
    def try_create(self, run: RunState, node_id: str, key: Key) -> None:
        unfold.try_create(self, run, node_id, key)

    def new_activity(self, run: RunState, inst: Instance, args: dict[str, Any], *,
                     failed: str | None = None, parent: str | None = None) -> ActivityRecord:
        return unfold.new_activity(self, run, inst, args, failed=failed, parent=parent)

    def new_provider_activity(self, blocked: ActivityRecord, spec: TaskSpec, args: dict[str, Any]
                              ) -> ActivityRecord:
        return unfold.new_provider_activity(self, blocked, spec, args)

    def requeue(self, rec: ActivityRecord, *, retry: bool = False) -> None:
        unfold.requeue(self, rec, retry=retry)

    def propagate(self, run: RunState, inst: Instance) -> None:
        unfold.propagate(self, run, inst)

    def check_all_gathers(self, run: RunState) -> None:
        unfold.check_all_gathers(self, run)

    def window(self) -> int:
        return dispatch.window(self)

    def end_attempt(self, rec: ActivityRecord, ev: Any, state: str) -> None:
        outcomes.end_attempt(self, rec, ev, state)

    def write_usages(self, rec: ActivityRecord) -> None:
        outcomes.write_usages(self, rec)

    # ============================================================================================
    # ending an activity
    def current_attempt(self, activity_id: str, attempt: int) -> ActivityRecord | None:
        rec = self.activities.get(activity_id)
        if rec is None or rec.attempt != attempt or rec.state not in (A.DISPATCHED, A.RUNNING):
            return None  # a duplicate or a late report from a superseded attempt
        return rec

    def succeed(self, rec: ActivityRecord, result: Any, *, finish_instance: bool = True,
                check_done: bool = True) -> None:
        rec.state = activity_transition(rec.state, A.SUCCEEDED)
        rec.result = result
        rec.ended_at = self.now
        rec.error = None
        self.touch(rec)
        self.announce(rec)
        run = self.runs[rec.run_id]
        run.active -= 1
        where = self.where.pop(rec.id, None)
        self.activities.pop(rec.id, None)
        if where is not None and finish_instance:
            inst = run.insts[where[0]][where[1]]
            run.finish_instance(inst, DONE, result)
            unfold.propagate(self, run, inst)
        if check_done:
            self.check_run_done(run)

    def fail(self, rec: ActivityRecord, error: dict[str, Any]) -> None:
        rec.state = activity_transition(rec.state, A.FAILED)
        rec.error = error
        rec.ended_at = self.now
        self.queue.discard(rec.id)
        self.touch(rec)
        self.announce(rec)
        run = self.runs[rec.run_id]
        run.active -= 1
        run.failures += 1
        where = self.where.get(rec.id)
        if where is not None:
            inst = run.insts[where[0]][where[1]]
            run.finish_instance(inst, FAILED)
            unfold.propagate(self, run, inst)
        else:
            self.bt.on_provider_failed(rec)
        self.check_run_done(run)
