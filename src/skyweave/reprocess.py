"""``reprocess``: say what would run again, and why, before running it.

For a run, each activity is replayed on paper in creation order against what is true *now*: the
registry's current task version (unless the run pinned one), the state of its input and output
files (checksums), and whether something upstream re-runs.  Then ``reprocess`` (not dry) submits
the run's graph again as a new run; smart recomputation reuses everything the plan said it would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from skyweave.authoring.graph import upstream
from skyweave.controller.decisions import walk_products
from skyweave.controller.runstate import parse_key
from skyweave.errors import NotFoundError, ParameterError, UnknownTaskError
from skyweave.model import messages as m
from skyweave.model.ids import RUN, new_id
from skyweave.model.records import ActivityRecord, Changeset, RunRecord
from skyweave.model.states import RunState as R
from skyweave.storage import describe, inplace, verify
from skyweave.store.base import Store


@dataclass
class PlannedActivity:
    activity_id: str
    run_id: str
    task: str
    version: str
    key: str
    action: str
    """``reuse`` or ``rerun``."""
    reasons: list[str] = field(default_factory=list)


@dataclass
class Plan:
    runs: list[str]
    activities: list[PlannedActivity]

    @property
    def rerun(self) -> list[PlannedActivity]:
        return [a for a in self.activities if a.action == "rerun"]


def _file_problem(store: Store, product_id: str) -> str:
    try:
        p = store.get_product(product_id)
    except NotFoundError:
        return f"{product_id} is not in the store"
    if p.state != "available":
        return f"{product_id} was {p.state}"
    if inplace.is_in_place(p.attributes):
        change = inplace.change(p.uri, p.checksum, p.attributes)
        return f"{product_id}: {change}" if change else ""
    problem = verify(p.uri, p.checksum)  # any scheme the storage registry knows, as the cache check
    if problem == "gone":
        return f"{product_id} ({p.name or p.type}) is gone from {describe(p.uri)}"
    if problem == "changed":
        return f"{product_id} ({p.name or p.type}) changed on disk since it was registered"
    if problem:
        return f"{product_id} at {p.uri} cannot be verified here: {problem}"
    return ""


def _current_versions(store: Store) -> dict[str, tuple[str, bool]]:
    current: dict[str, tuple[str, bool]] = {}
    for spec, is_current in store.list_tasks():
        if is_current:
            current[spec.name] = (spec.version, spec.cache)
    return current


def plan_run(store: Store, run: RunRecord) -> list[PlannedActivity]:
    current = _current_versions(store)
    rerunning: set[str] = set()
    rerun_keys: dict[str, set[tuple[int, ...]]] = {}
    nodes = run.graph.get("nodes", {})
    made_by: dict[str, str] = {}
    planned: list[PlannedActivity] = []
    acts: list[ActivityRecord] = [a for a in store.list_activities(run_id=run.id)
                                  if a.state not in ("skipped", "cancelled")]
    for act in acts:
        for pid in walk_products(act.result):
            made_by[pid] = act.id
    for act in acts:
        reasons: list[str] = []
        version, cacheable = current.get(act.task_name, (act.task_version, True))
        version = run.pins.get(act.task_name, version)
        if version != act.task_version:
            reasons.append(f"task {act.task_name} is now at version {version} (was {act.task_version})")
        if not cacheable:
            reasons.append(f"task {act.task_name} opts out of reuse")
        if act.state != "succeeded":
            reasons.append(f"it {act.state} last time")
        for role, value in act.arguments.items():
            sources: list[tuple[str, str]] = []
            for pid in walk_products(value):
                source = made_by.get(pid)
                if source in rerunning:
                    sources.append((pid, source))
                elif source is None and (problem := _file_problem(store, pid)):
                    reasons.append(f"input {role!r}: {problem}")
            reasons.extend(_from_rerunning(role, sources))
        if act.node in nodes and not any("comes from" in r for r in reasons):
            key = parse_key(act.key)
            changed = sorted({n for n in upstream(nodes[act.node])
                              if _touches(rerun_keys.get(n, set()), key, int(nodes[n]["depth"]))})
            if changed:
                reasons.append(f"upstream step {', '.join(changed)} re-runs (reused again if its "
                               "output comes out the same)")
        for pid in walk_products(act.result):
            if problem := _file_problem(store, pid):
                reasons.append(f"output {problem}")
        reasons = list(dict.fromkeys(reasons))  # identical reasons once
        if reasons:
            rerunning.add(act.id)
            if act.node:
                rerun_keys.setdefault(act.node, set()).add(parse_key(act.key))
        planned.append(PlannedActivity(act.id, run.id, act.task_name, act.task_version, act.key,
                                       "rerun" if reasons else "reuse", reasons))
    return planned


def _touches(keys: set[tuple[int, ...]], key: tuple[int, ...], depth: int) -> bool:
    """Whether a re-running instance of an upstream node (at ``depth``) feeds the instance ``key``:
    the one at its key prefix, or any under it when the downstream node gathers."""
    if depth <= len(key):
        return key[:depth] in keys
    return any(k[: len(key)] == key for k in keys)


def affected_runs(store: Store, *, run_id: str | None = None, product_id: str | None = None,
                  task: str | None = None, version: str | None = None) -> list[str]:
    """The runs a reprocess request is about, oldest first."""
    if sum(x is not None for x in (run_id, product_id, task)) != 1:
        raise ParameterError("say what to reprocess", hint="give one of --run, --product or --task")
    if run_id is not None:
        store.get_run(run_id)
        return [run_id]
    if product_id is not None:
        store.get_product(product_id)
        users = store.list_usages(product_id=product_id)
        runs = {store.get_activity(u.activity_id).run_id for u in users}
        if not runs:
            raise NotFoundError(f"no run used product {product_id}", hint="nothing to reprocess")
        return sorted(runs, key=lambda r: store.get_run(r).created_at)
    assert task is not None
    acts = store.list_activities(task_name=task)
    if version is not None:
        acts = [a for a in acts if a.task_version == version]
    if not acts:
        raise UnknownTaskError(f"no activity of task {task}{'@' + version if version else ''} in this store",
                               hint="list what ran with `skyweave tasks list` and `skyweave runs`")
    return sorted({a.run_id for a in acts}, key=lambda r: store.get_run(r).created_at)


def plan(store: Store, **request: str | None) -> Plan:
    runs = affected_runs(store, **request)
    return Plan(runs, [item for r in runs for item in plan_run(store, store.get_run(r))])


def resubmit(store: Store, run_id: str) -> RunRecord:
    """A new run of the same graph and parameters (current task versions unless pinned)."""
    old = store.get_run(run_id)
    record = RunRecord(id=new_id(RUN), workflow=old.workflow, state=R.SUBMITTED,
                       workflow_ref=old.workflow_ref, params=dict(old.params), priority=old.priority,
                       graph=old.graph, pins=dict(old.pins), parent_run=old.id, created_at=time.time(),
                       labels={**old.labels, "reprocess_of": old.id})
    store.apply(Changeset(runs=[record]))
    return record


def announce(record: RunRecord) -> bytes:
    return m.encode_message(new_id("evt"), m.RunSubmitted(run_id=record.id, at=time.time()))


def _from_rerunning(role: str, sources: list[tuple[str, str]]) -> list[str]:
    """One reason per input role, however many re-running activities feed it (a gather of a
    fan-out listed one line per upstream activity)."""
    if not sources:
        return []
    if len(sources) == 1:
        pid, source = sources[0]
        return [f"input {role!r} ({pid}) comes from {source}, which re-runs"]
    makers = list(dict.fromkeys(source for _, source in sources))
    shown = ", ".join(makers[:3]) + (", …" if len(makers) > 3 else "")
    return [f"input {role!r} ({len(sources)} products) comes from {len(makers)} activities that "
            f"re-run ({shown})"]
