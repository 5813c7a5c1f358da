"""``die_with_parent``: a process that kills its own process group once its launcher is gone.

Used by the processes a Dask worker starts for activities (``executors/on_dask_worker.py``): the
worker holds the write end of a pipe that is the process's standard input; when the worker dies
(``kill -9``, node lost) the pipe hangs up and the activity, with the commands it started, dies
too, so it never runs on, orphaned, beside its next attempt.  Kept apart so the activity's process
imports nothing heavy (not Dask) to arm it.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading


def die_with_parent(fd: int) -> None:
    """Kill this process's group once the other end of pipe ``fd`` is closed.

    A thread blocked in ``poll`` for hang-up only: no cost while the launcher lives."""
    hangup = select.poll()
    hangup.register(fd, 0)  # no events asked for: only POLLHUP / POLLERR / POLLNVAL are reported

    def watch() -> None:
        while not hangup.poll():
            pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(0, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="skyweave-die-with-parent", daemon=True).start()
