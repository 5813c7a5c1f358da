"""Smart recomputation: the cache key of an activity.

key = sha256 of (task name, version, code hash, image (its digest when pinned), the parameters that
matter, and the *content* hash of every input product).  Two activities with the same key would
compute the same thing, so the second reuses the first one's outputs — after the shell has checked that those
outputs are still intact (checksums), never silently.  Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Protocol

import msgspec

from skyweave.controller import loops
from skyweave.controller.decisions import CacheChecked
from skyweave.controller.queue import ReadyQueue
from skyweave.controller.runstate import Key, RunState
from skyweave.model.messages import ProductRef
from skyweave.model.records import ActivityRecord, Detour
from skyweave.model.specs import TaskSpec
from skyweave.model.states import ActivityState as A


class Host(loops.Host, Protocol):
    """What a cache answer needs of the controller."""

    now: float
    queue: ReadyQueue
    runs: dict[str, RunState]
    activities: dict[str, ActivityRecord]
    where: dict[str, tuple[str, Key]]
    products: dict[str, ProductRef]
    checking: dict[str, int]

    def write_usages(self, rec: ActivityRecord) -> None: ...
    def succeed(self, rec: ActivityRecord, result: Any, *, finish_instance: bool = True,
                check_done: bool = True) -> None: ...
    def fail(self, rec: ActivityRecord, error: dict[str, Any]) -> None: ...

_encoder = msgspec.json.Encoder(order="sorted")


class UnknownInput(Exception):
    """An input product's content hash is not known, so the activity cannot be keyed."""


def _content(value: Any, products: Mapping[str, ProductRef]) -> Any:
    if isinstance(value, dict):
        pid = value.get("$product")
        if isinstance(pid, str) and len(value) == 1:
            ref = products.get(pid)
            if ref is None or not ref.checksum:
                raise UnknownInput(pid)
            return {"$content": ref.checksum}
        return {k: _content(v, products) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_content(v, products) for v in value]
    return value


def cache_key(spec: TaskSpec, arguments: Mapping[str, Any], products: Mapping[str, ProductRef]
              ) -> str | None:
    """The activity's cache key, or ``None`` when it must not be reused (task opted out, an input
    of unknown content, or arguments that cannot be encoded)."""
    if not spec.cache:
        return None
    chosen = arguments if spec.cache_params is None else {
        k: v for k, v in arguments.items() if k in spec.cache_params}
    try:
        body = {
            "task": spec.name, "version": spec.version, "code": spec.code_hash,
            "image": spec.image_digest or spec.image,
            "kind": str(spec.kind), "ref": spec.ref if spec.kind != "python" else "",
            "arguments": _content(dict(chosen), products),
        }
        data = _encoder.encode(body)
    except (UnknownInput, TypeError, msgspec.EncodeError):
        return None
    return "sha256:" + hashlib.sha256(data).hexdigest()


def on_cache_checked(ctrl: Host, ev: CacheChecked) -> None:
    rec = ctrl.activities.get(ev.activity_id)
    if rec is None or ev.activity_id not in ctrl.checking:
        return
    del ctrl.checking[ev.activity_id]
    if rec.state != A.QUEUED:
        return
    if ev.reuse_from is None:
        if ev.miss_reason:
            rec.detours.append(Detour(kind="cache-miss", product_type="", param="",
                                      reason=ev.miss_reason, at=ctrl.now, ended_at=ctrl.now))
        ctrl.queue.push(rec.id, rec.priority, rec.queued_at)
        ctrl.touch(rec)
        return
    for ref in ev.products:
        ctrl.products[ref.id] = ref
    rec.detours.append(Detour(kind="reused", product_type="", param="", at=ctrl.now,
                              provider_activity=ev.reuse_from, ended_at=ctrl.now,
                              reason=f"same cache key as {ev.reuse_from}; outputs verified intact"))
    rec.started_at = rec.ended_at = ctrl.now
    ctrl.write_usages(rec)
    run = ctrl.runs[rec.run_id]
    where = ctrl.where.get(rec.id)
    problem = run.fanout_problem(where[0], ev.result) if where else None
    if problem:
        ctrl.fail(rec, {"type": "skyweave.DefinitionError", "message": problem, "retryable": False})
        return
    if where is not None and run.nodes[where[0]].get("loop"):
        ctrl.succeed(rec, ev.result, finish_instance=False, check_done=False)
        loops.loop_step(ctrl, run, run.insts[where[0]][where[1]], rec, ev.result)
        return
    ctrl.succeed(rec, ev.result)
