"""The part of the Dask executor that runs *on a Dask worker*: one Dask task per activity.

``run_activity`` is the function every skyweave Dask task calls.  It runs the activity the way the
``subprocess`` executor does on its own host: the job (``executors/job.py``) is written to a
scratch folder of the worker and ``python -m skyweave.execute`` runs it in a process group of its
own, so that the worker can stop it:

* its timeout counts from the start mark the process writes; past it the group is killed and
  ``skyweave.TaskTimeout`` returned (retryable);
* ``resources.memory_mb`` is enforced by measuring the group's memory (``skyweave.MemoryLimit``);
* a cancel (``cancel_activities``, run on every worker by ``Client.run``) kills the group at once;
  the client has already reported the activity cancelled and drops whatever comes back;
* the process dies with the Dask worker: it watches a pipe from the worker (its standard input)
  and kills its group when the worker is gone, so a killed worker leaves no orphan running beside
  the activity's next attempt.

Worker death: Dask runs a task again on another worker when the worker running it dies.  Under the
same attempt number that would be a silent second execution, so the first run of an attempt sets a
*begun* mark on the scheduler (a ``distributed.Event`` named after the task key); a run that finds
the mark set does not run the activity and returns ``skyweave.WorkerDied`` (retryable): the
controller then records the lost attempt and dispatches the next one.

The start is reported to the client as a Dask structured event on the topic it names
(``Worker.log_event``; the client subscribes to it), carrying the activity id, attempt, pid, host
and start time, so that a long activity is seen running.  What comes back is
the outcome as JSON (``executors/job.py``), or empty bytes for a cancelled activity.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path

import msgspec
from distributed import Event, get_client, get_worker

from skyweave.executors.boundary import HOST
from skyweave.executors.job import FinalOutcome, decode_job, decode_outcome, encode_outcome
from skyweave.executors.limits import MEMORY_CHECK_S, over_memory, tree_rss
from skyweave.model.messages import ActivityFailed, DispatchActivity

POLL_S = 0.02
"""How often the running process is looked at (start mark, end, timeout, cancel)."""
EXIT_BAD_JOB = 2
"""``skyweave.execute``'s status for a job it could not read."""
_CANCEL_MEMORY = 10_000
"""How many cancelled activity ids a worker remembers (a cancel may reach it before the task)."""

_WRAPPER = (
    "import sys, runpy\n"
    "from skyweave.executors.lifeline import die_with_parent\n"
    "die_with_parent(0)\n"
    "sys.argv[0] = 'skyweave.execute'\n"
    "runpy.run_module('skyweave.execute', run_name='__main__', alter_sys=True)\n"
)
"""What the activity's process runs: ``skyweave.execute``, after arming the watch on its stdin."""

_lock = threading.Lock()
_running: dict[str, subprocess.Popen[bytes]] = {}
_cancelled: OrderedDict[str, None] = OrderedDict()


def begun_mark(key: str) -> str:
    """The name of the scheduler-side mark a task key's first run sets."""
    return f"skyweave-begun-{key}"


def cancel_activities(activity_ids: list[str]) -> list[str]:
    """Run on every worker (``Client.run``): stop these activities if running here, and refuse
    them should their task arrive later.  Returns the ids that were running here."""
    stopped: list[str] = []
    with _lock:
        for activity_id in activity_ids:
            _cancelled[activity_id] = None
            while len(_cancelled) > _CANCEL_MEMORY:
                _cancelled.popitem(last=False)
            process = _running.get(activity_id)
            if process is not None:
                _kill(process)
                stopped.append(activity_id)
    return stopped


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # its own group: the commands it started too


def _is_cancelled(activity_id: str) -> bool:
    with _lock:
        return activity_id in _cancelled


def _failure(d: DispatchActivity, worker: str, error_type: str, message: str, *, retryable: bool,
             pid: int = 0, started_at: float = 0.0) -> bytes:
    return encode_outcome(ActivityFailed(
        activity_id=d.activity_id, attempt=d.attempt, worker=worker, error_type=error_type,
        message=message, retryable=retryable, host=HOST, pid=pid, started_at=started_at, at=time.time()))


