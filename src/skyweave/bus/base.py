"""The bus port: a dispatch queue (priority, leases, acknowledgements) and an event log.

* **Dispatches** go from the controller to workers.  A worker *claims* a batch (highest effective
  priority first, see below) under a lease and *extends* its leases while it works.
  When an activity ends, the worker *reports*: its outcome events are published and the dispatch
  marked *done* in one transaction.  A done dispatch is never claimed again and stays on the bus
  (so enqueueing its id again is still a no-op) until the controller, having committed the outcome
  to the store, *acks* it: a finished outcome is durable before the worker forgets it, and a
  restarted controller cannot hand finished work out again.  The controller judges workers by
  their heartbeats and *reclaims* a dead worker's dispatches (to dispatch them again as new
  attempts); an expired lease makes a message claimable again only as a last resort (no
  controller watching).  Enqueue is idempotent by message id.
* **Claim order is by effective priority** ``priority + seconds_since_enqueued / aging_s`` (the
  bus's ``aging_s``, given when it is opened), oldest first among equals, so low-priority work is
  never starved by a stream of higher-priority work: a dispatch is claimed before every one of
  priority ``p`` higher enqueued more than ``p * aging_s`` seconds after it.  The comparison does
  not change as time passes, so it is a fixed sort key ``enqueued_at - priority * aging_s``
  (``tests/unit/bus/test_aging.py``).  A dispatch enqueued ``first`` counts as enqueued with the
  oldest of its priority.
* **Held** dispatches (a paused run's) are never claimed until released; ``hold`` is atomic with
  claims and with ``begin``, so once it returns no worker takes or begins a held dispatch.  A
  worker *begins* what it took just before it hands it to its executor: ``begin`` marks the
  dispatches that are not held (those start) and leaves the held ones, which the worker gives back
  (``extend(ids, 0)``: they stay on the bus, held).  A dispatch begun before the hold starts all
  the same, so ``held`` names only the held ones not begun: whoever paused waits for the others to
  be reported started.  ``withdraw`` takes held ones too (``tests/unit/bus/test_hold.py``).
* **Sites**: a dispatch enqueued with ``site=NAME`` is claimed only by workers that claim with
  ``site=NAME`` (the workers of that site: they run where its input data is, or where its task is
  pinned); ``site=""`` (the default) is the queue of workers with no site.  Each site's dispatches
  keep the claim order among themselves; every other operation (ack, report, hold, withdraw…) is
  the same for all sites.  A re-driven dead letter goes back to the ``""`` queue.
* **Events** go from workers and clients to the controller (consumer group ``controller``) and to
  listeners (one group each).  Delivery is at-least-once: a group reads after its committed offset
  and commits once it has durably handled what it read.  Offsets are opaque strings, given out by
  the bus with each event (``Delivered.offset``) and only handed back to it (``commit``): a Redis
  stream entry id, a row number; callers never compare or compute them.  Events every *known*
  group has committed may be dropped; ``CONTROLLER_GROUP`` is known from the moment a bus is
  opened (so listeners cannot trim events the controller has not seen yet), other groups from
  their first ``read``.
* **Pruning** (``prune``): a group that has not read or committed for a given time is dropped (never
  ``CONTROLLER_GROUP``), and with it the events kept only for it; dead letters older than a given
  age go.  A dropped group that comes back is created again and reads from the oldest event still
  on the bus.  Events a live group has not committed are never pruned.

Implementations: ``memory://`` (in-process), ``sqlite:///path`` (several processes on one host),
``redis://host:port/db`` (several hosts).  All pass ``tests/unit/bus/test_contract.py``; a new
backend joins that suite with one parameter and ``open_bus`` with ``register_backend``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import msgspec

from skyweave.errors import NotFoundError

MAX_DELIVERIES_ERROR = ("dispatch {id} was delivered {n} times without being acknowledged (it may crash or "
                        "hang every worker that takes it)")
"""The reason a poisoned dispatch is put aside with (``{id}``, ``{n}``: ``max_deliveries``)."""
FIRST_OFFSET = 1 << 48
"""Taken off the sequence number of a dispatch enqueued ``first``, so it sorts before the rest."""
CONTROLLER_GROUP = "controller"
"""The consumer group of the controller; events are kept until it has committed them."""


class Claimed(msgspec.Struct, frozen=True):
    id: str
    data: bytes
    deliveries: int
    """How many times this message has been claimed (1 on first delivery)."""
    rank: float = 0.0
    """Its place in the claim order (``enqueued_at - priority * aging_s``, lowest first), so a
    worker can keep work it claimed at different times in the bus's order."""


