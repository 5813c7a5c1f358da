"""What the Slurm executor asks of Slurm, and its options.

``SlurmOptions`` is parsed from the executor setting (``slurm`` or ``slurm://?partition=debug&…``;
unknown keys are refused, naming the known ones).  ``SlurmCommands`` runs ``sbatch``, ``squeue``
and ``scancel`` (with ``SLURM_CONF`` when the options name a configuration file) and counts its
calls; the executor only talks to Slurm through it, so its tests can hand it a fake.

The state of every job of an executor comes from ONE ``squeue`` call per poll, filtered by the job
name all its jobs share (``--name``), array elements expanded (``-r``), finished jobs included
(``--states=all``: Slurm keeps them for ``MinJobAge`` seconds).  A job absent from the answer is
not known to be anything: the executor resolves it by the outcome file the job wrote.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Protocol
from urllib.parse import parse_qsl, urlsplit

from skyweave.errors import SkyweaveError

ACTIVE_STATES = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
                           "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT",
                           "STOPPED", "RESV_DEL_HOLD", "SPECIAL_EXIT"})
"""Job states in which the job may still run (or is running): anything else has ended."""


@dataclass(frozen=True)
class SlurmOptions:
    """The Slurm executor's settings (the query of ``slurm://?…``)."""

    conf: str = ""
    """``slurm.conf`` of the cluster (``SLURM_CONF`` for the commands); empty: Slurm's default."""
    partition: str = ""
    account: str = ""
    time_limit: int = 0
    """Minutes (``sbatch --time``) for a task with no ``timeout``; 0: the partition's default.  A
    task with a timeout gets that timeout rounded up to minutes, plus one."""
    job_dir: str = ""
    """Where job, outcome and log files go: a folder the Slurm nodes see at the same path (so
    must the storage and work roots); empty: ``<work root>/.slurm``."""
    poll_s: float = 2.0
    """Seconds between the ``squeue`` calls (one per poll for all the executor's jobs)."""
    max_jobs: int = 0
    """Most jobs submitted and not ended at once (the executor's slots); 0: ``--workers``."""
    array: bool = True
    """Submit the activities of one task handed over together as one job array."""
    lost_after_s: float = 60.0
    """A job that ended (or that ``squeue`` no longer lists) without its outcome file is reported
    lost after this many seconds: time for a shared filesystem to show the file."""
    python: str = ""
    """The interpreter the jobs run ``-m skyweave.execute`` with; empty: this one."""

    @property
    def interpreter(self) -> str:
        return self.python or sys.executable


_KNOWN = tuple(f.name for f in fields(SlurmOptions))


def parse_options(setting: str) -> SlurmOptions:
    """The options of ``slurm`` or ``slurm://?key=value&…``; ``SkyweaveError`` names a bad one."""
    text = setting.strip()
    if "://" not in text:
        return SlurmOptions()
    parts = urlsplit(text)
    hint = (f"write the executor as slurm://?partition=NAME&account=NAME&time_limit=MINUTES (keys: "
            f"{', '.join(_KNOWN)})")
    if parts.netloc or parts.path not in ("", "/"):
        raise SkyweaveError(f"executor setting {setting!r}: a Slurm executor takes options, not a host "
                            f"or path ({parts.netloc + parts.path!r})", hint=hint)
    values: dict[str, object] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _KNOWN:
            raise SkyweaveError(f"executor setting {setting!r}: unknown Slurm option {key!r}", hint=hint)
        values[key] = _typed(setting, key, value)
    return SlurmOptions(**values)  # type: ignore[arg-type]


def _typed(setting: str, key: str, value: str) -> object:
    default = getattr(SlurmOptions(), key)
    try:
        if isinstance(default, bool):
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("1", "true", "yes")
        if isinstance(default, int):
            number = int(value)
            if number < 0:
                raise ValueError(value)
            return number
        if isinstance(default, float):
            seconds = float(value)
            if not seconds > 0:
                raise ValueError(value)
            return seconds
    except ValueError:
        raise SkyweaveError(f"executor setting {setting!r}: {key}={value!r} is not a valid "
                            f"{type(default).__name__}", hint=f"e.g. {key}={default}") from None
    return value


def time_limit_minutes(timeout_s: float | None, default: int) -> int:
    """``sbatch --time`` for a task: its timeout rounded up to minutes plus one (skyweave stops it
    at its timeout; Slurm's limit is the backstop), else ``default`` (0: none given)."""
    if timeout_s is not None:
        return math.ceil(timeout_s / 60) + 1
    return default


@dataclass(frozen=True)
class JobState:
    """One line of ``squeue``: a job (or array element) and what Slurm says of it."""

    state: str
    reason: str = ""
    node: str = ""
    time_limit: str = ""
    name: str = ""
    script: str = ""
    """The job's batch script (``squeue`` ``%o``; only ``user_jobs`` asks for it)."""

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


class SlurmError(SkyweaveError):
    """A Slurm command failed (``retryable`` when the controller could not be reached)."""

    def __init__(self, message: str, *, hint: str | None = None, retryable: bool = False) -> None:
        super().__init__(message, hint=hint)
        self.retryable = retryable


