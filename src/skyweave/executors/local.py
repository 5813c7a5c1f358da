"""``LocalExecutor``: the default executor, a pool of child processes on this host.

The parent (this object, driven by one thread through ``submit``/``collect``) keeps the waiting
activities in a ``ReadyQueue`` (priority, then age) and gives each child a short queue, refilled
as outcomes arrive and before it runs dry: short activities go in batches, long or unknown ones
alone and only to an idle child (see ``local_queue``).  Each child reports when it starts an
activity, then its outcome; an ``ActivityStarted`` is forwarded only for an activity still running
when ``collect`` returns, since a finished one's outcome carries its start time.

Children are started with ``forkserver`` (``spawn`` where that does not exist): the parent has
threads, and forking a threaded process is unsafe.  A child that runs past an activity's timeout,
or whose running activity is cancelled, is stopped (SIGTERM to its process group, SIGKILL
``KILL_GRACE_S`` later) and replaced; what it had not started goes back to the queue.  A child
that dies on its own (segfault, ``os._exit``, the OOM killer) is reported against the activity it
was running and replaced.

``wake`` (thread-safe) makes a ``collect`` that is waiting return at once: the worker has it
called when a dispatch is enqueued while it waits for running work with a slot free, so new work
is taken at once instead of when the running activities next report (up to 50 ms later).

``resources.memory_mb`` is enforced the same way: every ``MEMORY_CHECK_S`` the resident memory of
the child running such an activity (its whole process tree: the interpreter, the imported
libraries, and any command it started) is measured, and a child above the limit is stopped and
replaced; the activity fails with ``skyweave.MemoryLimit`` (not retried: the same limit would
stop it again) and a message saying how much it used.
"""

from __future__ import annotations

import contextlib
import math
import os
import selectors
import signal
import time
import weakref
from collections.abc import Sequence
from multiprocessing.process import BaseProcess

import msgspec

from skyweave.aspects.builtin import activity_log_path, capture_scratch_path, salvage_capture
from skyweave.errors import SkyweaveError
from skyweave.executors.base import Capabilities, ExecutionEnv, Executor, Outcome
from skyweave.executors.boundary import HOST
from skyweave.executors.limits import MEMORY_CHECK_S, over_memory, tree_rss
from skyweave.executors.local_child import (
    Batch,
    Cancel,
    Child,
    Ready,
    Started,
    Stopping,
    child_main,
    encoder,
    from_child,
    in_worker_process,
    parent_main_hidden,
    shutdown,
    signal_group,
    start_context,
)
from skyweave.executors.local_queue import Durations, Item, ReadyQueue, weight
from skyweave.model.messages import ActivityFailed, ActivityStarted, DispatchActivity
from skyweave.storage.local import file_uri

KILL_GRACE_S = 2.0
"""Between SIGTERM and SIGKILL when a child is stopped."""
STARTED_GRACE_S = 0.05
"""``collect`` returns early to report an activity that has been running this long."""
MAX_STARTUP_DEATHS = 3
"""Children dying before they start anything, in a row, that make the executor give up."""
_WAKE = object()
"""The selector's data for the read end of the ``wake`` pipe."""
PRELOAD_WAIT_S = 300.0
"""``start`` waits at most this long for new children to import ``ExecutionEnv.preload``."""


