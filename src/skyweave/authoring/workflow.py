"""``@workflow``: a Python function that wires tasks; ``loop``: a bounded iteration.

The function runs once per submission with concrete parameter values (so a Python ``if`` on a
*parameter* is fine) and records a graph.  What is only known while the run goes on (list lengths,
results) is handled by the controller: ``task.map`` fan-outs, ``when=`` conditions, ``loop``.
"""

from __future__ import annotations

import inspect
import json
import traceback
import typing
from collections.abc import Callable, Mapping
from pathlib import PurePath
from typing import Any

from skyweave.authoring.building import require_builder, reset_builder, set_builder
from skyweave.authoring.external import File, Folder
from skyweave.authoring.graph import GRAPH_VERSION, GraphBuilder, output_json, validate_graph
from skyweave.authoring.refs import Expr, Ref
from skyweave.authoring.task import Task, type_name
from skyweave.errors import DefinitionError, ParameterError, SkyweaveError


def _coerce(workflow: str, name: str, type_: str, value: Any) -> Any:
    """Turn a CLI string into the annotated type; check non-strings."""
    if type_.endswith("?"):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        type_ = type_[:-1]
    if type_ in ("File", "Folder") and isinstance(value, str | PurePath):
        return File(str(value)) if type_ == "File" else Folder(str(value))
    bad = ParameterError(
        f"parameter {name!r} of workflow {workflow!r} expects {type_}, got {value!r}",
        hint=f"pass --param {name}=<{type_}>")
    if not isinstance(value, str) or type_ in ("str", "any", "Product"):
        if type_ == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            raise bad
        if type_ == "float" and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise bad
        if type_ == "bool" and not isinstance(value, bool):
            raise bad
        return value
    try:
        if type_ == "int":
            return int(value)
        if type_ == "float":
            return float(value)
        if type_ == "bool":
            low = value.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise bad
        if type_ in ("list", "dict"):
            parsed = json.loads(value)
            if not isinstance(parsed, list if type_ == "list" else dict):
                raise bad
            return parsed
    except (ValueError, json.JSONDecodeError):
        raise bad from None
    return value


class Workflow:
    """A declared workflow: ``build(params)`` returns its graph and the tasks it uses."""

    def __init__(self, fn: Callable[..., Any], name: str, pin: bool) -> None:
        self.fn = fn
        self.name = name
        self.pin = pin
        self.__doc__ = fn.__doc__
        sig = inspect.signature(fn)
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # unresolved forward references: fall back to raw annotations
            hints = {}
        self.parameters = {p: type_name(hints.get(p, sig.parameters[p].annotation)) for p in sig.parameters}
        self.defaults = {p: v.default for p, v in sig.parameters.items() if v.default is not v.empty}

    def __repr__(self) -> str:
        return f"<workflow {self.name}>"

    def bind(self, params: Mapping[str, Any]) -> dict[str, Any]:
        unknown = [k for k in params if k not in self.parameters]
        if unknown:
            raise ParameterError(
                f"workflow {self.name!r} has no parameter {unknown[0]!r}",
                hint=f"its parameters are: {', '.join(self.parameters) or '(none)'}")
        values: dict[str, Any] = {}
        for pname, type_ in self.parameters.items():
            if pname in params:
                values[pname] = _coerce(self.name, pname, type_, params[pname])
            elif pname in self.defaults:
                values[pname] = self.defaults[pname]
            else:
                raise ParameterError(f"workflow {self.name!r} needs parameter {pname!r}",
                                     hint=f"pass --param {pname}=...")
        return values

    def build(self, params: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Task]]:
        """Run the workflow function and return ``(graph, tasks by name)``."""
        values = self.bind(params or {})
        builder = GraphBuilder(self.name)
        token = set_builder(builder)
        try:
            returned = self.fn(**values)
        except SkyweaveError:
            raise
        except Exception as exc:
            frames = traceback.extract_tb(exc.__traceback__)
            code = self.fn.__code__
            where = next((f"{f.filename}:{f.lineno}" for f in reversed(frames)
                          if f.filename == code.co_filename), code.co_filename)
            raise DefinitionError(
                f"building workflow {self.name!r} failed at {where}: {type(exc).__name__}: {exc}",
                hint="the workflow function runs at submission to wire tasks; fix the error there",
            ) from exc
        finally:
            reset_builder(token)
        graph = {
            "version": GRAPH_VERSION,
            "workflow": self.name,
            "params": {k: (str(v.path) if isinstance(v, File | Folder) else v) for k, v in values.items()},
            "nodes": builder.nodes,
            "outputs": output_json(returned),
            "tasks": {name: t.spec.version for name, t in builder.tasks.items()},
        }
        validate_graph(graph)
        return graph, builder.tasks


@typing.overload
def workflow(fn: Callable[..., Any], /) -> Workflow: ...


@typing.overload
def workflow(*, name: str | None = None, pin: bool = False) -> Callable[[Callable[..., Any]], Workflow]: ...


def workflow(fn: Callable[..., Any] | None = None, /, *, name: str | None = None, pin: bool = False
             ) -> Workflow | Callable[[Callable[..., Any]], Workflow]:
    """Declare a workflow.  ``pin=True`` pins every task to the version it had at submission."""

    def wrap(func: Callable[..., Any]) -> Workflow:
        return Workflow(func, name or func.__name__, pin)

    return wrap(fn) if fn is not None else wrap


def loop(
    body: Task,
    *,
    until: Expr,
    max_iterations: int,
    state_arg: str = "state",
    initial: Any = None,
    on_exhausted: str = "accept",
    mapped: bool = False,
    when: Expr | None = None,
    priority: int | None = None,
    **kwargs: Any,
) -> Ref:
    """Run ``body`` again and again, passing its previous result as ``state_arg``, until the
    ``until`` condition on ``skyweave.result`` holds or ``max_iterations`` is reached.

    ``on_exhausted="accept"`` keeps the last result when the loop never converged (recorded on the
    activity); ``"fail"`` fails it.  ``when=`` skips the whole loop (e.g. for flagged data).
    """
    if max_iterations < 1:
        raise DefinitionError(f"loop over {body.name!r}: max_iterations must be >= 1")
    if on_exhausted not in ("accept", "fail"):
        raise DefinitionError("loop on_exhausted must be 'accept' or 'fail'")
    if state_arg not in body.spec.parameters:
        raise DefinitionError(f"loop body {body.name!r} has no parameter {state_arg!r} for the loop state",
                              hint="name it with state_arg=...")
    if not isinstance(until, Expr):
        raise DefinitionError("loop until= must be a condition such as skyweave.result['delta'] < 1e-3")
    builder = require_builder("skyweave.loop")
    if not isinstance(builder, GraphBuilder):
        raise DefinitionError("skyweave.loop needs the standard graph builder")
    spec = {"until": until.to_json(), "max_iterations": max_iterations, "state_arg": state_arg,
            "on_exhausted": on_exhausted}
    kwargs = dict(kwargs)
    kwargs[state_arg] = initial
    return builder.add_call(body, (), kwargs, mapped=mapped, loop=spec, when=when, priority=priority)