def run_activity(job: bytes, key: str, report_to: str) -> bytes:
    """Run the job's activity to its end here; see the module docstring."""
    dispatch, env = decode_job(job)
    client = get_client()
    begun = Event(begun_mark(key), client=client)
    if begun.is_set():
        return _failure(dispatch, env.worker, "skyweave.WorkerDied",
                        f"the Dask worker running task {dispatch.task.name!r} (attempt {dispatch.attempt}) "
                        "died; Dask sent it to another worker, which does not run it again under the "
                        "same attempt", retryable=True)
    begun.set()
    if _is_cancelled(dispatch.activity_id):
        return b""
    scratch = Path(tempfile.mkdtemp(prefix=f"skyweave-{dispatch.activity_id}-"))
    try:
        return _supervise(dispatch, env.worker, job, scratch, report_to)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _supervise(d: DispatchActivity, worker: str, job: bytes, scratch: Path, reports: str) -> bytes:
    job_file, outcome_file, started_file, stderr_file = (
        scratch / name for name in ("job.json", "outcome.json", "started", "stderr"))
    job_file.write_bytes(job)
    with open(stderr_file, "wb") as err, _lock:
        if d.activity_id in _cancelled:
            return b""
        process = subprocess.Popen(
            [sys.executable, "-c", _WRAPPER, str(job_file), "--outcome", str(outcome_file),
             "--started", str(started_file)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        _running[d.activity_id] = process
    try:
        return _follow(d, worker, process, outcome_file=outcome_file, started_file=started_file,
                       stderr_file=stderr_file, reports=reports)
    finally:
        with _lock:
            _running.pop(d.activity_id, None)
        if process.poll() is None:
            _kill(process)
            process.wait()
        if process.stdin is not None:
            process.stdin.close()


def _follow(d: DispatchActivity, worker: str, process: subprocess.Popen[bytes], *, outcome_file: Path,
            started_file: Path, stderr_file: Path, reports: str) -> bytes:
    task = d.task
    started_clock: float | None = None
    started_at = 0.0
    memory_checked = 0.0
    while True:
        code = process.poll()
        now = time.monotonic()
        if started_clock is None and started_file.exists():
            started_clock = now
            with contextlib.suppress(OSError, ValueError):
                started_at = float(started_file.read_text())
            get_worker().log_event(reports, [d.activity_id, d.attempt, process.pid, HOST, started_at])
        if _is_cancelled(d.activity_id):
            return b""
        if code is not None:
            return _ended(d, worker, code, pid=process.pid, outcome_file=outcome_file,
                          stderr_file=stderr_file, started_at=started_at)
        limit = task.timeout_s
        if limit is not None and started_clock is not None and now - started_clock > limit:
            return _failure(d, worker, "skyweave.TaskTimeout",
                            f"task {task.name!r} exceeded its timeout of {limit:g} s; stopped",
                            retryable=True, pid=process.pid, started_at=started_at)
        if task.resources.memory_mb is not None and now - memory_checked >= MEMORY_CHECK_S:
            memory_checked = now
            used_mb = tree_rss(process.pid) / 2**20
            if used_mb > task.resources.memory_mb:
                return _failure(d, worker, "skyweave.MemoryLimit",
                                over_memory(task.name, used_mb, task.resources.memory_mb),
                                retryable=False, pid=process.pid, started_at=started_at)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(POLL_S)


def _ended(d: DispatchActivity, worker: str, code: int, *, pid: int, outcome_file: Path, stderr_file: Path,
           started_at: float) -> bytes:
    """The outcome the process wrote, or why it wrote none."""
    try:
        data = outcome_file.read_bytes()
    except FileNotFoundError:
        data = None
    if data is not None:
        try:
            outcome: FinalOutcome = decode_outcome(data)
        except msgspec.DecodeError as exc:
            return _failure(d, worker, "skyweave.WorkerError", f"its outcome file is unreadable: {exc}",
                            retryable=True, pid=pid, started_at=started_at)
        return encode_outcome(outcome)
    stderr = stderr_file.read_text(errors="replace").strip()[-2000:]
    if code == EXIT_BAD_JOB:
        return _failure(d, worker, "skyweave.BadJob", f"the job could not be read: {stderr}", retryable=False,
                        pid=pid)
    how = f"was killed by signal {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
    return _failure(d, worker, "skyweave.WorkerDied",
                    f"process {pid} on {HOST} {how} without an outcome while running task {d.task.name!r}"
                    + (f": {stderr}" if stderr else ""), retryable=True, pid=pid, started_at=started_at)
