"""The child processes of ``LocalExecutor``: their loop and messages, how they start and stop,
and the parent's view of each.

Each child process runs ``child_main``: it receives batches of dispatches (msgpack over a
``multiprocessing`` pipe), runs them one by one through the boundary, and for each sends a small
``Started`` notice and then the outcome.  Between activities it reads whatever else the parent
sent (more batches, cancellations), so a cancelled activity still waiting in its batch never runs.
The child leads its own process group, so stopping it also stops the commands it started.
"""

from __future__ import annotations

import contextlib
import faulthandler
import multiprocessing
import os
import select
import signal
import struct
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import msgspec

from skyweave.aspects.builtin import capture_scratch_path
from skyweave.executors.base import ExecutionEnv, Outcome
from skyweave.executors.boundary import HOST, Boundary
from skyweave.executors.local_queue import Item
from skyweave.executors.resolve import preload, use_import_path
from skyweave.model.messages import (
    ActivityFailed,
    ActivityFinished,
    ActivityNeedsInput,
    DispatchActivity,
)


class Started(msgspec.Struct, frozen=True, tag="s"):
    activity_id: str
    at: float


class Ready(msgspec.Struct, frozen=True, tag="r"):
    """The child has set up and imported ``ExecutionEnv.preload``; sent once, before any work."""


class Batch(msgspec.Struct, frozen=True, tag="b"):
    """Dispatches as the parent sends them: each already msgpack-encoded once, at submission."""

    items: list[msgspec.Raw]


class _DecodedBatch(msgspec.Struct, frozen=True, tag="b"):
    items: list[DispatchActivity]


class Cancel(msgspec.Struct, frozen=True, tag="c"):
    activity_ids: list[str]


class Stop(msgspec.Struct, frozen=True, tag="x"):
    pass


FromChild = Ready | Started | ActivityFinished | ActivityFailed | ActivityNeedsInput

_in_child = False


def in_worker_process() -> bool:
    """Whether this process is a ``LocalExecutor`` child (which must not start executors itself)."""
    return _in_child

encoder = msgspec.msgpack.Encoder()
from_child = msgspec.msgpack.Decoder(FromChild)
_to_child = msgspec.msgpack.Decoder(_DecodedBatch | Cancel | Stop)


def _failure(dispatch: DispatchActivity, env: ExecutionEnv, message: str, *, retryable: bool) -> Outcome:
    return ActivityFailed(
        activity_id=dispatch.activity_id,
        attempt=dispatch.attempt,
        worker=env.worker,
        error_type="skyweave.WorkerError",
        message=message,
        retryable=retryable,
        host=HOST,
        pid=os.getpid(),
        at=time.time(),
    )


class Frames:
    """Length-prefixed frames (the ``multiprocessing.Connection`` wire format) over a descriptor.

    ``read`` takes everything available in one system call and returns the complete frames, so a
    burst of small messages costs one wake-up and one read, not two reads and a poll each.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = bytearray()

    def read(self) -> list[bytes]:
        """Complete frames after one read (which blocks on a blocking descriptor with no data).

        Raises ``EOFError`` once the other side has closed, ``BlockingIOError`` when a non-blocking
        descriptor has nothing.
        """
        data = os.read(self.fd, 1 << 20)
        if not data:
            raise EOFError
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        offset = 0
        while len(buffer) - offset >= 4:
            (size,) = _HEADER.unpack_from(buffer, offset)
            start = offset + 4
            if size == -1:  # multiprocessing's header for a frame of 2 GiB or more
                if len(buffer) - offset < 12:
                    break
                (size,) = _LONG.unpack_from(buffer, start)
                start += 8
            if len(buffer) < start + size:
                break
            frames.append(bytes(buffer[start : start + size]))
            offset = start + size
        del buffer[:offset]
        return frames


_HEADER = struct.Struct("!i")
_LONG = struct.Struct("!Q")


def frame(data: bytes) -> bytes:
    if len(data) >= 0x7FFFFFFF:
        return _HEADER.pack(-1) + _LONG.pack(len(data)) + data
    return _HEADER.pack(len(data)) + data


def write_all(fd: int, data: bytes | bytearray) -> None:
    """Write all of ``data``; on a non-blocking descriptor, wait for room when it is full."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [])


def _die_with_parent(fd: int) -> None:
    """Once the worker process at the other end of ``fd`` is gone (killed with -9: it never said
    ``Stop``), kill this child's process group — the child and the commands it started — so that
    no activity of a dead worker runs on, orphaned, while the controller runs it again elsewhere.
    A thread blocked in ``poll`` for hang-up only: no cost while the worker lives."""
    hangup = select.poll()
    hangup.register(fd, 0)  # no events asked for: only POLLHUP / POLLERR / POLLNVAL are reported

    def watch() -> None:
        while not hangup.poll():
            pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(0, signal.SIGKILL)  # our own group (set up by child_main)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="skyweave-die-with-worker", daemon=True).start()


