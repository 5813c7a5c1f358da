"""The controller's pure core: ``handle(events, now) -> Decisions``.

No I/O, no clocks, no threads: the service loop (``controller/service.py``) reads events from the
bus, calls ``handle``, writes the changeset in one transaction and only then publishes what it
decided.  Tests feed events and compare decisions.  Every decision costs O(1) in the size of the
run (gathers collect once; a fan-out of N creates N activities once).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from skyweave.authoring.external import IN_PLACE
from skyweave.controller import backtrack, cache, control, liveness, loops, recovery
from skyweave.controller.cache import cache_key
from skyweave.controller.decisions import (
    CacheChecked,
    CheckCache,
    Decisions,
    Held,
    ProductsFound,
    Recovered,
    RunLoaded,
    RunRestored,
    Timer,
    TimerFired,
    WorkerLost,
    walk_products,
)
from skyweave.controller.expressions import describe, evaluate
from skyweave.controller.expressions import select as _select
from skyweave.controller.queue import ReadyQueue
from skyweave.controller.runstate import (
    DONE,
    FAILED,
    SKIPPED,
    Blocked,
    Instance,
    Key,
    NotReady,
    RunState,
    Skip,
    key_str,
)
from skyweave.errors import DefinitionError
from skyweave.model import messages as m
from skyweave.model.ids import ACTIVITY, new_id
from skyweave.model.messages import ProductRef
from skyweave.model.records import (
    ActivityRecord,
    AttemptRecord,
    ProductRecord,
    RunRecord,
    UsageRecord,
)
from skyweave.model.specs import TaskSpec
from skyweave.model.states import ActivityState as A
from skyweave.model.states import RunState as R
from skyweave.model.states import activity_transition, run_transition

log = logging.getLogger(__name__)



class Controller:
    """Decides what runs next.  One instance owns the runs it has loaded."""

    def __init__(self, *, aging_s: float = 60.0, default_window: int = 256,
                 publish_activity_events: bool = True, worker_timeout_s: float = 5.0) -> None:
        self.queue = ReadyQueue(aging_s)
        self.runs: dict[str, RunState] = {}
        self.activities: dict[str, ActivityRecord] = {}
        """Activities not yet terminal (plus failed ones, so they can be retried)."""
        self.where: dict[str, tuple[str, Key]] = {}
        """Activity id -> (node, key) of its instance; providers are not in the map."""
        self.registry: dict[str, dict[str, TaskSpec]] = {}
        self.current: dict[str, str] = {}
        self.products: dict[str, ProductRef] = {}
        self.checking: dict[str, int] = {}
        """Queued activities waiting for the answer of a cache check (not in the ready queue yet)."""
        self.in_flight = 0
        self.default_window = default_window
        self.live = liveness.Liveness(self, worker_timeout_s)
        self.publish_activity_events = publish_activity_events
        self.record_usages = True
        """Write which products each activity used (off only to measure provenance's cost)."""
        self.bt = backtrack.Backtracker(self)
        self._d = Decisions()
        self._touched_acts: dict[str, ActivityRecord] = {}
        self._touched_runs: dict[str, RunRecord] = {}
        self._now = 0.0

    # ============================================================================================
    # entry point
    def handle(self, events: Iterable[Any], now: float) -> Decisions:
        """Apply events; return every decision made since the last call (including those of
        ``restore`` and ``retry`` called in between)."""
        self._now = now
        for event in events:
            self._handle_one(event)
        self._dispatch()
        d = self._d
        d.changes.activities = list(self._touched_acts.values())
        d.changes.runs = list(self._touched_runs.values())
        self._d = Decisions()
        self._touched_acts = {}
        self._touched_runs = {}
        return d

    def advance(self, now: float) -> None:
        """Set the clock for calls made outside ``handle`` (restore, retry)."""
        self._now = now

    def _handle_one(self, event: Any) -> None:
        if isinstance(event, m.ActivityFinished | m.ActivityFailed | m.ActivityNeedsInput) and (
                self._current(event.activity_id, event.attempt) is None):
            self.live.late(event)  # a duplicate, or the report of an attempt judged lost
        elif isinstance(event, m.ActivityFinished):
            self._on_finished(event)
        elif isinstance(event, m.ActivityFailed):
            self._on_failed(event)
        elif isinstance(event, m.ActivityStarted):
            self._on_started(event)
        elif isinstance(event, m.ActivityNeedsInput):
            self.bt.on_needs_input(event)
        elif isinstance(event, ProductsFound):
            self.bt.on_products_found(event)
        elif isinstance(event, CacheChecked):
            cache.on_cache_checked(self, event)
        elif isinstance(event, TimerFired):
            self._on_timer(event)
        elif isinstance(event, m.ProductRegistered):
            self._register_products([event.product], None)
        elif isinstance(event, RunLoaded):
            for ref in event.products:
                self.products[ref.id] = ref
            self.start_run(event.run)
        elif isinstance(event, m.RunControlRequested):
            control.on_control(self, event)
        elif isinstance(event, m.PriorityChangeRequested):
            control.on_priority(self, event)
        elif isinstance(event, m.TaskVersionRegistered):
            self.register_task(event.task, current=True)
        elif isinstance(event, m.WorkerHeartbeat):
            self.live.heard(event)
        elif isinstance(event, Held):
            control.on_held(self, event)
        elif isinstance(event, WorkerLost):
            self.live.on_worker_lost(event)
        elif isinstance(event, m.ActivityReturned):
            self.live.on_returned(event)
        elif isinstance(event, RunRestored):
            recovery.restore(self, event.run, event.activities, event.products)
        elif isinstance(event, Recovered):
            recovery.recovered(self, event)
        # RetryRequested needs the store (a failed activity may be evicted): the shell loads it
        # and calls retry(); RunSubmitted becomes RunLoaded in the shell; the rest is ignored.

    # ============================================================================================
    # registry
    def register_task(self, spec: TaskSpec, *, current: bool) -> None:
        self.registry.setdefault(spec.name, {})[spec.version] = spec
        if current or spec.name not in self.current:
            self.current[spec.name] = spec.version

    def spec_for(self, run: RunState, task_name: str) -> TaskSpec:
        versions = self.registry.get(task_name)
        if not versions:
            raise DefinitionError(f"no task named {task_name!r} is registered",
                                  hint=f"registered: {', '.join(sorted(self.registry)) or 'none'}")
        version = run.record.pins.get(task_name) or self.current[task_name]
        spec = versions.get(version)
        if spec is None:
            raise DefinitionError(f"task {task_name!r} has no version {version!r}",
                                  hint=f"versions: {', '.join(sorted(versions))}")
        return spec

    # ============================================================================================
    # persistence helpers
    def touch(self, rec: ActivityRecord) -> None:
        self._touched_acts[rec.id] = rec

    def touch_run(self, run: RunState) -> None:
        self._touched_runs[run.record.id] = run.record

    def emit(self, message: Any) -> None:
        self._d.announcements.append(m.encode_message(new_id("evt"), message))

    def announce(self, rec: ActivityRecord) -> None:
        """Tell listeners and watchers the activity's new state (``activity.<state>``): terminal
        states and the waiting ones (retry_wait, backtracking, parked), not the hot path's queued,
        dispatched and running."""
        if self.publish_activity_events:
            self.emit(m.ActivityStateChanged(activity_id=rec.id, run_id=rec.run_id, task=rec.task_name,
                                             state=rec.state, at=self._now))

    # ============================================================================================
    # runs
    def start_run(self, record: RunRecord) -> None:
        if record.id in self.runs:
            return
        run = RunState.from_record(record)
        self.runs[record.id] = run
        if record.state in (R.SUBMITTED,):
            record.state = run_transition(record.state, R.RUNNING)
            record.started_at = self._now
            self.touch_run(run)
            self.emit(m.RunStateChanged(run_id=record.id, state=record.state, at=self._now))
        for node_id in run.order:
            spec = run.nodes[node_id]
            if spec["depth"] == 0 and not _has_refs(spec):
                self._try_create(run, node_id, ())
        self.check_all_gathers(run)
        self._check_run_done(run)


    def restore(self, record: RunRecord, activities: Sequence[ActivityRecord],
                products: Sequence[ProductRecord]) -> None:
        """Load a finished run again from what the store holds, so that one of its activities can
        be retried (``recovery.restore``; after a restart, the shell sends ``RunRestored``)."""
        recovery.restore(self, record, activities, products)

    def retry(self, rec: ActivityRecord) -> None:
        """Run a failed or cancelled activity again; its run reopens (``control.retry``)."""
        control.retry(self, rec)

    def _check_run_done(self, run: RunState) -> None:
        rec = run.record
        if run.active > 0 or rec.state not in (R.RUNNING, R.PAUSED):
            return  # (a paused run with nothing left to hold is over: "paused" would say otherwise)
        rec.state = run_transition(rec.state, R.FAILED if run.failures > 0 else R.SUCCEEDED)
        if run.failures:
            rec.error = f"{run.failures} activit{'y' if run.failures == 1 else 'ies'} failed"
        rec.ended_at = self._now
        self.touch_run(run)
        self.emit(m.RunStateChanged(run_id=rec.id, state=rec.state, at=self._now))
        self._d.finished_runs.append(rec.id)

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
    # instances and activities
    def _try_create(self, run: RunState, node_id: str, key: Key) -> None:
        if key in run.insts[node_id] or run.record.state not in (R.RUNNING, R.PAUSED):
            return
        if not run.ready(node_id, key):
            return
        if node_id in run.gather_nodes and not run.gather_final(node_id, key):
            return
        spec = run.nodes[node_id]
        depth = spec["depth"]
        try:
            args = {name: run.resolve_arg(arg, key, depth) for name, arg in spec["args"].items()}
            if spec.get("when") is not None:
                ok = evaluate(spec["when"], lambda n, p: run.resolve_ref(n, p, key))
                if not ok:
                    raise Skip(f"its condition {describe(spec['when'])} was false")
        except NotReady:
            return
        except Blocked:
            return
        except Skip as why:
            inst = Instance(node=node_id, key=key, state=SKIPPED)
            run.add_instance(inst)
            self._record_skipped(run, inst, str(why))
            self._propagate(run, inst)
            return
        except DefinitionError as exc:
            inst = Instance(node=node_id, key=key)
            run.add_instance(inst)
            self._new_activity(run, inst, {}, failed=f"cannot bind the arguments: {exc.message}")
            return
        inst = Instance(node=node_id, key=key)
        run.add_instance(inst)
        loop = spec.get("loop")
        if loop and args.get(loop["state_arg"]) is None and "state" in loop:
            args[loop["state_arg"]] = loop["state"]
        self._new_activity(run, inst, args)

    def _new_activity(self, run: RunState, inst: Instance, args: dict[str, Any], *,
                      failed: str | None = None, parent: str | None = None) -> ActivityRecord:
        node = run.nodes[inst.node]
        try:
            spec = self.spec_for(run, node["task"])
        except DefinitionError as exc:
            spec = TaskSpec(name=node["task"], version=node.get("version", "?"))
            failed = failed or str(exc)
        priority = node["priority"] if node.get("priority") is not None else max(
            run.record.priority, spec.priority)
        rec = ActivityRecord(
            id=new_id(ACTIVITY), run_id=run.record.id, node=inst.node, key=key_str(inst.key),
            task_name=spec.name, task_version=spec.version, code_hash=spec.code_hash,
            state=A.QUEUED, priority=priority, arguments=args, max_attempts=spec.retry.max_attempts,
            created_at=self._now, queued_at=self._now, iteration=inst.iteration, parent_activity=parent,
        )
        inst.activity = rec.id
        self.activities[rec.id] = rec
        self.where[rec.id] = (inst.node, inst.key)
        run.active += 1
        if failed is not None:
            self._fail(rec, {"type": "skyweave.DefinitionError", "message": failed, "retryable": False})
        else:
            rec.cache_key = cache_key(spec, args, self.products)
            if rec.cache_key is not None:
                self.checking[rec.id] = priority
                self._d.cache_checks.append(CheckCache(rec.id, rec.cache_key))
            else:
                self.queue.push(rec.id, priority, self._now)
        self.touch(rec)
        return rec

    def _record_skipped(self, run: RunState, inst: Instance, why: str = "") -> None:
        """A skipped instance still gets a row, so users can see what did not run, and why."""
        node = run.nodes[inst.node]
        version = self.current.get(node["task"], node.get("version", "?"))
        version = run.record.pins.get(node["task"], version)
        rec = ActivityRecord(
            id=new_id(ACTIVITY), run_id=run.record.id, node=inst.node, key=key_str(inst.key),
            task_name=node["task"], task_version=version, state=A.SKIPPED, created_at=self._now,
            queued_at=self._now, ended_at=self._now,
            error={"type": "skyweave.Skipped", "retryable": False,
                   "message": why or "its condition was false or an input was skipped"})
        inst.activity = rec.id
        self.touch(rec)
        self.announce(rec)

    def new_provider_activity(self, blocked: ActivityRecord, spec: TaskSpec, args: dict[str, Any]
                              ) -> ActivityRecord:
        run = self.runs[blocked.run_id]
        rec = ActivityRecord(
            id=new_id(ACTIVITY), run_id=blocked.run_id, node="", key="", task_name=spec.name,
            task_version=spec.version, code_hash=spec.code_hash, state=A.QUEUED,
            priority=max(blocked.priority, spec.priority), arguments=args,
            max_attempts=spec.retry.max_attempts, created_at=self._now, queued_at=self._now,
            parent_activity=blocked.id,
        )
        self.activities[rec.id] = rec
        run.active += 1
        self.queue.push(rec.id, rec.priority, self._now)
        self.touch(rec)
        return rec

    def requeue(self, rec: ActivityRecord, *, retry: bool = False) -> None:
        """Queue ``rec`` again (``retry``: an explicit retry of a failed or cancelled one)."""
        rec.state = activity_transition(rec.state, A.QUEUED, retry=retry)
        rec.queued_at = self._now
        self.queue.push(rec.id, rec.priority, self._now)
        self.touch(rec)

    # ============================================================================================
    # dispatch
    def window(self) -> int:
        return max(self.default_window, 4 * self.live.slots())

    def _held(self, activity_id: str) -> bool:
        rec = self.activities.get(activity_id)
        if rec is None or rec.state != A.QUEUED:
            return True
        run = self.runs.get(rec.run_id)
        if run is None:
            return True
        if run.record.state == R.PAUSED:
            run.held.append(activity_id)
            return True
        return False

    def _dispatch(self) -> None:
        window = self.window()
        # work still being checked against the cache keeps its rank: nothing of lower priority
        # takes the window meanwhile (its answer comes with the next batch)
        waiting = max(self.checking.values(), default=None)
        while self.in_flight < window:
            aid = self.queue.pop(self._now, self._held)
            if aid is None:
                return
            rec = self.activities[aid]
            if waiting is not None and rec.priority < waiting:
                self.queue.unpop(aid, rec.priority, rec.queued_at)
                return
            try:
                spec = self.registry[rec.task_name][rec.task_version]
            except KeyError:
                self._fail(rec, {"type": "skyweave.UnknownTaskError", "retryable": False,
                                 "message": f"task {rec.task_name}@{rec.task_version} is not registered"})
                continue
            rec.state = activity_transition(rec.state, A.DISPATCHED)
            rec.attempt += 1
            self.in_flight += 1
            self._emit_dispatch(rec, spec)
            self.touch(rec)

    def _emit_dispatch(self, rec: ActivityRecord, spec: TaskSpec) -> None:
        run = self.runs[rec.run_id]
        refs = {pid: self.products[pid] for pid in walk_products(rec.arguments) if pid in self.products}
        obs_id = rec.arguments.get("obs_id")
        obs_id = obs_id if isinstance(obs_id, str) else run.record.params.get("obs_id")
        msg = m.DispatchActivity(activity_id=rec.id, attempt=rec.attempt, run_id=rec.run_id, task=spec,
                                 arguments=rec.arguments, products=refs, priority=rec.priority,
                                 obs_id=obs_id if isinstance(obs_id, str) else None)
        mid = m.dispatch_id(rec.id, rec.attempt)
        self._d.dispatches.append((mid, rec.priority, m.encode_message(mid, msg)))
        if rec.attempt - 1 in self.live.lost.get(rec.id, ()):
            self._d.dispatch_first.append(mid)  # its last attempt was lost with a worker: its turn now

    # ============================================================================================
    # outcomes
    def _current(self, activity_id: str, attempt: int) -> ActivityRecord | None:
        rec = self.activities.get(activity_id)
        if rec is None or rec.attempt != attempt or rec.state not in (A.DISPATCHED, A.RUNNING):
            return None  # a duplicate or a late report from a superseded attempt
        return rec

    def _on_started(self, ev: m.ActivityStarted) -> None:
        rec = self._current(ev.activity_id, ev.attempt)
        if rec is None or rec.state != A.DISPATCHED:
            return
        rec.state = activity_transition(rec.state, A.RUNNING)
        rec.started_at = ev.at or self._now
        rec.worker, rec.host = ev.worker, ev.host
        self._d.changes.attempts.append(AttemptRecord(
            activity_id=rec.id, attempt=rec.attempt, state=A.RUNNING, worker=ev.worker, host=ev.host,
            pid=ev.pid, started_at=rec.started_at))
        self.touch(rec)

    def end_attempt(self, rec: ActivityRecord, ev: Any, state: str) -> None:
        """Record the facts of a finished attempt on the activity and its attempt row."""
        self.in_flight -= 1
        rec.worker, rec.host = ev.worker or rec.worker, ev.host or rec.host
        rec.started_at = ev.started_at or rec.started_at
        rec.log_uri = ev.log_uri or rec.log_uri
        rec.usage = dict(ev.usage.as_dict())
        rec.aspects = list(ev.aspects)
        # command and image tasks: what ran, and its exit status (0 included)
        rec.exit_code, rec.command = getattr(ev, "exit_code", None), getattr(ev, "command", "") or None
        error = None
        if isinstance(ev, m.ActivityFailed):
            error = {"type": ev.error_type, "message": ev.message, "traceback": ev.traceback,
                     "retryable": ev.retryable}
        self._d.changes.attempts.append(AttemptRecord(
            activity_id=rec.id, attempt=rec.attempt, state=state, worker=rec.worker, host=rec.host,
            pid=ev.pid or None, started_at=rec.started_at, ended_at=ev.at or self._now,
            exit_code=rec.exit_code, error=error, usage=rec.usage))

    def _on_finished(self, ev: m.ActivityFinished) -> None:
        rec = self._current(ev.activity_id, ev.attempt)
        if rec is None:
            return
        self.end_attempt(rec, ev, A.SUCCEEDED)
        run = self.runs[rec.run_id]
        self._register_products(ev.products, rec)
        self._record_usages(rec)
        where = self.where.get(rec.id)
        if where is None:  # a provider made what a blocked activity asked for
            self._succeed(rec, ev.result)
            self.bt.on_provider_done(rec, ev.products)
            return
        node_id, key = where
        inst = run.insts[node_id][key]
        problem = run.fanout_problem(node_id, ev.result)
        if problem:
            self._fail(rec, {"type": "skyweave.DefinitionError", "message": problem, "retryable": False})
            return
        loop = run.nodes[node_id].get("loop")
        if loop:
            self._succeed(rec, ev.result, finish_instance=False, check_done=False)
            loops.loop_step(self, run, inst, rec, ev.result)
            return
        self._succeed(rec, ev.result)

    def _succeed(self, rec: ActivityRecord, result: Any, *, finish_instance: bool = True,
                 check_done: bool = True) -> None:
        rec.state = activity_transition(rec.state, A.SUCCEEDED)
        rec.result = result
        rec.ended_at = self._now
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
            self._propagate(run, inst)
        if check_done:
            self._check_run_done(run)



    def _on_failed(self, ev: m.ActivityFailed) -> None:
        rec = self._current(ev.activity_id, ev.attempt)
        if rec is None:
            return
        self.end_attempt(rec, ev, A.FAILED)
        error = {"type": ev.error_type, "message": ev.message, "traceback": ev.traceback,
                 "retryable": ev.retryable, "attempt": ev.attempt}
        if ev.retryable and rec.attempt < rec.max_attempts:
            spec = self.registry.get(rec.task_name, {}).get(rec.task_version)
            delay = spec.retry.delay(rec.attempt) if spec else 1.0
            rec.state = activity_transition(rec.state, A.RETRY_WAIT)
            rec.error = error
            self.touch(rec)
            self.announce(rec)
            self._d.timers.append(Timer(at=self._now + delay, kind="retry", activity_id=rec.id))
            return
        if ev.retryable and rec.max_attempts > 1:
            error["message"] = f"{ev.message} (gave up after {rec.attempt} attempts)"
        self._fail(rec, error)

    def _fail(self, rec: ActivityRecord, error: dict[str, Any]) -> None:
        rec.state = activity_transition(rec.state, A.FAILED)
        rec.error = error
        rec.ended_at = self._now
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
            self._propagate(run, inst)
        else:
            self.bt.on_provider_failed(rec)
        self._check_run_done(run)

    def _on_timer(self, ev: TimerFired) -> None:
        if ev.kind == liveness.LIVENESS:
            self.live.check()
            return
        rec = self.activities.get(ev.activity_id)
        if rec is None:
            return
        if ev.kind == "retry" and rec.state == A.RETRY_WAIT:
            self.requeue(rec)
        elif ev.kind == "park" and rec.state == A.PARKED:
            self.bt.on_deadline(rec)

    # ============================================================================================
    # products
    def _register_products(self, products: Sequence[m.NewProduct], rec: ActivityRecord | None) -> None:
        for p in products:
            # a File/Folder a task returned was found, not made, by it: no generating activity
            maker = None if rec is None or IN_PLACE in p.attributes else rec
            record = ProductRecord(
                id=p.id, uri=p.uri, type=p.type, name=p.name, obs_id=p.obs_id, detector=p.detector,
                version=p.version, checksum=p.checksum, size=p.size, created_at=self._now,
                activity_id=maker.id if maker else None, run_id=maker.run_id if maker else None,
                attributes=dict(p.attributes))
            self._d.changes.products.append(record)
            self.products[p.id] = _ref(record)
            self.emit(m.ProductCreated(product=p, run_id=record.run_id, activity_id=record.activity_id,
                                       at=self._now))
            self.bt.on_product(record)

    def _record_usages(self, rec: ActivityRecord) -> None:
        if not self.record_usages:
            return
        for role, value in rec.arguments.items():
            for pid in walk_products(value):
                self._d.changes.usages.append(UsageRecord(activity_id=rec.id, product_id=pid, role=role))

    # ============================================================================================
    # propagation
    def _propagate(self, run: RunState, inst: Instance) -> None:
        """An instance became terminal: create what it completes downstream."""
        if inst.state in (DONE, SKIPPED):
            for down in run.downstream[inst.node]:
                if down in run.gather_nodes and run.depth(inst.node) > run.depth(down):
                    continue  # a gather over this node: _check_gathers decides, once
                for key in self._keys_after(run, down, inst):
                    self._try_create(run, down, key)
        self._check_gathers(run, inst)

    def _keys_after(self, run: RunState, down: str, inst: Instance) -> list[Key]:
        d_down, d_src = run.depth(down), run.depth(inst.node)
        driver = run.driver(down)
        if driver is not None and driver[1]["ref"] == inst.node:
            arg = driver[1]
            if arg["iter"] == "each":
                if inst.state != DONE:
                    return []
                try:
                    items = _select(inst.value, list(arg.get("path", [])))
                except DefinitionError:
                    return []
                return [(*inst.key, i) for i in range(len(items))] if isinstance(items, list) else []
            return [inst.key]
        if d_down == 0:
            return [()]
        if d_src <= d_down:
            return run.candidate_keys(down, inst.key)
        return []  # a deeper source feeds a gather: handled by _check_gathers

    def _check_gathers(self, run: RunState, inst: Instance) -> None:
        """Create the gather ``inst`` may have completed: the one over its key prefix, for each
        gather that watches its node (O(1) each: no scan of the gathered instances)."""
        for node_id in run.gather_watch.get(inst.node, ()):
            key = inst.key[: run.depth(node_id)]
            if key not in run.insts[node_id] and (key == () or run.is_candidate(node_id, key)):
                self._try_create(run, node_id, key)

    def check_all_gathers(self, run: RunState) -> None:
        """Try every gather of ``run`` (at its start and after a restore: O(instances), once)."""
        for node_id in run.gather_nodes:
            for key in run.candidate_keys(node_id):
                self._try_create(run, node_id, key)


def _has_refs(node: dict[str, Any]) -> bool:
    text = repr(node["args"]) + repr(node.get("when"))
    return "'ref'" in text


_ref = m.product_ref
