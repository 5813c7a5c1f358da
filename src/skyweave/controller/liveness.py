"""Which workers are alive, and what becomes of the work of one that is not.

Every worker publishes a heartbeat each ``heartbeat_s``; the core notes when it heard each one
(by its own clock, ``now``).  One ``liveness`` timer is pending at a time, due when the
longest-silent worker reaches ``worker_timeout_s``; when it fires, every worker silent that long
is judged dead and the shell takes back from the bus what it held (``Decisions.reclaim``),
answering with ``WorkerLost``.  The shell holds that timer back while it reads full batches (a
heartbeat may be waiting unread), so a controller behind on the bus also judges by *order*: a
worker is dead once heartbeats the others sent ``worker_timeout_s`` after its last one (their
``at``, the workers' clocks) have been read and none of its own.  A slow worker that goes on
sending heartbeats keeps its work however long it runs.  (Workers on several hosts: keep their
clocks in step, NTP's milliseconds are plenty against a timeout of seconds.)

Each dispatch taken back that is still its activity's current attempt becomes a *lost* attempt:
its row is closed with the reason, and the activity is queued again, ahead of what was queued
with it (and put on the bus ahead of its priority: it had its turn), to run as the next attempt.
A lost attempt does not use up the task's retries, but an activity lost more than
``MAX_LOSSES`` times fails: something in it may be killing its workers.  If the lost attempt
did run and its report arrives after all, the report is written on that attempt's row (the
execution happened) but not used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from skyweave.controller.decisions import Decisions, Timer, WorkerLost
from skyweave.controller.queue import ReadyQueue
from skyweave.model import messages as m
from skyweave.model.records import ActivityRecord, AttemptRecord
from skyweave.model.states import ActivityState as A
from skyweave.model.states import AttemptState, activity_transition


class Host(Protocol):
    """What liveness needs of the controller."""

    now: float
    out: Decisions
    queue: ReadyQueue
    activities: dict[str, ActivityRecord]
    in_flight: int

    def current_attempt(self, activity_id: str, attempt: int) -> ActivityRecord | None: ...
    def fail(self, rec: ActivityRecord, error: dict[str, Any]) -> None: ...
    def touch(self, rec: ActivityRecord) -> None: ...

MAX_LOSSES = 5
"""An activity whose worker is lost more often than this while it runs fails."""
LIVENESS = "liveness"
"""The kind of the timer that looks for silent workers."""


class Liveness:
    def __init__(self, ctrl: Host, worker_timeout_s: float) -> None:
        self.ctrl = ctrl
        self.timeout_s = worker_timeout_s
        self.workers: dict[str, tuple[int, float]] = {}
        """Worker -> (its slots, when it was last heard from)."""
        self.lost: dict[str, set[int]] = {}
        """Activity -> its attempts closed as lost (a late report of one is recorded, not used)."""
        self._silent: dict[str, float] = {}
        """Workers judged dead -> seconds they had been silent (for the reason on the attempts)."""
        self._sent: dict[str, float] = {}
        """Worker -> when it sent its last heartbeat read (its clock)."""
        self._frontier = 0.0
        """The latest heartbeat time read from any worker: how far the reading has got."""
        self._due: float | None = None
        self.site_of: dict[str, str] = {}
        """Worker -> the site it works for (from its heartbeats)."""
        self.last_heard: dict[str, float] = {}
        """Site -> when a worker of it was last heard from (``now``)."""
        self.heard_count = 0
        """Heartbeats heard and deaths judged so far (what ``live_sites`` says changes only with it or
        ``now``)."""
        self.on_site_gone: Callable[[str], None] = lambda _site: None
        """Called with the site of a worker judged dead (``sitewatch.SiteWatch.site_gone``)."""
        self.on_site_worker: Callable[[str], None] = lambda _site: None
        """Called with the site of a worker heard from for the first time (``SiteWatch.site_worker``)."""

    # -- hearing from workers -----------------------------------------------------------------------
    def heard(self, ev: m.WorkerHeartbeat) -> None:
        self.workers[ev.worker] = (ev.slots, self.ctrl.now)
        new = ev.worker not in self.site_of
        self.site_of[ev.worker] = ev.site
        self.heard_count += 1
        if new:
            self.on_site_worker(ev.site)
        self.last_heard[ev.site] = self.ctrl.now
        self._arm(self.ctrl.now + self.timeout_s)
        if ev.at:  # never back (an excuse for a bus outage may have moved it past this beat)
            self._sent[ev.worker] = max(ev.at, self._sent.get(ev.worker, ev.at))
            self._frontier = max(self._frontier, ev.at)
            for worker, sent in list(self._sent.items()):
                if self._frontier - sent >= self.timeout_s:
                    self._dead(worker, self._frontier - sent)

    def watch(self, workers: list[str]) -> None:
        """Workers known to hold dispatches (after a restart): heard from now, at the latest."""
        for worker in workers:
            if worker not in self.workers:
                self.workers[worker] = (0, self.ctrl.now)
                if self._frontier:
                    self._sent[worker] = self._frontier
        if self.workers:
            self._arm(min(seen for _, seen in self.workers.values()) + self.timeout_s)

    def excuse(self) -> None:
        """The bus was unreachable until now: nobody could be heard, so every known worker counts
        as heard from now, by the clock (its time) and by order (its last heartbeat sent now) —
        otherwise the first heartbeats read after the outage would condemn the workers that had
        not reconnected yet, and their work would run twice."""
        now = self.ctrl.now
        for worker, (slots, _) in list(self.workers.items()):
            self.workers[worker] = (slots, now)
        for worker, sent in list(self._sent.items()):
            self._sent[worker] = max(sent, now)
        if self.workers:
            self._arm(now + self.timeout_s)

    def slots(self) -> int:
        """The slots of the workers heard from within the timeout."""
        now = self.ctrl.now
        return sum(slots for slots, seen in self.workers.values() if now - seen < self.timeout_s)

    def live_sites(self) -> set[str]:
        """The sites with a worker heard from within the timeout (``""``: workers with no site)."""
        now = self.ctrl.now
        return {self.site_of.get(worker, "") for worker, (_, seen) in self.workers.items()
                if now - seen < self.timeout_s and worker in self.site_of}

    def check(self) -> None:
        """The liveness timer fired: workers silent for the timeout are judged dead."""
        self._due = None
        now = self.ctrl.now
        for worker, (_, seen) in list(self.workers.items()):
            if now - seen >= self.timeout_s:
                self._dead(worker, now - seen)
        if self.workers:
            self._arm(min(seen for _, seen in self.workers.values()) + self.timeout_s)

    def _dead(self, worker: str, silent: float) -> None:
        self.workers.pop(worker, None)
        self._sent.pop(worker, None)
        self.heard_count += 1
        site = self.site_of.pop(worker, None)
        if site:
            self.on_site_gone(site)
        self._silent[worker] = silent
        self.ctrl.out.reclaim.append(worker)

    def _arm(self, at: float) -> None:
        if self._due is None or at < self._due:
            self._due = at
            self.ctrl.out.timers.append(Timer(at=at, kind=LIVENESS, activity_id=""))

    # -- work that was lost -------------------------------------------------------------------------
    def on_worker_lost(self, ev: WorkerLost) -> None:
        silent = self._silent.pop(ev.worker, self.timeout_s)
        for message_id in ev.dispatches:
            aid, _, attempt = message_id.rpartition(":")
            rec = self.ctrl.current_attempt(aid, int(attempt) if attempt.isdigit() else -1)
            if rec is None:
                continue
            what = "while it ran" if rec.state == A.RUNNING else "holding it before it reported a start"
            self.lose(rec, ev.worker, f"worker {ev.worker} sent no heartbeat for {silent:.1f} s (timeout "
                                      f"{self.timeout_s:g} s) {what}")

    def on_returned(self, ev: m.ActivityReturned) -> None:
        rec = self.ctrl.current_attempt(ev.activity_id, ev.attempt)
        if rec is not None:
            self.lose(rec, rec.worker or "", f"worker {ev.worker} handed it back: {ev.reason}")

    def lose(self, rec: ActivityRecord, worker: str, reason: str) -> None:
        """Close the current attempt as lost and queue the activity for the next one."""
        ctrl = self.ctrl
        ctrl.in_flight -= 1
        started = rec.state == A.RUNNING
        losses = self.lost.setdefault(rec.id, set())
        losses.add(rec.attempt)
        again = len(losses) <= MAX_LOSSES
        message = (f"attempt {rec.attempt} lost: {reason}; "
                   + ("it may have run; it runs again as the next attempt" if again else
                      f"lost {len(losses)} times, so it is not dispatched again (does it kill its worker?)"))
        ctrl.out.changes.attempts.append(AttemptRecord(
            activity_id=rec.id, attempt=rec.attempt, state=AttemptState.LOST,
            worker=(rec.worker if started else None) or worker or None, host=rec.host if started else None,
            started_at=rec.started_at if started else None, ended_at=ctrl.now,
            image_digest=rec.image_digest if started else None,
            error={"type": "skyweave.WorkerLost", "message": message, "retryable": again}))
        if not again:
            ctrl.fail(rec, {"type": "skyweave.WorkerLost", "message": message, "retryable": False})
            return
        rec.max_attempts += 1  # a lost attempt is not the task's failure: its retries stay
        rec.state = activity_transition(rec.state, A.QUEUED)
        ctrl.queue.push(rec.id, rec.priority, rec.queued_at, first=True)  # keeps its age and its turn
        ctrl.touch(rec)

    def late(self, ev: m.ActivityFinished | m.ActivityFailed | m.ActivityNeedsInput) -> None:
        """A report of an attempt that is not current: written on its row if that attempt was
        closed as lost (it did run after all), otherwise a duplicate, ignored."""
        if ev.attempt not in self.lost.get(ev.activity_id, ()):
            return
        rec = self.ctrl.activities.get(ev.activity_id)
        current = f" (attempt {rec.attempt} was under way)" if rec is not None else ""
        state = {m.ActivityFinished: AttemptState.SUCCEEDED, m.ActivityFailed: AttemptState.FAILED,
                 m.ActivityNeedsInput: AttemptState.NEEDS_INPUT}[type(ev)]
        note = f"reported after it had been judged lost{current}; this outcome was not used"
        if isinstance(ev, m.ActivityFailed):
            note += f" (it failed: {ev.error_type}: {ev.message})"
        self.ctrl.out.changes.attempts.append(AttemptRecord(
            activity_id=ev.activity_id, attempt=ev.attempt, state=state, worker=ev.worker or None,
            host=ev.host or None, pid=ev.pid or None, started_at=ev.started_at or None,
            ended_at=ev.at or self.ctrl.now, exit_code=getattr(ev, "exit_code", None),
            image_digest=ev.image_digest or None,
            error={"type": "skyweave.Superseded", "message": note, "retryable": False},
            usage={f: getattr(ev.usage, f) for f in ev.usage.__struct_fields__}))