def child_main(conn: Connection, env: ExecutionEnv) -> None:
    """The loop of one child process; returns on ``Stop`` or when the parent goes away.

    The outcome of one activity and the ``Started`` of the next leave in one write.
    """
    global _in_child  # noqa: PLW0603 - a fact about this process
    _in_child = True
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when children stop
    faulthandler.enable()  # a crash's Python traceback goes to fd 2: the activity's log
    boundary: Boundary | None = None
    setup_error = ""
    use_import_path(env.import_path)
    try:
        boundary = Boundary(env, exclusive_process=True)
    except Exception:
        setup_error = "the worker could not set up its aspects:\n" + traceback.format_exc()
    for problem in preload(env.preload):
        print(f"skyweave worker {os.getpid()}: preload of {problem} (activities that need it will "
              "report it)", file=sys.stderr, flush=True)
    fd = conn.fileno()
    _die_with_parent(fd)
    frames = Frames(fd)
    incoming = select.poll()
    incoming.register(fd, select.POLLIN)
    out = bytearray(frame(encoder.encode(Ready())))
    queue: deque[DispatchActivity] = deque()
    while True:
        while not queue or incoming.poll(0):
            if out:
                write_all(fd, out)
                out.clear()
            try:
                messages = [_to_child.decode(data) for data in frames.read()]
            except (EOFError, OSError):
                return
            for message in messages:
                if isinstance(message, Stop):
                    return
                if isinstance(message, Cancel):
                    cancelled = set(message.activity_ids)
                    queue = deque(d for d in queue if d.activity_id not in cancelled)
                else:
                    queue.extend(message.items)
        dispatch = queue.popleft()
        out += frame(encoder.encode(Started(dispatch.activity_id, time.time())))
        write_all(fd, out)
        out.clear()
        if boundary is None:
            outcome = _failure(dispatch, env, setup_error, retryable=False)
        else:
            outcome = boundary.execute(dispatch)
        try:
            data = encoder.encode(outcome)
        except (TypeError, msgspec.EncodeError) as exc:
            failure = _failure(dispatch, env, f"the outcome cannot be sent: {exc}", retryable=False)
            data = encoder.encode(failure)
        out += frame(data)


# ---------------------------------------------------------------------------------------------
# process lifecycle, on the parent's side


@contextlib.contextmanager
def parent_main_hidden() -> Iterator[None]:
    """Start children without them re-importing the parent's ``__main__``.

    ``spawn`` and ``forkserver`` children normally import the parent's main script (or module) so
    that what it defines can be unpickled.  Our children never need it (a task defined in a script
    is loaded by file path) and re-running a script that lacks an ``if __name__ == "__main__":``
    guard would start the whole run again in every child.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved: dict[str, Any] = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        main.__dict__.pop("__file__", None)
        main.__dict__.update(saved)


def start_context() -> Any:
    """``forkserver`` (children fork from a clean, single-threaded server) or else ``spawn``."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


def signal_group(process: BaseProcess, signum: int) -> None:
    """Signal a child's process group: the child and the commands it started."""
    if process.pid is None:
        return
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):  # not (yet) leading its own group
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signum)


def stop(processes: list[tuple[BaseProcess, Connection]], *, ask: bool) -> None:
    """Stop children: ask them (``Stop``) and wait a second, or kill them at once."""
    if ask:
        for _, conn in processes:
            with contextlib.suppress(OSError):
                write_all(conn.fileno(), frame(encoder.encode(Stop())))
        for process, _ in processes:
            process.join(1.0)
    for process, conn in processes:
        if process.is_alive():
            signal_group(process, signal.SIGKILL)
            process.join(1.0)
        conn.close()


@dataclass(eq=False)
class Child:
    """The parent's view of one child process."""

    slot: int
    process: BaseProcess
    conn: Connection
    assigned: dict[str, Item] = field(default_factory=dict)
    """Sent to this child and without an outcome yet, in the order the child runs them."""
    running: Item | None = None
    unacked: set[str] = field(default_factory=set)
    """Ids of the last batch sent, until one of them starts (then the child has read it)."""
    cancelled: set[str] = field(default_factory=set)
    """Cancelled while sent to this child: if one of them starts anyway, the child is replaced."""
    started_any: bool = False
    ready: bool = False
    """It has said ``Ready`` (imported ``ExecutionEnv.preload``)."""
    frames: Frames = field(init=False)

    def __post_init__(self) -> None:
        os.set_blocking(self.conn.fileno(), False)  # reads never block; writes wait for room
        self.frames = Frames(self.conn.fileno())

    def send(self, message: Batch | Cancel) -> None:
        with contextlib.suppress(OSError):  # if the child died, its sentinel reports it
            write_all(self.conn.fileno(), frame(encoder.encode(message)))


@dataclass(eq=False)
class Stopping:
    """A child being stopped (SIGTERM sent, SIGKILL at ``kill_at``)."""

    process: BaseProcess
    conn: Connection
    kill_at: float
    failure: ActivityFailed | None
    """Reported once the process is gone, with the output it had captured in the activity's log."""


def shutdown(children: list[Child], dying: list[Stopping], log_root: Path) -> None:
    """Stop every child: the running ones politely, the stopping ones at once."""
    stop([(c.process, c.conn) for c in children], ask=True)
    stop([(d.process, d.conn) for d in dying], ask=False)
    for process in [c.process for c in children] + [d.process for d in dying]:
        if process.pid is not None:
            capture_scratch_path(log_root, process.pid).unlink(missing_ok=True)
    children.clear()
    dying.clear()
