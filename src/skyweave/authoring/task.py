"""``@task`` and ``command(...)``: declare versioned processing units.

A task is a Python function, a command line or a container image, with a version, typed
parameters, retries, a timeout, a priority, resources and a backtrack policy.  Outside a workflow a
``Task`` is called like the function itself (handy for testing a module on its own); inside a
``@workflow`` function calling it adds a node to the graph and returns a ``Ref``.
"""

from __future__ import annotations

import hashlib
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from skyweave.authoring.building import current_builder, require_builder
from skyweave.authoring.codehash import CodeHash, Unhashable, hash_code
from skyweave.authoring.external import File, Folder
from skyweave.authoring.interactive import MAIN_REF, defined_interactively
from skyweave.authoring.refs import Expr, Ref
from skyweave.errors import DefinitionError
from skyweave.model.product import Product
from skyweave.model.specs import (
    BacktrackPolicy,
    OutputSpec,
    Resources,
    RetryPolicy,
    TaskKind,
    TaskSpec,
    checked,
    default_version,
)

_TYPE_NAMES: dict[Any, str] = {
    int: "int", float: "float", str: "str", bool: "bool", list: "list", dict: "dict",
    Product: "Product", Path: "str", File: "File", Folder: "Folder",
}


def type_name(annotation: Any) -> str:
    """The parameter type name recorded in a TaskSpec (``any`` when not one we check)."""
    if annotation is inspect.Parameter.empty:
        return "any"
    if isinstance(annotation, str):
        base = {"int": "int", "float": "float", "str": "str", "bool": "bool", "Product": "Product",
                "list": "list", "dict": "dict", "File": "File", "Folder": "Folder"}.get(
            annotation.split("[")[0].split(" |")[0].rpartition(".")[2], "any")
        return f"{base}?" if base != "any" and "None" in annotation else base
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            return "any"
        inner = type_name(args[0])
        optional = len(args) < len(typing.get_args(annotation))
        return f"{inner}?" if optional and inner != "any" else inner
    if origin is not None:
        return _TYPE_NAMES.get(origin, "any")
    return _TYPE_NAMES.get(annotation, "any")


