"""The executor port: runs dispatched activities and reports their outcomes as events.

An executor never talks to the store or the bus; the worker service (``executors/worker.py``)
claims dispatches from the bus, hands them to an executor, and publishes what it reports.
Implementations, chosen by name or URL scheme through the registry in ``executors/__init__.py``:
``threads`` (in-process, for tests and tiny tasks), ``local`` (a pool of child processes, the
default), ``subprocess`` (one ``python -m skyweave.execute`` process per activity: what a Slurm job,
a container or a pod runs), ``slurm`` (a Slurm batch job per activity); later ``dask``,
``kubernetes``.  Every one passes the
executor contract suite (``tests/unit/executors/contract/``); what an executor cannot do (stop a
running activity, enforce ``resources.memory_mb``) it declares in its ``capabilities``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from skyweave.aspects.base import AspectSettings
from skyweave.model.messages import (
    ActivityFailed,
    ActivityFinished,
    ActivityNeedsInput,
    ActivityStarted,
    DispatchActivity,
)
from skyweave.model.specs import TaskKind, TaskSpec

Outcome = ActivityStarted | ActivityFinished | ActivityFailed | ActivityNeedsInput

RUN_IMAGE_YOURSELF = ("run the workers with a container executor (--executor docker or podman, "
                      "docs/containers.md), or remove image= (image: in YAML) to run on the host")


def unrunnable(spec: TaskSpec, env: ExecutionEnv) -> str | None:
    """Why this worker cannot run ``spec`` as it is declared (``None``: it can).

    A task that names a container image must run in that image: running its command on the host
    instead would ignore a declared field and give results from the wrong software, so a worker
    whose executor is not a container one refuses it.
    """
    if (spec.kind is TaskKind.IMAGE or spec.image) and not env.container:
        return (f"task {spec.name!r} declares the container image {spec.image!r}, but this worker's "
                "executor runs no containers; skyweave will not run it on the host instead")
    return None


@dataclass(frozen=True)
class ExecutionEnv:
    """What the boundary around user code needs, picklable so child processes get it too."""

    worker: str
    storage_root: Path
    """Products are moved under ``storage_root/<run_id>/<activity_id>/``."""
    work_root: Path
    """Each attempt gets ``work_root/<activity_id>-<attempt>/`` as its working directory."""
    log_root: Path
    """Each attempt's captured output goes to ``log_root/<activity_id>.<attempt>.log``."""
    aspects: tuple[str, ...] = ()
    """Import references (``module:Class`` or ``module:Class?pattern=l2_*``) of extra aspects."""
    aspect_settings: AspectSettings = field(default_factory=AspectSettings)
    """What of the settings the aspects get (``Aspect.configure``)."""
    builtin_aspects: bool = True
    validate_checksums: bool = True
    preload: tuple[str, ...] = ()
    """Modules each worker process imports as it starts, before it takes work: the import of a
    pipeline with heavy dependencies (astropy, scipy...) is then paid at start-up, not by the first
    activity of each task module in every process."""
    import_path: tuple[str, ...] = ()
    """Directories put first on ``sys.path`` of every worker process before it imports aspects,
    preload modules and tasks: the directory skyweave was started in (see ``engine.make_env``), so
    a ``module:Class`` there loads in worker processes as it would with ``python -m``."""
    extra: dict[str, str] = field(default_factory=dict)
    storage: str = ""
    """URL of the deployment's storage (``storage.open_storage``: ``s3://bucket/prefix``, or any
    scheme the registry knows; ``Settings.storage_location``), holding ``products/`` and ``logs/``;
    empty means products go to the local folder ``storage_root``.  With a storage that is not the
    controller's disk, outputs are written to its ``products/``, captured logs copied to its
    ``logs/``, and inputs stored there copied into the attempt's work directory (``.inputs/``)
    before the task runs."""
    container: str = ""
    """The container engine setting (``docker``, ``podman://?host=…``: ``executors/containers.py``)
    of a container executor; empty: tasks that name an image cannot run here."""


@dataclass(frozen=True)
class Capabilities:
    """What an executor does beyond the contract every executor keeps; the contract suite holds
    each one to what it declares (an executor that cannot do something says so, and the test of
    it is skipped with that reason rather than passing without looking)."""

    stops_running_work: bool
    """A timeout or a cancel stops the activity's process (and the commands it started); without
    it the activity is only *reported* failed and runs on (``threads``)."""
    enforces_memory: bool
    """``resources.memory_mb`` is enforced: an activity over it is stopped, ``skyweave.MemoryLimit``."""
    reports_memory_used: bool = True
    """A ``MemoryLimit`` failure says how much the activity used (`` used N MB``); Kubernetes kills
    an over-limit container (``OOMKilled``) without saying how much it had."""


class Executor(ABC):
    name: str
    capabilities: ClassVar[Capabilities]

    @property
    @abstractmethod
    def slots(self) -> int:
        """How many activities it runs at once."""

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def submit(self, batch: Sequence[DispatchActivity]) -> None:
        """Queue activities; returns at once."""

    @abstractmethod
    def collect(self, timeout: float) -> list[Outcome]:
        """Outcomes that arrived, waiting up to ``timeout`` seconds for the first one."""

    @abstractmethod
    def cancel(self, activity_ids: Sequence[str]) -> None:
        """Stop these activities if queued or running (they report ``ActivityFailed``, not retryable)."""

    @property
    @abstractmethod
    def active(self) -> int:
        """Submitted activities with no final outcome yet."""

    def wake(self) -> None:  # noqa: B027 - optional: an executor whose collect cannot be woken
        """Make a ``collect`` that is waiting (or the next one) return at once; callable from any
        thread.  The worker calls it when a dispatch is enqueued while it waits for running work
        with a slot free (``Bus.on_enqueue``).  The default does nothing: ``collect`` then returns
        when its timeout is over, as it would anyway."""

    @abstractmethod
    def close(self) -> None: ...
