"""The worker service: claims dispatches from the bus, runs them through an executor, reports
what happened, and keeps its leases and heartbeat alive.  Stateless: a worker that dies stops
sending heartbeats, the controller takes back what it held and dispatches it again.

A report publishes the outcomes and marks their dispatches done in one bus transaction
(``Bus.report``): once the worker forgets an activity its outcome is durable, and the dispatch stays
on the bus until the controller has committed that outcome.  A dispatch claimed for the second
time (an earlier holder's lease ran out with no controller there to judge it) may have run
already: it is handed back unrun (``ActivityReturned``) so the controller records a new attempt.

An activity's "started" report is held for up to ``started_grace_s`` (20 ms): if the activity
ends within that time, both reports leave in one bus message batch, which the controller handles
in one store transaction instead of two (a chain of short steps, W2 in bench/, went from two
transactions per step to one).  Anything longer is reported started at most 20 ms late.

While it waits for its running activities with a slot free, the worker is woken by a dispatch
enqueued on the bus (``Bus.on_enqueue`` calling ``Executor.wake``: of the buses ``memory://`` can
tell, of the executors ``local`` can be woken), so the next step of a chain does not wait for
another activity to report (with a long activity running, each step of a chain beside it waited up
to the 50 ms collect timeout).  Otherwise it looks at the bus again every ``wait`` (50 ms).

Work taken ahead waits in the worker until the executor can start it soon: an activity whose task
is not known to be short (< ``SHORT_S`` on this worker) only when a slot is free; short ones
while a slot free of such long work has room in its queue (``_target`` per slot), so short work
still travels to the executor in batches but never waits there behind long work.  Just before it
hands work over, the worker *begins* it on the bus (``Bus.begin``, atomic with ``hold``): what was
held meanwhile (its run was paused) is given back unstarted (``extend(ids, 0)``) and the
controller takes it back on resume; what was begun starts, and ``Client.pause`` waits until it is
reported started.  So once a pause returns, nothing of the run starts here until resume.  Work
taken ahead waits in the bus's order (``Claimed.rank``), so urgent work claimed later starts
before low-priority work claimed earlier.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from skyweave.bus.base import Bus, Claimed
from skyweave.errors import MessageError
from skyweave.executors.base import Executor
from skyweave.executors.transfers import bring_inputs, with_moves
from skyweave.model import messages as m
from skyweave.model.ids import WORKER, new_id
from skyweave.storage import Storage

log = logging.getLogger(__name__)

SHORT_S = 0.2
"""A task whose activities took less than this on average here goes to the executor ahead."""


def new_worker_id() -> str:
    """A worker's name, unique across hosts and restarts: what its heartbeats, its claims on the bus
    and the attempts it runs are recorded under."""
    return f"{WORKER}-{socket.gethostname()}-{os.getpid()}-{new_id('x')[-4:]}"


class WorkerService:
    def __init__(self, bus: Bus, executor: Executor, *, worker_id: str | None = None,
                 lease_s: float = 60.0, heartbeat_s: float = 1.0,
                 clock: Callable[[], float] = time.time, site: str = "",
                 sites: Mapping[str, str] | None = None,
                 transfer_root: Path | Storage | None = None) -> None:
        self.bus = bus
        self.site = site
        """The site it claims work for (``Bus.claim(site=)``; ``""``: work placed at no site)."""
        self.sites = dict(sites or {})
        """Site -> storage root: inputs under another site's root are copied to ``transfer_root``
        (this site's products: a folder, or a storage such as a bucket)
        before their activity starts (``transfers.py``)."""
        self.transfer_root = transfer_root
        self._moves: dict[str, list[dict[str, Any]]] = {}
        """Activity id -> the inputs brought to this site for it, until its outcome is reported."""
        self._clock = clock
        """Seconds since the epoch: heartbeats, revoke checks and the started-report grace."""
        self.executor = executor
        self.id = worker_id or new_worker_id()
        self.lease_s = lease_s
        self.heartbeat_s = heartbeat_s
        self._messages: dict[str, str] = {}
        """Activity id -> the dispatch message id it came in, to ack once it is over."""
        self._task_s: dict[str, float] = {}
        """Task name -> mean duration of its activities here."""
        self._tasks: dict[str, str] = {}
        """Activity id -> its task's name, while it is taken."""
        self._ahead: list[m.DispatchActivity] = []
        """Taken but not given to the executor yet (see the module docstring), in the bus's order."""
        self._rank: dict[str, float] = {}
        """Activity id -> its ``Claimed.rank``, while it waits in ``_ahead``."""
        self._long: set[str] = set()
        """Activities given to the executor whose task was not known to be short then."""
        self._last_beat = 0.0
        self._last_revoke_check = 0.0
        self.revoke_check_s = 1.0
        self._avg_s = 0.05
        self._started: dict[str, float] = {}
        self.started_grace_s = 0.02
        self._held: list[tuple[float, m.ActivityStarted]] = []
        """"Started" reports not yet published, with when they arrived (see the module docstring)."""
        self._armed = False
        """Waiting (or about to) in ``collect`` with a slot free: a new dispatch should wake it."""
        self._unhook: Callable[[], None] | None = None

    def start(self) -> None:
        self.executor.start()
        if self._unhook is None:
            self._unhook = self.bus.on_enqueue(self._wake_if_armed)
        self._beat(self._clock())

    def _wake_if_armed(self) -> None:
        if self._armed:
            self.executor.wake()

    def close(self) -> None:
        if self._unhook is not None:
            self._unhook()
            self._unhook = None
        self._flush_held()
        if self._ahead:  # not started: back to the bus at once rather than when the leases run out
            self.bus.extend([self._messages.pop(d.activity_id) for d in self._ahead], 0.0)
            self._ahead.clear()
        self.executor.close()

    def _flush_held(self) -> None:
        if self._held:
            self.bus.publish([m.encode_message(new_id("evt"), o) for _, o in self._held])
            self._held.clear()

    def _report(self, outcomes: Sequence[m.Message], done: Sequence[str]) -> None:
        self.bus.report([m.encode_message(new_id("evt"), o) for o in outcomes], done)

    def _target(self) -> int:
        slots = self.executor.slots
        # short activities: keep a deeper local queue so IPC and bus round trips are amortised;
        # long ones: take only what can start now, so urgent work is not stuck behind a prefetch
        if self._avg_s < 0.02:
            return slots * 32
        if self._avg_s < 0.2:
            return slots * 4
        return slots

    def step(self, wait: float = 0.05) -> int:
        now = self._clock()
        if now - self._last_beat >= self.heartbeat_s:
            self._beat(now)
        if self._messages and now - self._last_revoke_check >= self.revoke_check_s:
            self._stop_revoked(now)
        free = self._target() - self.executor.active - len(self._ahead)
        # armed before the claim: a dispatch enqueued after it wakes the collect below at once
        self._armed = free > 0
        claimed = self.bus.claim(self.id, free, self.lease_s, site=self.site) if free > 0 else []
        batch = self._start_now(self._accept(claimed, now))
        if batch:
            self.executor.submit(batch)
        if self.executor.active == 0:
            self._armed = False
            self._flush_held()
            if not claimed:
                self.bus.wait(wait)
            return 0
        timeout = wait if not claimed else 0.0
        if self._held:
            timeout = min(timeout, max(0.0, self._held[0][0] + self.started_grace_s - self._clock()))
        try:
            outcomes = self.executor.collect(timeout)
        finally:
            self._armed = False
        arrived = self._clock()
        self._held.extend((arrived, o) for o in outcomes if isinstance(o, m.ActivityStarted))
        ended = [o for o in outcomes if not isinstance(o, m.ActivityStarted)]
        if not ended:
            if self._held and arrived - self._held[0][0] >= self.started_grace_s:
                self._flush_held()
            return 0
        held, self._held = [o for _, o in self._held], []
        ended = [with_moves(o, moves) if isinstance(o, m.ActivityFinished | m.ActivityFailed)
                 and (moves := self._moves.pop(o.activity_id, None)) else o for o in ended]
        done: list[str] = []
        for o in ended:
            mid = self._messages.pop(o.activity_id, None)
            self._started.pop(o.activity_id, None)
            self._long.discard(o.activity_id)
            self._avg_s = 0.9 * self._avg_s + 0.1 * o.usage.wall_s
            task = self._tasks.pop(o.activity_id, None)
            if task is not None:
                mean = self._task_s.get(task)
                self._task_s[task] = o.usage.wall_s if mean is None else 0.9 * mean + 0.1 * o.usage.wall_s
            if mid is not None:
                done.append(mid)
        self._report([*held, *ended], done)  # durable before this worker forgets them
        return len(ended) + len(held)

    def _accept(self, claimed: list[Claimed], now: float) -> list[m.DispatchActivity]:
        """The dispatches among claimed messages; anything else is dead-lettered and acked."""
        batch: list[m.DispatchActivity] = []
        for item in claimed:
            try:
                body = m.decode_message(item.data).body
            except MessageError as exc:
                self.bus.dead_letter(item.data, exc.message)
                self.bus.ack([item.id])
                continue
            if not isinstance(body, m.DispatchActivity):
                self.bus.dead_letter(item.data, f"not a dispatch: {type(body).__name__}")
                self.bus.ack([item.id])
                continue
            if item.deliveries > 1:
                log.warning("%s attempt %d was delivered again (%d times): handed back to the controller",
                            body.activity_id, body.attempt, item.deliveries)
                self._report([m.ActivityReturned(
                    activity_id=body.activity_id, attempt=body.attempt, worker=self.id, at=now,
                    reason=f"delivered {item.deliveries} times: an earlier holder's lease ran out, "
                           "so it may have run")], [item.id])
                continue
            if any(d.activity_id == body.activity_id for d in self._ahead):
                self._supersede(body, now)
            self._messages[body.activity_id] = item.id
            self._rank[body.activity_id] = item.rank
            self._tasks[body.activity_id] = body.task.name
            self._started[body.activity_id] = now
            if self.site and self.sites and self.transfer_root is not None:
                body, moves = bring_inputs(body, site=self.site, roots=self.sites, into=self.transfer_root)
                if moves:
                    self._moves[body.activity_id] = moves
            batch.append(body)
        return batch

    def _supersede(self, newer: m.DispatchActivity, now: float) -> None:
        """A newer dispatch of an activity still waiting here unstarted (the controller took this
        worker for dead and dispatched it again): the older one leaves ``_ahead`` and is handed back
        as returned, so the activity waits here once and starts at most once."""
        older = [d for d in self._ahead if d.activity_id == newer.activity_id]
        self._ahead = [d for d in self._ahead if d.activity_id != newer.activity_id]
        mid = self._messages.get(newer.activity_id)
        log.warning("%s attempt %d waiting here was superseded by attempt %d: handed back unrun",
                    newer.activity_id, older[0].attempt, newer.attempt)
        self._report([m.ActivityReturned(
            activity_id=newer.activity_id, attempt=older[0].attempt, worker=self.id, at=now,
            reason=f"superseded by attempt {newer.attempt} before it started")], [mid] if mid else [])

    def _short(self, dispatch: m.DispatchActivity) -> bool:
        return self._task_s.get(dispatch.task.name, SHORT_S) < SHORT_S

    def _start_now(self, batch: list[m.DispatchActivity]) -> list[m.DispatchActivity]:
        """What goes to the executor now (see the module docstring), begun on the bus; the rest
        waits in ``_ahead``, and what was held meanwhile goes back to the bus."""
        if batch:  # one claimed now goes before those taken earlier that the bus would hand out after it
            self._ahead.extend(batch)
            self._ahead.sort(key=lambda d: self._rank[d.activity_id])
        if not self._ahead:
            return []
        slots, active = self.executor.slots, self.executor.active
        room = slots - active  # idle slots
        long_n = len(self._long)
        queued_short = active - long_n
        depth = max(1, self._target() // slots)
        take: list[m.DispatchActivity] = []
        wait: list[m.DispatchActivity] = []
        for d in self._ahead:
            if self._short(d):
                ok = (slots - long_n) * depth > queued_short
                queued_short += ok
            else:
                ok = room > 0
                long_n += ok
            room -= ok
            (take if ok else wait).append(d)
        self._ahead = wait
        if not take:
            return []
        for d in take:
            self._rank.pop(d.activity_id, None)
        ids = [self._messages[d.activity_id] for d in take]
        begun = set(self.bus.begin(ids))
        if refused := [i for i in ids if i not in begun]:
            log.info("giving back %d dispatches held while they waited here (a paused run)", len(refused))
            self.bus.extend(refused, 0.0)
        start = [d for d in take if self._messages[d.activity_id] in begun]
        for d in take:
            if self._messages[d.activity_id] not in begun:
                self._forget(d.activity_id)
            elif not self._short(d):
                self._long.add(d.activity_id)
        return start

    def _forget(self, activity_id: str) -> None:
        self._rank.pop(activity_id, None)
        self._long.discard(activity_id)
        self._messages.pop(activity_id, None)
        self._tasks.pop(activity_id, None)
        self._started.pop(activity_id, None)

    def _stop_revoked(self, now: float) -> None:
        """Cancel what the controller revoked (a cancelled run's running activities); revoked work
        still waiting here is reported cancelled without starting."""
        self._last_revoke_check = now
        by_message = {mid: aid for aid, mid in self._messages.items()}
        revoked = set(self.bus.revoked(list(by_message)))
        if not revoked:
            return
        log.info("stopping %d revoked activities", len(revoked))
        waiting = [d for d in self._ahead if self._messages[d.activity_id] in revoked]
        if waiting:
            self._ahead = [d for d in self._ahead if self._messages[d.activity_id] not in revoked]
            self._report([m.ActivityFailed(
                activity_id=d.activity_id, attempt=d.attempt, worker=self.id, error_type="skyweave.Cancelled",
                message=f"activity {d.activity_id} was cancelled before it started", retryable=False, at=now)
                for d in waiting], [self._messages[d.activity_id] for d in waiting])
            for d in waiting:
                self._forget(d.activity_id)
        running = [by_message[mid] for mid in revoked if by_message[mid] in self._messages]
        if running:
            self.executor.cancel(running)

    def _beat(self, now: float) -> None:
        self._last_beat = now
        if self._messages:
            self.bus.extend(list(self._messages.values()), self.lease_s)
        # sent now, not when this beat began: renewing the leases may have waited out a bus outage,
        # and a heartbeat dated before it would make this worker look silent for its length
        beat = m.WorkerHeartbeat(worker=self.id, slots=self.executor.slots, running=self.executor.active,
                                 host=socket.gethostname(), at=self._clock(), site=self.site)
        self.bus.publish([m.encode_message(new_id("evt"), beat)])
