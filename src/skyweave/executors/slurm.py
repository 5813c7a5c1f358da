"""``SlurmExecutor`` (``slurm``, ``slurm://?partition=…``): each activity a Slurm batch job.

Each job runs ``python -m skyweave.execute`` on the activity's job file (``executors/job.py``) and
writes its outcome file beside it, as the ``subprocess`` executor's processes do; so the job
directory, the storage and the work root must be on a filesystem the Slurm nodes see at the same
paths (``job_dir``; see docs/slurm.md).  The activities of one task handed over together (a
fan-out) are one job array (``sbatch --array``), one ``sbatch`` call for up to ``LAUNCH_AT_ONCE``
of them.  Jobs are submitted ``--no-requeue``: Slurm's failures come back to the retry policy.

Resources map to ``sbatch`` options: ``cpus`` to ``--cpus-per-task`` (rounded up), ``memory_mb``
to ``--mem``, ``gpus`` to ``--gres=gpu:N``, the task's timeout (rounded up to minutes, plus one) or
the ``time_limit`` option to ``--time``, ``partition`` (else the option's) to ``--partition``;
``account`` comes from the options.

State: the outcome and start-mark files are looked at every ``collect`` (one directory listing);
Slurm is asked with ONE ``squeue`` per ``poll_s`` for every job of this executor (they share a job
name).  A job that ended without an outcome file, or that ``squeue`` no longer lists, is *unknown*
until its outcome file appears; one still without it ``lost_after_s`` later is reported lost
(``skyweave.WorkerDied``, retryable).  A job Slurm killed is reported at once with Slurm's state
and reason: ``TIMEOUT`` as ``skyweave.SlurmTimeLimit``, ``NODE_FAIL``/``BOOT_FAIL`` as
``skyweave.SlurmNodeFailure``, ``PREEMPTED``, ``DEADLINE`` (all retryable: the task's retry policy
decides), ``OUT_OF_MEMORY`` as ``skyweave.MemoryLimit`` (not retryable, like every executor's memory
limit), ``CANCELLED`` by someone else as ``skyweave.SlurmCancelled`` (not retryable).
A task's own ``timeout`` is enforced here (counted from the job's start mark) with ``scancel``,
as is ``cancel``.  Closing the executor cancels its jobs.  A worker killed outright cannot: the
worker that gets the next attempt of one of its activities cancels the old job (``_supersede``:
each batch script lists the activity and attempt of each of its elements).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from skyweave.aspects.builtin import activity_log_path
from skyweave.executors.base import Capabilities, ExecutionEnv, Executor, Outcome
from skyweave.executors.boundary import HOST
from skyweave.executors.job import decode_outcome, encode_job
from skyweave.executors.slurm_commands import (
    ACTIVITY_LINE,
    JobState,
    Slurm,
    SlurmCommands,
    SlurmError,
    SlurmOptions,
    stale_jobs,
    time_limit_minutes,
)
from skyweave.model.ids import new_id
from skyweave.model.messages import ActivityFailed, ActivityStarted, DispatchActivity
from skyweave.storage.local import file_uri

log = logging.getLogger(__name__)

POLL_S = 0.05
"""How often the job directory is looked at while ``collect`` waits."""
LAUNCH_AT_ONCE = 256
"""Most activities submitted by one ``submit`` or ``collect`` call (the rest by the next ones): the
worker calls them from the loop that sends its heartbeats, which must not stall for seconds while
a thousand job files are written (measured: 1,000 at once kept a loaded worker silent past its
5 s timeout, and the controller took it for dead)."""

KILLED = {  # Slurm state -> (error type, what happened, retryable)
    "TIMEOUT": ("skyweave.SlurmTimeLimit", "reached its Slurm time limit", True),
    "NODE_FAIL": ("skyweave.SlurmNodeFailure", "was lost with its node", True),
    "BOOT_FAIL": ("skyweave.SlurmNodeFailure", "could not start: its node failed to boot", True),
    "PREEMPTED": ("skyweave.SlurmPreempted", "was preempted", True),
    "DEADLINE": ("skyweave.SlurmDeadline", "reached its Slurm deadline", True),
    "OUT_OF_MEMORY": ("skyweave.MemoryLimit", "went over its memory limit (--mem)", False),
    "CANCELLED": ("skyweave.SlurmCancelled", "was cancelled outside skyweave (scancel)", False),
}


@dataclass(eq=False)
class _Job:
    dispatch: DispatchActivity
    stem: Path
    """``stem.job.json``, ``.outcome.json``, ``.started``, ``.out``."""
    script: Path
    slurm_id: str = ""
    started_at: float = 0.0
    started_clock: float | None = None
    reported: bool = False
    node: str = ""
    unknown_since: float | None = None
    """When it was first seen ended without an outcome file, or missing from ``squeue``."""

    def path(self, suffix: str) -> Path:
        return self.stem.with_name(self.stem.name + suffix)


class SlurmExecutor(Executor):
    name = "slurm"
    capabilities = Capabilities(stops_running_work=True, enforces_memory=False)
    """``scancel`` stops a job; ``--mem`` is Slurm's to enforce, and only a cluster with cgroups
    (or ``OverMemoryKill``) does: when it does, its kill is reported as ``skyweave.MemoryLimit``."""

    def __init__(self, env: ExecutionEnv, options: SlurmOptions | None = None, *, max_jobs: int = 0,
                 slurm: Slurm | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.env = env
        self.options = options or SlurmOptions()
        self.slurm: Slurm = slurm or SlurmCommands(self.options.conf)
        self._clock = clock
        """Seconds (monotonic): the timeouts, ``poll_s`` and ``lost_after_s`` are counted on it."""
        self._size = self.options.max_jobs or max_jobs or os.cpu_count() or 1
        token = re.sub(r"[^A-Za-z0-9_.-]", "-", new_id("slurm"))
        self.job_name = f"skyweave-{token}"
        """The name every job of this executor carries: what its one ``squeue`` asks for."""
        self.dir = Path(self.options.job_dir or env.work_root / ".slurm").expanduser().resolve() / token
        self._waiting: list[tuple[int, int, str]] = []
        self._queued: dict[str, DispatchActivity] = {}
        self._jobs: dict[str, _Job] = {}
        self._scripts: dict[Path, int] = {}
        """Submission script -> its jobs not forgotten yet."""
        self._reports: list[Outcome] = []
        self._seq = itertools.count()
        self._batches = itertools.count()
        self._woken = threading.Event()
        self._polled: float | None = None

    @property
    def slots(self) -> int:
        return self._size

    @property
    def active(self) -> int:
        return len(self._queued) + len(self._jobs)

    def start(self) -> None:
        if isinstance(self.slurm, SlurmCommands) and shutil.which("sbatch") is None:
            raise SlurmError("the slurm executor needs `sbatch`, `squeue` and `scancel` on this host",
                             hint="install the Slurm client commands (Debian: slurm-client) and point "
                                  "SLURM_CONF (or the conf option) at the cluster's slurm.conf")
        self.dir.mkdir(parents=True, exist_ok=True)

    # -- submitting -------------------------------------------------------------------------------------

    def submit(self, batch: Sequence[DispatchActivity]) -> None:
        self.start()
        for dispatch in batch:
            if dispatch.activity_id in self._queued or dispatch.activity_id in self._jobs:
                continue
            self._queued[dispatch.activity_id] = dispatch
            heapq.heappush(self._waiting, (-dispatch.priority, next(self._seq), dispatch.activity_id))
        self._launch()

    def _launch(self) -> None:
        ready: list[DispatchActivity] = []
        while self._waiting and len(self._jobs) + len(ready) < self._size and len(ready) < LAUNCH_AT_ONCE:
            dispatch = self._queued.pop(heapq.heappop(self._waiting)[2], None)
            if dispatch is not None:  # else cancelled while waiting
                ready.append(dispatch)
        groups: dict[object, list[DispatchActivity]] = {}
        for dispatch in ready:
            task = dispatch.task
            key = (task.key, task.resources, task.timeout_s) if self.options.array else dispatch.activity_id
            groups.setdefault(key, []).append(dispatch)
        self._supersede([d for d in ready if d.attempt > 1])
        for group in groups.values():
            self._sbatch(group)

    def _supersede(self, later: list[DispatchActivity]) -> None:
        """Cancel the jobs of earlier attempts of these activities that still run or wait: their
        worker died (the controller dispatched the next attempt), and Slurm runs a job on without
        it.  Found by ``squeue`` of this user's jobs, each identified by the activity lines of its
        batch script (which is on the shared job directory)."""
        if not later:
            return
        current = {d.activity_id: d.attempt for d in later}
        jobs = self.slurm.user_jobs()
        if jobs is None:
            log.warning("squeue failed: jobs of earlier attempts of %d activities may still run", len(later))
            return
        stale = stale_jobs(jobs, current)
        if stale:
            log.warning("cancelling Slurm job(s) %s: earlier attempts of activities dispatched again "
                        "(their worker died)", " ".join(stale))
            with contextlib.suppress(SlurmError):
                self.slurm.scancel(stale)

    def _sbatch(self, group: list[DispatchActivity]) -> None:
        batch = f"b{next(self._batches):06d}"
        script = self.dir / f"{batch}.sh"
        jobs = [_Job(d, self.dir / f"{batch}.{i}", script) for i, d in enumerate(group)]
        for job in jobs:
            _write(job.path(".job.json"), encode_job(job.dispatch, self.env))
        stem = f"{self.dir}/{batch}." + "${SLURM_ARRAY_TASK_ID:-0}"
        listing = "".join(f"{ACTIVITY_LINE} {i} {d.activity_id} {d.attempt}\n" for i, d in enumerate(group))
        script.write_text(
            "#!/bin/sh\n"
            f"# skyweave: {len(group)} activit{'y' if len(group) == 1 else 'ies'} of task "
            f"{group[0].task.key} (worker {self.env.worker})\n"
            f"{listing}"
            f'S="{stem}"\n'
            f'exec "{self.options.interpreter}" -m skyweave.execute "$S.job.json" '
            '--outcome "$S.outcome.json" --started "$S.started"\n')
        args = self._resources(group[0], batch, count=len(group))
        try:
            ids = self.slurm.sbatch(str(script), args, {"PYTHONPATH": os.pathsep.join(sys.path)})
        except SlurmError as exc:
            for job in jobs:
                self._reports.append(self._failure(job, "skyweave.SlurmSubmitError", exc.message,
                                                   retryable=exc.retryable))
                self._unlink(job)
            script.unlink(missing_ok=True)
            return
        self._scripts[script] = len(jobs)
        for i, job in enumerate(jobs):
            job.slurm_id = f"{ids}_{i}" if len(group) > 1 else ids
            self._jobs[job.dispatch.activity_id] = job

    def _resources(self, dispatch: DispatchActivity, batch: str, *, count: int) -> list[str]:
        """``sbatch`` options for ``count`` activities of ``dispatch``'s task (an array if > 1)."""
        task, o = dispatch.task, self.options
        out = f"{self.dir}/{batch}.%a.out" if count > 1 else f"{self.dir}/{batch}.0.out"
        # --no-requeue: a job lost with its node comes back as NODE_FAIL for the task's retry policy
        # to decide (as a new attempt), instead of Slurm running it again under the same attempt
        args = [f"--job-name={self.job_name}", f"--output={out}", f"--chdir={self.dir}", "--no-requeue",
                f"--cpus-per-task={max(1, math.ceil(task.resources.cpus))}"]
        if count > 1:
            args.append(f"--array=0-{count - 1}")
        if task.resources.memory_mb is not None:
            args.append(f"--mem={task.resources.memory_mb}M")
        if task.resources.gpus:
            args.append(f"--gres=gpu:{task.resources.gpus}")
        if minutes := time_limit_minutes(task.timeout_s, o.time_limit):
            args.append(f"--time={minutes}")
        if partition := task.resources.partition or o.partition:
            args.append(f"--partition={partition}")
        if o.account:
            args.append(f"--account={o.account}")
        return args

    # -- following --------------------------------------------------------------------------------------

    def collect(self, timeout: float) -> list[Outcome]:
        out, self._reports = self._reports, []
        deadline = time.monotonic() + timeout
        while True:
            self._check(out)
            self._launch()
            out += self._reports
            self._reports = []
            unreported = any(j.started_clock is not None and not j.reported for j in self._jobs.values())
            if out or unreported or time.monotonic() >= deadline:
                break
            if self._woken.wait(min(POLL_S, max(0.0, deadline - time.monotonic()))):
                self._woken.clear()
                break
        for job in self._jobs.values():
            if job.started_clock is not None and not job.reported:
                job.reported = True
                out.append(ActivityStarted(activity_id=job.dispatch.activity_id, attempt=job.dispatch.attempt,
                                           worker=self.env.worker, host=job.node, at=job.started_at))
        return out

    def wake(self) -> None:
        self._woken.set()

    def _check(self, out: list[Outcome]) -> None:
        if not self._jobs:
            return
        now = self._clock()
        with os.scandir(self.dir) as entries:
            names = {entry.name for entry in entries}
        for job in list(self._jobs.values()):
            if job.stem.name + ".outcome.json" in names:
                out.append(self._ended(job))
                continue
            if job.started_clock is None and job.stem.name + ".started" in names:
                job.started_clock = now
                with contextlib.suppress(OSError, ValueError):
                    job.started_at = float(job.path(".started").read_text())
            task = job.dispatch.task
            if (limit := task.timeout_s) is not None and job.started_clock is not None \
                    and now - job.started_clock > limit:
                out.append(self._stop([job], "skyweave.TaskTimeout",
                                      f"task {task.name!r} exceeded its timeout of {limit:g} s; stopped "
                                      f"(scancel {job.slurm_id})", retryable=True)[0])
        if self._polled is None or now - self._polled >= self.options.poll_s:
            self._polled = now
            self._poll(now, out)

    def _poll(self, now: float, out: list[Outcome]) -> None:
        """One ``squeue`` for every job; a job's state, reason and node, or nothing for it."""
        states = self.slurm.squeue(self.job_name)
        if states is None:
            log.warning("squeue failed: the state of %d Slurm jobs is unknown until it answers",
                        len(self._jobs))
            return
        for job in list(self._jobs.values()):
            state = states.get(job.slurm_id)
            if state is not None and state.node:
                job.node = state.node
            if state is not None and state.active:
                job.unknown_since = None
                continue
            if state is not None and state.state in KILLED:
                if job.path(".outcome.json").exists():
                    out.append(self._ended(job))  # it wrote its outcome before Slurm stopped it
                else:
                    out.append(self._killed(job, state))
                continue
            # ended by itself (its outcome file may not be visible yet) or not known to squeue at all
            if job.unknown_since is None:
                job.unknown_since = now
            elif now - job.unknown_since >= self.options.lost_after_s:
                out.append(self._lost(job, state))

    def _ended(self, job: _Job) -> Outcome:
        data = job.path(".outcome.json").read_bytes()
        self._forget(job)
        try:
            return decode_outcome(data)
        except msgspec.DecodeError as exc:
            return self._failure(job, "skyweave.WorkerError", f"its outcome file is unreadable: {exc}",
                                 retryable=True)

    def _killed(self, job: _Job, state: JobState) -> ActivityFailed:
        error_type, what, retryable = KILLED[state.state]
        limit = f" of {state.time_limit}" if state.state == "TIMEOUT" and state.time_limit else ""
        reason = f", reason {state.reason}" if state.reason else ""
        node = f" on {state.node}" if state.node else ""
        message = (f"Slurm job {job.slurm_id} (task {job.dispatch.task.name!r}){node} {what}{limit} "
                   f"(state {state.state}{reason})")
        self._forget(job)
        return self._failure(job, error_type, message, retryable=retryable)

    def _lost(self, job: _Job, state: JobState | None) -> ActivityFailed:
        how = (f"ended ({state.state})" if state is not None else "is no longer listed by squeue")
        tail = _tail(job.path(".out"))
        message = (f"Slurm job {job.slurm_id} (task {job.dispatch.task.name!r}) {how} and wrote no outcome "
                   f"within {self.options.lost_after_s:g} s" + (f": {tail}" if tail else ""))
        self._forget(job)
        return self._failure(job, "skyweave.WorkerDied", message, retryable=True)

    # -- stopping -----------------------------------------------------------------------------------------

    def _stop(self, jobs: Sequence[_Job], error_type: str, message: str, *,
              retryable: bool) -> list[ActivityFailed]:
        with contextlib.suppress(SlurmError):
            self.slurm.scancel([job.slurm_id for job in jobs])
        reports = []
        for job in jobs:
            self._forget(job)
            reports.append(self._failure(job, error_type, message, retryable=retryable))
        return reports

    def cancel(self, activity_ids: Sequence[str]) -> None:
        running: list[_Job] = []
        for activity_id in activity_ids:
            dispatch = self._queued.pop(activity_id, None)
            if dispatch is not None:
                self._reports.append(ActivityFailed(
                    activity_id=activity_id, attempt=dispatch.attempt, worker=self.env.worker,
                    error_type="skyweave.Cancelled", message=f"activity {activity_id} was cancelled before "
                    "it was submitted to Slurm", retryable=False, host=HOST, at=time.time()))
            elif (job := self._jobs.get(activity_id)) is not None:
                running.append(job)
        for report in self._stop(running, "skyweave.Cancelled", "cancelled: its Slurm job was cancelled "
                                 "(scancel)", retryable=False):
            self._reports.append(report)

    def close(self) -> None:
        with contextlib.suppress(SlurmError):
            self.slurm.scancel([job.slurm_id for job in self._jobs.values()])
        for job in list(self._jobs.values()):
            self._forget(job)
        self._queued.clear()
        self._waiting.clear()

    # -- bookkeeping --------------------------------------------------------------------------------------

    def _forget(self, job: _Job) -> None:
        self._jobs.pop(job.dispatch.activity_id, None)
        self._unlink(job)
        left = self._scripts.get(job.script, 0) - 1
        if left > 0:
            self._scripts[job.script] = left
        else:
            self._scripts.pop(job.script, None)
            job.script.unlink(missing_ok=True)

    def _unlink(self, job: _Job) -> None:
        for suffix in (".job.json", ".outcome.json", ".started", ".out"):
            job.path(suffix).unlink(missing_ok=True)

    def _failure(self, job: _Job, error_type: str, message: str, *, retryable: bool) -> ActivityFailed:
        d = job.dispatch
        log_path = activity_log_path(self.env.log_root, d.activity_id, d.attempt)
        return ActivityFailed(activity_id=d.activity_id, attempt=d.attempt, worker=self.env.worker,
                              error_type=error_type, message=message, retryable=retryable,
                              host=job.node or HOST, started_at=job.started_at, at=time.time(),
                              log_uri=file_uri(log_path) if log_path.exists() else "")


def _write(path: Path, data: bytes) -> None:
    """Whole or not at all (a temporary file renamed into place), without ``fsync``: a job file
    matters only while this worker lives, and an fsync each made a fan-out's submission slow."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors="replace").strip()[-limit:]
    except OSError:
        return ""
