"""``LocalExecutor``: the default executor, a pool of child processes on this host.

The parent (this object, driven by one thread through ``submit``/``collect``) keeps a priority
queue of dispatches and a short queue per child.  Work goes out in batches sized by how long the
task has taken so far: many short activities share one message (up to ``BATCH_MAX``, about
``BATCH_SECONDS`` of work), while an activity of unknown or long duration goes alone, so that
nobody waits behind it when another child frees up.  Per-child queues are refilled as outcomes
arrive, before they run dry.

Children are started with ``forkserver`` (``spawn`` where that does not exist): the parent has
threads, and forking a threaded process is unsafe.  A child that runs past an activity's timeout,
or whose running activity is cancelled, is stopped (SIGTERM to its process group, SIGKILL
``KILL_GRACE_S`` later) and replaced; its other queued activities go back to the queue.  A child
that dies on its own (segfault, ``os._exit``, OOM killer) is reported against the activity it
was running and replaced.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import multiprocessing
import os
import selectors
import signal
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import msgspec

from skyweave.aspects.builtin import activity_log_path
from skyweave.executors.base import ExecutionEnv, Executor, Outcome
from skyweave.executors.boundary import HOST
from skyweave.executors.local_child import Batch, Cancel, Started, Stop, child_main, encoder, from_child
from skyweave.model.messages import ActivityFailed, ActivityStarted, DispatchActivity
from skyweave.storage.local import file_uri

BATCH_MAX = 32
"""Most activities sent to a child in one message."""
BATCH_SECONDS = 0.005
"""Estimated work per batch; a task known to take longer than this is sent alone."""
BATCH_BYTES = 48 * 1024
"""A batch stays below this (a larger single dispatch waits for an idle child), so sends never block."""
KILL_GRACE_S = 2.0
STARTED_GRACE_S = 0.05
"""``collect`` returns early to report an activity that has been running this long."""


@dataclass(eq=False)
class _Item:
    dispatch: DispatchActivity
    seq: int
    data: bytes
    started_at: float = 0.0
    started_clock: float = 0.0
    reported: bool = False

    @property
    def id(self) -> str:
        return self.dispatch.activity_id


@dataclass(eq=False)
class _Child:
    slot: int
    process: BaseProcess
    conn: Connection
    assigned: dict[str, _Item] = field(default_factory=dict)
    """Sent to this child and without an outcome yet, in the order the child runs them."""
    running: _Item | None = None
    unacked: set[str] = field(default_factory=set)
    """Ids of the last batch sent, until one of them starts (the child has read it)."""
    cancelled: set[str] = field(default_factory=set)
    """Cancelled while sent to this child: if one of them starts anyway, the child is replaced."""


@dataclass(eq=False)
class _Dying:
    process: BaseProcess
    conn: Connection
    kill_at: float


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["skyweave.executors.local_child"])
        return context
    return multiprocessing.get_context("spawn")


def _signal(process: BaseProcess, signum: int) -> None:
    """Signal a child's process group (the child and the commands it started)."""
    if process.pid is None:
        return
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):  # not (yet) leading its own group
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signum)


def _shutdown(children: list[_Child], dying: list[_Dying]) -> None:
    for child in children:
        with contextlib.suppress(OSError):
            child.conn.send_bytes(encoder.encode(Stop()))
    for child in children:
        child.process.join(1.0)
        if child.process.is_alive():
            _signal(child.process, signal.SIGKILL)
            child.process.join(1.0)
        child.conn.close()
    for corpse in dying:
        _signal(corpse.process, signal.SIGKILL)
        corpse.process.join(1.0)
        corpse.conn.close()
    children.clear()
    dying.clear()


