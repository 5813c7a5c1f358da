"""``memory://`` — the in-process bus: small enough to read in one sitting, thread-safe.

* **Dispatch queue**: a heap of claimable ids keyed ``(rank, seq)`` — ``rank = enqueued_at -
  priority * aging_s``, the fixed form of the effective priority (see ``skyweave.bus.base``) — and a
  heap of leases keyed by expiry.  Both are cleaned lazily: an entry whose message was acked,
  withdrawn or re-leased is skipped when it reaches the top (and the heaps are rebuilt if stale
  entries pile up).  Expired leases are returned to the claimable heap at claim time — there is no
  background thread.  A dispatch reported done leaves both heaps for good (its lease is set to
  infinity) and stays in ``_messages`` until acked.
* **Event log**: an append-only list with offsets starting at 1 and the committed offset of each
  consumer group.  Events every known group has committed are trimmed, so a long run does not grow
  memory without bound.  ``CONTROLLER_GROUP`` (and any ``groups`` given) is known from the start;
  other groups become known on their first ``read``.
* **wait** is a ``threading.Condition`` notified by ``enqueue`` and ``publish``; each thread
  remembers the last change it saw, so a change between its last ``claim``/``read`` and its
  ``wait`` makes ``wait`` return at once instead of being lost.
* **on_enqueue** callbacks are called (under the bus lock: they must be quick and must not call
  the bus) whenever new dispatches become claimable: a worker waiting for its running activities,
  not on the bus, hears of new work at once.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from skyweave.bus.base import (
    CONTROLLER_GROUP,
    FIRST_OFFSET,
    MAX_DELIVERIES_ERROR,
    Bus,
    Claimed,
    DeadLetter,
    Delivered,
    Pruned,
    redrivable,
    sequence_offset,
)

_TRIM_AT_LEAST = 1024
"""Trim the event list only when this many events (and half of it) can go: amortised O(1)."""
_COMPACT_SLACK = 64
"""A heap is rebuilt when it holds more than twice its live entries plus this slack."""


@dataclass(slots=True)
class _Dispatch:
    priority: int
    seq: int
    data: bytes
    rank: float
    """``enqueued_at - priority * aging_s``: the lowest is claimed first."""
    enqueued_at: float
    deliveries: int = 0
    lease_until: float | None = None
    """``None`` while claimable; a deadline on the bus's clock while claimed."""
    worker: str = ""
    """Who claimed it last."""
    held: bool = False
    """Not claimable until released (a paused run)."""
    begun: bool = False
    """Its worker is starting it (``Bus.begin``): a hold no longer stops it."""
    done: bool = False
    """Reported done by its worker; waiting for the controller's ack."""
    site: str = ""
    """Only a worker of this site claims it (``""``: a worker with no site)."""


