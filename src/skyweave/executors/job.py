"""A *job*: one dispatch and the execution environment it runs in, serialised for a process that
runs it alone (``python -m skyweave.execute``: a Slurm job, a container, a Kubernetes pod), and the
*outcome* that process writes back.

A job file is JSON::

    {"format": "skyweave.job/1",
     "env": {"worker": "...", "storage_root": "/...", "work_root": "/...", "log_root": "/...", ...},
     "dispatch": {"type": "dispatch", "activity_id": "...", "attempt": 1, "task": {...}, ...}}

``dispatch`` is the ``DispatchActivity`` exactly as the bus carries it; ``env`` the fields of
``ExecutionEnv`` (paths as text; ``authority`` for the aspects).  An outcome file is the outcome
message as JSON (``{"type": "activity.finished", ...}``, ``activity.failed`` or
``activity.needs_input``), the same struct the bus carries.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import msgspec

from skyweave.aspects.base import AspectSettings
from skyweave.errors import SkyweaveError
from skyweave.executors.base import ExecutionEnv
from skyweave.model.messages import ActivityFailed, ActivityFinished, ActivityNeedsInput, DispatchActivity

JOB_FORMAT: Literal["skyweave.job/1"] = "skyweave.job/1"

FinalOutcome = ActivityFinished | ActivityFailed | ActivityNeedsInput


class JobError(SkyweaveError):
    """A job file that cannot be run: unreadable, not JSON, or not a job."""


class JobEnv(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    worker: str
    storage_root: str
    work_root: str
    log_root: str
    aspects: list[str] = msgspec.field(default_factory=list)
    authority: str = AspectSettings.authority
    builtin_aspects: bool = True
    validate_checksums: bool = True
    preload: list[str] = msgspec.field(default_factory=list)
    import_path: list[str] = msgspec.field(default_factory=list)
    extra: dict[str, str] = msgspec.field(default_factory=dict)
    storage: str = ""
    """URL of the product storage (``ExecutionEnv.storage``); empty: the folder ``storage_root``."""
    container: str = ""
    """The container engine setting (``ExecutionEnv.container``)."""


class Job(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    format: Literal["skyweave.job/1"]
    env: JobEnv
    dispatch: DispatchActivity


_job_decoder = msgspec.json.Decoder(Job)
_outcome_decoder = msgspec.json.Decoder(FinalOutcome)
_encoder = msgspec.json.Encoder()


def encode_job(dispatch: DispatchActivity, env: ExecutionEnv) -> bytes:
    job_env = JobEnv(
        worker=env.worker, storage_root=str(env.storage_root), work_root=str(env.work_root),
        log_root=str(env.log_root), aspects=list(env.aspects), authority=env.aspect_settings.authority,
        builtin_aspects=env.builtin_aspects, validate_checksums=env.validate_checksums,
        preload=list(env.preload), import_path=list(env.import_path), extra=dict(env.extra),
        storage=env.storage, container=env.container)
    return _encoder.encode(Job(format=JOB_FORMAT, env=job_env, dispatch=dispatch))


def decode_job(data: bytes, *, source: str = "the job") -> tuple[DispatchActivity, ExecutionEnv]:
    """The dispatch and environment of a job file's contents; ``JobError`` says what is wrong."""
    try:
        job = _job_decoder.decode(data)
    except msgspec.DecodeError as exc:  # ValidationError is one: "Expected `int`, got `str` - at `$.…`"
        raise JobError(f"{source} is not a skyweave job: {exc}",
                       hint=f"a job file is JSON with format {JOB_FORMAT!r}, env and dispatch, as "
                            "skyweave.executors.job.encode_job writes it (docs/operations.md)") from None
    e = job.env
    env = ExecutionEnv(
        worker=e.worker, storage_root=Path(e.storage_root), work_root=Path(e.work_root),
        log_root=Path(e.log_root), aspects=tuple(e.aspects),
        aspect_settings=AspectSettings(authority=e.authority), builtin_aspects=e.builtin_aspects,
        validate_checksums=e.validate_checksums, preload=tuple(e.preload),
        import_path=tuple(e.import_path), extra=dict(e.extra), storage=e.storage, container=e.container)
    return job.dispatch, env


def encode_outcome(outcome: FinalOutcome) -> bytes:
    return _encoder.encode(outcome)


def decode_outcome(data: bytes) -> FinalOutcome:
    outcome: FinalOutcome = _outcome_decoder.decode(data)
    return outcome


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, then rename it into
    place: a reader sees the whole file or none (a process killed meanwhile leaves only the
    temporary, which is removed on failure)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
