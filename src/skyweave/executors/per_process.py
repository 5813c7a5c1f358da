"""``SubprocessExecutor`` (``subprocess``): one ``python -m skyweave.execute`` process per activity.

It does on this host what the Slurm, container and Kubernetes executors will do elsewhere: write
the activity's job file, start the one-dispatch entry point on it, and read back the outcome file
that process writes.  Passing the executor contract suite with nothing but that entry point is
what proves the entry point does everything an executor must; it is also a way to give every
activity a fresh interpreter (no state carried between activities, at ~0.2 s of start-up each).

Job and outcome files live in ``work_root/.jobs/`` and are removed once read.  Each process leads
its own process group (with the commands its task starts); a timeout (counted from the start mark
the process writes once its interpreter is up and the job read: ``--started``), a cancel or a
memory limit stops the group with SIGKILL.  A process that ends without an outcome is reported: exit status 2
(a job it could not read) is not retried; a signal or any other status is ``skyweave.WorkerDied``.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from skyweave.aspects.builtin import activity_log_path
from skyweave.executors.base import Capabilities, ExecutionEnv, Executor, Outcome
from skyweave.executors.boundary import HOST
from skyweave.executors.guard import guard_argv
from skyweave.executors.job import decode_outcome, encode_job, write_atomically
from skyweave.executors.limits import MEMORY_CHECK_S, over_memory, tree_rss
from skyweave.model.messages import ActivityFailed, ActivityStarted, DispatchActivity
from skyweave.storage.local import file_uri

POLL_S = 0.01
"""How often running processes are looked at while ``collect`` waits."""
EXIT_BAD_JOB = 2
"""``skyweave.execute``'s status for a job it could not read (see that module)."""


@dataclass(eq=False)
class _Running:
    dispatch: DispatchActivity
    job: Path
    outcome: Path
    stderr: Path
    started: Path
    """Written by the process when the activity starts (its ``--started``)."""
    process: subprocess.Popen[bytes]
    started_at: float = 0.0
    started_clock: float | None = None
    """When this executor saw the start mark: the activity's timeout counts from then."""
    reported: bool = False
    image_digest: str = ""
    """The container image this attempt runs in, when the executor chose it (``ContainerExecutor``)."""

    @property
    def files(self) -> tuple[Path, ...]:
        return self.job, self.outcome, self.stderr, self.started


