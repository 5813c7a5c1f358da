"""``ThreadExecutor``: runs activities on a thread pool inside this process (tests, tiny tasks).

Limits, because threads share one process:

* Only the ``ctx.log`` logger is captured into the activity log: redirecting ``sys.stdout`` or
  file descriptors 1/2 would capture (and mix up) every thread's output, so ``print()`` and
  subprocess output go wherever this process's output goes.
* A thread cannot be stopped.  An activity that runs past its timeout, or is cancelled while it
  runs, is *reported* failed at once (``skyweave.TaskTimeout`` / ``skyweave.Cancelled``) and its
  eventual outcome discarded, but its thread keeps running to the end and holds a pool thread.
  Use ``LocalExecutor`` when timeouts must really stop work.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from skyweave.executors.base import Capabilities, ExecutionEnv, Executor, Outcome
from skyweave.executors.boundary import HOST, Boundary
from skyweave.executors.resolve import preload, use_import_path
from skyweave.model.messages import ActivityFailed, ActivityStarted, DispatchActivity

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Entry:
    dispatch: DispatchActivity
    future: Future[None] | None = None
    started_at: float = 0.0
    started_clock: float = 0.0
    reported: bool = False
    abandoned: bool = False


class ThreadExecutor(Executor):
    """``threads`` in-process executor; see the module docstring for what it cannot do."""

    name = "threads"
    capabilities = Capabilities(stops_running_work=False, enforces_memory=False)

    def __init__(self, env: ExecutionEnv, *, threads: int = 4) -> None:
        self.env = env
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self._boundary: Boundary | None = None
        self._entries: dict[str, _Entry] = {}
        self._running: dict[str, _Entry] = {}
        """Entries whose thread has begun; written by pool threads, so read through copies."""
        self._finished: queue.SimpleQueue[tuple[_Entry, Outcome]] = queue.SimpleQueue()
        self._reports: list[Outcome] = []
        self._unlimited: set[str] = set()
        """Tasks already warned about: their ``memory_mb`` is not enforced here."""

    @property
    def slots(self) -> int:
        return self._threads

    @property
    def active(self) -> int:
        return len(self._entries)

    def start(self) -> None:
        if self._pool is None:
            use_import_path(self.env.import_path)
            for failure in preload(self.env.preload):
                log.warning("preload of %s (activities that need it will report it)", failure)
            self._boundary = Boundary(self.env, exclusive_process=False)
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="skyweave-activity")

    def submit(self, batch: Sequence[DispatchActivity]) -> None:
        self.start()
        assert self._pool is not None
        for dispatch in batch:
            if dispatch.activity_id in self._entries:
                continue
            task = dispatch.task
            if task.resources.memory_mb is not None and task.name not in self._unlimited:
                self._unlimited.add(task.name)
                log.warning("task %r declares memory_mb=%d, which the threads executor does not enforce "
                            "(use the local executor to enforce it)", task.name, task.resources.memory_mb)
            entry = _Entry(dispatch)
            self._entries[dispatch.activity_id] = entry
            entry.future = self._pool.submit(self._run, entry)

    def _run(self, entry: _Entry) -> None:
        assert self._boundary is not None
        entry.started_clock = time.monotonic()
        entry.started_at = time.time()
        self._running[entry.dispatch.activity_id] = entry
        self._finished.put((entry, self._boundary.execute(entry.dispatch)))

    def collect(self, timeout: float) -> list[Outcome]:
        out, self._reports = self._reports, []
        deadline = time.monotonic() + timeout
        while True:
            wait = 0.0 if out else deadline - time.monotonic()
            expiry = self._next_expiry()
            if expiry is not None:
                wait = min(wait, expiry - time.monotonic())
            try:
                item: tuple[_Entry, Outcome] | None = self._finished.get(timeout=max(0.0, wait))
            except queue.Empty:
                item = None
            if item is not None:
                self._take(item, out)
                self._drain(out)
            out.extend(self._expire())
            if out or time.monotonic() >= deadline:
                break
        # Pool threads keep going while we look: an activity seen running now may have let one
        # finish since the drain above (with one thread, the next start implies the last end).
        # Drain again after the look, so a start is never reported without an end that preceded it.
        starting = [e for e in list(self._running.values()) if not e.reported and not e.abandoned]
        self._drain(out)
        for entry in starting:
            entry.reported = True
            out.append(self._started(entry))
        return out

    def _take(self, item: tuple[_Entry, Outcome], out: list[Outcome]) -> None:
        entry, outcome = item
        self._running.pop(entry.dispatch.activity_id, None)
        if not entry.abandoned:
            del self._entries[entry.dispatch.activity_id]
            out.append(outcome)

    def _drain(self, out: list[Outcome]) -> None:
        """Take every outcome already finished, without waiting."""
        while True:
            try:
                item = self._finished.get_nowait()
            except queue.Empty:
                return
            self._take(item, out)

    def _started(self, entry: _Entry) -> ActivityStarted:
        d = entry.dispatch
        return ActivityStarted(
            activity_id=d.activity_id,
            attempt=d.attempt,
            worker=self.env.worker,
            host=HOST,
            at=entry.started_at,
        )

    def _next_expiry(self) -> float | None:
        expiries = [
            e.started_clock + e.dispatch.task.timeout_s
            for e in list(self._running.values())
            if e.dispatch.task.timeout_s is not None and not e.abandoned
        ]
        return min(expiries, default=None)

    def _expire(self) -> list[Outcome]:
        now = time.monotonic()
        expired = [
            e
            for e in list(self._running.values())
            if e.dispatch.task.timeout_s is not None
            and not e.abandoned
            and now - e.started_clock > e.dispatch.task.timeout_s
        ]
        reports: list[Outcome] = []
        for entry in expired:
            timeout = entry.dispatch.task.timeout_s
            reports.append(
                self._abandon(
                    entry,
                    "skyweave.TaskTimeout",
                    f"task {entry.dispatch.task.name!r} exceeded its timeout of {timeout:g} s "
                    "(its thread cannot be stopped and runs on; use the local executor to stop it)",
                    retryable=True,
                )
            )
        return reports

    def _abandon(self, entry: _Entry, error_type: str, message: str, *, retryable: bool) -> ActivityFailed:
        entry.abandoned = True
        d = entry.dispatch
        del self._entries[d.activity_id]
        return ActivityFailed(
            activity_id=d.activity_id,
            attempt=d.attempt,
            worker=self.env.worker,
            error_type=error_type,
            message=message,
            retryable=retryable,
            host=HOST,
            started_at=entry.started_at,
            at=time.time(),
        )

    def cancel(self, activity_ids: Sequence[str]) -> None:
        for activity_id in activity_ids:
            entry = self._entries.get(activity_id)
            if entry is None:
                continue
            running = not (entry.future is not None and entry.future.cancel())
            message = f"activity {activity_id} was cancelled" + (
                " (its thread cannot be stopped and runs on)" if running else " before it started"
            )
            self._reports.append(self._abandon(entry, "skyweave.Cancelled", message, retryable=False))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
