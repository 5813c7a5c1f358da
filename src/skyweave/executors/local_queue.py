"""The waiting side of ``LocalExecutor``: a priority queue of dispatches and the batching rule.

Pure bookkeeping, no processes: which activities go to a child next, and how many at once.
Short activities travel in batches (up to ``BATCH_MAX`` of them, about ``BATCH_SECONDS`` of
work, under ``BATCH_BYTES``) so that one message carries many; an activity whose duration is
unknown or long travels alone and only to an idle child, so nothing waits behind it while
another child is free.  Durations are learnt per task version as outcomes arrive.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass

from skyweave.model.messages import DispatchActivity

BATCH_MAX = 32
"""Most activities sent to a child in one message."""
BATCH_SECONDS = 0.005
"""Estimated work per batch; an activity known to take longer (or not known yet) goes alone."""
BATCH_BYTES = 48 * 1024
"""A batch stays below this, so that sending it never blocks on a full pipe (a larger single
dispatch is sent only to an idle child, which is reading)."""


@dataclass(eq=False)
class Item:
    """One submitted activity, from submission to its final outcome."""

    dispatch: DispatchActivity
    seq: int
    """Submission order: the tie-breaker within a priority."""
    data: bytes
    """The dispatch, msgpack-encoded once at submission."""
    started_at: float = 0.0
    started_clock: float = 0.0
    reported: bool = False
    """Whether an ``ActivityStarted`` was forwarded for it."""

    @property
    def id(self) -> str:
        return self.dispatch.activity_id


def weight(item: Item, slots: int = 1 << 16) -> int:
    """Process slots an activity holds: its declared CPUs, rounded up (at least 1)."""
    return max(1, min(slots, math.ceil(item.dispatch.task.resources.cpus)))


class Durations:
    """Expected wall time per task version (an exponential moving average of what was seen)."""

    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}

    def of(self, item: Item) -> float:
        return self._seconds.get(item.dispatch.task.key, math.inf)

    def learn(self, item: Item, wall_s: float) -> None:
        key = item.dispatch.task.key
        previous = self._seconds.get(key)
        self._seconds[key] = wall_s if previous is None else 0.7 * previous + 0.3 * wall_s

    def short(self, items: Iterable[Item]) -> bool:
        """Whether every one of ``items`` is known to be short."""
        return all(self.of(item) <= BATCH_SECONDS for item in items)


class ReadyQueue:
    """Activities waiting for a child: highest priority first, then oldest."""

    def __init__(self, durations: Durations) -> None:
        self.durations = durations
        self._heap: list[tuple[int, int, str]] = []
        self._items: dict[str, Item] = {}

    def __len__(self) -> int:
        return len(self._items)

    def push(self, item: Item) -> None:
        """Queue an activity (again, after its child was stopped: it keeps its place)."""
        self._items[item.id] = item
        heapq.heappush(self._heap, (-item.dispatch.priority, item.seq, item.id))

    def remove(self, activity_id: str) -> Item | None:
        return self._items.pop(activity_id, None)

    def take(self, *, limit: int, idle: bool, capacity: int = 1) -> list[Item]:
        """The next batch for a child (``idle``: it has nothing queued), at most ``limit`` long.

        ``capacity`` is how many process slots are free, this child's included: an activity that
        declares ``resources.cpus = k`` goes only to an idle child when ``k`` slots are free (it
        holds them while it runs), and nothing of lower rank overtakes it meanwhile.
        """
        batch: list[Item] = []
        size = 0
        work = 0.0
        while self._heap and len(batch) < min(BATCH_MAX, limit):
            _, seq, activity_id = self._heap[0]
            item = self._items.get(activity_id)
            if item is None or item.seq != seq:
                heapq.heappop(self._heap)  # removed since: a stale heap entry
                continue
            if weight(item) > 1 and (batch or not idle or weight(item) > capacity):
                break  # a multi-CPU activity waits at the head until enough slots are free
            estimate = self.durations.of(item)
            alone = estimate > BATCH_SECONDS or len(item.data) > BATCH_BYTES or weight(item) > 1
            full = work + estimate > BATCH_SECONDS or size + len(item.data) > BATCH_BYTES
            if (batch and (alone or full)) or (alone and not idle):
                break
            heapq.heappop(self._heap)
            del self._items[activity_id]
            batch.append(item)
            size += len(item.data)
            work += estimate
            if alone:
                break
        return batch

    def wants_more(self, assigned: Iterable[Item], running: Item | None) -> bool:
        """Whether a child with these activities should get more now: it is idle, or all it has
        is short and what is left would run out before the next batch could arrive."""
        items = list(assigned)
        if not items:
            return True
        waiting = sum(self.durations.of(item) for item in items if item is not running)
        return waiting < BATCH_SECONDS / 2 and self.durations.short(items)
