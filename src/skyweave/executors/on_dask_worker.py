"""The part of the Dask executor that runs *on a Dask worker*: one Dask task per activity.

``run_activity`` is the function every skyweave Dask task calls.  It runs the activity the way
``python -m skyweave.execute`` does (the job file, ``executors/job.py``, in a scratch folder of the
worker; the outcome written to a file), in a process group of its own, so that the worker can stop
it; but the process is *forked* from a warm process (``skyweave.execute_warm``, kept by
``executors/warm_processes.py``: one per worker thread, started at its first activity) that has
already imported skyweave, the preload modules and the task's module, so an activity does not pay
an interpreter start-up and those imports.  Then:

* its timeout counts from the start mark the process writes (or from the request, while the warm
  process imports the task's module); past it the group is killed and ``skyweave.TaskTimeout``
  returned (retryable);
* ``resources.memory_mb`` is enforced by measuring the group's memory (``skyweave.MemoryLimit``);
* a cancel (``cancel_tasks``, run on every worker by ``Client.run``) kills the group at once;
  the client has already reported the activity cancelled and drops whatever comes back;
* the process dies with the Dask worker: it watches a pipe from the worker (the warm process's
  standard input) and kills its group when the worker is gone, so a killed worker leaves no
  orphan running beside the activity's next attempt.

Worker death: Dask runs a task again on another worker when the worker running it dies.  Under the
same attempt number that would be a silent second execution, so the first run of an attempt sets a
*begun* mark on the scheduler (a ``distributed.Event`` named after the task key); a run that finds
the mark set does not run the activity and returns ``skyweave.WorkerDied`` (retryable): the
controller then records the lost attempt and dispatches the next one.

The start is reported to the client as a Dask structured event on the topic it names
(``Worker.log_event``; the client subscribes to it), carrying the activity id, attempt, pid, host
and start time, so that a long activity is seen running (not for one already ended when its start
is seen: its outcome carries its start time).  What comes back is the outcome as JSON
(``executors/job.py``), or empty bytes for a cancelled activity.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import msgspec
from distributed import Event, get_client, get_worker

from skyweave.executors.base import ExecutionEnv
from skyweave.executors.boundary import HOST
from skyweave.executors.job import FinalOutcome, decode_job, decode_outcome, encode_outcome
from skyweave.executors.limits import MEMORY_CHECK_S, over_memory, tree_rss
from skyweave.executors.warm_processes import Setup, WarmProcess, acquire, mark_cold, release, warmable
from skyweave.model.messages import ActivityFailed, DispatchActivity

POLL_S = 0.02
"""How often the running process is looked at (start mark, end, timeout, cancel)."""
EXIT_BAD_JOB = 2
"""``skyweave.execute``'s status for a job it could not read."""
_CANCEL_MEMORY = 10_000
"""How many cancelled task keys a worker remembers (a cancel may reach it before the task)."""

REAP_WAIT_S = 5.0
"""How long a warm process is given to report a killed child gone before it is closed instead."""

_lock = threading.Lock()
_running: dict[str, WarmProcess] = {}
_cancelled: OrderedDict[str, None] = OrderedDict()


def begun_mark(key: str) -> str:
    """The name of the scheduler-side mark a task key's first run sets."""
    return f"skyweave-begun-{key}"


def cancel_tasks(keys: list[str]) -> list[str]:
    """Run on every worker (``Client.run``): stop the activities of these Dask task keys if running
    here, and refuse them should they arrive later.  Returns the keys that were running here.

    By key, not activity id: a key names one attempt of one executor (its token), so a cancel
    never refuses the same activity sent again by another controller, or by a later executor."""
    stopped: list[str] = []
    with _lock:
        for key in keys:
            _cancelled[key] = None
            while len(_cancelled) > _CANCEL_MEMORY:
                _cancelled.popitem(last=False)
            warm = _running.get(key)
            if warm is not None:
                warm.kill_child()  # its own group: the commands it started too
                stopped.append(key)
    return stopped