class Task:
    """A declared task.  ``fn`` is the Python function (``None`` for command and image tasks)."""

    def __init__(self, spec: TaskSpec, fn: Callable[..., Any] | None = None,
                 providers: Mapping[str, str | Task] | None = None) -> None:
        self._spec = checked(spec)  # a malformed declaration fails here, never in the store
        self.fn = fn
        self._providers = dict(providers or {})
        self.unhashable: tuple[Unhashable, ...] = ()
        """Values the code hash could not include (``codehash``); set only when they matter: the
        task is cached and its version follows the code."""
        self._late: tuple[CodeHash, Callable[[CodeHash], TaskSpec], bool] | None = None
        """While the function uses globals its module had not defined when it was decorated (a
        helper or constant written below the ``@task``): the hash it was declared with, how to
        declare it again, and whether its unhashable values matter."""
        if fn is not None:
            self.__doc__ = fn.__doc__
            self.__name__ = fn.__name__
            self.__qualname__ = fn.__qualname__
            self.__module__ = fn.__module__

    @property
    def spec(self) -> TaskSpec:
        """The declaration.  Its code hash, and the version that follows it, are made again once
        the module defines what the function used but was still undefined when decorated."""
        late = self._late
        if late is not None and self.fn is not None and late[0].defined_since():
            hashed = hash_code(self.fn)
            self._spec = checked(late[1](hashed))
            if late[2]:
                self.unhashable = hashed.unhashable
            self._late = (hashed, late[1], late[2]) if hashed.pending else None
        return self._spec

    def with_spec(self, spec: TaskSpec) -> Task:
        """The same task (function, providers) declared as ``spec`` (e.g. its image pinned)."""
        self.spec  # noqa: B018 -- made final first: ``unhashable`` follows the code hash
        made = Task(spec, self.fn, self._providers)
        made.unhashable = self.unhashable
        return made

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> str:
        return self.spec.version

    def __repr__(self) -> str:
        return f"<task {self.spec.key} ({self.spec.kind})>"

    def check_cacheable(self) -> None:
        """Refuse a task whose results would be reused although something it reaches could change
        unseen: a value of its code hash's reach that cannot be hashed (see ``codehash``)."""
        self.spec  # noqa: B018 -- made final first: ``unhashable`` follows the code hash
        if not self.unhashable:
            return
        first = self.unhashable[0]
        rest = sorted({u.name for u in self.unhashable[1:]} - {first.name})
        more = f" (also {', '.join(map(repr, rest))})" if rest else ""
        raise DefinitionError(
            f"task {self.name!r} cannot be cached safely: {first.describe()}{more}, which skyweave "
            "cannot hash deterministically, so a change to it would not be noticed and stale results "
            "would be reused",
            hint=f"make {first.name!r} a constant of a plain type (numbers, strings, lists, tuples, dicts, "
                 "sets, dataclasses, numpy arrays), pass it as a parameter, or give the task an explicit "
                 "version=... (bump it when that value changes) or cache=False",
            task=self.name)

    def provider_tasks(self) -> list[Task]:
        """The provider tasks this task names, found as objects or by name in its module."""
        found: list[Task] = []
        scope: dict[str, Any] = getattr(self.fn, "__globals__", {})
        for provider in self._providers.values():
            obj = provider if isinstance(provider, Task) else scope.get(provider)
            if isinstance(obj, Task):
                found.append(obj)
        return found

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        builder = current_builder()
        if builder is None:
            if self.fn is None:
                raise DefinitionError(
                    f"task {self.name!r} is a {self.spec.kind} task and can only run inside a workflow",
                    hint="call it inside a @workflow function, or run it with `skyweave run`",
                )
            return self.fn(*args, **kwargs)
        return builder.add_call(self, args, kwargs, mapped=False)

    def map(self, *args: Any, when: Expr | None = None, priority: int | None = None,
            name: str | None = None, **kwargs: Any) -> Ref:
        """One activity per item of the referenced output(s): the unknown fan-out."""
        return require_builder(f"{self.name}.map").add_call(
            self, args, kwargs, mapped=True, when=when, priority=priority, name=name)

    def options(self, *, when: Expr | None = None, priority: int | None = None,
                name: str | None = None) -> Callable[..., Ref]:
        """Call with per-call options: ``calib.options(priority=9)(events=ev)``."""
        def call(*args: Any, **kwargs: Any) -> Ref:
            return require_builder(self.name).add_call(
                self, args, kwargs, mapped=False, when=when, priority=priority, name=name)

        return call


def _retry_policy(task_name: str, retries: int | RetryPolicy, backoff: float) -> RetryPolicy:
    if isinstance(retries, RetryPolicy):
        return retries
    if not isinstance(retries, int) or isinstance(retries, bool):
        raise DefinitionError(f"task {task_name!r}: retries must be a whole number >= 0 (or a "
                              f"RetryPolicy), got {retries!r}", hint="e.g. retries=2: up to three attempts")
    if retries < 0:
        raise DefinitionError(f"retries must be >= 0, got {retries}")
    return RetryPolicy(max_attempts=retries + 1, backoff_s=backoff)


def _function_ref(fn: Callable[..., Any]) -> str:
    module = inspect.getmodule(fn)
    qualname = fn.__qualname__
    if "<locals>" in qualname:
        raise DefinitionError(
            f"task {fn.__name__!r} is defined inside a function; workers cannot import it",
            hint="define tasks at module level",
        )
    path = getattr(module, "__file__", None)
    name = getattr(module, "__name__", "__main__")
    if name == "__main__" or name.startswith("skyweave_user_"):
        if defined_interactively(fn):  # a notebook cell, python -c: assembled when registered
            return f"{MAIN_REF}:{qualname}"
        return f"{Path(str(path)).resolve()}:{qualname}"
    return f"{name}:{qualname}"


