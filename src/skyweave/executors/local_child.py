"""The child side of ``LocalExecutor`` and the messages it exchanges with its parent.

Each child process runs ``child_main``: it receives batches of dispatches (msgpack over a
``multiprocessing`` pipe), runs them one by one through the boundary, and for each sends a small
``Started`` notice and then the outcome.  Between activities it reads whatever else the parent
sent (more batches, cancellations), so a cancelled activity still waiting in its batch never runs.
The child leads its own process group, so stopping it also stops the commands it started.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from collections import deque
from multiprocessing.connection import Connection

import msgspec

from skyweave.executors.base import ExecutionEnv, Outcome
from skyweave.executors.boundary import HOST, Boundary
from skyweave.model.messages import (
    ActivityFailed,
    ActivityFinished,
    ActivityNeedsInput,
    DispatchActivity,
)


class Started(msgspec.Struct, frozen=True, tag="s"):
    activity_id: str
    at: float


class Batch(msgspec.Struct, frozen=True, tag="b"):
    """Dispatches as the parent sends them: each already msgpack-encoded once, at submission."""

    items: list[msgspec.Raw]


class _DecodedBatch(msgspec.Struct, frozen=True, tag="b"):
    items: list[DispatchActivity]


class Cancel(msgspec.Struct, frozen=True, tag="c"):
    activity_ids: list[str]


class Stop(msgspec.Struct, frozen=True, tag="x"):
    pass


FromChild = Started | ActivityFinished | ActivityFailed | ActivityNeedsInput

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


def child_main(conn: Connection, env: ExecutionEnv) -> None:
    """The loop of one child process; returns on ``Stop`` or when the parent goes away."""
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when children stop
    boundary: Boundary | None = None
    setup_error = ""
    try:
        boundary = Boundary(env, exclusive_process=True)
    except Exception:
        setup_error = "the worker could not set up its aspects:\n" + traceback.format_exc()
    queue: deque[DispatchActivity] = deque()
    while True:
        while not queue or conn.poll():
            try:
                message = _to_child.decode(conn.recv_bytes())
            except (EOFError, OSError):
                return
            if isinstance(message, Stop):
                return
            if isinstance(message, Cancel):
                cancelled = set(message.activity_ids)
                queue = deque(d for d in queue if d.activity_id not in cancelled)
            else:
                queue.extend(message.items)
        dispatch = queue.popleft()
        conn.send_bytes(encoder.encode(Started(dispatch.activity_id, time.time())))
        if boundary is None:
            outcome = _failure(dispatch, env, setup_error, retryable=False)
        else:
            outcome = boundary.execute(dispatch)
        try:
            data = encoder.encode(outcome)
        except (TypeError, msgspec.EncodeError) as exc:
            failure = _failure(dispatch, env, f"the outcome cannot be sent: {exc}", retryable=False)
            data = encoder.encode(failure)
        conn.send_bytes(data)
