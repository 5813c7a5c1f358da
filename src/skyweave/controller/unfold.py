"""How a run's graph unfolds into activities: an instance per (node, key) once its inputs are
ready, an activity per instance (or a skipped row, with the reason), and, when an instance ends,
what it completes downstream — gathers included, at O(1) per ended instance.

Functions of the controller's state, pure like the rest of the core; ``Host`` is what they use of
the controller.
"""

from __future__ import annotations

from typing import Any, Protocol

from skyweave.controller.cache import cache_key
from skyweave.controller.decisions import CheckCache, Decisions
from skyweave.controller.expressions import describe, evaluate
from skyweave.controller.expressions import select as _select
from skyweave.controller.queue import ReadyQueue
from skyweave.controller.runstate import (
    DONE,
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
from skyweave.model.ids import ACTIVITY
from skyweave.model.messages import ProductRef
from skyweave.model.records import ActivityRecord
from skyweave.model.specs import TaskSpec
from skyweave.model.states import ActivityState as A
from skyweave.model.states import RunState as R
from skyweave.model.states import activity_transition


class Host(Protocol):
    """What unfolding needs of the controller."""

    now: float
    out: Decisions
    queue: ReadyQueue
    runs: dict[str, RunState]
    activities: dict[str, ActivityRecord]
    where: dict[str, tuple[str, Key]]
    products: dict[str, ProductRef]
    checking: dict[str, int]
    current_version: dict[str, str]

    def new_id(self, prefix: str) -> str: ...
    def spec_for(self, run: RunState, task_name: str) -> TaskSpec: ...
    def fail(self, rec: ActivityRecord, error: dict[str, Any]) -> None: ...
    def touch(self, rec: ActivityRecord) -> None: ...
    def announce(self, rec: ActivityRecord) -> None: ...


def has_refs(node: dict[str, Any]) -> bool:
    """Whether a node's arguments or condition refer to another node's result."""
    return "'ref'" in repr(node["args"]) + repr(node.get("when"))


def try_create(ctrl: Host, run: RunState, node_id: str, key: Key) -> None:
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
        record_skipped(ctrl, run, inst, str(why))
        propagate(ctrl, run, inst)
        return
    except DefinitionError as exc:
        inst = Instance(node=node_id, key=key)
        run.add_instance(inst)
        new_activity(ctrl, run, inst, {}, failed=f"cannot bind the arguments: {exc.message}")
        return
    inst = Instance(node=node_id, key=key)
    run.add_instance(inst)
    loop = spec.get("loop")
    if loop and args.get(loop["state_arg"]) is None and "state" in loop:
        args[loop["state_arg"]] = loop["state"]
    new_activity(ctrl, run, inst, args)


def new_activity(ctrl: Host, run: RunState, inst: Instance, args: dict[str, Any], *,
                 failed: str | None = None, parent: str | None = None) -> ActivityRecord:
    node = run.nodes[inst.node]
    try:
        spec = ctrl.spec_for(run, node["task"])
    except DefinitionError as exc:
        spec = TaskSpec(name=node["task"], version=node.get("version", "?"))
        failed = failed or str(exc)
    priority = node["priority"] if node.get("priority") is not None else max(
        run.record.priority, spec.priority)
    rec = ActivityRecord(
        id=ctrl.new_id(ACTIVITY), run_id=run.record.id, node=inst.node, key=key_str(inst.key),
        task_name=spec.name, task_version=spec.version, code_hash=spec.code_hash,
        state=A.QUEUED, priority=priority, arguments=args, max_attempts=spec.retry.max_attempts,
        created_at=ctrl.now, queued_at=ctrl.now, iteration=inst.iteration, parent_activity=parent,
    )
    inst.activity = rec.id
    ctrl.activities[rec.id] = rec
    ctrl.where[rec.id] = (inst.node, inst.key)
    run.active += 1
    if failed is not None:
        ctrl.fail(rec, {"type": "skyweave.DefinitionError", "message": failed, "retryable": False})
    else:
        rec.cache_key = cache_key(spec, args, ctrl.products)
        if rec.cache_key is not None:
            ctrl.checking[rec.id] = priority
            ctrl.out.cache_checks.append(CheckCache(rec.id, rec.cache_key))
        else:
            ctrl.queue.push(rec.id, priority, ctrl.now)
    ctrl.touch(rec)
    return rec


def record_skipped(ctrl: Host, run: RunState, inst: Instance, why: str = "") -> None:
    """A skipped instance still gets a row, so users can see what did not run, and why."""
    node = run.nodes[inst.node]
    version = ctrl.current_version.get(node["task"], node.get("version", "?"))
    version = run.record.pins.get(node["task"], version)
    rec = ActivityRecord(
        id=ctrl.new_id(ACTIVITY), run_id=run.record.id, node=inst.node, key=key_str(inst.key),
        task_name=node["task"], task_version=version, state=A.SKIPPED, created_at=ctrl.now,
        queued_at=ctrl.now, ended_at=ctrl.now,
        error={"type": "skyweave.Skipped", "retryable": False,
               "message": why or "its condition was false or an input was skipped"})
    inst.activity = rec.id
    ctrl.touch(rec)
    ctrl.announce(rec)


def new_provider_activity(ctrl: Host, blocked: ActivityRecord, spec: TaskSpec, args: dict[str, Any]
                          ) -> ActivityRecord:
    run = ctrl.runs[blocked.run_id]
    rec = ActivityRecord(
        id=ctrl.new_id(ACTIVITY), run_id=blocked.run_id, node="", key="", task_name=spec.name,
        task_version=spec.version, code_hash=spec.code_hash, state=A.QUEUED,
        priority=max(blocked.priority, spec.priority), arguments=args,
        max_attempts=spec.retry.max_attempts, created_at=ctrl.now, queued_at=ctrl.now,
        parent_activity=blocked.id,
    )
    ctrl.activities[rec.id] = rec
    run.active += 1
    ctrl.queue.push(rec.id, rec.priority, ctrl.now)
    ctrl.touch(rec)
    return rec


def requeue(ctrl: Host, rec: ActivityRecord, *, retry: bool = False) -> None:
    """Queue ``rec`` again (``retry``: an explicit retry of a failed or cancelled one)."""
    rec.state = activity_transition(rec.state, A.QUEUED, retry=retry)
    rec.queued_at = ctrl.now
    ctrl.queue.push(rec.id, rec.priority, ctrl.now)
    ctrl.touch(rec)


FANOUT_CHUNK = 1024
"""A fan-out wider than this, or one that would take the queue past it, is deferred and unfolded
as the queue drains (``refill``), instead of all at once: a fan-out of a million made a million
activity records in one step (gigabytes in the controller, one transaction longer than the
controller's lease), and 1,024 groups of 100 finishing together made 100,000."""


def backlog(ctrl: Host) -> int:
    """Activities created and not dispatched yet: queued, or waiting for their cache check."""
    return len(ctrl.queue) + len(ctrl.checking)


def propagate(ctrl: Host, run: RunState, inst: Instance) -> None:
    """An instance became terminal: create what it completes downstream (a wide fan-out: its
    first chunk, the rest deferred)."""
    if inst.state in (DONE, SKIPPED):
        for down in run.downstream[inst.node]:
            if down in run.gather_nodes and run.depth(inst.node) > run.depth(down):
                continue  # a gather over this node: check_gathers decides, once
            width = _fan_out_width(run, down, inst)
            if width and (width > FANOUT_CHUNK or backlog(ctrl) + width > FANOUT_CHUNK):
                run.defer(down, inst.key, width)  # created by ``refill`` as the queue drains
                continue
            for key in _keys_after(run, down, inst):
                try_create(ctrl, run, down, key)
    _check_gathers(ctrl, run, inst)


def _fan_out_width(run: RunState, down: str, inst: Instance) -> int:
    """How many instances ``(*inst.key, i)`` of ``down`` fan out over ``inst``'s result (0 when
    ``down`` does not fan out over it: ``_keys_after`` decides those)."""
    driver = run.driver(down)
    if driver is None or driver[1]["ref"] != inst.node or driver[1]["iter"] != "each" or inst.state != DONE:
        return 0
    try:
        items = _select(inst.value, list(driver[1].get("path", [])))
    except DefinitionError:
        return 0
    return len(items) if isinstance(items, list) else 0


def refill(ctrl: Host, low: int) -> None:
    """Unfold deferred fan-outs until ``low`` activities wait in the queue (or nothing is left)."""
    room = low - backlog(ctrl)
    for run in list(ctrl.runs.values()):
        if room <= 0:
            return
        if run.deferred:
            made = run.undefer(room)
            for node_id, key in made:
                try_create(ctrl, run, node_id, key)
            room -= len(made)


def _keys_after(run: RunState, down: str, inst: Instance) -> list[Key]:
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


def _check_gathers(ctrl: Host, run: RunState, inst: Instance) -> None:
    """Create the gather ``inst`` may have completed: the one over its key prefix, for each
    gather that watches its node (O(1) each: no scan of the gathered instances)."""
    for node_id in run.gather_watch.get(inst.node, ()):
        key = inst.key[: run.depth(node_id)]
        if key not in run.insts[node_id] and (key == () or run.is_candidate(node_id, key)):
            try_create(ctrl, run, node_id, key)


def check_all_gathers(ctrl: Host, run: RunState) -> None:
    """Try every gather of ``run`` (at its start and after a restore: O(instances), once)."""
    for node_id in run.gather_nodes:
        for key in run.candidate_keys(node_id):
            try_create(ctrl, run, node_id, key)
