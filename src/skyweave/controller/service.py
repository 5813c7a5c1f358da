"""The controller's I/O shell: bus in, pure core, store transaction, bus out.

Each step: read a batch of events, translate the ones that need the store (a submitted run, a
retry), add due timers, let the core decide, write every change in one store transaction — an
activity about to be dispatched is written ``dispatched``, so the activity rows are the outbox —
then publish what was decided, and commit the bus offset together
with the acks of the dispatches whose outcomes the batch carried (until then the bus keeps them,
done).  A crash at any point either loses nothing (events are re-read) or duplicates nothing (the
core ignores reports about activities that already moved on; product ids are unique).

Start after a crash: every running run is restored (``RunRestored``), every event left on the bus
is handled — outcomes reported while no controller ran included — and only then is what was in
flight settled (``Recovered``): what the bus still holds stays there, the rest runs again as new
attempts.  So work that finished during the outage is never handed out again.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from skyweave.bus.base import Bus
from skyweave.controller.core import Controller
from skyweave.controller.decisions import (
    BusRestored,
    CacheChecked,
    CheckCache,
    Decisions,
    Held,
    ProductsFound,
    Recovered,
    RetryLoaded,
    RunLoaded,
    RunRestored,
    TimerFired,
    WorkerLost,
    graph_products,
    merged,
)
from skyweave.controller.lease import Lease, owner_name
from skyweave.controller.liveness import LIVENESS
from skyweave.controller.recovery import in_flight_dispatches
from skyweave.controller.reuse import check_caches
from skyweave.errors import ControlError, MessageError, NotFoundError
from skyweave.model import messages as m
from skyweave.model.records import RunRecord
from skyweave.model.states import ActivityState as A
from skyweave.model.states import RunState as R
from skyweave.store.base import Store

log = logging.getLogger(__name__)

GROUP = "controller"


class ControllerService:
    def __init__(self, store: Store, bus: Bus, *, aging_s: float = 60.0, window: int = 256,
                 batch: int = 512, lease_ttl_s: float = 6.0, lease_renew_s: float = 1.0,
                 control_bus: Bus | None = None, worker_timeout_s: float = 5.0) -> None:
        self.store = store
        self.bus = bus
        self.control_bus = control_bus
        """The store's shared bus, when ``bus`` is in-process: requests from other processes
        (``skyweave products add``, ``cancel``, ``tasks register``...) arrive there."""
        self._control_checked = 0.0
        self.core = Controller(aging_s=aging_s, default_window=window, worker_timeout_s=worker_timeout_s)
        self.batch = batch
        self.lease = Lease(store, owner_name(), lease_ttl_s, lease_renew_s)
        self._timers: list[tuple[float, str, str]] = []
        self._pending: list[Any] = []
        self._outages = bus.outages
        self._finished = threading.Condition()
        self._finished_count = 0
        self.started = False

    # -- start and recovery --------------------------------------------------------------------------
    def try_lease(self) -> tuple[str, float] | None:
        """Take the controller lease (``Lease.take``): ``None`` when taken, else ``(holder,
        expires_at)`` of the live controller holding it."""
        return self.lease.take()

    @property
    def owner(self) -> str:
        return self.lease.owner

    @property
    def lease_renew_s(self) -> float:
        return self.lease.renew_s

    @lease_renew_s.setter
    def lease_renew_s(self, seconds: float) -> None:
        self.lease.renew_s = seconds

    def stand_by(self, stop: threading.Event) -> bool:
        """Wait as a standby until this controller holds the lease (``True``) or ``stop`` is set.

        Polls every ``lease_renew_s``: the active controller's death is noticed at once when it
        ran on this host (its pid is gone), otherwise when its lease expires — within
        ``lease_ttl_s + lease_renew_s`` of its last renewal."""
        holder = self.try_lease()
        if holder is not None:
            log.info("standby: controller %s holds the lease on this store (until %s); %s waits to take "
                     "over", holder[0], time.strftime("%H:%M:%S", time.localtime(holder[1])), self.owner)
        waited = holder is not None
        while holder is not None:
            if stop.wait(self.lease_renew_s):
                return False
            holder = self.try_lease()
        if waited:
            log.info("%s took the lease: active controller from now on", self.owner)
        return True

    def start(self) -> None:
        holder = self.try_lease()
        if holder is not None:
            raise ControlError(f"another controller ({holder[0]}) is running on this store",
                               hint="hand it work with `skyweave submit`, or stop it first")
        now = time.time()
        for spec, current in self.store.list_tasks():
            self.core.register_task(spec, current=current)
        restored: list[Any] = []
        for run in self.store.list_runs(states=[R.RUNNING, R.PAUSED, R.SUBMITTED], limit=1_000_000):
            if run.state == R.SUBMITTED:
                self._pending.append(self._loaded(run))
                continue
            acts = self.store.list_activities(run_id=run.id)
            prods = self.store.find_products(run_id=run.id, state=None)
            used = {u.product_id for u in self.store.list_usages(run_id=run.id)}
            named = set(graph_products(run.graph))
            extra = [self.store.get_product(p) for p in (used | named) - {p.id for p in prods}]
            restored.append(RunRestored(run=run, activities=acts, products=[*prods, *extra]))
            self.lease.renew(time.time())  # a standby taking over many runs keeps the lease it took
        self._commit(self.core.handle(restored, now))
        # every outcome reported while no controller ran, before anything in flight is settled
        drained = 0
        while delivered := self.bus.read(GROUP, self.batch):
            drained += len(delivered)
            self._handle(delivered, [], time.time())
            if len(delivered) < self.batch:
                break
        present = self.bus.present(in_flight_dispatches(self.core))
        recovered = Recovered(present=present, holders=self.bus.holders())
        in_flight = self.core.in_flight
        self._commit(self.core.handle([recovered], time.time()))
        if restored:
            log.info("restored %d runs; handled %d events left on the bus; %d in flight, %d of them "
                     "dispatched again", len(restored), drained, in_flight, in_flight - len(present))
        self.started = True

    def stop(self) -> None:
        self.lease.release()

    # -- one step --------------------------------------------------------------------------------------
    def step(self, wait: float = 0.05) -> int:
        """Handle what is there; returns the number of events handled."""
        now = time.time()
        self.lease.renew(now)
        delivered = self.bus.read(GROUP, self.batch)
        if self.bus.outages != self._outages:  # the bus's server was gone (this read may have waited)
            self._outages = self.bus.outages
            self._pending.append(BusRestored())
            now = time.time()
            log.warning("the bus is back after an outage: each worker has %g s from now to be heard from",
                        self.core.live.timeout_s)
        return self._handle(delivered, self._read_control(now), now, wait=wait)

    def _handle(self, delivered: Sequence[Any], from_control: Sequence[Any], now: float, *,
                wait: float = 0.0) -> int:
        events: list[Any] = self._pending
        self._pending = []
        outcomes: list[str] = []
        for item in [*delivered, *from_control]:
            try:
                body = m.decode_message(item.data).body
            except MessageError as exc:
                log.warning("%s", exc)
                self.bus.dead_letter(item.data, exc.message)
                continue
            if isinstance(body, m.Ended):
                outcomes.append(m.dispatch_id(body.activity_id, body.attempt))
            events.extend(self._translate(body))
        # a backlog on the bus may hold heartbeats not read yet: nobody is judged silent meanwhile
        backlog = len(delivered) >= self.batch
        postponed = []
        while self._timers and self._timers[0][0] <= now:
            timer = heapq.heappop(self._timers)
            if backlog and timer[1] == LIVENESS:
                postponed.append(timer)
                continue
            events.append(TimerFired(kind=timer[1], activity_id=timer[2]))
        for timer in postponed:
            heapq.heappush(self._timers, (now + 0.1, *timer[1:]))
        if from_control:
            assert self.control_bus is not None
            self.control_bus.commit(GROUP, from_control[-1].offset)
        if not events and not delivered:
            if wait:
                self.bus.wait(self._wait_time(wait, now))
            return 0
        decisions = self._answer_cache_checks(self.core.handle(events, now), now)
        self._commit(decisions)
        if delivered:  # the outcomes are in the store: their dispatches can go
            self.bus.commit(GROUP, delivered[-1].offset, ack=outcomes)
        return len(events)

    def _read_control(self, now: float) -> list[Any]:
        """Requests from other processes, looked for at most every 50 ms (a cheap SQLite read)."""
        if self.control_bus is None or now - self._control_checked < 0.05:
            return []
        self._control_checked = now
        return self.control_bus.read(GROUP, self.batch)

    def _wait_time(self, wait: float, now: float) -> float:
        if self._timers:
            return max(0.0, min(wait, self._timers[0][0] - now))
        return wait

    def _translate(self, body: Any) -> list[Any]:
        if isinstance(body, m.RunSubmitted):
            try:
                run = self.store.get_run(body.run_id)
            except NotFoundError:
                log.warning("run %s was announced but is not in the store; ignored", body.run_id)
                return []
            return [self._loaded(run)] if run.state == R.SUBMITTED else []
        if isinstance(body, m.RetryRequested):
            return self._retry(body.activity_id)
        if isinstance(body, m.DispatchActivity | m.RunStateChanged | m.ActivityStateChanged
                      | m.ProductCreated | m.TriggerMessage):
            return []  # the controller's own announcements, for listeners; messages for triggers
        return [body]

    def _loaded(self, run: RunRecord) -> RunLoaded:
        refs = []
        for pid in graph_products(run.graph):
            try:
                p = self.store.get_product(pid)
            except NotFoundError:
                continue  # the activity that needs it fails with a clear message when dispatched
            refs.append(m.product_ref(p))
        return RunLoaded(run=run, products=refs)

    def _retry(self, activity_id: str) -> list[RetryLoaded]:
        """A retry request with what the core needs from the store: the activity, and its run's
        rows if the core no longer holds the run (it had ended)."""
        try:
            rec = self.store.get_activity(activity_id)
        except NotFoundError:
            log.warning("retry of unknown activity %s ignored", activity_id)
            return []
        restore = None
        if rec.run_id not in self.core.runs:
            run = self.store.get_run(rec.run_id)
            acts = self.store.list_activities(run_id=run.id)
            prods = self.store.find_products(run_id=run.id, state=None)
            restore = RunRestored(run=run, activities=acts, products=prods)
        return [RetryLoaded(activity=rec, restore=restore)]

    def _answer_cache_checks(self, d: Decisions, now: float) -> Decisions:
        """Answer the batch's cache checks before its transaction and fold the core's answers into
        the same decisions: a new activity is created and dispatched (or reused) in one store
        transaction instead of two (a chain of steps paid two commits per step, W2 in bench/).

        Not when a check could be answered by an activity this very batch records as succeeded
        (it is not in the store yet): those go round through ``_pending`` after the commit, as
        lookups for missing inputs always do (a product made in this batch must be found)."""
        for _ in range(16):  # a reuse makes the next activity ready, whose check comes next (bounded:
            #                   other events wait while this step works)
            if not d.cache_checks:
                return d
            fresh = {a.cache_key for a in d.changes.activities if a.cache_key and a.state == A.SUCCEEDED}
            if any(c.cache_key in fresh for c in d.cache_checks):
                return d
            more = self.core.handle(self._check_caches(d.cache_checks), now)
            d = merged(d, more)
        return d

    # -- writing ---------------------------------------------------------------------------------------
    def _commit(self, d: Decisions) -> None:
        if d.hold:  # before the store says "paused" (what `skyweave pause` waits for)
            self._take_back(d.hold, hold=True)
        if d.changes:
            self.lease.renew(time.time())  # a long start (many runs restored) keeps its lease too
            d.changes.lease_owner = self.owner  # fenced: nothing written once another took over
            self.store.apply(d.changes)
        for lookup in d.lookups:
            found = self.store.find_products(type=lookup.need.product_type, match=lookup.need.match,
                                             limit=10)
            refs = [m.product_ref(p)
                    for p in found if p.id not in lookup.exclude]
            self._pending.append(ProductsFound(activity_id=lookup.activity_id, attempt=lookup.attempt,
                                               products=refs))
        if d.cache_checks:
            self._pending.extend(self._check_caches(d.cache_checks))
        for t in d.timers:
            heapq.heappush(self._timers, (t.at, t.kind, t.activity_id))
        by_priority: dict[int, list[str]] = {}
        for message_id, priority in d.reprioritize:
            by_priority.setdefault(priority, []).append(message_id)
        for priority, ids in by_priority.items():
            self.bus.reprioritize(ids, priority)
        if d.release:
            self.bus.release(self._take_back(d.release, hold=False))
        for worker in d.reclaim:
            taken = self.bus.reclaim(worker)
            log.warning("worker %s sent no heartbeat for %g s: it is taken for dead, and %d dispatches it "
                        "held are dispatched again", worker, self.core.live.timeout_s, len(taken))
            if taken:
                self._pending.append(WorkerLost(worker=worker, dispatches=taken))
        if d.withdraw:
            self.bus.withdraw(d.withdraw)  # not yet taken by a worker: gone
            self.bus.revoke(d.withdraw)    # taken: the worker stops it
        if d.dispatches:
            first = set(d.dispatch_first)
            site_of = dict(d.dispatch_sites)
            for site in sorted(set(site_of.values()) | {""}):  # a site's dispatches: only its workers
                here = [x for x in d.dispatches if site_of.get(x[0], "") == site]
                if normal := [x for x in here if x[0] not in first]:
                    self.bus.enqueue(normal, site=site)
                if ahead := [x for x in here if x[0] in first]:
                    self.bus.enqueue(ahead, first=True, site=site)
        for message_id, priority, data, site in d.relocate:
            if self.bus.withdraw([message_id]):  # else a worker of its old site took it meanwhile
                self.bus.enqueue([(message_id, priority, data)], site=site)
        for notice in d.notices:
            log.warning("%s", notice)
        if d.announcements:
            self.bus.publish(d.announcements)
        for run_id in d.finished_runs:
            self.core.forget_run(run_id)
        if d.finished_runs:
            with self._finished:
                self._finished_count += 1
                self._finished.notify_all()

    def _take_back(self, ids: list[str], *, hold: bool) -> list[str]:
        """A paused (``hold``) or resumed run's dispatches: those no worker holds come back from the
        bus (answered with ``Held``); returns the rest, which workers hold."""
        if hold:
            self.bus.hold(ids)  # first: no claim between this and the withdraw takes one
        self.bus.withdraw(ids)
        still = set(self.bus.present(ids))
        if taken := [i for i in ids if i not in still]:
            self._pending.append(Held(dispatches=taken))
        return [i for i in ids if i in still]

    def _check_caches(self, checks: Sequence[CheckCache]) -> list[CacheChecked]:
        return check_caches(self.store, checks)

    def wait_for_finish(self, seen: int, timeout: float) -> int:
        """Block until some run finished after ``seen`` (a value this returned before) or timeout."""
        with self._finished:
            self._finished.wait_for(lambda: self._finished_count != seen, timeout)
            return self._finished_count

    @property
    def idle(self) -> bool:
        """Nothing loaded and nothing waiting."""
        return not self.core.runs and not self._pending and not self._timers

    @property
    def busy(self) -> bool:
        return bool(self.core.runs) or bool(self._pending)