class SubprocessExecutor(Executor):
    """``subprocess``: up to ``processes`` activities at once, each in a process of its own."""

    name = "subprocess"
    capabilities = Capabilities(stops_running_work=True, enforces_memory=True)
    lifeline = True
    """Give each process a pipe from this executor as its standard input, which hangs up when the
    worker dies (a launcher that must stop work beyond its process group: ``executors/guard.py``)."""

    def __init__(self, env: ExecutionEnv, *, processes: int | None = None) -> None:
        self.env = env
        self._size = processes or os.cpu_count() or 1
        self._jobs = env.work_root / ".jobs"
        self._waiting: list[tuple[int, int, str]] = []
        self._queued: dict[str, DispatchActivity] = {}
        self._running: dict[str, _Running] = {}
        self._reports: list[Outcome] = []
        self._seq = itertools.count()
        self._woken = threading.Event()
        self._memory_checked = 0.0

    @property
    def slots(self) -> int:
        return self._size

    @property
    def active(self) -> int:
        return len(self._queued) + len(self._running)

    def start(self) -> None:
        self._jobs.mkdir(parents=True, exist_ok=True)

    def submit(self, batch: Sequence[DispatchActivity]) -> None:
        self.start()
        for dispatch in batch:
            if dispatch.activity_id in self._queued or dispatch.activity_id in self._running:
                continue
            self._queued[dispatch.activity_id] = dispatch
            heapq.heappush(self._waiting, (-dispatch.priority, next(self._seq), dispatch.activity_id))
        self._launch()

    def _launch(self) -> None:
        while self._waiting and len(self._running) < self._size:
            activity_id = heapq.heappop(self._waiting)[2]
            dispatch = self._queued.pop(activity_id, None)
            if dispatch is None:
                continue  # cancelled while waiting
            stem = self._jobs / f"{activity_id}-{dispatch.attempt}"
            suffixes = (".job.json", ".outcome.json", ".stderr", ".started")
            job, outcome, stderr, started = (stem.with_name(stem.name + suffix) for suffix in suffixes)
            write_atomically(job, encode_job(dispatch, self.env))
            argv = self._command(dispatch, job, outcome, started)
            with open(stderr, "wb") as err:
                process = subprocess.Popen(
                    argv, stdin=subprocess.PIPE if self.lifeline else subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=err, cwd=self._launch_dir(job), start_new_session=True,
                    env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
            self._running[activity_id] = _Running(dispatch, job, outcome, stderr, started, process,
                                                  image_digest=self._image_digest(dispatch))

    def _launch_dir(self, job: Path) -> Path | None:
        """Where the job's process starts (``None``: this process's working directory)."""
        del job
        return None

    def _image_digest(self, dispatch: DispatchActivity) -> str:
        """The content digest of the image the job runs in, if this executor chose one (reported
        on the attempt: ``ActivityStarted``, its outcome)."""
        del dispatch
        return ""

    def _command(self, dispatch: DispatchActivity, job: Path, outcome: Path, started: Path) -> list[str]:
        """The command line that runs one job, under a guard that kills it if this worker dies (a
        container executor wraps it in ``docker run`` under a guard of its own)."""
        return guard_argv([], self._execute(dispatch, job, outcome, started))

    def _execute(self, dispatch: DispatchActivity, job: Path, outcome: Path, started: Path) -> list[str]:
        """``python -m skyweave.execute`` of one job."""
        del dispatch
        return [sys.executable, "-m", "skyweave.execute", str(job), "--outcome", str(outcome),
                "--started", str(started)]

    def _memory_mb(self, r: _Running) -> float:
        """What the activity's processes use now, in MB."""
        return tree_rss(r.process.pid) / 2**20

    def _no_outcome(self, r: _Running, code: int, stderr: str) -> ActivityFailed | None:
        """A launcher's own reading of a process that ended without an outcome (``None``: the
        generic one)."""
        del r, code, stderr
        return None

    def _halt(self, r: _Running) -> None:
        """Stop what runs the activity beyond the process group (a container), before the group is killed."""
        del r

    def _gone(self, r: _Running) -> None:
        """The activity's process has ended and been reported (a container can be removed)."""
        del r

    def collect(self, timeout: float) -> list[Outcome]:
        out, self._reports = self._reports, []
        deadline = time.monotonic() + timeout
        while True:
            self._check(out)
            self._launch()
            unreported = any(r.started_clock is not None and not r.reported for r in self._running.values())
            if out or unreported or time.monotonic() >= deadline:
                break
            if self._woken.wait(min(POLL_S, max(0.0, deadline - time.monotonic()))):
                self._woken.clear()
                break
        for r in self._running.values():
            if r.started_clock is not None and not r.reported:
                r.reported = True
                out.append(ActivityStarted(activity_id=r.dispatch.activity_id, attempt=r.dispatch.attempt,
                                           worker=self.env.worker, host=HOST, pid=r.process.pid,
                                           at=r.started_at, image_digest=r.image_digest))
        return out

    def wake(self) -> None:
        self._woken.set()

    def _check(self, out: list[Outcome]) -> None:
        now = time.monotonic()
        measure = now - self._memory_checked >= MEMORY_CHECK_S
        if measure:
            self._memory_checked = now
        for r in list(self._running.values()):
            task = r.dispatch.task
            if r.started_clock is None and r.started.exists():
                r.started_clock = now
                with contextlib.suppress(OSError, ValueError):
                    r.started_at = float(r.started.read_text())
            if r.process.poll() is not None:
                out.append(self._ended(r))
            elif (limit := task.timeout_s) is not None and now - (r.started_clock or now) > limit:
                message = f"task {task.name!r} exceeded its timeout of {limit:g} s; stopped"
                out.append(self._stop(r, "skyweave.TaskTimeout", message, retryable=True))
            elif measure and task.resources.memory_mb is not None:
                used_mb = self._memory_mb(r)
                if used_mb > task.resources.memory_mb:
                    out.append(self._stop(r, "skyweave.MemoryLimit",
                                          over_memory(task.name, used_mb, task.resources.memory_mb),
                                          retryable=False))

    def _ended(self, r: _Running) -> Outcome:
        """The outcome the process wrote, or why it wrote none."""
        try:
            return self._read_ending(r)
        finally:
            self._gone(r)

    def _read_ending(self, r: _Running) -> Outcome:
        self._forget(r)
        try:
            data = r.outcome.read_bytes()
        except FileNotFoundError:
            data = None
        code = r.process.returncode
        stderr = _tail(r.stderr)
        for path in r.files:
            path.unlink(missing_ok=True)
        if data is not None:
            try:
                ended = decode_outcome(data)
            except msgspec.DecodeError as exc:
                return self._failure(r, "skyweave.WorkerError", f"its outcome file is unreadable: {exc}",
                                     retryable=True)
            if r.image_digest and not ended.image_digest:  # written inside the image, which cannot tell
                ended = msgspec.structs.replace(ended, image_digest=r.image_digest)
            return ended
        own = self._no_outcome(r, code, stderr)
        if own is not None:
            return own
        if code == EXIT_BAD_JOB:
            return self._failure(r, "skyweave.BadJob", f"the job could not be read: {stderr}",
                                 retryable=False)
        how = f"was killed by signal {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        return self._failure(r, "skyweave.WorkerDied",
                             f"process {r.process.pid} {how} without an outcome while running task "
                             f"{r.dispatch.task.name!r}" + (f": {stderr}" if stderr else ""), retryable=True)

    def _stop(self, r: _Running, error_type: str, message: str, *, retryable: bool) -> ActivityFailed:
        self._halt(r)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(r.process.pid, signal.SIGKILL)  # its own group: the commands it started too
        r.process.wait()
        self._forget(r)
        self._gone(r)
        for path in r.files:
            path.unlink(missing_ok=True)
        return self._failure(r, error_type, message, retryable=retryable)

    def _forget(self, r: _Running) -> None:
        self._running.pop(r.dispatch.activity_id, None)
        if r.process.stdin is not None:
            r.process.stdin.close()

    def _failure(self, r: _Running, error_type: str, message: str, *, retryable: bool) -> ActivityFailed:
        d = r.dispatch
        log = activity_log_path(self.env.log_root, d.activity_id, d.attempt)
        return ActivityFailed(activity_id=d.activity_id, attempt=d.attempt, worker=self.env.worker,
                              error_type=error_type, message=message, retryable=retryable, host=HOST,
                              pid=r.process.pid, started_at=r.started_at, at=time.time(),
                              log_uri=file_uri(log) if log.exists() else "", image_digest=r.image_digest)

    def cancel(self, activity_ids: Sequence[str]) -> None:
        for activity_id in activity_ids:
            dispatch = self._queued.pop(activity_id, None)
            if dispatch is not None:
                self._reports.append(ActivityFailed(
                    activity_id=activity_id, attempt=dispatch.attempt, worker=self.env.worker,
                    error_type="skyweave.Cancelled", message=f"activity {activity_id} was cancelled before "
                    "it started", retryable=False, host=HOST, at=time.time()))
            elif (r := self._running.get(activity_id)) is not None:
                self._reports.append(self._stop(r, "skyweave.Cancelled",
                                                f"activity {activity_id} was cancelled and stopped",
                                                retryable=False))

    def close(self) -> None:
        for r in list(self._running.values()):
            self._stop(r, "skyweave.Cancelled", "the executor was closed", retryable=True)
        self._queued.clear()
        self._waiting.clear()


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    return text[-limit:]
