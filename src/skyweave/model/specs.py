"""Task specifications: what a task is (kind, reference, version) and how it must be run
(parameters, outputs, retries, timeout, priority, resources, backtracking, caching).

Specs are immutable msgspec structs: cheap to copy, validate and put on the bus.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import msgspec

from skyweave.errors import DefinitionError


def default_version(code_hash: str) -> str:
    """The version ``@task`` gives a function declared without ``version=``: a short code hash."""
    return code_hash.rpartition(":")[2][:12]


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
    partition: str = ""
    """Where on a batch system it must run (the ``slurm`` executor's ``--partition``, e.g. a GPU
    partition for imaging), over the executor's own setting; other executors ignore it."""


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
    image_digest: str = ""
    """The content digest (``sha256:…``) ``image`` had when this version was registered: what
    its activities run (never the tag, which can move), in the cache key and in provenance."""
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
    site: str = ""
    """The site its activities run at, whatever their inputs (``""``: where most input bytes are;
    docs/operations.md, "Several sites")."""

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"


_ARGUMENT = {"timeout_s": "timeout", "retry.max_attempts": "retries", "retry.backoff_s": "backoff",
             "backtrack.park_s": "park", "backtrack.max_detours": "max_detours",
             "backtrack.providers": "providers", "ref": "the function reference or command template"}
"""Spec fields by the name the user gave them (``@task``/``command`` arguments, YAML keys)."""

_MISMATCH = re.compile(r"Expected `(?P<want>[^`]+)`, got `(?P<got>[^`]+)` - at `\$\.?(?P<at>[^`]*)`")


def checked(spec: TaskSpec) -> TaskSpec:
    """``spec`` if the store can keep it and read it back; otherwise ``DefinitionError`` naming
    the field and the shape it takes (a spec is only type-checked here: msgspec does not check
    the fields of a struct built in Python, and a row the store cannot decode breaks every
    command that lists tasks)."""
    where = f"task {spec.name!r}" if isinstance(spec.name, str) else f"a task named {spec.name!r}"
    if not isinstance(spec.name, str) or not spec.name.strip():
        raise DefinitionError(f"{where}: its name must be a non-empty string",
                              hint="e.g. name='calibrate'")
    _check_mapping(where, "parameters", spec.parameters, lambda v: isinstance(v, str),
                   shape="a type name ('int', 'float', 'str', 'bool', 'list', 'dict', 'Product', 'any')",
                   example="e.g. parameters={'n': 'int', 'raw': 'Product'} (or Python types: {'n': int})")
    _check_mapping(where, "outputs", spec.outputs, _output_ok,
                   shape="OutputSpec(path='<file name template>', type='<product type>') or a file name "
                         "template",
                   example="e.g. outputs={'stats': OutputSpec(path='stats.json', type='my.stats')} "
                           "or outputs={'stats': 'stats.json'}")
    _check_mapping(where, "providers", spec.backtrack.providers, lambda v: isinstance(v, str),
                   shape="the name of the task that makes that product type",
                   example="e.g. providers={'ep.aux.attitude': 'fetch_attitude'}")
    try:
        return msgspec.convert(msgspec.to_builtins(spec), TaskSpec)
    except TypeError as exc:  # to_builtins: a value with no JSON form (defaults are filtered before)
        raise DefinitionError(f"{where} holds a value that cannot be stored: {exc}",
                              hint="give plain values (str, int, float, bool, lists and dicts of them)"
                              ) from exc
    except msgspec.ValidationError as exc:
        raise DefinitionError(f"{where}: {_explain(str(exc))}",
                              hint="see the arguments of @task / command() (or the keys of a YAML task)"
                              ) from exc


def _output_ok(value: Any) -> bool:
    return isinstance(value, OutputSpec) and isinstance(value.path, str) and isinstance(value.type, str)


def _check_mapping(where: str, field: str, value: Any, ok: Any, *, shape: str, example: str) -> None:
    if not isinstance(value, Mapping):
        raise DefinitionError(f"{where}: {field} must be a mapping of name to {shape}, got "
                              f"{type(value).__name__} {value!r}", hint=example)
    for key, item in value.items():
        if not isinstance(key, str):
            raise DefinitionError(f"{where}: {field} names must be strings, got {key!r}", hint=example)
        if not ok(item):
            shown = item.path if isinstance(item, OutputSpec) and not isinstance(item.path, str) else item
            raise DefinitionError(f"{where}: {field}[{key!r}] is {type(shown).__name__} {shown!r}; "
                                  f"it must be {shape}", hint=example)


def _explain(message: str) -> str:
    """msgspec's ``Expected `str`, got `int` - at `$.version``` in the user's words."""
    found = _MISMATCH.search(message)
    if found is None:
        return message
    at = found["at"]
    field = _ARGUMENT.get(at, at.split(".")[-1] if at.startswith(("resources.", "retry.")) else at)
    return f"{field} must be {found['want']}, got {found['got']}"
