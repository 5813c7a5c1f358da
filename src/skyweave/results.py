"""Reading a run's outcome from the store: its summary and the workflow's return value.

What ``Client.status``/``summary``/``results`` (and ``RunHandle``) answer; the store is all it
needs, so the CLI, a notebook and the dashboard read a run the same way.
"""

from __future__ import annotations

from typing import Any

from skyweave.controller.runstate import parse_key
from skyweave.errors import RunFailedError
from skyweave.model.records import RunRecord
from skyweave.model.states import RunState as R
from skyweave.store.base import Store

Values = dict[tuple[str, tuple[int, ...]], Any]
"""``(node, key) -> (iteration, result)`` of a run's succeeded activities."""


def summary(store: Store, run_id: str, *, location: str) -> dict[str, Any]:
    """A run's state, counts of its activities by state, its products and first failures;
    ``location`` says where the store is (shown to the user)."""
    rec = store.get_run_head(run_id)
    counts = store.count_activities(run_id)
    products = store.find_products(run_id=run_id, state=None)
    failures = [{"activity_id": a.id, "task": a.task_name, "key": a.key,
                 "error": (a.error or {}).get("message"), "exit_code": a.exit_code}
                for a in store.list_activities(run_id=run_id, states=["failed"], limit=20)]
    return {
        "run_id": rec.id, "workflow": rec.workflow, "status": rec.state, "priority": rec.priority,
        "workflow_ref": rec.workflow_ref, "workflow_hash": rec.workflow_hash or None,
        "params": rec.params, "activities": sum(counts.values()), "by_state": counts,
        "products": len(products), "created_at": rec.created_at, "started_at": rec.started_at,
        "ended_at": rec.ended_at, "error": rec.error, "failures": failures,
        "store": location,
    }


def results(store: Store, run_id: str) -> Any:
    """The workflow's return value, with products as ``ProductRecord``s.

    Raises ``RunFailedError`` (naming the first failed activity) unless the run succeeded.
    """
    rec = store.get_run(run_id)
    if rec.state != R.SUCCEEDED:
        failed = store.list_activities(run_id=run_id, states=["failed"], limit=1)
        why = ""
        if failed:
            err = failed[0].error or {}
            why = f": activity {failed[0].id} ({failed[0].task_name}) failed: {err.get('message', '')}"
        raise RunFailedError(f"run {run_id} is {rec.state}, it has no results{why}",
                             hint=f"see `skyweave status {run_id}` and `skyweave logs ACTIVITY`",
                             run_id=run_id, state=rec.state)
    outputs = rec.graph.get("outputs")
    if outputs is None:
        return None
    values: Values = {}
    for act in store.list_activities(run_id=run_id, states=["succeeded"]):
        if act.node:
            k = (act.node, parse_key(act.key))
            prev = values.get(k)
            if prev is None or act.iteration >= prev[0]:
                values[k] = (act.iteration, act.result)
    return _materialise(store, _resolve_output(outputs, rec, values))


def _resolve_output(out: Any, rec: RunRecord, values: Values) -> Any:
    if "lit" in out:
        return out["lit"]
    if "list" in out:
        return [_resolve_output(o, rec, values) for o in out["list"]]
    if "dict" in out:
        return {k: _resolve_output(o, rec, values) for k, o in out["dict"].items()}
    node = out["ref"]
    depth = rec.graph["nodes"][node]["depth"]
    found = sorted((k, v[1]) for (n, k), v in values.items() if n == node)
    picked = [_select(v, out.get("path", [])) for _, v in found]
    if depth == 0:
        return picked[0] if picked else None
    return picked


def _materialise(store: Store, value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$product"}:
            return store.get_product(value["$product"])
        return {k: _materialise(store, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_materialise(store, v) for v in value]
    return value


def _select(value: Any, path: list[Any]) -> Any:
    for step in path:
        value = value[step]
    return value
