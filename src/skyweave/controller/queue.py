"""The controller's ready queue: by priority, then age, with aging so nothing starves.

One heap per priority level, ordered by the time an activity was queued (then by arrival).
``pop`` compares only the head of each level, using the *effective* priority
``priority + waited_seconds / aging_s``, so a pick costs O(levels + log n), independent of how
many activities wait.  Entries are invalidated lazily: a re-prioritised or resumed activity is
pushed again (keeping its original queue time, hence its place by age) and its old entry skipped.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable


class ReadyQueue:
    def __init__(self, aging_s: float = 60.0) -> None:
        self.aging_s = aging_s
        self._levels: dict[int, list[tuple[float, int, str]]] = {}
        self._token: dict[str, int] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._token)

    def __contains__(self, activity_id: str) -> bool:
        return activity_id in self._token

    def push(self, activity_id: str, priority: int, queued_at: float, *, first: bool = False) -> None:
        """Queue an activity; ``first``: ahead of every other queued at the same time (work that
        was already out once, lost with its worker, goes before the rest of its fan-out)."""
        self._seq += 1
        seq = -self._seq if first else self._seq
        self._token[activity_id] = seq
        heapq.heappush(self._levels.setdefault(priority, []), (queued_at, seq, activity_id))

    def unpop(self, activity_id: str, priority: int, queued_at: float) -> None:
        """Put back what ``pop`` just returned (it keeps its place: the levels are ordered by age)."""
        self.push(activity_id, priority, queued_at)

    def discard(self, activity_id: str) -> None:
        self._token.pop(activity_id, None)

    def _head(self, level: list[tuple[float, int, str]]) -> tuple[float, int, str] | None:
        while level:
            _, seq, activity_id = level[0]
            if self._token.get(activity_id) == seq:
                return level[0]
            heapq.heappop(level)
        return None

    def pop(self, now: float, hold: Callable[[str], bool] | None = None) -> str | None:
        """The next activity to dispatch; ``hold(id)`` true sets an entry aside (paused run)."""
        while True:
            best: tuple[float, float, int, int] | None = None
            for priority in list(self._levels):
                level = self._levels[priority]
                head = self._head(level)
                if head is None:
                    del self._levels[priority]
                    continue
                queued_at, seq, _ = head
                effective = priority + max(0.0, now - queued_at) / self.aging_s
                key = (effective, -queued_at, -seq, priority)
                if best is None or key > best:
                    best = key
            if best is None:
                return None
            _, activity_id = heapq.heappop(self._levels[best[3]])[1:]
            del self._token[activity_id]
            if hold is not None and hold(activity_id):
                continue
            return activity_id
