"""The bus port: a dispatch queue (priority, leases, acknowledgements) and an event log.

* **Dispatches** go from the controller to workers.  A worker *claims* a batch (highest priority
  first, oldest first within a priority) under a lease; it *acks* each when its outcome event is
  published, and *extends* leases while it works.  An expired lease makes the message claimable
  again, so a dead worker loses nothing.  Enqueue is idempotent by message id.
* **Events** go from workers and clients to the controller (consumer group ``controller``) and to
  listeners (one group each).  Delivery is at-least-once: a group reads after its committed offset
  and commits once it has durably handled what it read.  Events every *known* group has committed
  may be dropped; ``CONTROLLER_GROUP`` is known from the moment a bus is opened (so listeners
  cannot trim events the controller has not seen yet), other groups from their first ``read``.

Implementations: ``memory://`` (in-process), ``sqlite:///path`` (several processes on one host).
Both pass ``tests/unit/bus/test_contract.py``; a new backend joins that suite with one parameter
and ``open_bus`` with ``register_backend``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import msgspec

CONTROLLER_GROUP = "controller"
"""The consumer group of the controller; events are kept until it has committed them."""


class Claimed(msgspec.Struct, frozen=True):
    id: str
    data: bytes
    deliveries: int
    """How many times this message has been claimed (1 on first delivery)."""


class Delivered(msgspec.Struct, frozen=True):
    offset: int
    data: bytes


class Bus(ABC):
    url: str

    # -- dispatch queue ---------------------------------------------------------------------------
    @abstractmethod
    def enqueue(self, messages: Sequence[tuple[str, int, bytes]]) -> None:
        """Add ``(id, priority, data)`` dispatches; an id already present is ignored."""

    @abstractmethod
    def claim(self, worker: str, max_n: int, lease_s: float) -> list[Claimed]:
        """Up to ``max_n`` claimable dispatches, highest priority first, then oldest."""

    @abstractmethod
    def ack(self, ids: Sequence[str]) -> None:
        """Remove finished dispatches."""

    @abstractmethod
    def extend(self, ids: Sequence[str], lease_s: float) -> None:
        """Renew the lease of dispatches still being worked on."""

    @abstractmethod
    def withdraw(self, ids: Sequence[str]) -> int:
        """Remove dispatches not under a live lease (cancel); returns how many were removed.

        Never-claimed dispatches and those whose lease expired go; ones a worker holds stay.
        """

    @abstractmethod
    def reprioritize(self, ids: Sequence[str], priority: int) -> int:
        """Change the priority of dispatches not yet taken by a worker (they keep their age);
        returns how many changed."""

    @abstractmethod
    def revoke(self, ids: Sequence[str]) -> None:
        """Ask whoever holds these dispatches to stop them (cancel of running work); the marks go
        away when the dispatches are acknowledged."""

    @abstractmethod
    def revoked(self, ids: Sequence[str]) -> list[str]:
        """Which of these dispatches were revoked (a worker asks for the ones it runs)."""

    @abstractmethod
    def queued(self) -> int:
        """Dispatches not yet acknowledged (claimed or not)."""

    # -- events ---------------------------------------------------------------------------------
    @abstractmethod
    def publish(self, messages: Sequence[bytes]) -> None:
        """Append events to the log."""

    @abstractmethod
    def read(self, group: str, max_n: int) -> list[Delivered]:
        """Events after ``group``'s committed offset (at most ``max_n``); does not commit."""

    @abstractmethod
    def commit(self, group: str, offset: int) -> None:
        """Mark every event up to ``offset`` handled by ``group`` (never moves backwards)."""

    @abstractmethod
    def dead_letter(self, data: bytes, error: str) -> None:
        """Keep a malformed message aside with the reason; it is never applied."""

    @abstractmethod
    def dead_letters(self) -> list[tuple[bytes, str]]: ...

    # -- waiting ----------------------------------------------------------------------------------
    @abstractmethod
    def wait(self, timeout: float) -> None:
        """Block until something may have been enqueued or published, or ``timeout`` passes."""

    @abstractmethod
    def close(self) -> None: ...