def _is_cancelled(key: str) -> bool:
    with _lock:
        return key in _cancelled


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
    if _is_cancelled(key):
        return b""
    scratch = Path(tempfile.mkdtemp(prefix=f"skyweave-{dispatch.activity_id}-"))
    try:
        return _supervise(dispatch, env, key, job, scratch, reports=report_to)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _supervise(d: DispatchActivity, env: ExecutionEnv, key: str, job: bytes, scratch: Path, *,
               reports: str) -> bytes:
    paths = _Paths(*(scratch / name for name in ("job.json", "outcome.json", "started", "stderr")))
    paths.job.write_bytes(job)
    setup: Setup = (env.import_path, env.preload)
    warm_import = warmable(d.task.ref)
    for _ in range(2):  # once more on a fresh process if this one died or its task import made threads
        warm = acquire(setup)
        with _lock:
            if key in _cancelled:
                release(warm, reusable=True, keep=_keep())
                return b""
            _running[key] = warm
        ended: bytes | str = "gone"
        try:
            if warm.send({"job": str(paths.job), "outcome": str(paths.outcome), "started": str(paths.started),
                          "stderr": str(paths.stderr), "warm": warm_import}):
                ended = _follow(d, env.worker, key, warm, paths, reports=reports)
        finally:
            with _lock:
                _running.pop(key, None)
            release(warm, reusable=_settled(warm), keep=_keep())
        if ended == "threads":
            mark_cold(d.task.ref)
            warm_import = False
        elif not isinstance(ended, str):
            return ended
    return _failure(d, env.worker, "skyweave.WorkerError",
                    f"the warm process that runs activities on this Dask worker ({HOST}) exited before "
                    f"running task {d.task.name!r}; its error is in the Dask worker's log", retryable=True)


@dataclass(frozen=True)
class _Paths:
    job: Path
    outcome: Path
    started: Path
    stderr: Path


def _keep() -> int:
    """Idle warm processes worth keeping: one per thread of this Dask worker."""
    try:
        return max(1, int(get_worker().state.nthreads))
    except ValueError:  # not on a worker (called directly)
        return 1


def _settled(warm: WarmProcess) -> bool:
    """Whether ``warm`` can take the next job: its last job's child (killed if still running) has
    been reaped.  One asked for a job that it has not forked yet (still importing) cannot."""
    if not warm.busy:
        return True
    if not warm.child:
        return False
    warm.kill_child()
    deadline = time.monotonic() + REAP_WAIT_S
    while (left := deadline - time.monotonic()) > 0:
        line = warm.reply(left)
        if line == b"":
            return False
        if line is not None and line.startswith(b"exited "):
            warm.child, warm.busy = 0, False
            return True
    return False


def _follow(d: DispatchActivity, worker: str, key: str, warm: WarmProcess, paths: _Paths, *,
            reports: str) -> bytes | str:
    """Follow the job until it ends: its outcome (empty: cancelled), or ``"gone"``/``"threads"``
    when the warm process ended without forking (the caller tries a fresh one)."""
    task = d.task
    asked = time.monotonic()
    started_clock: float | None = None
    started_at = 0.0
    memory_checked = 0.0
    pid = 0
    while True:
        line = warm.reply(POLL_S)
        now = time.monotonic()
        if line == b"":
            if not pid:
                return "gone"
            with _lock:
                warm.kill_child()
            return _failure(d, worker, "skyweave.WorkerDied",
                            f"the warm process {warm.pid} on {HOST} died while its child {pid} ran task "
                            f"{task.name!r}; the child was stopped", retryable=True, pid=pid,
                            started_at=started_at)
        if line == b"threads":
            return "threads"
        if line is not None and line.startswith(b"forked "):
            pid = int(line.split()[1])
            with _lock:
                warm.child = pid
                if key in _cancelled:
                    warm.kill_child()
        if pid and started_clock is None and paths.started.exists():
            started_clock = now
            with contextlib.suppress(OSError, ValueError):
                started_at = float(paths.started.read_text())
            if line is None or not line.startswith(b"exited "):
                get_worker().log_event(reports, [d.activity_id, d.attempt, pid, HOST, started_at])
        if _is_cancelled(key):
            return b""
        if line is not None and line.startswith(b"exited "):
            warm.child, warm.busy = 0, False
            return _ended(d, worker, int(line.split()[1]), pid=pid, outcome_file=paths.outcome,
                          stderr_file=paths.stderr, started_at=started_at)
        limit = task.timeout_s
        since = started_clock if pid else asked  # a task module's import that hangs counts too
        if limit is not None and since is not None and now - since > limit:
            return _failure(d, worker, "skyweave.TaskTimeout",
                            f"task {task.name!r} exceeded its timeout of {limit:g} s; stopped",
                            retryable=True, pid=pid, started_at=started_at)
        if pid and task.resources.memory_mb is not None and now - memory_checked >= MEMORY_CHECK_S:
            memory_checked = now
            used_mb = tree_rss(pid) / 2**20
            if used_mb > task.resources.memory_mb:
                return _failure(d, worker, "skyweave.MemoryLimit",
                                over_memory(task.name, used_mb, task.resources.memory_mb),
                                retryable=False, pid=pid, started_at=started_at)


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
