"""Aspects: code that wraps every activity a worker runs (validate, stage data, record, clean).

An aspect is a class with a ``name``, a ``pattern`` (``fnmatch`` on the task name; ``"*"`` = every
task) and two hooks, both optional::

    from skyweave.aspects import Aspect, AspectOutcome
    from skyweave.model.context import ActivityContext

    class FitsHeaderCheck(Aspect):
        name = "fits-header-check"
        pattern = "l2_*"

        def before(self, ctx: ActivityContext) -> None:
            ctx.log.info("checking inputs of %s", ctx.activity_id)

        def after(self, ctx: ActivityContext, outcome: AspectOutcome) -> None:
            if outcome.ok:
                outcome.usage["headers_checked"] = len(outcome.products)

Workers load aspects by reference, ``module:Class`` or ``module:Class?pattern=l2_*`` (the query
overrides the class's pattern): ``ExecutionEnv(aspects=("mypkg.checks:FitsHeaderCheck",))``.

Rules:

* ``before`` hooks run in order, ``after`` hooks in reverse order (the first aspect wraps all the
  others).  ``after`` runs for every aspect whose ``before`` ran, whatever happened next.
* An exception in ``before`` fails the activity with a message naming the aspect; it is retryable
  unless the exception says otherwise (``retryable = False``, as ``skyweave.errors.Fatal`` and
  validation errors do).  Raising ``MissingInput`` from ``before`` reports a missing input instead.
* An exception in ``after`` turns a success into a failure naming the aspect.
* One aspect instance serves every activity of a worker (and several threads at once with the
  thread executor): keep per-activity state in ``ctx.extra``, never on ``self``.
* ``ctx.extra["arguments"]`` holds the bound arguments, input products as ``Product`` objects.
* ``outcome.usage`` is a dict of figures the aspects fill: numbers, text or true/false.
  ``wall_s``, ``cpu_user_s``, ``cpu_system_s`` (seconds) and ``max_rss_kb`` are skyweave's own;
  any other key (``headers_checked``) is kept beside them.  All are the attempt's resource usage,
  in the activity record and its provenance (``usage_from``).  A value of another type fails a
  successful activity with ``skyweave.InvalidUsage``, naming the key.
"""

from __future__ import annotations

import importlib
import logging
import math
import numbers
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import parse_qsl

from skyweave.errors import DefinitionError, TaskFailure
from skyweave.model.context import ActivityContext
from skyweave.model.messages import NewProduct, Usage, UsageValue
from skyweave.model.signals import MissingInput

logger = logging.getLogger(__name__)


@dataclass
class AspectOutcome:
    """What ``after`` hooks see (and may change): success, the result or the error, the usage."""

    ok: bool
    result: Any = None
    error: BaseException | None = None
    products: list[NewProduct] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    log_uri: str = ""
    """The activity's log, set by whoever wrote one (empty: it wrote nothing)."""


@dataclass(frozen=True)
class AspectSettings:
    """What of the settings an aspect may use, handed to ``Aspect.configure`` by the worker that
    loads it (from the typed settings read at the entry point; an aspect never reads them itself).
    Picklable, so worker processes get it inside ``ExecutionEnv``."""

    authority: str = "skyweave.local"
    """The IVOA authority of identifiers (``Settings.authority``)."""


class Aspect:
    """Base class of aspects; override ``before`` and/or ``after`` (and ``configure`` to use the
    settings)."""

    name: str = "aspect"
    pattern: str = "*"

    def configure(self, settings: AspectSettings) -> None:
        """Called once when a worker loads the aspect, before any activity."""

    def applies_to(self, task_name: str) -> bool:
        return self.pattern == "*" or fnmatchcase(task_name, self.pattern)

    def before(self, ctx: ActivityContext) -> None:
        """Runs before the task; raise to stop the activity."""

    def after(self, ctx: ActivityContext, outcome: AspectOutcome) -> None:
        """Runs after the task (or after a later aspect's ``before`` failed)."""


def qualified_name(kind: type) -> str:
    """``module.Class`` of an exception type, without ``builtins.``."""
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


class AspectError(TaskFailure):
    """An aspect's hook raised; keeps the original type, message and traceback."""

    def __init__(self, aspect: str, stage: str, error: BaseException, traceback: str) -> None:
        super().__init__(
            f"aspect {aspect!r} failed in {stage}: {error}",
            error_type=qualified_name(type(error)),
            traceback=traceback,
            retryable=bool(getattr(error, "retryable", True)),
        )
        self.aspect = aspect
        self.stage = stage
        self.original = error


