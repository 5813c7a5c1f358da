"""Drive the controller's pure core with tasks run inline: no bus, no store, no sleeps."""

from __future__ import annotations

from typing import Any

from skyweave.authoring.workflow import Workflow
from skyweave.controller.core import Controller
from skyweave.controller.decisions import (
    CacheChecked,
    Decisions,
    LookupProducts,
    ProductsFound,
    RunLoaded,
    TimerFired,
)
from skyweave.model import messages as m
from skyweave.model.ids import new_id
from skyweave.model.product import Product
from skyweave.model.records import ActivityRecord, AttemptRecord, ProductRecord, RunRecord
from skyweave.model.signals import MissingInput


class World:
    """A controller plus an inline "worker" that runs dispatched Python tasks when asked."""

    def __init__(self, *, reuse: bool = False, **kwargs: Any) -> None:
        self.core = Controller(**kwargs)
        self.reuse = reuse
        """Answer cache checks from earlier activities; otherwise every check is a miss at once."""
        self.now = 1000.0
        self.tasks: dict[str, Any] = {}
        self.queue: list[m.DispatchActivity] = []
        self.timers: list[tuple[float, str, str]] = []
        self.lookups: list[LookupProducts] = []
        self.store_products: list[ProductRecord] = []
        self.activities: dict[str, ActivityRecord] = {}
        self.runs: dict[str, RunRecord] = {}
        self.dispatch_log: list[m.DispatchActivity] = []
        self.events_out: list[Any] = []
        self.cache_checks: list[Any] = []
        self.reused: list[str] = []
        self.reclaimed: list[str] = []
        """Workers the core judged dead (``Decisions.reclaim``), in order."""
        self.attempts: dict[tuple[str, int], AttemptRecord] = {}
        """The latest attempt row written for each (activity, attempt)."""

    # -- plumbing --------------------------------------------------------------------------------
    def feed(self, *events: Any) -> Decisions:
        d = self.core.handle(list(events), self.now)
        for rec in d.changes.activities:
            self.activities[rec.id] = rec
        for run in d.changes.runs:
            self.runs[run.id] = run
        self.store_products.extend(d.changes.products)
        self.events_out.extend(m.decode_message(a).body for a in d.announcements)
        for _, _, data in d.dispatches:
            body = m.decode_message(data).body
            assert isinstance(body, m.DispatchActivity)
            run = self.runs.get(body.run_id)
            assert run is None or run.state not in ("succeeded", "failed", "cancelled"), (
                f"dispatch for run {body.run_id} after it ended as {run.state}")
            self.queue.append(body)
            self.dispatch_log.append(body)
        self.timers.extend((t.at, t.kind, t.activity_id) for t in d.timers)
        self.reclaimed.extend(d.reclaim)
        self.attempts.update(((a.activity_id, a.attempt), a) for a in d.changes.attempts)
        self.lookups.extend(d.lookups)
        if self.reuse:
            self.cache_checks.extend(d.cache_checks)
        elif d.cache_checks:
            self.feed(*[CacheChecked(activity_id=c.activity_id) for c in d.cache_checks])
        return d

    def answer_cache_checks(self) -> None:
        """Reuse a succeeded activity with the same key (every product here is "intact")."""
        while self.cache_checks:
            check = self.cache_checks.pop(0)
            hit = next((a for a in self.activities.values() if a.cache_key == check.cache_key
                        and a.state == "succeeded" and a.id != check.activity_id), None)
            if hit is None:
                self.feed(CacheChecked(activity_id=check.activity_id))
                continue
            self.reused.append(check.activity_id)
            refs = [m.ProductRef(id=p.id, uri=p.uri, type=p.type, checksum=p.checksum, obs_id=p.obs_id,
                                 attributes=p.attributes)
                    for p in self.store_products if p.activity_id == hit.id]
            self.feed(CacheChecked(activity_id=check.activity_id, reuse_from=hit.id, result=hit.result,
                                   products=refs))

    def submit(self, wf: Workflow, params: dict[str, Any] | None = None, *, priority: int = 0,
               pins: dict[str, str] | None = None) -> str:
        graph, tasks = wf.build(params or {})
        for t in tasks.values():
            self.tasks[t.spec.name] = t
            if t.spec.version not in self.core.registry.get(t.spec.name, {}):
                self.core.register_task(t.spec, current=True)
        run = RunRecord(id=new_id("run"), workflow=wf.name, state="submitted", graph=graph,
                        params=graph["params"], priority=priority, pins=pins or {})
        self.feed(RunLoaded(run=run))
        return run.id

    def register(self, task: Any) -> None:
        self.tasks[task.spec.name] = task
        self.core.register_task(task.spec, current=True)

    def answer_lookups(self) -> None:
        while self.lookups:
            lk = self.lookups.pop(0)
            found = [m.ProductRef(id=p.id, uri=p.uri, type=p.type, obs_id=p.obs_id,
                                  attributes=p.attributes)
                     for p in self.store_products
                     if p.type == lk.need.product_type and p.id not in lk.exclude
                     and all(getattr(p, k, p.attributes.get(k)) == v for k, v in lk.need.match.items())]
            self.feed(ProductsFound(activity_id=lk.activity_id, attempt=lk.attempt, products=found))

    def fire_timers(self, until: float) -> None:
        self.now = until
        due = sorted(t for t in self.timers if t[0] <= until)
        self.timers = [t for t in self.timers if t[0] > until]
        if due:
            self.feed(*[TimerFired(kind=k, activity_id=a) for _, k, a in due])

    def outcome(self, d: m.DispatchActivity) -> Any:
        task = self.tasks[d.task.name]
        args = _bind(d.arguments, d.products)
        try:
            value = task.fn(**args)
        except MissingInput as exc:
            return m.ActivityNeedsInput(activity_id=d.activity_id, attempt=d.attempt, need=m.InputNeed(
                param=exc.param, product_type=exc.product_type, match=exc.match, reason=exc.reason,
                provider_params=exc.provider_params, insufficient=exc.insufficient))
        except Exception as exc:
            return m.ActivityFailed(activity_id=d.activity_id, attempt=d.attempt, message=str(exc),
                                    error_type=type(exc).__name__,
                                    retryable=not getattr(exc, "fatal", False))
        products: list[m.NewProduct] = []
        if isinstance(value, Product):
            pid = new_id("prd")
            products.append(m.NewProduct(id=pid, uri=f"mem://{pid}", type=value.type, obs_id=value.obs_id,
                                         attributes=value.attributes, name=str(value.path),
                                         checksum=f"sha256:{value.path}"))
            value = {"$product": pid}
        return m.ActivityFinished(activity_id=d.activity_id, attempt=d.attempt, result=value,
                                  products=products)

    def step(self, n: int | None = None) -> int:
        """Run up to ``n`` queued dispatches (all by default) and report their outcomes."""
        batch = self.queue[: n if n is not None else len(self.queue)]
        self.queue = self.queue[len(batch):]
        if batch:
            self.feed(*[self.outcome(d) for d in batch])
        self.answer_lookups()
        checks = len(self.cache_checks)
        self.answer_cache_checks()
        return len(batch) + checks

    def drain(self, limit: int = 10_000) -> None:
        for _ in range(limit):
            if not self.step() and not self.lookups and not self.cache_checks:
                return
        raise AssertionError("the run did not settle")

    # -- reading ---------------------------------------------------------------------------------
    def run_state(self, run_id: str) -> str:
        return self.runs[run_id].state

    def acts(self, task: str | None = None) -> list[ActivityRecord]:
        return [a for a in self.activities.values() if task is None or a.task_name == task]


def _bind(value: Any, products: dict[str, m.ProductRef]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$product"}:
            ref = products[value["$product"]]
            return Product(ref.uri, type=ref.type, obs_id=ref.obs_id, id=ref.id, attributes=ref.attributes)
        return {k: _bind(v, products) for k, v in value.items()}
    if isinstance(value, list):
        return [_bind(v, products) for v in value]
    return value