class LocalExecutor(Executor):
    """``local``: ``processes`` child processes (default: one per CPU)."""

    name = "local"

    def __init__(self, env: ExecutionEnv, *, processes: int | None = None) -> None:
        self.env = env
        self._size = processes or os.cpu_count() or 1
        self._context: Any = _context()
        self._children: list[_Child] = []
        self._dying: list[_Dying] = []
        self._selector = selectors.DefaultSelector()
        self._queue: list[tuple[int, int, str]] = []
        self._queued: dict[str, _Item] = {}
        self._active: dict[str, _Item] = {}
        self._reports: list[Outcome] = []
        self._estimates: dict[str, float] = {}
        self._seq = 0
        self._finalizer = weakref.finalize(self, _shutdown, self._children, self._dying)

    @property
    def slots(self) -> int:
        return self._size

    @property
    def active(self) -> int:
        return len(self._active)

    def start(self) -> None:
        while len(self._children) < self._size:
            self._children.append(self._spawn(len(self._children)))

    def _spawn(self, slot: int) -> _Child:
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=child_main, args=(child_end, self.env), name=f"skyweave-worker-{slot}"
        )
        process.start()
        child_end.close()
        child = _Child(slot, process, parent_end)
        self._selector.register(parent_end, selectors.EVENT_READ, child)
        self._selector.register(process.sentinel, selectors.EVENT_READ, child)
        return child

    def submit(self, batch: Sequence[DispatchActivity]) -> None:
        self.start()
        for dispatch in batch:
            if dispatch.activity_id in self._active:
                continue
            self._seq += 1
            item = _Item(dispatch, self._seq, encoder.encode(dispatch))
            self._enqueue(item)
            self._active[item.id] = item
        self._fill()

    def _enqueue(self, item: _Item) -> None:
        self._queued[item.id] = item
        heapq.heappush(self._queue, (-item.dispatch.priority, item.seq, item.id))

    # ------------------------------------------------------------------------------ scheduling

    def _estimate(self, item: _Item) -> float:
        return self._estimates.get(item.dispatch.task.key, math.inf)

    def _fill(self) -> None:
        """Send work to children whose queue is about to run dry."""
        if not self._queued:
            return
        ready = [c for c in self._children if not c.unacked and self._wants_work(c)]
        if not ready:
            return
        share = max(1, math.ceil(len(self._queued) / len(ready)))
        for child in ready:
            batch: list[_Item] = []
            size = 0
            work = 0.0
            while self._queue and len(batch) < min(BATCH_MAX, share):
                _, seq, activity_id = self._queue[0]
                item = self._queued.get(activity_id)
                if item is None or item.seq != seq:
                    heapq.heappop(self._queue)  # cancelled or requeued under a newer entry
                    continue
                estimate = self._estimate(item)
                alone = estimate > BATCH_SECONDS or len(item.data) > BATCH_BYTES
                full = work + estimate > BATCH_SECONDS or size + len(item.data) > BATCH_BYTES
                if batch and (alone or full):
                    break
                if alone and child.assigned:
                    break  # a long (or unknown, or huge) activity waits for an idle child
                heapq.heappop(self._queue)
                del self._queued[activity_id]
                batch.append(item)
                size += len(item.data)
                work += estimate
                if alone:
                    break
            if batch:
                self._send(child, batch)
            if not self._queued:
                return

    def _wants_work(self, child: _Child) -> bool:
        waiting = [item for item in child.assigned.values() if item is not child.running]
        if not child.assigned:
            return True
        remaining = sum(self._estimate(item) for item in waiting)
        return remaining < BATCH_SECONDS / 2 and all(
            self._estimate(item) <= BATCH_SECONDS for item in child.assigned.values()
        )

    def _send(self, child: _Child, batch: list[_Item]) -> None:
        for item in batch:
            child.assigned[item.id] = item
        child.unacked = {item.id for item in batch}
        with contextlib.suppress(OSError):  # if the child died, its sentinel reports it
            child.conn.send_bytes(encoder.encode(Batch([msgspec.Raw(item.data) for item in batch])))

    # ------------------------------------------------------------------------------ collecting

    def collect(self, timeout: float) -> list[Outcome]:
        out, self._reports = self._reports, []
        deadline = time.monotonic() + timeout
        while True:
            self._fill()
            now = time.monotonic()
            wait = 0.0 if out else deadline - now
            wake = self._next_wake()
            if wake is not None:
                wait = min(wait, wake - now)
            for key, _ in self._selector.select(max(0.0, wait)):
                child: _Child = key.data
                if child in self._children:
                    self._drain(child, out)
            self._check_clocks(out)
            now = time.monotonic()
            if out or now >= deadline or self._started_due(now):
                break
        self._fill()
        for child in self._children:
            item = child.running
            if item is not None and not item.reported:
                item.reported = True
                out.append(
                    ActivityStarted(
                        activity_id=item.id,
                        attempt=item.dispatch.attempt,
                        worker=self.env.worker,
                        host=HOST,
                        pid=child.process.pid or 0,
                        at=item.started_at,
                    )
                )
        return out

    def _drain(self, child: _Child, out: list[Outcome]) -> None:
        """Handle everything the child has sent; then, if it has died, report and replace it."""
        open_ = self._read(child, out)
        if child not in self._children:
            return
        if not open_ or not child.process.is_alive():
            self._read(child, out)  # what it wrote just before it died
            if child not in self._children:
                return
            child.process.join(5.0)
            if child.process.is_alive():
                _signal(child.process, signal.SIGKILL)
                child.process.join()
            self._on_death(child, out)

    def _read(self, child: _Child, out: list[Outcome]) -> bool:
        """Handle the messages waiting from a child; ``False`` once its pipe is closed."""
        try:
            while child.conn.poll():
                message = from_child.decode(child.conn.recv_bytes())
                if isinstance(message, Started):
                    self._on_started(child, message)
                else:
                    item = child.assigned.pop(message.activity_id, None)
                    if child.running is item:
                        child.running = None
                    if item is not None and item.id in self._active:
                        del self._active[item.id]
                        self._learn(item, message.usage.wall_s)
                        out.append(message)
                if child not in self._children:
                    return True  # replaced while handling a message (a cancelled activity started)
        except (EOFError, OSError):
            return False
        return True

    def _on_started(self, child: _Child, message: Started) -> None:
        child.unacked = set()
        item = child.assigned.get(message.activity_id)
        if item is None:
            if message.activity_id in child.cancelled:  # it had started before the cancel arrived
                self._replace(child)
            return
        item.started_at = message.at
        item.started_clock = time.monotonic()
        child.running = item

    def _learn(self, item: _Item, wall_s: float) -> None:
        key = item.dispatch.task.key
        previous = self._estimates.get(key)
        self._estimates[key] = wall_s if previous is None else 0.7 * previous + 0.3 * wall_s

    def _next_wake(self) -> float | None:
        times = [corpse.kill_at for corpse in self._dying]
        for child in self._children:
            item = child.running
            if item is None:
                continue
            if item.dispatch.task.timeout_s is not None:
                times.append(item.started_clock + item.dispatch.task.timeout_s)
            if not item.reported:
                times.append(item.started_clock + STARTED_GRACE_S)
        return min(times, default=None)

    def _started_due(self, now: float) -> bool:
        return any(
            c.running is not None
            and not c.running.reported
            and now - c.running.started_clock >= STARTED_GRACE_S
            for c in self._children
        )

    def _check_clocks(self, out: list[Outcome]) -> None:
        now = time.monotonic()
        for child in list(self._children):
            item = child.running
            timeout = item.dispatch.task.timeout_s if item is not None else None
            if item is not None and timeout is not None and now - item.started_clock > timeout:
                message = f"task {item.dispatch.task.name!r} exceeded its timeout of {timeout:g} s; stopped"
                out.append(self._failure(item, child, "skyweave.TaskTimeout", message, retryable=True))
                self._replace(child)
        for corpse in list(self._dying):
            if not corpse.process.is_alive():
                corpse.process.join()
                corpse.conn.close()
                self._dying.remove(corpse)
            elif now >= corpse.kill_at:
                _signal(corpse.process, signal.SIGKILL)
                corpse.kill_at = now + 0.1  # look again shortly

    # ------------------------------------------------------------------------------ failures

    def _failure(
        self, item: _Item, child: _Child, error_type: str, message: str, *, retryable: bool
    ) -> ActivityFailed:
        """Report ``item`` failed (it leaves the active set)."""
        self._active.pop(item.id, None)
        child.assigned.pop(item.id, None)
        if child.running is item:
            child.running = None
        log_path = activity_log_path(self.env.log_root, item.id, item.dispatch.attempt)
        return ActivityFailed(
            activity_id=item.id,
            attempt=item.dispatch.attempt,
            worker=self.env.worker,
            error_type=error_type,
            message=message,
            retryable=retryable,
            log_uri=file_uri(log_path) if log_path.exists() else "",
            host=HOST,
            pid=child.process.pid or 0,
            started_at=item.started_at,
            at=time.time(),
        )

    def _detach(self, child: _Child) -> None:
        """Forget a child: requeue what it had not started, free its slot for a new child."""
        for fileobj in (child.conn, child.process.sentinel):
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(fileobj)
        for item in child.assigned.values():
            if item is not child.running and item.id in self._active:
                self._enqueue(item)
        child.assigned.clear()
        child.running = None
        self._children[self._children.index(child)] = self._spawn(child.slot)

    def _replace(self, child: _Child) -> None:
        """Stop a child that is still running something (timeout, cancel) and replace it."""
        _signal(child.process, signal.SIGTERM)
        self._dying.append(_Dying(child.process, child.conn, time.monotonic() + KILL_GRACE_S))
        self._detach(child)

    def _on_death(self, child: _Child, out: list[Outcome]) -> None:
        code = child.process.exitcode
        if code is not None and code < 0:
            how = f"was killed by signal {signal.Signals(-code).name}"
            if code == -signal.SIGKILL:
                how += " (out of memory? the kernel's OOM killer sends SIGKILL)"
        else:
            how = f"exited with code {code}"
        item = child.running
        if item is not None and item.id in self._active:
            out.append(
                self._failure(
                    item, child, "skyweave.WorkerDied",
                    f"worker process {child.process.pid} {how} while running task "
                    f"{item.dispatch.task.name!r}",
                    retryable=True,
                )
            )
        self._detach(child)
        child.conn.close()

    def cancel(self, activity_ids: Sequence[str]) -> None:
        for activity_id in activity_ids:
            item = self._active.get(activity_id)
            if item is None:
                continue
            message = f"activity {activity_id} was cancelled"
            if self._queued.pop(activity_id, None) is not None:
                del self._active[activity_id]
                self._reports.append(self._cancelled_report(item))
                continue
            child = next(c for c in self._children if activity_id in c.assigned)
            running = child.running is item
            self._reports.append(self._failure(item, child, "skyweave.Cancelled", message, retryable=False))
            if running:
                self._replace(child)
                continue
            child.cancelled.add(activity_id)
            child.unacked.discard(activity_id)
            with contextlib.suppress(OSError):  # if the child died, its sentinel reports it
                child.conn.send_bytes(encoder.encode(Cancel([activity_id])))

    def _cancelled_report(self, item: _Item) -> ActivityFailed:
        return ActivityFailed(
            activity_id=item.id,
            attempt=item.dispatch.attempt,
            worker=self.env.worker,
            error_type="skyweave.Cancelled",
            message=f"activity {item.id} was cancelled before it started",
            retryable=False,
            host=HOST,
            at=time.time(),
        )

    def close(self) -> None:
        self._finalizer()
        self._selector.close()