class AspectChain:
    """Aspects applied in order; ``before`` in order, ``after`` in reverse order."""

    def __init__(self, aspects: Sequence[Aspect] = ()) -> None:
        self.aspects = tuple(aspects)
        self._selected: dict[str, tuple[Aspect, ...]] = {}

    def for_task(self, task_name: str) -> tuple[Aspect, ...]:
        """The aspects whose pattern matches ``task_name`` (cached)."""
        selected = self._selected.get(task_name)
        if selected is None:
            selected = tuple(a for a in self.aspects if a.applies_to(task_name))
            self._selected[task_name] = selected
        return selected

    def before(self, ctx: ActivityContext, entered: list[Aspect] | None = None) -> list[Aspect]:
        """Run the matching ``before`` hooks; returns the aspects entered (pass them to ``after``).

        ``entered`` (if given) is filled as hooks complete, so a caller knows which ran even when
        one raises.  Then the ``after`` hooks of those already entered run with a failed outcome
        and an ``AspectError`` naming the aspect is raised (``MissingInput`` passes through as is).
        """
        entered = [] if entered is None else entered
        for aspect in self.for_task(ctx.task.name):
            try:
                aspect.before(ctx)
            except Exception as exc:
                error: Exception = exc
                if not isinstance(exc, MissingInput):
                    error = AspectError(aspect.name, "before", exc, _format(exc))
                self.after(ctx, entered, AspectOutcome(ok=False, error=error))
                raise error from exc
            entered.append(aspect)
        return entered

    def after(self, ctx: ActivityContext, entered: Sequence[Aspect], outcome: AspectOutcome) -> None:
        """Run the ``after`` hooks of ``entered`` in reverse order.

        An exception fails the outcome (the first error is kept; later ones are logged to the
        activity log) and the remaining hooks still run.
        """
        for aspect in reversed(entered):
            try:
                aspect.after(ctx, outcome)
            except Exception as exc:
                if outcome.ok:
                    outcome.ok = False
                    outcome.result = None
                    outcome.error = AspectError(aspect.name, "after", exc, _format(exc))
                else:
                    ctx.log.exception("aspect %r failed in after", aspect.name)


_OURS: dict[str, type[float] | type[int]] = {
    "wall_s": float, "cpu_user_s": float, "cpu_system_s": float, "max_rss_kb": int}
"""skyweave's own usage figures and their types (the fields of ``Usage``)."""


def _figure(value: Any) -> UsageValue | None:
    """``value`` as a usage figure (numpy numbers become Python ones); ``None`` if it is none."""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and math.isfinite(float(value)):
        return float(value)
    return None


def usage_from(values: Mapping[Any, Any]) -> tuple[Usage, list[str]]:
    """The ``Usage`` an attempt reports from ``outcome.usage``, and what could not be kept (one
    sentence per key): skyweave's own keys must be numbers; any other key a number, text or
    true/false (not NaN or infinite: the bus carries JSON).  On every activity's path: plain
    floats and ints take the short way."""
    ours: dict[str, Any] = {}
    custom: dict[str, UsageValue] = {}
    problems: list[str] = []
    for key, value in values.items():
        kind = _OURS.get(key)
        if kind is not None and (type(value) is float or type(value) is int):
            ours[key] = kind(value)
            continue
        figure = _figure(value)
        if not isinstance(key, str):
            problems.append(f"usage key {key!r} is a {type(key).__name__}, not text")
        elif figure is None or (kind is not None and isinstance(figure, bool | str)):
            wanted = "a number" if kind is not None else "a number, text or true/false"
            problems.append(f"usage {key!r} is {_shown(value)}, not {wanted}")
        elif kind is not None:
            ours[key] = kind(figure)
        else:
            custom[key] = figure
    return Usage(**ours, custom=custom), problems


def _shown(value: Any) -> str:
    text = repr(value)
    return f"a {type(value).__name__} ({text[:40]}{'...' if len(text) > 40 else ''})"


def _format(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def load_aspect(ref: str, settings: AspectSettings | None = None) -> Aspect:
    """An aspect instance from ``module:Class`` or ``module:Class?pattern=l2_*``, configured with
    ``settings`` (the defaults if none)."""
    target, _, query = ref.partition("?")
    module_name, _, qualname = target.partition(":")
    if not module_name or not qualname:
        raise DefinitionError(
            f"aspect reference {ref!r} is not of the form 'module:Class'",
            hint="write it as 'mypkg.aspects:MyAspect' or 'mypkg.aspects:MyAspect?pattern=l2_*'",
        )
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise DefinitionError(
            f"cannot load aspect {ref!r}: {exc}",
            hint="check the module is importable on the worker and the class name is spelled right",
        ) from exc
    options = dict(parse_qsl(query))
    unknown = sorted(set(options) - {"pattern", "name"})
    if unknown:
        raise DefinitionError(
            f"aspect reference {ref!r} has unknown option(s) {', '.join(unknown)}",
            hint="the options are 'pattern' and 'name'",
        )
    aspect = obj() if isinstance(obj, type) else obj
    if not isinstance(aspect, Aspect):
        raise DefinitionError(
            f"{ref!r} is a {type(aspect).__name__}, not an Aspect",
            hint="subclass skyweave.aspects.Aspect",
        )
    for key, value in options.items():
        setattr(aspect, key, value)
    aspect.configure(settings or AspectSettings())
    return aspect
