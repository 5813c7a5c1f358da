"""``python -m skyweave.execute_warm SETUP``: a warm process that forks one ``skyweave.execute`` per job.

Started by a Dask worker (``executors/warm_processes.py``), one per worker thread that runs
activities.  It imports skyweave (the boundary, storage, aspects), puts ``SETUP``'s
``import_path`` on ``sys.path`` and imports its ``preload`` modules once; then, for each request
line on its standard input (JSON: ``job``, ``outcome``, ``started``, ``stderr`` paths, ``warm``),
it imports the job's task module (``warm``: the next activities of that task find it imported),
forks, and the child runs ``skyweave.execute``'s ``main`` on the job exactly as a fresh
``python -m skyweave.execute`` would, without the interpreter start-up and the imports.  It
answers on its standard output, one line each:

* ``forked PID``: the child runs, leading a process group of its own (the launcher stops the
  group: the activity and the commands it started);
* ``exited CODE``: the child ended (``skyweave.execute``'s exit status; ``-N`` killed by signal N);
* ``threads``: importing the task module started threads, and forking a process with threads may
  leave the child holding a lock no thread will release; this process exits without forking, and
  the launcher runs that task from a process that does not import it first (``warm`` false).

If the preload modules themselves start threads, nothing is forked: each job then runs in a fresh
interpreter (``python -m skyweave.execute``, exec'd at once), as it would without this process.

The child watches this process's standard input, whose write end only the launcher holds: when the
launcher (the Dask worker) dies, the child kills its group, so no activity runs on orphaned.  The
warm process exits when its standard input closes.  It never runs user code itself except the
import of preload and task modules, and it is single-threaded, as forking requires.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import traceback
from typing import Any

from skyweave import execute
from skyweave.executors.job import JobError, decode_job
from skyweave.executors.lifeline import die_with_parent
from skyweave.executors.resolve import preload, resolve_task, use_import_path
from skyweave.model.specs import TaskKind

EXIT_CHILD_CRASHED = 70
"""The child's status when ``skyweave.execute`` raised instead of returning one."""


def _say(text: str) -> None:
    print(f"skyweave.execute_warm {os.getpid()}: {text}", file=sys.stderr, flush=True)


def _warm(job_path: str) -> None:
    """Import the job's task module here (a failure is the child's to report: it imports again)."""
    try:
        with open(job_path, "rb") as file:
            dispatch, env = decode_job(file.read())
    except (OSError, JobError):
        return
    if dispatch.task.kind is not TaskKind.PYTHON:
        return
    use_import_path(env.import_path)
    with contextlib.suppress(Exception, SystemExit):
        resolve_task(dispatch.task)


def _child(request: dict[str, Any]) -> int:
    """In the forked child: set up its own group, descriptors and lifeline, then run the job."""
    os.setpgid(0, 0)
    lifeline = os.dup(0)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(err, 2)
    os.close(null)
    os.close(err)
    sys.stdin = open(os.devnull)  # noqa: SIM115 - this process's standard input until it exits
    die_with_parent(lifeline)
    return execute.main([request["job"], "--outcome", request["outcome"], "--started", request["started"]])


def _fork(request: dict[str, Any]) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = EXIT_CHILD_CRASHED
        try:
            code = _child(request)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else EXIT_CHILD_CRASHED
        except BaseException:  # reported on the activity's stderr, then exit
            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            os._exit(code)
    # here too, before the launcher hears the pid and may signal the group (the child may have
    # done it first, or already exited)
    with contextlib.suppress(PermissionError, ProcessLookupError):
        os.setpgid(pid, pid)
    return pid


def _spawn(request: dict[str, Any]) -> subprocess.Popen[bytes]:
    """A fresh ``python -m skyweave.execute`` for the job (exec'd at once: safe with threads)."""
    with open(request["stderr"], "wb") as err:
        return subprocess.Popen(
            [sys.executable, "-c", _COLD, request["job"], "--outcome", request["outcome"],
             "--started", request["started"]],
            stdin=0, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


_COLD = (
    "import sys, runpy\n"
    "from skyweave.executors.lifeline import die_with_parent\n"
    "die_with_parent(0)\n"
    "sys.argv[0] = 'skyweave.execute'\n"
    "runpy.run_module('skyweave.execute', run_name='__main__', alter_sys=True)\n"
)
"""What a spawned job's process runs: ``skyweave.execute``, after arming the watch on its stdin
(a copy of this process's: the launcher's pipe)."""


def serve(setup: dict[str, Any]) -> int:
    use_import_path(setup.get("import_path", []))
    for problem in preload(setup.get("preload", [])):
        _say(f"preload of {problem} (activities that need it will report it)")
    forkable = threading.active_count() == 1
    if not forkable:
        _say("the preload modules started threads: every job runs in a fresh interpreter")
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    while True:
        line = requests.readline()
        if not line:
            return 0
        request = json.loads(line)
        if forkable and request.get("warm", True):
            _warm(request["job"])
            if threading.active_count() > 1:
                _reply(replies, b"threads")
                return 0
        if forkable:
            pid = _fork(request)
            told = _reply(replies, b"forked %d" % pid)
            _, status = os.waitpid(pid, 0)  # the launcher gone, the child dies too (its lifeline)
            code = os.waitstatus_to_exitcode(status)
        else:
            process = _spawn(request)
            told = _reply(replies, b"forked %d" % process.pid)
            code = process.wait()
        if not told or not _reply(replies, b"exited %d" % code):
            return 0


def _reply(replies: Any, line: bytes) -> bool:
    """Send one line to the launcher; ``False`` once it is gone."""
    try:
        replies.write(line + b"\n")
        replies.flush()
    except BrokenPipeError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        _say("usage: python -m skyweave.execute_warm SETUP_JSON")
        return 2
    return serve(json.loads(args[0]))


if __name__ == "__main__":
    sys.exit(main())