class DeadLetter(msgspec.Struct, frozen=True):
    """A message the bus put aside: a malformed one, or a dispatch claimed more than the bus's
    ``max_deliveries`` times without finishing (a *poisoned* dispatch, which ``redrive`` can put
    back on the queue)."""

    id: str
    """The letter's id on this bus (what ``redrive`` takes); not the dispatch's id."""
    data: bytes
    error: str
    dispatch: str | None = None
    """The id of the poisoned dispatch; ``None`` for a malformed message (not re-drivable)."""
    priority: int = 0
    """The poisoned dispatch's priority, which it gets again when re-driven."""


class Delivered(msgspec.Struct, frozen=True):
    offset: str
    """Where this event is in the log, in the bus's own form: hand it back to ``commit``."""
    data: bytes


class Pruned(msgspec.Struct, frozen=True):
    """What ``Bus.prune`` removed (or, with ``dry_run``, would remove)."""

    groups: list[str] = msgspec.field(default_factory=list)
    """Consumer groups dropped: idle longer than the limit."""
    events: int = 0
    """Events gone: committed by every group that is left."""
    dead_letters: int = 0


class Bus(ABC):
    url: str
    max_deliveries: int = 0
    """A dispatch claimed more often than this goes to the dead letters (``redrive`` puts it back);
    0: never.  Memory and SQLite buses take it when opened (default 0), Redis from its URL."""

    # -- dispatch queue ---------------------------------------------------------------------------
    @abstractmethod
    def enqueue(self, messages: Sequence[tuple[str, int, bytes]], *, first: bool = False,
                site: str = "") -> None:
        """Add ``(id, priority, data)`` dispatches; an id already present is ignored.  ``first``:
        ahead of every dispatch of the same priority not enqueued ``first`` (work that was out
        once and lost with its worker); among themselves these keep their order too.  ``site``:
        only workers claiming for that site take them."""

    @abstractmethod
    def claim(self, worker: str, max_n: int, lease_s: float, *, site: str = "") -> list[Claimed]:
        """Up to ``max_n`` claimable dispatches of ``site``, highest effective priority first, then
        oldest."""

    @abstractmethod
    def ack(self, ids: Sequence[str]) -> None:
        """Remove dispatches (the controller, once their outcomes are committed; a worker, for a
        message that is not a dispatch)."""

    @abstractmethod
    def report(self, events: Sequence[bytes], done: Sequence[str]) -> None:
        """Publish a worker's outcome ``events`` and, in the same transaction, mark the dispatches
        ``done``: never claimable again, kept until acked.  An id no longer on the bus (reclaimed)
        is skipped; its events are published all the same."""

    @abstractmethod
    def reclaim(self, worker: str) -> list[str]:
        """Remove every dispatch last claimed by ``worker`` that is not done (lease live or run out)
        and return their ids: the controller judged the worker dead and dispatches them again."""

    @abstractmethod
    def holders(self) -> list[str]:
        """The workers that claimed dispatches not yet done (a restarted controller watches them)."""

    @abstractmethod
    def present(self, ids: Sequence[str]) -> list[str]:
        """Which of these dispatches the bus holds (waiting, claimed, or done and not yet acked)."""

    @abstractmethod
    def extend(self, ids: Sequence[str], lease_s: float) -> None:
        """Renew the lease of dispatches still being worked on (not of done ones)."""

    @abstractmethod
    def withdraw(self, ids: Sequence[str]) -> int:
        """Remove dispatches not under a live lease (cancel); returns how many were removed.

        Never-claimed dispatches and those whose lease expired go; ones a worker holds or has
        reported done stay.
        """

    @abstractmethod
    def reprioritize(self, ids: Sequence[str], priority: int) -> int:
        """Change the priority of dispatches not yet taken by a worker (they keep their age);
        returns how many changed."""

    @abstractmethod
    def hold(self, ids: Sequence[str]) -> None:
        """Keep these dispatches from being claimed until ``release`` (a paused run); ids not on
        the bus are ignored.  The marks go with ``ack``, ``withdraw`` and ``reclaim``."""

    @abstractmethod
    def release(self, ids: Sequence[str]) -> None:
        """Make held dispatches claimable again, in their old place (they keep their age)."""

    @abstractmethod
    def held(self, ids: Sequence[str]) -> list[str]:
        """Which of these dispatches are held and were not begun before (those will not start)."""

    @abstractmethod
    def begin(self, ids: Sequence[str]) -> list[str]:
        """A worker is about to start these dispatches it claimed: marks and returns those on the
        bus, not done and not held (atomic with ``hold``); the rest must not start (held ones are
        given back with ``extend(ids, 0)``).  The mark goes with the dispatch."""

    @abstractmethod
    def revoke(self, ids: Sequence[str]) -> None:
        """Ask whoever holds these dispatches to stop them (cancel of running work); the marks go
        away when the dispatches are acknowledged."""

    @abstractmethod
    def revoked(self, ids: Sequence[str]) -> list[str]:
        """Which of these dispatches were revoked (a worker asks for the ones it runs)."""

    @abstractmethod
    def queued(self) -> int:
        """Dispatches not yet acknowledged (claimed, done or neither)."""

    # -- events ---------------------------------------------------------------------------------
    @abstractmethod
    def publish(self, messages: Sequence[bytes]) -> None:
        """Append events to the log."""

    @abstractmethod
    def read(self, group: str, max_n: int) -> list[Delivered]:
        """Events after ``group``'s committed offset (at most ``max_n``); does not commit."""

    @abstractmethod
    def commit(self, group: str, offset: str, *, ack: Sequence[str] = ()) -> None:
        """Mark every event up to ``offset`` (a ``Delivered.offset`` of this bus) handled by
        ``group`` (never moves backwards) and, in the same transaction, ack the dispatches ``ack``
        (those whose outcomes these events were).  An offset this bus cannot have given out raises
        ``NotFoundError`` and changes nothing."""

    @abstractmethod
    def dead_letter(self, data: bytes, error: str) -> None:
        """Keep a malformed message aside with the reason; it is never applied."""

    @abstractmethod
    def dead_letters(self) -> list[DeadLetter]:
        """Every dead letter, oldest first."""

    @abstractmethod
    def redrive(self, ids: Sequence[str]) -> int:
        """Put the poisoned dispatches of these dead letters back on the queue, claimable again
        with their deliveries counted from zero, their old priority and the age of a new dispatch,
        and drop the letters; returns how many were enqueued (one whose dispatch id is on the bus
        again already is not enqueued twice; its letter goes all the same).  An id that is not a
        dead letter, or a letter that is not a dispatch, raises ``NotFoundError`` and changes nothing."""

    @abstractmethod
    def prune(self, now: float, *, group_idle_s: float | None, dead_letter_age_s: float | None,
              dry_run: bool = False) -> Pruned:
        """Drop the consumer groups (never ``CONTROLLER_GROUP``) that have neither read nor committed
        since ``now - group_idle_s``, then the events every remaining group has committed, and the
        dead letters put aside before ``now - dead_letter_age_s`` (``now``: epoch seconds; ``None``:
        that kind is kept).  ``dry_run``: change nothing, say what would go.  A group seen before
        this bus recorded when groups were seen counts as seen at its first prune."""

    # -- waiting ----------------------------------------------------------------------------------
    @abstractmethod
    def wait(self, timeout: float) -> None:
        """Block until something may have been enqueued or published, or ``timeout`` passes."""

    def on_enqueue(self, callback: Callable[[], None]) -> Callable[[], None] | None:  # noqa: ARG002
        """Have ``callback`` called (quickly, from whichever thread enqueues) whenever dispatches
        are enqueued *through this handle's process*; returns what removes it again, or ``None``
        when this bus cannot tell (the default: a bus shared between processes, whose workers look
        again every ``wait`` instead).  The worker uses it to wake its executor."""
        return None

    @property
    def outages(self) -> int:
        """How many times this handle lost its server and got it back (``0`` for a bus without a
        server).  While the server was gone no worker could send a heartbeat, so the controller
        does not count that time against them (``controller/liveness.py``)."""
        return 0

    @abstractmethod
    def close(self) -> None: ...


