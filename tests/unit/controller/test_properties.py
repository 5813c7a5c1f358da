"""Property-based tests of the controller's pure core: whatever order, batching, duplication or
staleness the outside world delivers reports in, runs end, results are right, effects happen once.

A ``Sim`` drives ``Controller.handle`` like the service does, but is adversarial about delivery:
outcomes of dispatched activities come back in a random order and random batches, some attempts
fail (retryably or not), reports are duplicated, stale reports (old attempt numbers, with a
poisoned result) arrive late, timers fire in random order, and runs are paused, resumed, cancelled
or the controller restarted from what the store holds — with the bus kept (its dispatches stay
where they are) or lost (they run again as new attempts, and the old ones' reports must not count).
The store is modelled by copying every record the changesets carry, so a restart sees only what
was committed.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import msgspec
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from skyweave.controller.core import Controller
from skyweave.controller.decisions import (
    CacheChecked,
    Decisions,
    Recovered,
    RunLoaded,
    RunRestored,
    TimerFired,
)
from skyweave.controller.queue import ReadyQueue
from skyweave.controller.runstate import FAILED, TERMINAL, Key, RunState
from skyweave.model import messages as m
from skyweave.model.ids import new_id
from skyweave.model.product import Product
from skyweave.model.records import ActivityRecord, ProductRecord, RunRecord
from tests.unit.controller import prop_flows

TERMINAL_RUN = ("succeeded", "failed", "cancelled")
TERMINAL_ACT = ("succeeded", "failed", "skipped", "cancelled")
POISON = -(10**9)
"""The result a stale report claims: it must never reach a gather."""

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _copy(rec: Any) -> Any:
    """What the store would hand back: a copy, not the core's live object."""
    return msgspec.msgpack.decode(msgspec.msgpack.encode(rec), type=type(rec))