@typing.overload
def task(fn: Callable[..., Any], /) -> Task: ...


@typing.overload
def task(
    *,
    name: str | None = None,
    version: str | None = None,
    retries: int | RetryPolicy = 0,
    backoff: float = 1.0,
    timeout: float | None = None,
    priority: int = 0,
    resources: Resources | None = None,
    providers: Mapping[str, str | Task] | None = None,
    park: float = 0.0,
    max_detours: int = 3,
    cache: bool = True,
    cache_params: Sequence[str] | None = None,
    image: str | None = None,
    site: str = "",
) -> Callable[[Callable[..., Any]], Task]: ...


def task(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    version: str | None = None,
    retries: int | RetryPolicy = 0,
    backoff: float = 1.0,
    timeout: float | None = None,
    priority: int = 0,
    resources: Resources | None = None,
    providers: Mapping[str, str | Task] | None = None,
    park: float = 0.0,
    max_detours: int = 3,
    cache: bool = True,
    cache_params: Sequence[str] | None = None,
    image: str | None = None,
    site: str = "",
) -> Task | Callable[[Callable[..., Any]], Task]:
    """Declare a Python function as a task.

    ``image``: a container image (with skyweave and the function's module installed) it runs in,
    under a container executor (docs/containers.md); its digest is pinned at registration.
    ``site``: the site its activities run at, whatever their inputs (docs/operations.md).

    ``version`` defaults to a short code hash, so an edit to the function (or a helper or constant
    it uses) is a new version.  ``providers`` maps a product type to the task that makes it, for
    backtracking; ``park`` is how long (seconds) an activity may wait for a missing product.
    """

    def wrap(func: Callable[..., Any]) -> Task:
        sig = inspect.signature(func)
        try:
            hints = typing.get_type_hints(func)
        except Exception:  # unresolved forward references: fall back to raw annotations
            hints = {}
        parameters: dict[str, str] = {}
        defaults: dict[str, Any] = {}
        for pname, param in sig.parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            parameters[pname] = type_name(hints.get(pname, param.annotation))
            if param.default is not param.empty:
                defaults[pname] = param.default

        def declare(hashed: CodeHash) -> TaskSpec:
            return TaskSpec(
                name=name or func.__name__,
                version=version or default_version(hashed.digest),
                kind=TaskKind.PYTHON,
                ref=_function_ref(func),
                image=image,
                parameters=parameters,
                defaults={k: v for k, v in defaults.items() if _jsonable(v)},
                retry=_retry_policy(name or func.__name__, retries, backoff),
                timeout_s=timeout,
                priority=priority,
                resources=resources or Resources(),
                backtrack=BacktrackPolicy(
                    providers={k: (v.name if isinstance(v, Task) else v)
                               for k, v in (providers or {}).items()},
                    park_s=park, max_detours=max_detours),
                code_hash=hashed.digest,
                cache=cache,
                cache_params=_cache_params(func.__name__, parameters, cache_params),
                description=(inspect.getdoc(func) or "").split("\n\n")[0],
                site=site,
            )
        hashed = hash_code(func)
        made = Task(declare(hashed), func, providers)
        if version is None and cache:
            made.unhashable = hashed.unhashable
        if hashed.pending:
            made._late = (hashed, declare, version is None and cache)
        return made

    if fn is not None:
        return wrap(fn)
    return wrap


