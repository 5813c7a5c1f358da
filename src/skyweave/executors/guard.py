"""A guard between a worker and a command whose work outlives the command's own process.

``python guard.py CLEANUP... -- COMMAND...`` runs ``COMMAND`` and exits with its status.  Its
standard input is the read end of a pipe whose write end the worker holds: when the worker dies
(``kill -9``, OOM killer, lost node) the pipe hangs up, and the guard kills ``COMMAND``, runs
``CLEANUP`` (e.g. ``docker rm -f skyweave-<activity>-<attempt>``: a ``docker run`` client that
dies leaves its container running on the daemon) and kills its own process group.  So what a dead
worker started never runs on, orphaned, beside the next attempt on another worker.

Standard library only, run by path with ``-I -S`` (``guard_argv``): it costs a bare interpreter's
start-up (~20 ms), not skyweave's imports.  The executor kills the guard's process group itself
when it stops the work (timeout, cancel): the guard is then killed with ``COMMAND``.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence

CLEANUP_TIMEOUT_S = 60.0


def guard_argv(cleanup: Sequence[str], command: Sequence[str]) -> list[str]:
    """The command line that runs ``command`` under a guard (``cleanup`` may be empty)."""
    if "--" in cleanup:
        raise ValueError(f"a guard's cleanup command cannot contain '--': {list(cleanup)}")
    return [sys.executable, "-I", "-S", os.path.abspath(__file__), *cleanup, "--", *command]


def main(argv: Sequence[str]) -> int:
    split = list(argv).index("--")
    cleanup, command = list(argv[:split]), list(argv[split + 1:])
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    stopping = threading.Event()

    def watch() -> None:
        hangup = select.poll()
        hangup.register(0, 0)  # no events asked for: only POLLHUP / POLLERR / POLLNVAL are reported
        while not hangup.poll():
            pass
        stopping.set()
        # the client first, so it starts nothing more; then what it started, by name
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        child.wait()
        if cleanup:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run(cleanup, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=CLEANUP_TIMEOUT_S, check=False)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(0, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    watcher = threading.Thread(target=watch, name="skyweave-guard", daemon=True)
    watcher.start()
    code = child.wait()
    if stopping.is_set():
        watcher.join()  # it ends this process once the cleanup is done
    if code < 0:  # the same death for the executor to read
        with contextlib.suppress(OSError, ValueError):  # SIGKILL's cannot be set (nor needs to be)
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