def _bind(value: Any, products: dict[str, m.ProductRef]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$product"}:
            ref = products[value["$product"]]
            return Product(ref.uri, type=ref.type, obs_id=ref.obs_id, id=ref.id, attributes=ref.attributes)
        return {k: _bind(v, products) for k, v in value.items()}
    if isinstance(value, list):
        return [_bind(v, products) for v in value]
    return value


def check_counters(run: RunState) -> None:
    """The core's per-(node, key prefix) counters and indexes say what a scan of its instances
    would say, and no gather that could collect is left uncreated (each event checks only the
    gathers it may complete, so a missed one would wait forever)."""
    opened: Counter[tuple[str, Key]] = Counter()
    failed: Counter[tuple[str, Key]] = Counter()
    members: dict[tuple[str, Key], list[Key]] = {}
    for node, insts in run.insts.items():
        for key, inst in insts.items():
            for i in range(len(key) + 1):
                if inst.state not in TERMINAL:
                    opened[(node, key[:i])] += 1
                if inst.state == FAILED:
                    failed[(node, key[:i])] += 1
                if i < len(key):
                    members.setdefault((node, key[:i]), []).append(key)
    assert {k: v for k, v in run.open_counts.items() if v} == dict(opened)
    assert {k: v for k, v in run.failed_counts.items() if v} == dict(failed)
    assert {k: sorted(v) for k, v in run.members.items()} == {k: sorted(v) for k, v in members.items()}
    if run.record.state not in ("running", "paused"):
        return
    for node in run.gather_nodes:
        for key in run.candidate_keys(node):
            if key in run.insts[node] or not run.ready(node, key):
                continue
            settled = [run.settled(src, key) for src in run.gather_sources[node]]
            assert not all(final and clean for final, clean in settled), (
                f"gather {node}{list(key)} could collect but was not created")


class Plan(msgspec.Struct, kw_only=True):
    """How hostile the world is."""

    retryable: float = 0.0
    fatal: float = 0.0
    duplicate: float = 0.0
    stale: float = 0.0
    started: float = 0.0
    control: float = 0.0
    """Chance per step of a pause or resume request."""
    reuse: float = 0.0
    """Chance that a cache check finds an earlier activity with the same key to reuse."""
    cancel_at: int | None = None
    restart_at: int | None = None
    bus_lost: bool = False
    """At the restart, the bus lost its dispatches (an in-process bus died with the controller)."""


class Sim:
    """A controller and an adversarial outside world (bus, workers, timers, store)."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.core = Controller(**kwargs)
        self.window = kwargs.get("default_window", 256)
        self.now = 1000.0
        self.tasks: dict[str, Any] = {}
        self.pool: list[m.DispatchActivity] = []
        """Dispatched and neither answered nor withdrawn: what the core counts as in flight."""
        self.late: list[Any] = []
        """Reports the core must ignore (withdrawn dispatches a worker had already taken)."""
        self.timers: list[tuple[float, str, str]] = []
        self.checks: list[Any] = []
        """Cache checks the core asked for, not answered yet."""
        self.reused: set[str] = set()
        self.sent: list[Any] = []
        self.answered: list[tuple[str, int]] = []
        # the store: latest committed copy of every record
        self.store_acts: dict[str, ActivityRecord] = {}
        self.store_runs: dict[str, RunRecord] = {}
        self.store_products: dict[str, ProductRecord] = {}
        # what was observed
        self.dispatched: list[m.DispatchActivity] = []
        self.pairs: set[tuple[str, int]] = set()
        self.product_registrations: Counter[str] = Counter()
        self.succeeded_events: Counter[str] = Counter()
        self.failed_for_good: set[str] = set()
        self.max_in_flight = 0
        self.cancelled: set[str] = set()
        self.lost: Counter[str] = Counter()
        """Attempts of each activity lost with the bus: each one adds an attempt to its budget."""

    # -- plumbing -----------------------------------------------------------------------------------
    def register_all(self) -> None:
        for name in dir(prop_flows):
            t = getattr(prop_flows, name)
            if hasattr(t, "spec") and hasattr(t, "fn"):
                self.tasks[t.spec.name] = t
                self.core.register_task(t.spec, current=True)

    def submit(self, flow: str, params: dict[str, Any], *, priority: int = 0) -> RunRecord:
        graph, _ = {**prop_flows.FLOWS, **prop_flows.FLOWS_UNCACHED}[flow].build(params)
        return RunRecord(id=new_id("run"), workflow=flow, state="submitted", graph=graph,
                         params=graph["params"], priority=priority)

    def feed(self, *events: Any, again: frozenset[tuple[str, int]] = frozenset()) -> Decisions:
        """Hand ``events`` to the core and apply its decisions; ``again``: pairs that may be
        dispatched a second time (redispatched after a restart)."""
        d = self.core.handle(list(events), self.now)
        for rec in d.changes.activities:
            self.store_acts[rec.id] = _copy(rec)
        for run in d.changes.runs:
            self.store_runs[run.id] = _copy(run)
        for p in d.changes.products:
            self.store_products[p.id] = _copy(p)
            self.product_registrations[p.id] += 1
        for body in (m.decode_message(a).body for a in d.announcements):
            if isinstance(body, m.ActivityStateChanged) and body.state == "succeeded":
                self.succeeded_events[body.activity_id] += 1
        for mid in d.withdraw:
            aid, attempt = mid.rsplit(":", 1)
            for disp in [x for x in self.pool if (x.activity_id, x.attempt) == (aid, int(attempt))]:
                self.pool.remove(disp)
                # the worker may have taken it already: its report comes, and must be ignored
                self.late.append(m.ActivityFinished(activity_id=aid, attempt=int(attempt), result=POISON))
        for body in self._dispatches(d):
            owner = self.store_runs.get(body.run_id)
            assert owner is None or owner.state not in TERMINAL_RUN, (
                f"dispatch of {body.activity_id} for run {body.run_id} after it ended as {owner.state}")
            assert body.run_id not in self.cancelled, "dispatch after cancel"
            pair = (body.activity_id, body.attempt)
            assert pair not in self.pairs or pair in again, f"{pair} dispatched twice"
            self.pairs.add(pair)
            self.pool.append(body)
            self.dispatched.append(body)
        self.timers.extend((t.at, t.kind, t.activity_id) for t in d.timers)
        self.checks.extend(getattr(d, "cache_checks", []))
        assert len(self.pool) <= self.window, f"{len(self.pool)} in flight with a window of {self.window}"
        self.max_in_flight = max(self.max_in_flight, len(self.pool))
        for run in self.core.runs.values():
            check_counters(run)
        return d

    @staticmethod
    def _dispatches(d: Decisions) -> list[m.DispatchActivity]:
        # dispatches moved from the changeset's outbox to ``Decisions.dispatches``: read either
        datas = [o.data for o in getattr(d.changes, "outbox", []) if o.channel == "dispatch"]
        datas += [data for _, _, data in getattr(d, "dispatches", [])]
        out: list[m.DispatchActivity] = []
        for data in datas:
            body = m.decode_message(data).body
            assert isinstance(body, m.DispatchActivity)
            out.append(body)
        return out

    def run_task(self, d: m.DispatchActivity) -> m.ActivityFinished:
        value = self.tasks[d.task.name].fn(**_bind(d.arguments, d.products))
        products: list[m.NewProduct] = []
        if isinstance(value, Product):
            pid = new_id("prd")
            products.append(m.NewProduct(id=pid, uri=f"mem://{pid}", type=value.type,
                                         attributes=value.attributes, name=str(value.path),
                                         checksum=f"sha256:{value.path}"))
            value = {"$product": pid}
        return m.ActivityFinished(activity_id=d.activity_id, attempt=d.attempt, result=value,
                                  products=products)

    def outcome(self, d: m.DispatchActivity, rng: random.Random, plan: Plan) -> Any:
        r = rng.random()
        max_attempts = d.task.retry.max_attempts
        if r < plan.fatal:
            self.failed_for_good.add(d.activity_id)
            return m.ActivityFailed(activity_id=d.activity_id, attempt=d.attempt, message="boom",
                                    retryable=False)
        if r < plan.fatal + plan.retryable:
            if d.attempt >= max_attempts + self.lost[d.activity_id]:
                self.failed_for_good.add(d.activity_id)
            return m.ActivityFailed(activity_id=d.activity_id, attempt=d.attempt, message="flaky")
        return self.run_task(d)

    def restarted(self, *, bus_lost: bool) -> Sim:
        """A new controller built from the store only, as the service does after a crash; the bus
        kept its dispatches, or (``bus_lost``) lost them."""
        new = Sim(**self.kwargs)
        new.now = self.now + 5.0
        new.register_all()
        restored = []
        for run in self.store_runs.values():
            if run.state not in ("running", "paused"):
                continue
            acts = [_copy(a) for a in self.store_acts.values() if a.run_id == run.id]
            prods = [_copy(p) for p in self.store_products.values()]
            restored.append(RunRestored(run=_copy(run), activities=acts, products=prods))
        # carry over what was observed, and the store
        new.store_acts, new.store_runs, new.store_products = (
            dict(self.store_acts), dict(self.store_runs), dict(self.store_products))
        new.pairs, new.dispatched = set(self.pairs), list(self.dispatched)
        new.product_registrations = Counter(self.product_registrations)
        new.succeeded_events = Counter(self.succeeded_events)
        new.failed_for_good = set(self.failed_for_good)
        new.sent, new.answered, new.cancelled = list(self.sent), list(self.answered), set(self.cancelled)
        new.lost = Counter(self.lost)
        # reports from before the crash may still arrive: they are either the first report of an
        # attempt (then counted) or duplicates
        new.late, new.checks, new.reused = list(self.late), list(self.checks), set(self.reused)
        in_flight = {(a.id, a.attempt) for a in self.store_acts.values() if a.state in ("dispatched", "running")}
        assert in_flight <= {(x.activity_id, x.attempt) for x in self.pool}, "an in-flight dispatch is not out"
        if bus_lost:
            # whatever ran of the old dispatches may still report: such reports must not count
            new.late.extend(m.ActivityFinished(activity_id=x.activity_id, attempt=x.attempt, result=POISON)
                            for x in self.pool)
        else:
            new.pool = list(self.pool)
        new.feed(*restored)
        # what the bus holds once the restored runs' first decisions are out
        present = [m.dispatch_id(x.activity_id, x.attempt) for x in new.pool]
        d = new.feed(Recovered(present=present, holders=[]))
        again = {(x.activity_id, x.attempt) for x in Sim._dispatches(d)}
        if bus_lost:
            for aid, attempt in in_flight:
                new.lost[aid] += 1
                rec = new.store_acts[aid]
                assert (rec.state, rec.attempt) in (("queued", attempt), ("dispatched", attempt + 1)), (
                    "a dispatch lost with the bus must be queued again for the next attempt")
        else:
            assert not again & in_flight, "a dispatch the bus still holds was sent again"
        return new

    # -- the adversary --------------------------------------------------------------------------------
    def cache_answer(self, check: Any, rng: random.Random, plan: Plan) -> CacheChecked:
        """A miss, or (``plan.reuse``) an earlier succeeded activity with the same key."""
        hits = [a for a in self.store_acts.values() if a.cache_key == check.cache_key
                and a.state == "succeeded" and a.id != check.activity_id]
        if not hits or rng.random() >= plan.reuse:
            return CacheChecked(activity_id=check.activity_id)
        hit = rng.choice(hits)
        self.reused.add(check.activity_id)
        refs = [m.ProductRef(id=p.id, uri=p.uri, type=p.type, checksum=p.checksum, attributes=p.attributes)
                for p in self.store_products.values() if p.activity_id == hit.id]
        return CacheChecked(activity_id=check.activity_id, reuse_from=hit.id, result=hit.result,
                            products=refs)

    def stale_report(self, rng: random.Random) -> Any:
        aid, attempt = rng.choice(self.answered)
        if rng.random() < 0.5:
            return m.ActivityFinished(activity_id=aid, attempt=attempt, result=POISON)
        return m.ActivityFailed(activity_id=aid, attempt=attempt, message="stale", retryable=False)

    def drive(self, run_id: str, rng: random.Random, plan: Plan, max_steps: int = 20_000) -> Sim:
        sim = self
        for step in range(max_steps):
            if plan.restart_at == step:
                sim = sim.restarted(bus_lost=plan.bus_lost)
            if plan.cancel_at == step and sim.store_runs[run_id].state in ("running", "paused"):
                sim.cancelled.add(run_id)
                d = sim.feed(m.RunControlRequested(run_id=run_id, action="cancel"))
                assert run_id in d.finished_runs
                assert sim.store_runs[run_id].state == "cancelled"
            if not sim.step(run_id, rng, plan):
                return sim
        raise AssertionError("the run did not settle")

    def step(self, run_id: str, rng: random.Random, plan: Plan) -> bool:
        events: list[Any] = []
        run = self.store_runs[run_id]
        if plan.control and rng.random() < plan.control and run.state in ("running", "paused"):
            events.append(m.RunControlRequested(run_id=run_id, action=rng.choice(["pause", "resume"])))
        choice = rng.random()
        if self.checks and (choice < 0.3 or not (self.pool or self.timers or self.late)):
            for _ in range(rng.randint(1, len(self.checks))):
                answer = self.cache_answer(self.checks.pop(rng.randrange(len(self.checks))), rng, plan)
                events.append(answer)
                self.sent.append(answer)
            if rng.random() < plan.duplicate:
                events.insert(rng.randint(0, len(events)), rng.choice(self.sent))
        elif self.pool and (choice < 0.7 or not (self.timers or self.late)):
            for _ in range(rng.randint(1, min(len(self.pool), 6))):
                d = self.pool.pop(rng.randrange(len(self.pool)))
                if rng.random() < plan.started:
                    events.append(m.ActivityStarted(activity_id=d.activity_id, attempt=d.attempt,
                                                    worker="w1"))
                out = self.outcome(d, rng, plan)
                events.append(out)
                self.sent.append(out)
                self.answered.append((d.activity_id, d.attempt))
            if self.sent and rng.random() < plan.duplicate:
                events.insert(rng.randint(0, len(events)), rng.choice(self.sent))
            if self.answered and rng.random() < plan.stale:
                events.append(self.stale_report(rng))
        elif self.timers and (choice < 0.9 or not self.late):
            if rng.random() < 0.5:  # everything due by the latest timer
                self.now = max(self.now, *(t[0] for t in self.timers))
                due, self.timers = self.timers, []
            else:  # one timer, possibly out of order
                due = [self.timers.pop(rng.randrange(len(self.timers)))]
                self.now = max(self.now, due[0][0])
            events.extend(TimerFired(kind=k, activity_id=a) for _, k, a in due)
        elif self.late:
            events.append(self.late.pop(rng.randrange(len(self.late))))
        elif run.state == "paused":
            events.append(m.RunControlRequested(run_id=run_id, action="resume"))
        elif not events:
            return False
        self.now += rng.choice([0.0, 0.5, 3.0])
        self.feed(*events)
        return True

    # -- reading ---------------------------------------------------------------------------------------
    def acts(self, run_id: str, task: str | None = None) -> list[ActivityRecord]:
        return [a for a in self.store_acts.values()
                if a.run_id == run_id and (task is None or a.task_name == task)]


def _final_task(flow: str) -> str:
    return "p_sum_products" if flow == "p_products" else "p_total"


def _size(flow: str, n: int) -> int:
    return n if flow in ("p_fan", "p_products") else min(n, 8)


def _started(flow: str, n: int, window: int | None = None) -> tuple[Sim, Any]:
    """A simulated controller with every test task registered and one run of ``flow`` loaded."""
    sim = Sim() if window is None else Sim(default_window=window)
    sim.register_all()
    run = sim.submit(flow, {"n": n})
    sim.feed(RunLoaded(run=run))
    return sim, run


flows = st.sampled_from(sorted(prop_flows.FLOWS))
rates = st.sampled_from([0.0, 0.0, 0.05, 0.2, 0.4])


@st.composite
def plans(draw: st.DrawFn, *, control: bool = False, cancel: bool = False, restart: bool = False) -> Plan:
    return Plan(retryable=draw(rates), fatal=draw(st.sampled_from([0.0, 0.0, 0.02, 0.1])),
                duplicate=draw(rates), stale=draw(rates), started=draw(rates),
                control=draw(st.sampled_from([0.0, 0.1, 0.3])) if control else 0.0,
                reuse=draw(st.sampled_from([0.0, 0.5, 1.0])),
                cancel_at=draw(st.integers(0, 40)) if cancel else None,
                restart_at=draw(st.integers(0, 40)) if restart else None,
                bus_lost=draw(st.booleans()) if restart else False)


def _check_settled(sim: Sim, run_id: str, flow: str, n: int) -> None:
    """Termination, accounting and exactly-once effects, common to every scenario."""
    run = sim.store_runs[run_id]
    acts = sim.acts(run_id)
    assert not sim.pool and not sim.timers and not sim.checks
    assert run.state in TERMINAL_RUN, f"run stuck in {run.state}"
    stuck = [(a.task_name, a.key, a.state) for a in acts if a.state not in TERMINAL_ACT]
    assert not stuck, f"run ended {run.state} with activities not terminal: {stuck}"
    # exactly once
    assert all(c == 1 for c in sim.succeeded_events.values()), sim.succeeded_events
    assert all(c == 1 for c in sim.product_registrations.values()), sim.product_registrations
    succeeded = [a for a in acts if a.state == "succeeded"]
    assert {a.id for a in succeeded} == {a for a in sim.succeeded_events if sim.store_acts[a].run_id == run_id}
    assert POISON not in [a.result for a in acts]
    made = [a for a in succeeded if a.task_name == "p_make" and a.id not in sim.reused]
    assert len(sim.product_registrations) == len(made)
    # one activity per node instance
    insts = Counter((a.node, a.key) for a in acts)
    assert all(c == 1 for c in insts.values()), insts
    if run.state == "cancelled":
        return
    failed = {a.id for a in acts if a.state == "failed"}
    assert failed == sim.failed_for_good & {a.id for a in acts}
    assert (run.state == "succeeded") == (not failed), (run.state, failed)
    if run.state == "succeeded":
        (final,) = [a for a in acts if a.task_name == _final_task(flow)]
        assert final.result == prop_flows.expected(flow, n)


# ================================================================================================
# 1 + 2 + 4: termination, accounting, exactly-once effects, window


@SETTINGS
@given(flow=flows, n=st.integers(0, 30), window=st.sampled_from([1, 2, 3, 7, 256]),
       plan=plans(), seed=st.randoms(use_true_random=False))
def test_any_delivery_order_ends_with_the_right_result(flow: str, n: int, window: int, plan: Plan,
                                                       seed: random.Random) -> None:
    n = _size(flow, n)
    sim, run = _started(flow, n, window)
    sim = sim.drive(run.id, seed, plan)
    _check_settled(sim, run.id, flow, n)
    assert sim.max_in_flight <= window


@SETTINGS
@given(flow=flows, n=st.integers(0, 12), seed=st.randoms(use_true_random=False))
def test_happy_path_dispatches_each_instance_once_and_succeeds(flow: str, n: int,
                                                               seed: random.Random) -> None:
    n = _size(flow, n)
    sim, run = _started(flow, n)
    sim = sim.drive(run.id, seed, Plan(duplicate=0.3, stale=0.3, started=0.5))
    _check_settled(sim, run.id, flow, n)
    assert sim.store_runs[run.id].state == "succeeded"
    assert all(d.attempt == 1 for d in sim.dispatched)
    assert len(sim.dispatched) == len(sim.acts(run.id))


# ================================================================================================
# 5: pause, resume, cancel at random points


@SETTINGS
@given(flow=flows, n=st.integers(0, 20), window=st.sampled_from([1, 3, 256]),
       plan=plans(control=True), seed=st.randoms(use_true_random=False))
def test_pause_and_resume_at_random_points_reach_the_same_result(
        flow: str, n: int, window: int, plan: Plan, seed: random.Random) -> None:
    n = _size(flow, n)
    sim, run = _started(flow, n, window)
    paused_dispatches: list[str] = []
    original = sim.feed

    def watching_feed(*events: Any, again: frozenset[tuple[str, int]] = frozenset()) -> Decisions:
        before = sim.store_runs[run.id].state
        pool_before = len(sim.dispatched)
        d = original(*events, again=again)
        after = sim.store_runs[run.id].state
        if before == "paused" and after == "paused":
            paused_dispatches.extend(x.activity_id for x in sim.dispatched[pool_before:])
        return d

    sim.feed = watching_feed  # type: ignore[method-assign]
    sim = sim.drive(run.id, seed, plan)
    assert not paused_dispatches, "dispatched while the run was paused"
    _check_settled(sim, run.id, flow, n)


@SETTINGS
@given(flow=flows, n=st.integers(0, 20), window=st.sampled_from([1, 3, 256]),
       plan=plans(control=True, cancel=True), seed=st.randoms(use_true_random=False))
def test_cancel_at_a_random_point_stops_dispatching_and_ends_cancelled(
        flow: str, n: int, window: int, plan: Plan, seed: random.Random) -> None:
    n = _size(flow, n)
    sim, run = _started(flow, n, window)
    sim = sim.drive(run.id, seed, plan)
    _check_settled(sim, run.id, flow, n)
    state = sim.store_runs[run.id].state
    assert state == "cancelled" or sim.store_runs[run.id].ended_at is not None
    if run.id in sim.cancelled and state == "cancelled":
        assert all(a.state != "queued" for a in sim.acts(run.id))
        assert sim.core.in_flight == 0


# ================================================================================================
# 6: a restart from the store reaches the same result


@SETTINGS
@given(flow=flows, n=st.integers(0, 20), window=st.sampled_from([1, 3, 256]),
       plan=plans(control=True, restart=True), seed=st.randoms(use_true_random=False))
def test_restart_from_the_store_at_a_random_point_reaches_the_same_result(
        flow: str, n: int, window: int, plan: Plan, seed: random.Random) -> None:
    n = _size(flow, n)
    sim, run = _started(flow, n, window)
    sim = sim.drive(run.id, seed, plan)
    _check_settled(sim, run.id, flow, n)


# ================================================================================================
# 3: priority order


@SETTINGS
@given(runs=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=5),
       changes=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 4), st.integers(0, 6)), max_size=3),
       seed=st.randoms(use_true_random=False))
def test_window_of_one_dispatches_by_priority_then_age(
        runs: list[tuple[int, int]], changes: list[tuple[int, int, int]], seed: random.Random) -> None:
    """With the clock still, the next dispatch is always the highest-priority queued activity,
    the earliest queued among equals; a priority change moves a run's queued activities."""
    sim = Sim(default_window=1)
    sim.register_all()
    records = [sim.submit("q_fan", {"n": n}, priority=p) for n, p in runs]
    run_prio = {r.id: r.priority for r in records}
    model: list[tuple[int, int, str]] = []  # (priority, seq, activity id) in the ready queue
    seen: set[str] = set()
    seq = 0

    def check(d: Decisions) -> None:
        nonlocal seq
        new = [a for a in d.changes.activities if a.id not in seen]
        for a in new:
            seen.add(a.id)
            assert a.priority == run_prio[a.run_id], "a new activity takes its run's priority"
            seq += 1
            model.append((a.priority, seq, a.id))
        got = [x.activity_id for x in Sim._dispatches(d)]
        assert len(got) <= 1
        if got:
            best = max(model, key=lambda e: (e[0], -e[1]))
            assert got[0] == best[2], (
                f"dispatched {sim.store_acts[got[0]].task_name} prio {sim.store_acts[got[0]].priority}; "
                f"expected {sim.store_acts[best[2]].task_name} prio {best[0]}")
            model.remove(best)

    check(sim.feed(*[RunLoaded(run=r) for r in records]))
    for step in range(10_000):
        for at, which, prio in changes:
            if at == step:
                rid = records[which % len(records)].id
                run_prio[rid] = prio
                d = sim.feed(m.PriorityChangeRequested(run_id=rid, priority=prio))
                # re-pushed in creation order, each to the back of its new level
                mine = sorted((e for e in model if sim.store_acts[e[2]].run_id == rid), key=lambda e: e[1])
                for e in mine:
                    model.remove(e)
                    seq += 1
                    model.append((prio, seq, e[2]))
                check(d)
        if not sim.pool:
            break
        (disp,) = sim.pool
        sim.pool.clear()
        check(sim.feed(sim.run_task(disp)))
    assert not model
    for r in records:
        assert sim.store_runs[r.id].state == "succeeded"


@SETTINGS
@given(ops=st.lists(st.one_of(
    st.tuples(st.just("push"), st.integers(0, 5), st.floats(0, 200)),
    st.tuples(st.just("pop"), st.just(0), st.floats(0, 200))), max_size=40),
    aging=st.sampled_from([1.0, 10.0, 60.0]))
def test_ready_queue_pops_the_highest_effective_priority(
        ops: list[tuple[str, int, float]], aging: float) -> None:
    """Aging: ``priority + waited / aging_s`` decides, the earlier push wins ties, so a low item
    that waited long enough overtakes newer higher ones (time only moves forward)."""
    q = ReadyQueue(aging)
    live: dict[str, tuple[int, float, int]] = {}
    now = 0.0
    for i, (op, prio, dt) in enumerate(ops):
        now += dt
        if op == "push":
            q.push(f"a{i}", prio, now)
            live[f"a{i}"] = (prio, now, i)
            continue
        got = q.pop(now)
        if not live:
            assert got is None
            continue
        best = max(live, key=lambda a: (live[a][0] + (now - live[a][1]) / aging, -live[a][2]))
        eff = {a: live[a][0] + (now - live[a][1]) / aging for a in live}
        assert got is not None and abs(eff[got] - eff[best]) < 1e-9, (got, best, eff)
        del live[got]
    assert len(q) == len(live)


def test_aging_lets_a_long_waiting_low_priority_item_overtake() -> None:
    q = ReadyQueue(aging_s=10.0)
    q.push("old-low", 0, 0.0)
    q.push("new-high", 3, 25.0)
    assert q.pop(26.0) == "new-high"  # 0 + 2.6 < 3
    q.push("new-high-2", 3, 31.0)
    assert q.pop(31.5) == "old-low"  # 0 + 3.15 > 3 + 0.05


# The ready queue compares only the head of each priority level: correct while every level is in
# age order.  Resume (and a priority change) push an activity back with its *old* queued_at at the
# tail of its level, behind younger ones, so it is passed over although it is older (and its
# effective priority is higher).  Minimal case (window 1, aging 60 s): runs A and B of q_fan(n=2),
# priority 0, submitted at t=0, B paused in the same batch; A.q_items is dispatched.  t=1:
# A.q_items finishes -> A.q_job[0], A.q_job[1] queued at t=1; B.q_items is popped and held
# (paused); A.q_job[0] is dispatched.  t=2: resume B -> B.q_items pushed back (queued_at=0) behind
# A.q_job[1].  t=3: A.q_job[0] finishes -> A.q_job[1] (queued t=1, effective 0.033) is dispatched
# before B.q_items (queued t=0, effective 0.05).
# The same through priority changes: t=1 A.q_items finishes (A's jobs queued at t=1, B.q_items
# dispatched); t=2 A and C both move to priority 3: C.q_items (queued t=0) lands behind A's jobs;
# t=3 B.q_items finishes -> A.q_job[0] (effective 3.033) went before C.q_items (3.05).
# (Fixed: each priority level of the ready queue is now ordered by age.)
_AGE_BUG = [("pause", 1, 0, 0.0), ("deliver", 0, 0, 1.0), ("resume", 1, 0, 1.0), ("deliver", 0, 0, 1.0)]
_AGE_BUG_PRIO = [("deliver", 0, 0, 1.0), ("prio", 0, 3, 1.0), ("prio", 2, 3, 0.0), ("deliver", 0, 0, 1.0)]


@SETTINGS
@example(ops=_AGE_BUG, aging=60.0)
@example(ops=_AGE_BUG_PRIO, aging=60.0)
@given(ops=st.lists(st.tuples(st.sampled_from(["deliver", "deliver", "deliver", "pause", "resume", "prio"]),
                              st.integers(0, 2), st.integers(0, 3), st.sampled_from([0.0, 1.0, 7.0])),
                    max_size=40),
       aging=st.sampled_from([5.0, 60.0]))
def test_window_of_one_always_dispatches_the_highest_effective_priority(
        ops: list[tuple[str, int, int, float]], aging: float) -> None:
    """Whatever pauses, resumes and priority changes happened, each dispatch is a queued activity
    of a running run with the highest ``priority + waited / aging_s``."""
    sim = Sim(default_window=1, aging_s=aging)
    sim.register_all()
    sim.now = 0.0
    records = [sim.submit("q_fan", {"n": n}) for n in (2, 2, 3)]

    def feed(*events: Any) -> None:
        d = sim.feed(*events)
        got = Sim._dispatches(d)
        if not got:
            return
        (disp,) = got
        candidates = [a for a in sim.store_acts.values() if a.state == "queued"
                      and sim.store_runs[a.run_id].state == "running"] + [sim.store_acts[disp.activity_id]]

        def eff(a: ActivityRecord) -> float:
            return a.priority + max(0.0, sim.now - a.queued_at) / aging

        best = max(candidates, key=eff)
        mine = sim.store_acts[disp.activity_id]
        assert eff(mine) >= eff(best) - 1e-9, (
            f"t={sim.now}: dispatched {mine.task_name}[{mine.key}] (prio {mine.priority}, queued "
            f"{mine.queued_at}) before {best.task_name}[{best.key}] (prio {best.priority}, queued "
            f"{best.queued_at})")

    first: list[Any] = [RunLoaded(run=r) for r in records[:2]]
    if ops and ops[0][0] == "pause":  # a pause in the submitting batch
        first.append(m.RunControlRequested(run_id=records[ops[0][1] % 2].id, action="pause"))
        ops = ops[1:]
    feed(*first)
    feed(RunLoaded(run=records[2]))
    for op, which, value, dt in ops:
        sim.now += dt
        rid = records[which].id
        if op == "deliver":
            if sim.pool:
                feed(sim.run_task(sim.pool.pop()))
        elif op == "prio":
            feed(m.PriorityChangeRequested(run_id=rid, priority=value))
        else:
            feed(m.RunControlRequested(run_id=rid, action=op))