class LocalExecutor(Executor):
    """``local``: ``processes`` child processes (default: one per CPU)."""

    name = "local"
    capabilities = Capabilities(stops_running_work=True, enforces_memory=True)

    def __init__(self, env: ExecutionEnv, *, processes: int | None = None) -> None:
        self.env = env
        self._size = processes or os.cpu_count() or 1
        self._context = start_context()
        self._children: list[Child] = []
        self._dying: list[Stopping] = []
        self._memory_checked = 0.0
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        self._close_wake = weakref.finalize(self, _close_fds, self._wake_r, self._wake_w)
        self._durations = Durations()
        self._ready = ReadyQueue(self._durations)
        self._active: dict[str, Item] = {}
        self._reports: list[Outcome] = []
        self._seq = 0
        self._startup_deaths = 0
        self._broken = ""
        """Why children cannot be started, once they keep dying as they start."""
        self._finalizer = weakref.finalize(self, shutdown, self._children, self._dying, env.log_root)

    @property
    def slots(self) -> int:
        return self._size

    @property
    def active(self) -> int:
        return len(self._active)

    def start(self) -> None:
        if in_worker_process():
            raise SkyweaveError(
                "a LocalExecutor cannot start inside a skyweave worker process",
                hint="the file that defines your tasks starts a run when it is imported: "
                "put that code under `if __name__ == \"__main__\":`",
            )
        spawned = False
        while len(self._children) < self._size and not self._broken:
            self._children.append(self._spawn(len(self._children)))
            spawned = True
        if spawned and self.env.preload:
            self._wait_ready(PRELOAD_WAIT_S)

    def _wait_ready(self, timeout: float) -> None:
        """Wait until every child has imported the preload modules (start-up cost stays out of the
        first activities); a child that dies meanwhile is replaced as usual."""
        deadline = time.monotonic() + timeout
        while any(not child.ready for child in self._children):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            for key, _ in self._selector.select(left):
                if key.data is _WAKE:
                    self._woken()
                elif key.data in self._children:
                    self._drain(key.data, self._reports)
            self._check_clocks(self._reports)

    def _spawn(self, slot: int) -> Child:
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=child_main, args=(child_end, self.env), name=f"skyweave-worker-{slot}"
        )
        with parent_main_hidden():
            process.start()
        child_end.close()
        child = Child(slot, process, parent_end)
        self._selector.register(parent_end, selectors.EVENT_READ, child)
        self._selector.register(process.sentinel, selectors.EVENT_READ, child)
        return child

    def submit(self, batch: Sequence[DispatchActivity]) -> None:
        self.start()
        for dispatch in batch:
            if dispatch.activity_id in self._active:
                continue
            self._seq += 1
            item = Item(dispatch, self._seq, encoder.encode(dispatch))
            self._active[item.id] = item
            if self._broken:
                self._reports.append(self._unstartable(item))
            else:
                self._ready.push(item)
        self._fill()

    def _fill(self) -> None:
        """Send work to the children whose queue is about to run dry."""
        if not self._ready:
            return
        wants = self._ready.wants_more
        ready = [c for c in self._children if not c.unacked and wants(c.assigned.values(), c.running)]
        share = math.ceil(len(self._ready) / max(1, len(ready)))
        slots = len(self._children)
        # slots held beyond their own child by running multi-CPU activities
        held = sum(weight(i, slots) - 1 for c in self._children for i in c.assigned.values())
        free = sum(1 for c in self._children if not c.assigned) - held
        for child in ready:
            idle = not child.assigned
            if idle and free <= 0:
                continue  # this idle child's slot is lent to a multi-CPU activity
            batch = self._ready.take(limit=share, idle=idle, capacity=free if idle else 0)
            if idle and batch:
                free -= max(weight(i, slots) for i in batch)
            if batch:
                for item in batch:
                    child.assigned[item.id] = item
                child.unacked = {item.id for item in batch}
                child.send(Batch([msgspec.Raw(item.data) for item in batch]))
            if not self._ready:
                return

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
            woken = False
            for key, _ in self._selector.select(max(0.0, wait)):
                if key.data is _WAKE:
                    woken = self._woken()
                elif key.data in self._children:  # else a stopped child exiting: _check_clocks reaps it
                    self._drain(key.data, out)
            self._check_clocks(out)
            now = time.monotonic()
            if out or woken or now >= deadline or self._started_due(now):
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

    def wake(self) -> None:
        """Make a waiting (or the next) ``collect`` return now; callable from any thread."""
        with contextlib.suppress(OSError):  # full (a wake is pending anyway) or closed
            os.write(self._wake_w, b"w")

    def _woken(self) -> bool:
        with contextlib.suppress(OSError):
            while os.read(self._wake_r, 512):
                pass
        return True

    def _drain(self, child: Child, out: list[Outcome]) -> None:
        """Handle what the child has sent; then, if it has died, report and replace it."""
        read = self._read(child, out)
        if child not in self._children or (read is not None and child.process.is_alive()):
            return
        while read and child in self._children:
            read = self._read(child, out)  # what it wrote just before it died
        if child in self._children:
            child.process.join(5.0)
            if child.process.is_alive():
                signal_group(child.process, signal.SIGKILL)
                child.process.join()
            self._on_death(child, out)

    def _read(self, child: Child, out: list[Outcome]) -> int | None:
        """Handle the messages waiting from a child: how many (0: none), ``None`` once its pipe
        is closed."""
        try:
            frames = child.frames.read()
        except BlockingIOError:
            return 0
        except (EOFError, OSError):
            return None
        for data in frames:
            message = from_child.decode(data)
            if isinstance(message, Ready):
                child.ready = True
                continue
            if isinstance(message, Started):
                self._on_started(child, message)
                if child not in self._children:
                    return len(frames)  # replaced: a cancelled activity had started
                continue
            item = child.assigned.pop(message.activity_id, None)
            if child.running is item:
                child.running = None
            if item is not None and self._active.pop(item.id, None) is not None:
                self._durations.learn(item, message.usage.wall_s)
                out.append(message)
        return len(frames)

    def _on_started(self, child: Child, message: Started) -> None:
        child.unacked = set()
        child.started_any = True
        self._startup_deaths = 0
        item = child.assigned.get(message.activity_id)
        if item is None:
            if message.activity_id in child.cancelled:  # it had started before the cancel arrived
                self._replace(child)
            return
        item.started_at = message.at
        item.started_clock = time.monotonic()
        child.running = item

    def _next_wake(self) -> float | None:
        times = [corpse.kill_at for corpse in self._dying]
        for child in self._children:
            item = child.running
            if item is None:
                continue
            if item.dispatch.task.resources.memory_mb is not None:
                times.append(self._memory_checked + MEMORY_CHECK_S)
            if item.dispatch.task.timeout_s is not None:
                times.append(item.started_clock + item.dispatch.task.timeout_s)
            if not item.reported:
                times.append(item.started_clock + STARTED_GRACE_S)
        return min(times, default=None)

    def _started_due(self, now: float) -> bool:
        running = [c.running for c in self._children if c.running is not None]
        return any(not item.reported and now - item.started_clock >= STARTED_GRACE_S for item in running)

    def _check_clocks(self, out: list[Outcome]) -> None:
        now = time.monotonic()
        for child in list(self._children):
            item = child.running
            timeout = item.dispatch.task.timeout_s if item is not None else None
            if item is not None and timeout is not None and now - item.started_clock > timeout:
                message = f"task {item.dispatch.task.name!r} exceeded its timeout of {timeout:g} s; stopped"
                failure = self._failure(item, child, "skyweave.TaskTimeout", message, retryable=True)
                self._replace(child, failure)
        if now - self._memory_checked >= MEMORY_CHECK_S:
            self._memory_checked = now
            self._check_memory()
        for corpse in list(self._dying):
            if not corpse.process.is_alive():
                corpse.process.join()
                corpse.conn.close()
                self._dying.remove(corpse)
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(corpse.process.sentinel)
                if corpse.failure is not None:
                    out.append(self._with_log(corpse.failure, corpse.process))
            elif now >= corpse.kill_at:
                signal_group(corpse.process, signal.SIGKILL)
                corpse.kill_at = now + 0.1  # look again shortly

    def _check_memory(self) -> None:
        """Stop the children whose running activity uses more than its ``resources.memory_mb``."""
        for child in list(self._children):
            item = child.running
            limit = item.dispatch.task.resources.memory_mb if item is not None else None
            if item is None or limit is None or child.process.pid is None:
                continue
            used_mb = tree_rss(child.process.pid) / 2**20
            if used_mb > limit:
                message = over_memory(item.dispatch.task.name, used_mb, limit)
                failure = self._failure(item, child, "skyweave.MemoryLimit", message, retryable=False)
                self._replace(child, failure)

    # ------------------------------------------------------------------------------ failures

    def _failure(
        self, item: Item, child: Child | None, error_type: str, message: str, *, retryable: bool
    ) -> ActivityFailed:
        """``item`` failed: it leaves the active set (and its child's queue)."""
        self._active.pop(item.id, None)
        if child is not None:
            child.assigned.pop(item.id, None)
            if child.running is item:
                child.running = None
        return ActivityFailed(
            activity_id=item.id,
            attempt=item.dispatch.attempt,
            worker=self.env.worker,
            error_type=error_type,
            message=message,
            retryable=retryable,
            host=HOST,
            pid=child.process.pid or 0 if child is not None else 0,
            started_at=item.started_at,
            at=time.time(),
        )

    def _detach(self, child: Child) -> None:
        """Forget a child: requeue what it had not started, give its slot to a new child."""
        for fileobj in (child.conn, child.process.sentinel):
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(fileobj)
        for item in child.assigned.values():
            if item is not child.running and item.id in self._active:
                self._ready.push(item)
        child.assigned.clear()
        child.running = None
        if self._broken:
            return
        self._children[self._children.index(child)] = self._spawn(child.slot)

    def _with_log(self, failure: ActivityFailed, process: BaseProcess) -> ActivityFailed:
        """The failure of an activity whose process was stopped or died, with what it wrote."""
        assert process.pid is not None
        log = salvage_capture(self.env.log_root, process.pid, failure.activity_id, failure.attempt)
        if log is None:
            log = activity_log_path(self.env.log_root, failure.activity_id, failure.attempt)
            if not log.exists():  # a command task's log is written directly
                return failure
        return msgspec.structs.replace(failure, log_uri=file_uri(log))

    def _replace(self, child: Child, failure: ActivityFailed | None = None) -> None:
        """Stop a child that is still running something (timeout, cancel) and replace it;
        ``failure`` is reported once it is gone."""
        signal_group(child.process, signal.SIGTERM)
        corpse = Stopping(child.process, child.conn, time.monotonic() + KILL_GRACE_S, failure)
        self._dying.append(corpse)
        self._detach(child)
        self._selector.register(child.process.sentinel, selectors.EVENT_READ, corpse)  # wakes on exit

    def _on_death(self, child: Child, out: list[Outcome]) -> None:
        code = child.process.exitcode
        if code is not None and code < 0:
            how = f"was killed by signal {signal.Signals(-code).name}"
            if code == -signal.SIGKILL:
                how += " (out of memory? the kernel's OOM killer sends SIGKILL)"
        else:
            how = f"exited with code {code}"
        item = child.running
        if item is not None and item.id in self._active:
            task = item.dispatch.task.name
            message = f"worker process {child.process.pid} {how} while running task {task!r}"
            failure = self._failure(item, child, "skyweave.WorkerDied", message, retryable=True)
            out.append(self._with_log(failure, child.process))
        elif child.process.pid is not None:
            capture_scratch_path(self.env.log_root, child.process.pid).unlink(missing_ok=True)
        self._startup_deaths = 0 if child.started_any else self._startup_deaths + 1
        if self._startup_deaths >= MAX_STARTUP_DEATHS:
            self._broken = (
                f"worker processes die as they start ({how}, {self._startup_deaths} times in a row); "
                "their traceback is on this process's stderr"
            )
        self._detach(child)
        child.conn.close()
        if self._broken:
            self._children.remove(child)
            for item in [*self._active.values()]:
                out.append(self._unstartable(item))

    def _unstartable(self, item: Item) -> ActivityFailed:
        self._ready.remove(item.id)
        return self._failure(item, None, "skyweave.WorkerStartFailed", self._broken, retryable=False)

    def cancel(self, activity_ids: Sequence[str]) -> None:
        for activity_id in activity_ids:
            item = self._active.get(activity_id)
            if item is None:
                continue
            if self._ready.remove(activity_id) is not None:
                message = f"activity {activity_id} was cancelled before it started"
                failure = self._failure(item, None, "skyweave.Cancelled", message, retryable=False)
                self._reports.append(failure)
                continue
            child = next((c for c in self._children if activity_id in c.assigned), None)
            message = f"activity {activity_id} was cancelled"
            if child is not None and child.running is item:
                message += " and stopped"
                stopped = self._failure(item, child, "skyweave.Cancelled", message, retryable=False)
                self._replace(child, stopped)
                continue
            self._reports.append(self._failure(item, child, "skyweave.Cancelled", message, retryable=False))
            if child is not None:  # sent but not started: the child drops it
                child.cancelled.add(activity_id)
                child.unacked.discard(activity_id)
                child.send(Cancel([activity_id]))

    def close(self) -> None:
        self._finalizer()
        self._selector.close()
        self._close_wake()


def _close_fds(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)