class MemoryBus(Bus):
    """The bus inside one process.  ``close`` releases nothing; the bus lives while referenced."""

    def __init__(self, url: str = "memory://", *, groups: Iterable[str] = (CONTROLLER_GROUP,),
                 aging_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 max_deliveries: int = 0) -> None:
        self.url = url
        self.max_deliveries = max_deliveries
        """A dispatch claimed more often than this goes to the dead letters; 0: never."""
        self.aging_s = aging_s
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._seen = threading.local()
        self._generation = 0
        """Bumped by every enqueue and publish; what ``wait`` watches."""
        # dispatch queue
        self._seq = 0
        self._messages: dict[str, _Dispatch] = {}
        self._revoked: set[str] = set()
        self._ready: dict[str, list[tuple[float, int, str]]] = {}
        """One claimable heap per site (``Bus.claim(site=)``)."""
        self._leases: list[tuple[float, str]] = []
        self._claimed = 0
        # event log
        self._events: list[bytes] = []
        self._first_offset = 1
        """Offset of ``self._events[0]``."""
        self._committed: dict[str, int] = dict.fromkeys(groups, 0)
        self._group_seen: dict[str, float] = dict.fromkeys(groups, time.time())
        """Group -> when it last read or committed (wall clock, for ``prune``)."""
        self._dead: list[DeadLetter] = []
        self._dead_at: dict[str, float] = {}
        self._dead_seq = 0
        self._on_enqueue: list[Callable[[], None]] = []

    def on_enqueue(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` whenever dispatches are enqueued (see the module docstring); returns
        what removes it again."""
        with self._cond:
            self._on_enqueue.append(callback)

        def remove() -> None:
            with self._cond:
                if callback in self._on_enqueue:
                    self._on_enqueue.remove(callback)
        return remove

    # -- dispatch queue ---------------------------------------------------------------------------
    def enqueue(self, messages: Sequence[tuple[str, int, bytes]], *, first: bool = False,
                site: str = "") -> None:
        with self._cond:
            self._enqueue(messages, first=first, site=site)

    def _enqueue(self, messages: Sequence[tuple[str, int, bytes]], *, first: bool, site: str = "") -> int:
        added = 0
        now = self._clock()
        for message_id, priority, data in messages:
            if message_id in self._messages:
                continue
            self._seq += 1
            seq = self._seq - FIRST_OFFSET if first else self._seq
            # ``first``: as old as the oldest of its priority (then ahead of it by ``seq``)
            at = min((d.enqueued_at for d in self._messages.values() if d.priority == priority
                      and not d.done), default=now) if first else now
            rank = at - priority * self.aging_s
            dispatch = _Dispatch(priority, seq, data, rank, at, site=site)
            self._messages[message_id] = dispatch
            self._push_ready(message_id, dispatch)
            added += 1
        if added:
            self._changed()
            for callback in self._on_enqueue:
                callback()
        return added

    def claim(self, worker: str, max_n: int, lease_s: float, *, site: str = "") -> list[Claimed]:
        with self._cond:
            self._remember_generation()
            now = self._clock()
            self._release_expired(now)
            lease_until = now + lease_s
            claimed: list[Claimed] = []
            ready = self._ready.get(site, [])
            while ready and len(claimed) < max_n:
                entry = heapq.heappop(ready)
                if not self._is_ready(entry):
                    continue  # stale: acked, withdrawn, or already claimed
                message_id = entry[2]
                dispatch = self._messages[message_id]
                dispatch.deliveries += 1
                if 0 < self.max_deliveries < dispatch.deliveries:
                    del self._messages[message_id]
                    self._revoked.discard(message_id)
                    self._add_dead(dispatch.data, MAX_DELIVERIES_ERROR.format(
                        id=message_id, n=self.max_deliveries), message_id, dispatch.priority)
                    continue
                dispatch.lease_until = lease_until
                dispatch.worker = worker
                self._claimed += 1
                heapq.heappush(self._leases, (lease_until, message_id))
                claimed.append(Claimed(message_id, dispatch.data, dispatch.deliveries, dispatch.rank))
            return claimed

    def ack(self, ids: Sequence[str]) -> None:
        with self._cond:
            self._ack(ids)

    def _ack(self, ids: Sequence[str]) -> None:
        for message_id in ids:
            self._revoked.discard(message_id)
            dispatch = self._messages.pop(message_id, None)
            if dispatch is not None and dispatch.lease_until is not None:
                self._claimed -= 1
        self._compact()

    def report(self, events: Sequence[bytes], done: Sequence[str]) -> None:
        with self._cond:
            for message_id in done:
                dispatch = self._messages.get(message_id)
                if dispatch is None or dispatch.done:
                    continue
                if dispatch.lease_until is None:
                    self._claimed += 1  # reported after its lease ran out: it counts as held again
                dispatch.done = True
                dispatch.lease_until = math.inf  # leaves the lease heap: never released, never extended
            if events:
                self._events.extend(events)
                self._changed()

    def reclaim(self, worker: str) -> list[str]:
        with self._cond:
            taken = [i for i, d in self._messages.items() if d.worker == worker and not d.done]
            self._ack(taken)
            return taken

    def holders(self) -> list[str]:
        with self._cond:
            return sorted({d.worker for d in self._messages.values() if d.worker and not d.done})

    def present(self, ids: Sequence[str]) -> list[str]:
        with self._cond:
            return [i for i in ids if i in self._messages]

    def extend(self, ids: Sequence[str], lease_s: float) -> None:
        with self._cond:
            lease_until = self._clock() + lease_s
            for message_id in ids:
                dispatch = self._messages.get(message_id)
                if dispatch is not None and dispatch.lease_until is not None and not dispatch.done:
                    dispatch.lease_until = lease_until
                    heapq.heappush(self._leases, (lease_until, message_id))
            self._compact()

    def withdraw(self, ids: Sequence[str]) -> int:
        with self._cond:
            self._release_expired(self._clock())
            removed = 0
            for message_id in ids:
                dispatch = self._messages.get(message_id)
                if dispatch is not None and dispatch.lease_until is None:
                    del self._messages[message_id]
                    removed += 1
            self._compact()
            return removed

    def reprioritize(self, ids: Sequence[str], priority: int) -> int:
        with self._cond:
            self._release_expired(self._clock())
            changed = 0
            for message_id in ids:
                dispatch = self._messages.get(message_id)
                if dispatch is None or dispatch.lease_until is not None or dispatch.priority == priority:
                    continue
                dispatch.priority = priority
                dispatch.rank = dispatch.enqueued_at - priority * self.aging_s
                if not dispatch.held:
                    self._push_ready(message_id, dispatch)
                changed += 1
            if changed:
                self._changed()
            return changed

    def hold(self, ids: Sequence[str]) -> None:
        with self._cond:
            for message_id in ids:
                dispatch = self._messages.get(message_id)
                if dispatch is not None:
                    dispatch.held = True  # its heap entry is skipped from now on

    def release(self, ids: Sequence[str]) -> None:
        with self._cond:
            self._release_expired(self._clock())
            released = False
            for message_id in ids:
                dispatch = self._messages.get(message_id)
                if dispatch is None or not dispatch.held:
                    continue
                dispatch.held = False
                if dispatch.lease_until is None:
                    self._push_ready(message_id, dispatch)
                    released = True
            if released:
                self._changed()
                for callback in self._on_enqueue:
                    callback()

    def held(self, ids: Sequence[str]) -> list[str]:
        with self._cond:
            return [i for i in ids if (d := self._messages.get(i)) is not None and d.held and not d.begun]

    def begin(self, ids: Sequence[str]) -> list[str]:
        with self._cond:
            begun = []
            for message_id in ids:
                dispatch = self._messages.get(message_id)
                if dispatch is not None and not dispatch.done and not dispatch.held:
                    dispatch.begun = True
                    begun.append(message_id)
            return begun

    def revoke(self, ids: Sequence[str]) -> None:
        with self._cond:
            self._revoked.update(i for i in ids if i in self._messages)

    def revoked(self, ids: Sequence[str]) -> list[str]:
        with self._cond:
            return [i for i in ids if i in self._revoked]

    def queued(self) -> int:
        with self._cond:
            return len(self._messages)

    def _release_expired(self, now: float) -> None:
        """Make dispatches whose lease ran out claimable again, keeping their priority and age."""
        while self._leases and self._leases[0][0] < now:
            entry = heapq.heappop(self._leases)
            if not self._is_lease(entry):
                continue  # stale: acked, or the lease was extended
            message_id = entry[1]
            dispatch = self._messages[message_id]
            dispatch.lease_until = None
            self._claimed -= 1
            if not dispatch.held:  # a held one goes back to the heap when released
                self._push_ready(message_id, dispatch)

    def _compact(self) -> None:
        """Drop stale heap entries once they outnumber live ones (amortised O(1) per call)."""
        claimable = len(self._messages) - self._claimed
        if sum(map(len, self._ready.values())) > 2 * claimable + _COMPACT_SLACK:
            for site, ready in list(self._ready.items()):
                kept = [entry for entry in ready if self._is_ready(entry)]
                heapq.heapify(kept)
                if kept:
                    self._ready[site] = kept
                else:
                    del self._ready[site]
        if len(self._leases) > 2 * self._claimed + _COMPACT_SLACK:
            self._leases = [entry for entry in self._leases if self._is_lease(entry)]
            heapq.heapify(self._leases)

    def _push_ready(self, message_id: str, dispatch: _Dispatch) -> None:
        heapq.heappush(self._ready.setdefault(dispatch.site, []), (dispatch.rank, dispatch.seq, message_id))

    def _is_ready(self, entry: tuple[float, int, str]) -> bool:
        dispatch = self._messages.get(entry[2])
        return (dispatch is not None and dispatch.seq == entry[1] and dispatch.lease_until is None
                and not dispatch.held and entry[0] == dispatch.rank)

    def _is_lease(self, entry: tuple[float, str]) -> bool:
        dispatch = self._messages.get(entry[1])
        return dispatch is not None and dispatch.lease_until == entry[0]

    # -- events -----------------------------------------------------------------------------------
    def publish(self, messages: Sequence[bytes]) -> None:
        if not messages:
            return
        with self._cond:
            self._events.extend(messages)
            self._changed()

    def read(self, group: str, max_n: int) -> list[Delivered]:
        with self._cond:
            self._remember_generation()
            committed = self._committed.setdefault(group, 0)
            self._group_seen[group] = time.time()
            start = max(committed + 1 - self._first_offset, 0)
            batch = self._events[start : start + max_n]
            first = self._first_offset + start
            return [Delivered(str(first + i), data) for i, data in enumerate(batch)]

    def commit(self, group: str, offset: str, *, ack: Sequence[str] = ()) -> None:
        number = sequence_offset(offset)
        with self._cond:
            last = self._first_offset + len(self._events) - 1
            self._committed[group] = max(self._committed.get(group, 0), min(number, last))
            self._group_seen[group] = time.time()
            self._trim()
            if ack:
                self._ack(ack)

    def _trim(self, *, force: bool = False) -> int:
        """Drop the events every known group has committed, in large amortised chunks (``force``:
        however few); returns how many went."""
        n = min(self._committed.values(), default=0) + 1 - self._first_offset
        if n <= 0 or (not force and (n < _TRIM_AT_LEAST or 2 * n < len(self._events))):
            return 0
        del self._events[:n]
        self._first_offset += n
        return n

    def prune(self, now: float, *, group_idle_s: float | None, dead_letter_age_s: float | None,
              dry_run: bool = False) -> Pruned:
        with self._cond:
            idle = [] if group_idle_s is None else sorted(
                g for g, seen in self._group_seen.items()
                if g != CONTROLLER_GROUP and g in self._committed and seen < now - group_idle_s)
            left = [c for g, c in self._committed.items() if g not in idle]
            events = max(0, min(left, default=0) + 1 - self._first_offset)
            old = [] if dead_letter_age_s is None else [
                x.id for x in self._dead if self._dead_at.get(x.id, now) < now - dead_letter_age_s]
            if not dry_run:
                for group in idle:
                    del self._committed[group], self._group_seen[group]
                events = self._trim(force=True)
                gone = set(old)
                self._dead = [x for x in self._dead if x.id not in gone]
                for letter in gone:
                    self._dead_at.pop(letter, None)
            return Pruned(groups=idle, events=events, dead_letters=len(old))

    def dead_letter(self, data: bytes, error: str) -> None:
        with self._cond:
            self._add_dead(data, error, None, 0)

    def _add_dead(self, data: bytes, error: str, dispatch: str | None, priority: int) -> None:
        self._dead_seq += 1
        self._dead.append(DeadLetter(str(self._dead_seq), data, error, dispatch, priority))
        self._dead_at[str(self._dead_seq)] = time.time()

    def dead_letters(self) -> list[DeadLetter]:
        with self._cond:
            return list(self._dead)

    def redrive(self, ids: Sequence[str]) -> int:
        with self._cond:
            letters = redrivable(self._dead, ids)
            gone = {letter.id for letter in letters}
            self._dead = [letter for letter in self._dead if letter.id not in gone]
            for letter_id in gone:
                self._dead_at.pop(letter_id, None)
            return self._enqueue([(letter.dispatch, letter.priority, letter.data) for letter in letters
                                  if letter.dispatch is not None], first=False)

    # -- waiting ----------------------------------------------------------------------------------
    def wait(self, timeout: float) -> None:
        with self._cond:
            seen = getattr(self._seen, "generation", self._generation)
            self._cond.wait_for(lambda: self._generation != seen, timeout)
            self._seen.generation = self._generation

    def close(self) -> None:
        """Nothing to release (other holders of a shared ``memory://name`` keep using it)."""

    def _changed(self) -> None:
        self._generation += 1
        self._cond.notify_all()

    def _remember_generation(self) -> None:
        """Give this thread's next ``wait`` a baseline, if it has none yet."""
        if not hasattr(self._seen, "generation"):
            self._seen.generation = self._generation

    def __repr__(self) -> str:
        return f"MemoryBus({self.url!r})"
