"""The controller's ready queue: by priority, then age, with aging so nothing starves.

One FIFO bucket per priority level.  ``pop`` compares only the head of each bucket, using the
*effective* priority ``priority + waited_seconds / aging_s``, so a pick costs O(number of priority
levels), independent of how many activities wait.  Entries are invalidated lazily: a re-prioritised
activity is pushed again and its old entry is skipped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable


class ReadyQueue:
    def __init__(self, aging_s: float = 60.0) -> None:
        self.aging_s = aging_s
        self._buckets: dict[int, deque[tuple[int, str, float]]] = {}
        self._token: dict[str, int] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._token)

    def __contains__(self, activity_id: str) -> bool:
        return activity_id in self._token

    def push(self, activity_id: str, priority: int, queued_at: float) -> None:
        self._seq += 1
        self._token[activity_id] = self._seq
        self._buckets.setdefault(priority, deque()).append((self._seq, activity_id, queued_at))

    def unpop(self, activity_id: str, priority: int, queued_at: float) -> None:
        """Put back what ``pop`` just returned, at the head of its level (it keeps its place)."""
        self._seq += 1
        self._token[activity_id] = self._seq
        self._buckets.setdefault(priority, deque()).appendleft((self._seq, activity_id, queued_at))

    def discard(self, activity_id: str) -> None:
        self._token.pop(activity_id, None)

    def _head(self, bucket: deque[tuple[int, str, float]]) -> tuple[int, str, float] | None:
        while bucket:
            seq, activity_id, _ = bucket[0]
            if self._token.get(activity_id) == seq:
                return bucket[0]
            bucket.popleft()
        return None

    def pop(self, now: float, hold: Callable[[str], bool] | None = None) -> str | None:
        """The next activity to dispatch; ``hold(id)`` true sets an entry aside (paused run)."""
        while True:
            best: tuple[float, int, int] | None = None
            for priority in list(self._buckets):
                bucket = self._buckets[priority]
                head = self._head(bucket)
                if head is None:
                    del self._buckets[priority]
                    continue
                seq, _, queued_at = head
                effective = priority + max(0.0, now - queued_at) / self.aging_s
                if best is None or (effective, -seq) > (best[0], -best[1]):
                    best = (effective, seq, priority)
            if best is None:
                return None
            _, seq, priority = best
            _, activity_id, _ = self._buckets[priority].popleft()
            del self._token[activity_id]
            if hold is not None and hold(activity_id):
                continue
            return activity_id
