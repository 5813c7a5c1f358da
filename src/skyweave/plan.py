"""``Client.plan`` and ``skyweave run --dry-run``: what a submission would reuse, what it would run
and why, before anything runs (Snakemake's ``-n``).

The plan is the controller's own decisions, not a second model of them: a private ``Controller``
core is given the run, its cache checks are answered from the store exactly as the real shell
answers them (outputs verified intact), and nothing is dispatched or written.  A reused step makes
its downstream steps known (their inputs are the reused results), so the plan goes as far as the
graph is known before anything executes.  Steps downstream of one that would run are decided at run
time (their inputs, and for a fan-out how many there are, come from that run): the plan says so.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from skyweave.authoring.external import IN_PLACE
from skyweave.authoring.graph import topological_order, upstream
from skyweave.authoring.task import Task
from skyweave.controller.core import Controller
from skyweave.controller.decisions import RunLoaded, graph_products, walk_products
from skyweave.controller.reuse import check_caches
from skyweave.errors import NotFoundError
from skyweave.model import messages as m
from skyweave.model.ids import RUN, new_id
from skyweave.model.records import ActivityRecord, ProductRecord, RunRecord
from skyweave.model.states import ActivityState as A
from skyweave.model.states import RunState as R
from skyweave.storage import inplace
from skyweave.storage.local import LocalStorage
from skyweave.store.base import Store

MAX_ROUNDS = 10_000
"""Rounds of cache answers (a chain of N reused steps takes N rounds)."""


@dataclass
class PlannedStep:
    node: str
    key: str
    task: str
    version: str
    action: str
    """``reuse``, ``run``, ``skip`` (condition false), ``fail`` (cannot start) or ``later``
    (decided at run time)."""
    reasons: list[str] = field(default_factory=list)
    reuse_from: str | None = None

    @property
    def step(self) -> str:
        return f"{self.node}[{self.key}]" if self.key else self.node


@dataclass
class RunPlan:
    workflow: str
    params: dict[str, Any]
    steps: list[PlannedStep]

    def of(self, action: str) -> list[PlannedStep]:
        return [s for s in self.steps if s.action == action]

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s in self.steps:
            counts[s.action] = counts.get(s.action, 0) + 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {"workflow": self.workflow, "params": self.params, "counts": self.counts,
                "steps": [{**asdict(s), "step": s.step} for s in self.steps]}


def plan_run(store: Store, graph: dict[str, Any], tasks: Mapping[str, Task], *, workflow: str,
             pins: Mapping[str, str], priority: int = 0) -> RunPlan:
    """The plan of submitting ``graph`` (built, not yet resolved) to ``store`` now."""
    now = time.time()
    core = Controller()
    known: set[tuple[str, str]] = set()
    for spec, current in store.list_tasks():
        core.register_task(spec, current=current)
        known.add((spec.name, spec.version))
    for t in tasks.values():
        if (t.spec.name, t.spec.version) not in known:
            core.register_task(t.spec, current=True)  # as submit registers it
    graph, in_place = inplace.resolve_graph(graph, lookup=lambda pid: _product(store, pid))
    new = {r.id: r for r in in_place}
    refs = [m.product_ref(new[pid]) if pid in new else m.product_ref(store.get_product(pid))
            for pid in graph_products(graph)]
    record = RunRecord(id=new_id(RUN), workflow=workflow, state=R.SUBMITTED, params=graph["params"],
                       priority=priority, graph=graph, pins=dict(pins), created_at=now)
    seen: dict[str, ActivityRecord] = {}
    decisions = core.handle([RunLoaded(run=record, products=refs)], now)
    for _ in range(MAX_ROUNDS):
        seen.update((a.id, a) for a in decisions.changes.activities)
        if not decisions.cache_checks:
            break
        decisions = core.handle(check_caches(store, decisions.cache_checks), now)
    explain = _Explainer(store, new)
    steps = [_step(a, explain) for a in seen.values() if a.node]
    steps += _later(graph, steps)
    order = {node: i for i, node in enumerate(topological_order(graph))}
    steps.sort(key=lambda s: (order.get(s.node, 0), [int(k) for k in s.key.split(".") if k]))
    return RunPlan(workflow=workflow, params=dict(graph["params"]), steps=steps)


def _product(store: Store, product_id: str) -> ProductRecord | None:
    try:
        return store.get_product(product_id)
    except NotFoundError:
        return None


def _step(act: ActivityRecord, explain: _Explainer) -> PlannedStep:
    step = PlannedStep(act.node, act.key, act.task_name, act.task_version, "run")
    reused = [d for d in act.detours if d.kind == "reused"]
    if act.state == A.SUCCEEDED and reused:
        step.action, step.reuse_from = "reuse", reused[-1].provider_activity
        step.reasons = [f"same task version, code, parameters and input content as {step.reuse_from}; "
                        "its outputs are intact"]
    elif act.state == A.SKIPPED:
        step.action, step.reasons = "skip", [(act.error or {}).get("message", "its condition is false")]
    elif act.state == A.FAILED:
        step.action, step.reasons = "fail", [(act.error or {}).get("message", "")]
    else:
        misses = [d.reason for d in act.detours if d.kind == "cache-miss"]
        step.reasons = misses or explain.why_run(act)
    return step


def _later(graph: dict[str, Any], steps: Sequence[PlannedStep]) -> list[PlannedStep]:
    """One ``later`` entry per node with no planned step: what it waits for."""
    nodes = graph["nodes"]
    planned: dict[str, set[str]] = {}
    for s in steps:
        planned.setdefault(s.node, set()).add(s.action)
    later: list[PlannedStep] = []
    for node_id in topological_order(graph):
        if node_id in planned:
            continue
        node = nodes[node_id]
        waits = []
        for up in dict.fromkeys(upstream(node)):
            actions = planned.get(up, {"later"})
            if actions & {"run", "later"}:
                waits.append(f"{up} ({'runs' if 'run' in actions else 'decided at run time'})")
        reason = "decided at run time"
        if waits:
            reason += f": waits for {', '.join(waits)}"
        if node.get("depth", 0):
            reason += "; how many activities it makes is known then"
        later.append(PlannedStep(node_id, "", node["task"], str(node.get("version", "")), "later", [reason]))
        planned[node_id] = {"later"}
    return later


class _Explainer:
    """Why a step would run: compared with the last succeeded activity at the same step."""

    def __init__(self, store: Store, new_products: Mapping[str, ProductRecord]) -> None:
        self.store = store
        self.new_products = new_products
        self._last: dict[str, dict[tuple[str, str], ActivityRecord]] = {}

    def last(self, task: str, node: str, key: str) -> ActivityRecord | None:
        if task not in self._last:
            found: dict[tuple[str, str], ActivityRecord] = {}
            for act in self.store.list_activities(task_name=task, states=["succeeded"]):
                found[(act.node, act.key)] = act  # oldest first: the last one stays
            self._last[task] = found
        return self._last[task].get((node, key))

    def product(self, product_id: str) -> ProductRecord | None:
        return self.new_products.get(product_id) or _product(self.store, product_id)

    def why_run(self, act: ActivityRecord) -> list[str]:
        if act.cache_key is None:
            return [f"task {act.task_name} is not cached (cache=False), or an input's content is unknown"]
        prev = self.last(act.task_name, act.node, act.key)
        if prev is None:
            return [f"no earlier run of {act.task_name} at this step"]
        reasons: list[str] = []
        if prev.task_version != act.task_version:
            reasons.append(f"task {act.task_name} is at version {act.task_version} "
                           f"(last run: {prev.task_version})")
        elif prev.code_hash != act.code_hash:
            reasons.append(f"the code of task {act.task_name} changed")
        for param in sorted(set(act.arguments) | set(prev.arguments)):
            before, now = prev.arguments.get(param), act.arguments.get(param)
            if before != now:
                reasons.append(self._argument(param, before, now))
        return reasons or [f"no earlier activity with the same cache key (last run at this step: {prev.id})"]

    def _argument(self, param: str, before: Any, now: Any) -> str:
        old_ids, new_ids = walk_products(before), walk_products(now)
        if not old_ids and not new_ids:
            return f"parameter {param!r} changed: {_short(before)} -> {_short(now)}"
        changed = [p for p in new_ids if p not in old_ids]
        described = []
        for pid in changed[:3]:
            p = self.product(pid)
            if p is not None and inplace.is_in_place(p.attributes):
                kind = p.attributes[IN_PLACE].get("kind", "file")
                described.append(f"{kind} {LocalStorage.local_path(p.uri)} changed or is new")
            elif p is not None:
                described.append(f"product {pid} ({p.name or p.type}) is new")
            else:
                described.append(f"product {pid}")
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        return f"input {param!r}: {'; '.join(described) or 'different products'}{more}"


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
