"""Task specifications: what a task is (kind, reference, version) and how it must be run
(parameters, outputs, retries, timeout, priority, resources, backtracking, caching).

Specs are immutable msgspec structs: cheap to copy, validate and put on the bus.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec


class TaskKind(StrEnum):
    PYTHON = "python"
    """A Python function, referenced as ``module:qualname`` or ``/path/file.py:qualname``."""
    COMMAND = "command"
    """A command line; ``ref`` is the argument template (``{params.x}``, ``{inputs.y}``, ``{outputs.z}``)."""
    IMAGE = "image"
    """A container image running a command line (executed by the container executors)."""


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How many attempts an activity gets and how long to wait between them."""

    max_attempts: int = 1
    backoff_s: float = 1.0
    factor: float = 2.0
    max_backoff_s: float = 300.0

    def delay(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt number ``failed_attempt`` (1-based) failed."""
        return float(min(self.max_backoff_s, self.backoff_s * self.factor ** max(0, failed_attempt - 1)))


class Resources(msgspec.Struct, frozen=True, kw_only=True):
    """What one activity needs; executors use it to size slots, Slurm and Kubernetes requests."""

    cpus: float = 1.0
    memory_mb: int | None = None
    gpus: int = 0


class BacktrackPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How the controller answers an activity that reports a missing or insufficient input.

    ``providers`` maps a product type to the task that makes it; the provider runs with the
    parameters the activity suggested (e.g. a wider time window) and then the activity runs again
    with the new product bound.  ``park_s`` > 0 parks the activity until a matching product is
    registered (by any run, a trigger or ``skyweave products add``), failing after that many
    seconds.  ``max_detours`` bounds the loop.
    """

    providers: dict[str, str] = msgspec.field(default_factory=dict)
    park_s: float = 0.0
    max_detours: int = 3


class OutputSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A declared file output of a command task: a file name template and its product type."""

    path: str
    type: str = "file"


class TaskSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Everything needed to run one version of a task, anywhere."""

    name: str
    version: str
    kind: TaskKind = TaskKind.PYTHON
    ref: str = ""
    """Python: ``module:qualname`` or ``/abs/path.py:qualname``; command/image: argument template."""
    image: str | None = None
    parameters: dict[str, str] = msgspec.field(default_factory=dict)
    """Parameter name -> type name (``int``, ``float``, ``str``, ``bool``, ``Product``, ``list``, ``any``)."""
    defaults: dict[str, Any] = msgspec.field(default_factory=dict)
    outputs: dict[str, OutputSpec] = msgspec.field(default_factory=dict)
    retry: RetryPolicy = RetryPolicy()
    timeout_s: float | None = None
    priority: int = 0
    resources: Resources = Resources()
    backtrack: BacktrackPolicy = BacktrackPolicy()
    code_hash: str = ""
    cache: bool = True
    """Reuse the outputs of an earlier activity with the same cache key (off for tasks whose
    result depends on more than their code, parameters and input files)."""
    cache_params: tuple[str, ...] | None = None
    """The parameters that matter for reuse (``None``: all of them)."""
    description: str = ""

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"