class Slurm(Protocol):
    """What the executor needs of Slurm."""

    def sbatch(self, script: str, args: Sequence[str], env: Mapping[str, str]) -> str: ...

    def squeue(self, name: str) -> dict[str, JobState] | None: ...

    def scancel(self, job_ids: Sequence[str]) -> None: ...

    def user_jobs(self) -> dict[str, JobState] | None: ...


_FORMAT = "%i|%T|%r|%N|%l"
_UNREACHABLE = ("Unable to contact", "Socket timed out", "Connection refused", "Zero Bytes were transmitted")


class SlurmCommands:
    """``sbatch``/``squeue``/``scancel`` as subprocesses; ``calls`` counts each command's calls."""

    def __init__(self, conf: str = "", *, timeout_s: float = 60.0) -> None:
        self.env = {**os.environ, **({"SLURM_CONF": conf} if conf else {})}
        self.timeout_s = timeout_s
        self.calls: dict[str, int] = {"sbatch": 0, "squeue": 0, "scancel": 0}

    def _run(self, argv: Sequence[str],
             env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        self.calls[argv[0]] += 1
        try:
            return subprocess.run(list(argv), env=dict(env or self.env), capture_output=True, text=True,
                                  timeout=self.timeout_s, check=False, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise SlurmError(f"`{argv[0]}` is not installed on this host",
                             hint="install the Slurm client commands (Debian: slurm-client) or choose "
                                  "another executor") from None
        except subprocess.TimeoutExpired:
            raise SlurmError(f"`{argv[0]}` did not answer within {self.timeout_s:g} s", retryable=True,
                             hint="is slurmctld up? (`scontrol ping`)") from None

    def sbatch(self, script: str, args: Sequence[str], env: Mapping[str, str]) -> str:
        done = self._run(["sbatch", "--parsable", *args, script], {**self.env, **env})
        if done.returncode != 0:
            text = (done.stderr or done.stdout).strip()
            raise SlurmError(f"sbatch refused the job: {text}",
                             retryable=any(u in text for u in _UNREACHABLE),
                             hint="check the partition, account and resources the task asks for "
                                  "(`sinfo`, `sacctmgr show assoc`)")
        return done.stdout.strip().split(";")[0]

    def squeue(self, name: str) -> dict[str, JobState] | None:
        """Every job named ``name`` (array elements one by one, ended ones Slurm still keeps), or
        ``None`` when ``squeue`` failed (nothing can be concluded from that poll)."""
        try:
            done = self._run(["squeue", "--noheader", "--array", "--states=all", f"--name={name}",
                              f"--format={_FORMAT}"])
        except SlurmError:
            return None
        if done.returncode != 0:
            return None
        return parse_squeue(done.stdout)

    def user_jobs(self) -> dict[str, JobState] | None:
        """Every job of this user that may still run, with its name and batch script (``None``:
        ``squeue`` failed)."""
        try:
            done = self._run(["squeue", "--noheader", "--array", "--me", f"--format={_FORMAT}|%j|%o"])
        except SlurmError:
            return None
        return parse_squeue(done.stdout) if done.returncode == 0 else None

    def scancel(self, job_ids: Sequence[str]) -> None:
        if job_ids:
            self._run(["scancel", *job_ids])  # ids already ended are Slurm's to ignore


ACTIVITY_LINE = "# skyweave-activity"
"""How a batch script names the activity (and attempt) each of its array elements runs."""


def stale_jobs(jobs: Mapping[str, JobState], current: Mapping[str, int]) -> list[str]:
    """The jobs among ``jobs`` (``user_jobs``) that run or wait for an attempt of an activity of
    ``current`` (activity -> its attempt now) older than that attempt, as their scripts say."""
    listed: dict[str, dict[int, tuple[str, int]]] = {}
    stale = []
    for job_id, state in jobs.items():
        if not state.active or not state.name.startswith("skyweave-") or not state.script:
            continue
        if state.script not in listed:
            listed[state.script] = _activities(state.script)
        aid, attempt = listed[state.script].get(int(job_id.partition("_")[2] or 0), ("", 0))
        if aid in current and attempt < current[aid]:
            stale.append(job_id)
    return stale


def _activities(script: str) -> dict[int, tuple[str, int]]:
    """Array index -> (activity, attempt) from a batch script's activity lines (nothing if it
    cannot be read: another host's job directory, or already removed)."""
    found: dict[int, tuple[str, int]] = {}
    with contextlib.suppress(OSError, ValueError), open(script, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith(ACTIVITY_LINE + " "):
                _, _, index, aid, attempt = line.split()
                found[int(index)] = (aid, int(attempt))
    return found


def parse_squeue(text: str) -> dict[str, JobState]:
    """``%i|%T|%r|%N|%l`` lines (and ``|%j|%o``) -> job id (``123`` or ``123_4``) -> its state."""
    jobs: dict[str, JobState] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2 or not parts[0]:
            continue
        parts += [""] * (7 - len(parts))
        reason = "" if parts[2] == "None" else parts[2]
        jobs[parts[0]] = JobState(state=parts[1].split()[0], reason=reason, node=parts[3],
                                  time_limit=parts[4], name=parts[5], script="|".join(parts[6:]))
    return jobs