def sequence_offset(offset: str) -> int:
    """The number inside an offset of a bus whose offsets are sequence numbers (memory, SQLite)."""
    if not (isinstance(offset, str) and offset.isdigit()):
        raise NotFoundError(f"{offset!r} is not an event offset of this bus",
                            hint="commit the offset of an event this bus delivered (Delivered.offset)")
    return int(offset)


def redrivable(letters: Sequence[DeadLetter], ids: Sequence[str]) -> list[DeadLetter]:
    """The letters of ``ids`` (each once, in their order), or ``NotFoundError`` naming every id that
    is not a dead letter or not a poisoned dispatch; for ``Bus.redrive``."""
    by_id = {letter.id: letter for letter in letters}
    unknown = [i for i in ids if i not in by_id]
    malformed = [i for i in ids if i in by_id and by_id[i].dispatch is None]
    if unknown or malformed:
        problems = []
        if unknown:
            problems.append(f"no dead letter {', '.join(map(repr, unknown))} on this bus")
        if malformed:
            problems.append(f"dead letter {', '.join(map(repr, malformed))} is a malformed message, "
                            "not a dispatch, so it cannot be re-driven")
        raise NotFoundError("; ".join(problems) + "; nothing was re-driven",
                            hint="`skyweave dead-letters` lists the dead letters with their ids")
    return [by_id[i] for i in dict.fromkeys(ids)]