def command(
    name: str,
    template: str,
    *,
    version: str = "1",
    parameters: Mapping[str, str | type] | None = None,
    outputs: Mapping[str, str | OutputSpec] | None = None,
    image: str | None = None,
    retries: int = 0,
    backoff: float = 1.0,
    timeout: float | None = None,
    priority: int = 0,
    resources: Resources | None = None,
    providers: Mapping[str, str] | None = None,
    park: float = 0.0,
    max_detours: int = 3,
    cache: bool = True,
    description: str = "",
    site: str = "",
) -> Task:
    """Declare a command-line (or container image) task.

    ``template`` uses ``{params.NAME}``, ``{inputs.NAME}``, ``{outputs.NAME}`` and ``{workdir}``;
    each substitution is shell-quoted.  ``outputs`` maps an output name to a file name (itself a
    template) or an ``OutputSpec`` with a product type.  A task with an ``image`` runs its command in
    that image under a container executor (docs/containers.md; never on the host in its place);
    the image's digest is pinned when the version is registered.
    """
    params = {k: _parameter_type(name, k, v) for k, v in _mapping(name, "parameters", parameters).items()}
    outs = {k: _output(name, k, v) for k, v in _mapping(name, "outputs", outputs).items()}
    spec = TaskSpec(
        name=name, version=version, kind=TaskKind.IMAGE if image else TaskKind.COMMAND, ref=template,
        image=image, parameters=params, outputs=outs, retry=_retry_policy(name, retries, backoff),
        timeout_s=timeout, priority=priority, resources=resources or Resources(),
        backtrack=BacktrackPolicy(providers=dict(providers or {}), park_s=park, max_detours=max_detours),
        code_hash="sha256:" + hashlib.sha256(f"{template}|{image}|{sorted(outs)}".encode()).hexdigest(),
        cache=cache, description=description, site=site,
    )
    return Task(spec)


def _mapping(task_name: str, field: str, value: Any) -> Mapping[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise DefinitionError(f"task {task_name!r}: {field} must be a mapping (a dict), got "
                              f"{type(value).__name__} {value!r}",
                              hint="e.g. outputs={'stats': 'stats.json'}" if field == "outputs"
                              else "e.g. parameters={'n': 'int'}")
    return value


def _parameter_type(task_name: str, pname: Any, value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, type) or typing.get_origin(value) is not None:
        return type_name(value)
    raise DefinitionError(
        f"task {task_name!r}: parameters[{pname!r}] is {type(value).__name__} {value!r}; a parameter's "
        "type is a type name or a Python type",
        hint=f"write parameters={{{pname!r}: 'int'}} (or {{{pname!r}: int}}); names: int, float, str, "
             "bool, list, dict, Product, any")


def _output(task_name: str, oname: Any, value: Any) -> Any:
    if isinstance(value, OutputSpec | str):
        return value if isinstance(value, OutputSpec) else OutputSpec(path=value)
    if isinstance(value, Mapping):  # the YAML shape {path:, type:} written in Python
        example = f"OutputSpec(path={value.get('path', 'stats.json')!r}, type={value.get('type', 'file')!r})"
        raise DefinitionError(
            f"task {task_name!r}: outputs[{oname!r}] is a dict {dict(value)!r}; in Python an output is "
            "a file name template (a string) or an OutputSpec ({path:, type:} is the YAML shape)",
            hint=f"write outputs={{{oname!r}: {example}}} (from skyweave import OutputSpec)")
    raise DefinitionError(
        f"task {task_name!r}: outputs[{oname!r}] is {type(value).__name__} {value!r}; an output is a file "
        "name template (a string) or OutputSpec(path=..., type=...)",
        hint=f"write outputs={{{oname!r}: 'out.fits'}} or {{{oname!r}: OutputSpec(path='out.fits', "
             "type='my.type')}")


def _cache_params(task_name: str, parameters: Mapping[str, str], chosen: Sequence[str] | None
                  ) -> tuple[str, ...] | None:
    if chosen is None:
        return None
    unknown = [p for p in chosen if p not in parameters]
    if unknown:
        raise DefinitionError(f"cache_params of task {task_name!r} names unknown parameter {unknown[0]!r}",
                              hint=f"its parameters are: {', '.join(parameters)}")
    return tuple(chosen)


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list | dict)
