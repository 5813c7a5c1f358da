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

from skyweave.controller import backtrack
from skyweave.controller.cache import cache_key
from skyweave.controller.decisions import (
    CacheChecked,
    CheckCache,
    Decisions,
    ProductsFound,
    RunLoaded,
    Timer,
    TimerFired,
    walk_products,
)
from skyweave.controller.expressions import evaluate
from skyweave.controller.expressions import select as _select
from skyweave.controller.queue import ReadyQueue
from skyweave.controller.runstate import (
    CANCELLED,
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
    Detour,
    ProductRecord,
    RunRecord,
    UsageRecord,
)
from skyweave.model.specs import TaskSpec
from skyweave.model.states import ActivityState as A
from skyweave.model.states import RunState as R

log = logging.getLogger(__name__)

_NOT_STARTED = frozenset({A.QUEUED, A.RETRY_WAIT, A.BACKTRACKING, A.PARKED})


class Controller:
    """Decides what runs next.  One instance owns the runs it has loaded."""

    def __init__(self, *, aging_s: float = 60.0, default_window: int = 256,
                 publish_activity_events: bool = True) -> None:
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
        self.workers: dict[str, tuple[int, float]] = {}
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
        ``restore``, ``retry`` and ``redispatch_in_flight`` called in between)."""
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
        if isinstance(event, m.ActivityFinished):
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
            self._on_cache_checked(event)
        elif isinstance(event, TimerFired):
            self._on_timer(event)
        elif isinstance(event, m.ProductRegistered):
            self._register_products([event.product], None)
        elif isinstance(event, RunLoaded):
            for ref in event.products:
                self.products[ref.id] = ref
            self.start_run(event.run)
        elif isinstance(event, m.RunControlRequested):
            self._on_control(event)
        elif isinstance(event, m.PriorityChangeRequested):
            self._on_priority(event)
        elif isinstance(event, m.TaskVersionRegistered):
            self.register_task(event.task, current=True)
        elif isinstance(event, m.WorkerHeartbeat):
            self.workers[event.worker] = (event.slots, self._now)
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

    def _activity_event(self, rec: ActivityRecord) -> None:
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
            record.state = R.RUNNING
            record.started_at = self._now
            self.touch_run(run)
            self.emit(m.RunStateChanged(run_id=record.id, state=record.state, at=self._now))
        for node_id in run.order:
            spec = run.nodes[node_id]
            if spec["depth"] == 0 and not _has_refs(spec):
                self._try_create(run, node_id, ())
        self._check_gathers(run)
        self._check_run_done(run)

    def restore(self, record: RunRecord, activities: Sequence[ActivityRecord],
                products: Sequence[ProductRecord]) -> None:
        """Rebuild a run after a restart from what the store holds."""
        run = RunState.from_record(record)
        self.runs[record.id] = run
        for p in products:
            self.products[p.id] = _ref(p)
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
            if state == A.SUCCEEDED and not self._loop_continues(run, inst, last):
                inst.state, inst.value = DONE, last.result
            elif state in (A.FAILED, A.SKIPPED, A.CANCELLED):
                inst.state = {A.FAILED: FAILED, A.SKIPPED: SKIPPED, A.CANCELLED: CANCELLED}[A(state)]
            run.add_instance(inst)
        for rec in activities:
            if rec.state in (A.SUCCEEDED, A.SKIPPED):
                continue
            if rec.node:
                self.where[rec.id] = (rec.node, tuple(int(x) for x in rec.key.split(".")) if rec.key else ())
            self.activities[rec.id] = rec
            if rec.state in (A.FAILED, A.CANCELLED):
                if rec.state == A.FAILED:
                    run.failures += 1
                continue
            run.active += 1
            self.bt.restore(rec)
            if rec.state in (A.DISPATCHED, A.RUNNING):
                self.in_flight += 1
            elif rec.state == A.QUEUED:
                self.queue.push(rec.id, rec.priority, rec.queued_at)
            elif rec.state == A.RETRY_WAIT:
                self._d.timers.append(Timer(at=self._now, kind="retry", activity_id=rec.id))
        # loops whose last iteration succeeded but did not conclude, instances never created
        for node_id in run.order:
            for key in run.candidate_keys(node_id):
                self._try_create(run, node_id, key)
        self._check_gathers(run)

    def redispatch_in_flight(self) -> int:
        """After a restart: publish every in-flight dispatch again, under the same message id.

        A bus that kept the message ignores the copy (enqueue is idempotent by id); a bus that lost
        it (in-process, or another bus than before) gets it back.  If the first copy was already
        done, its report wins and the second is ignored as a stale duplicate.
        """
        n = 0
        for rec in self.activities.values():
            if rec.state in (A.DISPATCHED, A.RUNNING):
                spec = self.registry.get(rec.task_name, {}).get(rec.task_version)
                if spec is not None:
                    self._emit_dispatch(rec, spec)
                    n += 1
        return n

    def _check_run_done(self, run: RunState) -> None:
        rec = run.record
        if run.active > 0 or rec.state not in (R.RUNNING,):
            return
        rec.state = R.FAILED if run.failures > 0 else R.SUCCEEDED
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
        spec = run.nodes[node_id]
        depth = spec["depth"]
        try:
            args = {name: run.resolve_arg(arg, key, depth) for name, arg in spec["args"].items()}
            if spec.get("when") is not None:
                ok = evaluate(spec["when"], lambda n, p: run.resolve_ref(n, p, key))
                if not ok:
                    raise Skip
        except NotReady:
            return
        except Blocked:
            return
        except Skip:
            inst = Instance(node=node_id, key=key, state=SKIPPED)
            run.add_instance(inst)
            self._record_skipped(run, inst)
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

    def _on_cache_checked(self, ev: CacheChecked) -> None:
        rec = self.activities.get(ev.activity_id)
        if rec is None or ev.activity_id not in self.checking:
            return
        del self.checking[ev.activity_id]
        if rec.state != A.QUEUED:
            return
        if ev.reuse_from is None:
            if ev.miss_reason:
                rec.detours.append(Detour(kind="cache-miss", product_type="", param="",
                                          reason=ev.miss_reason, at=self._now, ended_at=self._now))
            self.queue.push(rec.id, rec.priority, rec.queued_at)
            self.touch(rec)
            return
        for ref in ev.products:
            self.products[ref.id] = ref
        rec.detours.append(Detour(kind="reused", product_type="", param="", at=self._now,
                                  provider_activity=ev.reuse_from, ended_at=self._now,
                                  reason=f"same cache key as {ev.reuse_from}; outputs verified intact"))
        rec.started_at = rec.ended_at = self._now
        self._record_usages(rec)
        run = self.runs[rec.run_id]
        where = self.where.get(rec.id)
        problem = self._check_fanout_source(run, where[0], ev.result) if where else None
        if problem:
            self._fail(rec, {"type": "skyweave.DefinitionError", "message": problem, "retryable": False})
            return
        if where is not None and run.nodes[where[0]].get("loop"):
            self._succeed(rec, ev.result, finish_instance=False, check_done=False)
            self._loop_step(run, run.insts[where[0]][where[1]], rec, ev.result)
            return
        self._succeed(rec, ev.result)

    def _record_skipped(self, run: RunState, inst: Instance) -> None:
        """A skipped instance still gets a row, so users can see what did not run, and why."""
        node = run.nodes[inst.node]
        version = self.current.get(node["task"], node.get("version", "?"))
        version = run.record.pins.get(node["task"], version)
        rec = ActivityRecord(
            id=new_id(ACTIVITY), run_id=run.record.id, node=inst.node, key=key_str(inst.key),
            task_name=node["task"], task_version=version, state=A.SKIPPED, created_at=self._now,
            queued_at=self._now, ended_at=self._now,
            error={"type": "skyweave.Skipped", "retryable": False,
                   "message": "its condition was false or an input was skipped"})
        inst.activity = rec.id
        self.touch(rec)

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

    def requeue(self, rec: ActivityRecord) -> None:
        rec.state = A.QUEUED
        rec.queued_at = self._now
        self.queue.push(rec.id, rec.priority, self._now)
        self.touch(rec)

    # ============================================================================================
    # dispatch
    def window(self) -> int:
        live = sum(slots for slots, seen in self.workers.values() if self._now - seen < 30.0)
        return max(self.default_window, 4 * live)

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
            rec.state = A.DISPATCHED
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
        mid = f"{rec.id}:{rec.attempt}"
        self._d.dispatches.append((mid, rec.priority, m.encode_message(mid, msg)))

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
        rec.state = A.RUNNING
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
        rec.usage = {f: getattr(ev.usage, f) for f in ev.usage.__struct_fields__}
        rec.aspects = list(ev.aspects)
        error = None
        if isinstance(ev, m.ActivityFailed):
            error = {"type": ev.error_type, "message": ev.message, "traceback": ev.traceback,
                     "retryable": ev.retryable}
            rec.exit_code = ev.exit_code
        self._d.changes.attempts.append(AttemptRecord(
            activity_id=rec.id, attempt=rec.attempt, state=state, worker=rec.worker, host=rec.host,
            pid=ev.pid or None, started_at=rec.started_at, ended_at=ev.at or self._now,
            exit_code=getattr(ev, "exit_code", None), error=error, usage=rec.usage))

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
        problem = self._check_fanout_source(run, node_id, ev.result)
        if problem:
            self._fail(rec, {"type": "skyweave.DefinitionError", "message": problem, "retryable": False})
            return
        loop = run.nodes[node_id].get("loop")
        if loop:
            self._succeed(rec, ev.result, finish_instance=False, check_done=False)
            self._loop_step(run, inst, rec, ev.result)
            return
        self._succeed(rec, ev.result)

    def _succeed(self, rec: ActivityRecord, result: Any, *, finish_instance: bool = True,
                 check_done: bool = True) -> None:
        rec.state = A.SUCCEEDED
        rec.result = result
        rec.ended_at = self._now
        rec.error = None
        self.touch(rec)
        self._activity_event(rec)
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

    def _check_fanout_source(self, run: RunState, node_id: str, result: Any) -> str | None:
        for down in run.downstream[node_id]:
            for arg in run.nodes[down]["args"].values():
                if arg.get("ref") == node_id and arg.get("iter") == "each":
                    try:
                        items = evaluate({"ref": node_id, "path": arg.get("path", [])},
                                         lambda _n, p: _select(result, p))
                    except DefinitionError as exc:
                        return f"{down} fans out over {node_id}: {exc.message}"
                    if not isinstance(items, list):
                        return (f"{down} fans out over the output of {node_id}, which returned a "
                                f"{type(items).__name__}, not a list; return a list (empty for none)")
        return None

    def _loop_continues(self, run: RunState, inst: Instance, rec: ActivityRecord) -> bool:
        loop = run.nodes[inst.node].get("loop")
        if not loop:
            return False
        try:
            done = bool(evaluate(loop["until"], lambda n, p: run.resolve_ref(n, p, inst.key), rec.result))
        except (DefinitionError, NotReady, Skip, Blocked):
            done = True
        return not done and rec.iteration + 1 < loop["max_iterations"]

    def _loop_step(self, run: RunState, inst: Instance, rec: ActivityRecord, result: Any) -> None:
        loop = run.nodes[inst.node]["loop"]
        try:
            converged = bool(evaluate(loop["until"], lambda n, p: run.resolve_ref(n, p, inst.key), result))
        except DefinitionError as exc:
            run.finish_instance(inst, FAILED)
            rec.error = {"type": "skyweave.DefinitionError", "message": f"loop until=: {exc.message}",
                         "retryable": False}
            run.failures += 1
            self._propagate(run, inst)
            self._check_run_done(run)
            return
        if converged or rec.iteration + 1 >= loop["max_iterations"]:
            if not converged and loop.get("on_exhausted") == "fail":
                run.finish_instance(inst, FAILED)
                run.failures += 1
                rec.error = {"type": "skyweave.LoopExhausted", "retryable": False, "message":
                             f"loop did not converge in {loop['max_iterations']} iterations"}
            else:
                run.finish_instance(inst, DONE, result)
                if not converged:
                    rec.error = {"type": "skyweave.LoopExhausted", "retryable": False, "message":
                                 f"accepted the last result: no convergence in {loop['max_iterations']} "
                                 "iterations"}
            self.touch(rec)
            self._propagate(run, inst)
            self._check_run_done(run)
            return
        args = dict(rec.arguments)
        args[loop["state_arg"]] = result
        inst.iteration = rec.iteration + 1
        self._new_activity(run, inst, args, parent=rec.id)

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
            rec.state = A.RETRY_WAIT
            rec.error = error
            self.touch(rec)
            self._d.timers.append(Timer(at=self._now + delay, kind="retry", activity_id=rec.id))
            return
        if ev.retryable and rec.max_attempts > 1:
            error["message"] = f"{ev.message} (gave up after {rec.attempt} attempts)"
        self._fail(rec, error)

    def _fail(self, rec: ActivityRecord, error: dict[str, Any]) -> None:
        rec.state = A.FAILED
        rec.error = error
        rec.ended_at = self._now
        self.queue.discard(rec.id)
        self.touch(rec)
        self._activity_event(rec)
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
            record = ProductRecord(
                id=p.id, uri=p.uri, type=p.type, name=p.name, obs_id=p.obs_id, detector=p.detector,
                version=p.version, checksum=p.checksum, size=p.size, created_at=self._now,
                activity_id=rec.id if rec else None, run_id=rec.run_id if rec else None,
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
        if inst.state in (DONE, SKIPPED):
            for down in run.downstream[inst.node]:
                if down in run.gather_nodes and run.depth(inst.node) > run.depth(down):
                    continue  # a gather over this node: _check_gathers decides, once
                for key in self._keys_after(run, down, inst):
                    self._try_create(run, down, key)
        self._check_gathers(run)

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

    def _check_gathers(self, run: RunState) -> None:
        for node_id in run.gather_nodes:
            depth = run.depth(node_id)
            if depth == 0:
                if () not in run.insts[node_id] and not any(
                        run.open_counts.get((src, ()), 0) for src in run.gather_sources[node_id]):
                    self._try_create(run, node_id, ())
            else:
                for key in run.candidate_keys(node_id):
                    if key not in run.insts[node_id]:
                        self._try_create(run, node_id, key)

    # ============================================================================================
    # control
    def _on_control(self, ev: m.RunControlRequested) -> None:
        run = self.runs.get(ev.run_id)
        if run is None:
            return
        rec = run.record
        if ev.action == "pause" and rec.state == R.RUNNING:
            rec.state = R.PAUSED
        elif ev.action == "resume" and rec.state == R.PAUSED:
            rec.state = R.RUNNING
            for aid in run.held:
                act = self.activities.get(aid)
                if act is not None and act.state == A.QUEUED:
                    self.queue.push(aid, act.priority, act.queued_at)
            run.held.clear()
        elif ev.action == "cancel" and rec.state in (R.RUNNING, R.PAUSED):
            self._cancel_run(run)
        else:
            return
        self.touch_run(run)
        self.emit(m.RunStateChanged(run_id=rec.id, state=rec.state, at=self._now))
        self._check_run_done(run)

    def _cancel_run(self, run: RunState) -> None:
        run.record.state = R.CANCELLED
        run.record.ended_at = self._now
        for aid, rec in list(self.activities.items()):
            if rec.run_id != run.record.id or rec.state in (A.FAILED, A.CANCELLED, A.SUCCEEDED):
                continue
            if rec.state in (A.DISPATCHED, A.RUNNING):
                self.in_flight -= 1
                self._d.withdraw.append(f"{aid}:{rec.attempt}")
            self.queue.discard(aid)
            rec.state = A.CANCELLED
            rec.ended_at = self._now
            run.active -= 1
            where = self.where.get(aid)
            if where is not None:
                run.finish_instance(run.insts[where[0]][where[1]], CANCELLED)
            self.bt.forget(aid)
            self.touch(rec)
        self._d.finished_runs.append(run.record.id)

    def _on_priority(self, ev: m.PriorityChangeRequested) -> None:
        targets: list[ActivityRecord] = []
        if ev.activity_id:
            rec = self.activities.get(ev.activity_id)
            if rec is not None:
                targets.append(rec)
        if ev.run_id and ev.run_id in self.runs:
            run = self.runs[ev.run_id]
            run.record.priority = ev.priority
            self.touch_run(run)
            targets.extend(a for a in self.activities.values() if a.run_id == ev.run_id)
        for rec in targets:
            if rec.state in _NOT_STARTED:
                rec.priority = ev.priority
                if rec.state == A.QUEUED and rec.id in self.queue:
                    self.queue.push(rec.id, rec.priority, rec.queued_at)
                self.touch(rec)
            elif rec.state == A.DISPATCHED:  # on the bus: changed there unless a worker took it
                rec.priority = ev.priority
                self._d.reprioritize.append((f"{rec.id}:{rec.attempt}", ev.priority))
                self.touch(rec)

    def retry(self, rec: ActivityRecord) -> None:
        """Run a failed or cancelled activity again (its run reopens)."""
        run = self.runs.get(rec.run_id)
        if run is None or rec.state not in (A.FAILED, A.CANCELLED):
            return
        self.activities[rec.id] = rec
        if rec.node:
            key = tuple(int(x) for x in rec.key.split(".")) if rec.key else ()
            self.where[rec.id] = (rec.node, key)
            inst = run.insts[rec.node].get(key)
            if inst is not None:
                run.reopen_instance(inst)
        if rec.state == A.FAILED:
            run.failures = max(0, run.failures - 1)
        spec = self.registry.get(rec.task_name, {}).get(rec.task_version)
        rec.max_attempts = rec.attempt + (spec.retry.max_attempts if spec else 1)
        rec.error = None
        run.active += 1
        if run.record.state in (R.FAILED, R.CANCELLED, R.SUCCEEDED):
            run.record.state = R.RUNNING
            run.record.ended_at = None
            run.record.error = None
            self.touch_run(run)
            self.emit(m.RunStateChanged(run_id=run.record.id, state=run.record.state, at=self._now))
        self.requeue(rec)


def _has_refs(node: dict[str, Any]) -> bool:
    text = repr(node["args"]) + repr(node.get("when"))
    return "'ref'" in text


_ref = m.product_ref
