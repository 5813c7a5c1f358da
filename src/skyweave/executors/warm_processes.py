"""Warm processes on a Dask worker: the launcher's side of ``skyweave.execute_warm``.

A Dask worker thread that runs an activity takes a ``WarmProcess`` from the pool (one is started
when none is idle: the pool grows to the number of activities the worker runs at once), asks it to
fork a child for the job, follows the child, and gives the warm process back.  The interpreter
start-up and the imports of skyweave, the preload modules and the task's module are paid once per
warm process instead of once per activity; each activity still has a process (group) of its own,
which the worker can kill, measure and lose without losing the others.

Processes are kept apart by what they imported (``Setup``: the job's ``import_path`` and
``preload``).  Closing a warm process closes its standard input: it exits, and a child it forked
(whose lifeline is that pipe) kills its group, so nothing it started outlives it.  The same
happens to all of them when the Dask worker's process ends, however it ends: only that process
holds the write ends of their standard inputs.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
from collections import deque
from typing import Any

Setup = tuple[tuple[str, ...], tuple[str, ...]]
"""What a warm process imported before forking: (``import_path``, ``preload``)."""

MAX_IDLE = 64
"""Idle warm processes kept per setup beyond what the worker asks for (``release(keep=...)``)."""

_lock = threading.Lock()
_idle: dict[Setup, list[WarmProcess]] = {}
_cold: set[str] = set()
"""Task references whose module starts threads when imported: not imported before forking."""


class WarmProcess:
    """One ``python -m skyweave.execute_warm`` process and the line protocol to it."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        spec = json.dumps({"import_path": list(setup[0]), "preload": list(setup[1])})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "skyweave.execute_warm", spec],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert self.process.stdout is not None
        self._fd = self.process.stdout.fileno()
        os.set_blocking(self._fd, False)
        self._buffer = bytearray()
        self._lines: deque[bytes] = deque()
        self.child = 0
        """The pid of the child running a job (it leads its own process group); 0: none."""
        self.busy = False
        """Asked for a job whose end it has not reported yet."""

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, request: dict[str, Any]) -> bool:
        """Ask for a job to be run; ``False`` when the process is gone."""
        assert self.process.stdin is not None
        self.busy = True
        try:
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            return False
        return True

    def reply(self, timeout: float) -> bytes | None:
        """The next line it sent (without the newline), waiting up to ``timeout`` seconds;
        ``None`` if none came, ``b""`` once the process is gone."""
        if not self._lines:
            if not select.select([self._fd], [], [], max(0.0, timeout))[0]:
                return None
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return None
            except OSError:
                data = b""
            if not data:
                return b""
            self._buffer += data
            *lines, rest = self._buffer.split(b"\n")
            self._lines.extend(bytes(line) for line in lines)
            self._buffer = bytearray(rest)
            if not self._lines:
                return None
        return self._lines.popleft()

    def kill_child(self) -> None:
        """SIGKILL the running child's group: the activity and the commands it started."""
        if self.child:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.child, signal.SIGKILL)

    def close(self) -> None:
        """Stop it and whatever it forked (their lifeline is its standard input)."""
        self.kill_child()
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def acquire(setup: Setup) -> WarmProcess:
    """An idle warm process of this setup, or a new one (which imports as it starts: the first
    request waits for that)."""
    with _lock:
        idle = _idle.get(setup, [])
        while idle:
            warm = idle.pop()
            if warm.alive():
                return warm
            warm.close()
    return WarmProcess(setup)


def release(warm: WarmProcess, *, reusable: bool, keep: int = MAX_IDLE) -> None:
    """Give a warm process back for the next activity, or close it (``reusable`` false: its state
    is unknown; or ``keep`` are idle already)."""
    if reusable and warm.alive() and not warm.busy:
        with _lock:
            idle = _idle.setdefault(warm.setup, [])
            if len(idle) < keep:
                idle.append(warm)
                return
    warm.close()


def close_idle() -> None:
    """Close the idle warm processes (at this process's exit: no ``Popen`` left running)."""
    with _lock:
        idle = [warm for group in _idle.values() for warm in group]
        _idle.clear()
    for warm in idle:
        warm.close()


atexit.register(close_idle)


def warmable(ref: str) -> bool:
    with _lock:
        return ref not in _cold


def mark_cold(ref: str) -> None:
    """Do not import this task's module before forking (its import starts threads)."""
    with _lock:
        _cold.add(ref)

