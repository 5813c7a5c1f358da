"""Declarative workflows: a YAML or JSON file that wires command-line tools and Python tasks.

``load_declarative(path)`` checks the whole file (structure, task declarations, references, the
dependency order of the steps) and returns an ordinary ``Workflow``: its parameters are typed and
coerced by ``Workflow.bind``, and its function calls ``GraphBuilder.add_call`` once per step in
dependency order, so the graph is exactly the one the equivalent ``@workflow`` function builds.
The format is documented in ``docs/declarative.md``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyweave.authoring.building import require_builder
from skyweave.authoring.declarative_expr import (
    Lit,
    Node,
    Op,
    ParamRef,
    ResultRef,
    StepRef,
    all_refs,
    parse_condition,
    parse_value,
)
from skyweave.authoring.declarative_file import Document, Key, read_document, suggest, wrap
from skyweave.authoring.external import File, Folder
from skyweave.authoring.graph import GraphBuilder
from skyweave.authoring.loader import load_task
from skyweave.authoring.refs import Expr, OpExpr, Ref, ResultPlaceholder
from skyweave.authoring.task import Task, command
from skyweave.authoring.workflow import Workflow, _coerce
from skyweave.errors import DefinitionError, WorkflowLoadError
from skyweave.model.specs import OutputSpec, Resources

TOP_KEYS = ("workflow", "description", "pin", "params", "tasks", "steps", "output")
COMMAND_KEYS = ("command", "version", "parameters", "outputs", "image", "retries", "backoff", "timeout",
                "priority", "resources", "providers", "park", "max_detours", "cache", "description", "site")
STEP_KEYS = ("task", "map", "args", "when", "priority", "loop")
LOOP_KEYS = ("until", "max_iterations", "state_arg", "initial", "on_exhausted")
TYPES: dict[str, Any] = {"str": str, "int": int, "float": float, "bool": bool, "list": list,
                         "dict": dict, "any": Any, "File": File, "Folder": Folder}
TYPE_NAMES = ("str", "int", "float", "bool", "list", "dict", "any", "Product", "File", "Folder")
_NAME = re.compile(r"[A-Za-z_]\w*")
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{(params|inputs|outputs)\.([A-Za-z_]\w*)\}")
"""As in ``executors/command.py``: a doubled brace is a literal one, not the start of a placeholder."""
NUMBER = (int, float)


@dataclass
class Step:
    name: str
    task: Task
    map: dict[str, Any]
    args: dict[str, Any]
    when: Node | None = None
    priority: int | None = None
    loop: dict[str, Any] | None = None
    deps: list[str] = field(default_factory=list)


# -- tasks ----------------------------------------------------------------------------------------
def _python_task(doc: Document, key: Key, ref: Any) -> Task:
    if not isinstance(ref, str) or ":" not in ref:
        raise doc.error(key, f"python task reference must be MODULE:NAME or FILE.py:NAME, got {ref!r}",
                        hint="e.g. python: mypkg.tasks:list_chips or python: tasks.py:list_chips")
    where, _, attr = ref.rpartition(":")
    if where.endswith(".py") and not Path(where).is_absolute():
        where = str(doc.path.parent / where)  # relative to the workflow file, not the cwd
    try:
        return load_task(f"{where}:{attr}")
    except DefinitionError as exc:
        raise wrap(f"{doc.at(*key)}: python task {ref!r}", exc) from None


def _parameter_type(doc: Document, key: Key, value: Any) -> str:
    if not isinstance(value, str) or value.removesuffix("?") not in TYPE_NAMES:
        raise doc.error(key, f"unknown parameter type {value!r}",
                        hint=f"use one of {', '.join(TYPE_NAMES)} (add ? to allow null, e.g. int?)")
    return value


def _command_task(doc: Document, key: Key, name: str, spec: dict[str, Any]) -> Task:
    template = doc.typed(spec, "command", key, str, "a string (the command line)")
    if template is None:
        raise doc.error(key, f"command task {name!r} has no command:",
                        hint="add command: \"tool --in {params.x} --out {outputs.y}\", or python: "
                             "MODULE:NAME for a Python task")
    outputs: dict[str, OutputSpec] = {}
    for oname, out in doc.mapping(spec.get("outputs"), (*key, "outputs"), "outputs").items():
        okey = (*key, "outputs", oname)
        if isinstance(out, str):
            outputs[oname] = OutputSpec(path=out)
            continue
        odict = doc.mapping(out, okey, f"output {oname!r}", ("path", "type"))
        path = doc.typed(odict, "path", okey, str, "a file name template")
        if path is None:
            raise doc.error(okey, f"output {oname!r} has no path:", hint="e.g. path: \"{params.chip}.fits\"")
        otype = doc.typed(odict, "type", okey, str, "a string", default="file")
        outputs[oname] = OutputSpec(path=path, type=otype)
    used = [found for found in _PLACEHOLDER.findall(" ".join([template, *(o.path for o in outputs.values())]))
            if found[0]]
    if "parameters" in spec:
        params = {p: _parameter_type(doc, (*key, "parameters", p), t) for p, t in
                  doc.mapping(spec["parameters"], (*key, "parameters"), "parameters").items()}
    else:  # inferred from the placeholders, untyped ({inputs.X} may be a product or a list of them)
        params = {p: "any" for section, p in used if section != "outputs"}
    for section, pname in used:
        known = outputs if section == "outputs" else params
        if pname not in known:
            what = "outputs" if section == "outputs" else "parameters"
            raise doc.error(key, f"command task {name!r} uses {{{section}.{pname}}} but declares no "
                                 f"such {what[:-1]}", hint=f"add {pname} to its {what}: "
                                                          f"(declared: {', '.join(known) or 'none'})")
    res = doc.mapping(spec.get("resources"), (*key, "resources"), "resources",
                      ("cpus", "memory_mb", "gpus", "partition"))
    rkey = (*key, "resources")
    providers = doc.mapping(spec.get("providers"), (*key, "providers"), "providers")
    for ptype, provider in providers.items():
        if not isinstance(provider, str):
            raise doc.error((*key, "providers", ptype), "a provider must be a task name")
    version = spec.get("version", "1")
    if not isinstance(version, str | int | float) or isinstance(version, bool):
        raise doc.error((*key, "version"), f"version must be a string, got {version!r}")
    retries = doc.typed(spec, "retries", key, int, "a whole number", default=0)
    if retries < 0:
        raise doc.error((*key, "retries"), "retries must be >= 0")
    return command(
        name, template, version=str(version), parameters=params, outputs=outputs,
        image=doc.typed(spec, "image", key, str, "a string"), retries=retries,
        backoff=float(doc.typed(spec, "backoff", key, NUMBER, "a number", default=1.0)),
        timeout=doc.typed(spec, "timeout", key, NUMBER, "a number of seconds"),
        priority=doc.typed(spec, "priority", key, int, "a whole number", default=0),
        resources=Resources(cpus=float(doc.typed(res, "cpus", rkey, NUMBER, "a number", default=1.0)),
                            memory_mb=doc.typed(res, "memory_mb", rkey, int, "a whole number"),
                            gpus=doc.typed(res, "gpus", rkey, int, "a whole number", default=0),
                            partition=doc.typed(res, "partition", rkey, str, "a string", default="")),
        providers=providers,
        park=float(doc.typed(spec, "park", key, NUMBER, "a number of seconds", default=0.0)),
        max_detours=doc.typed(spec, "max_detours", key, int, "a whole number", default=3),
        site=doc.typed(spec, "site", key, str, "a site name", default=""),
        cache=doc.typed(spec, "cache", key, bool, "true or false", default=True),
        description=doc.typed(spec, "description", key, str, "a string", default=""),
    )


def _tasks(doc: Document) -> dict[str, Task]:
    tasks: dict[str, Task] = {}
    for name, raw in doc.mapping(doc.data.get("tasks"), ("tasks",), "tasks").items():
        key: Key = ("tasks", name)
        if isinstance(raw, str):
            tasks[name] = _python_task(doc, key, raw)
            continue
        spec = doc.mapping(raw, key, f"task {name!r}", ("python", *COMMAND_KEYS))
        if "python" in spec:
            if len(spec) > 1:
                raise doc.error(key, f"task {name!r} is a python task, so it takes only python:",
                                hint="version, retries, timeout... are set by @task(...) in Python")
            tasks[name] = _python_task(doc, (*key, "python"), spec["python"])
        elif "command" not in spec:
            raise doc.error(key, f"task {name!r} has neither command: nor python:",
                            hint="give command: \"tool {params.x} {outputs.y}\" for a command-line tool, "
                                 "or python: MODULE:NAME / FILE.py:NAME for a Python @task")
        else:
            tasks[name] = _command_task(doc, key, name, spec)
    return tasks


# -- parameters -----------------------------------------------------------------------------------
def _params(doc: Document, name: str) -> list[inspect.Parameter]:
    out: list[inspect.Parameter] = []
    for pname, raw in doc.mapping(doc.data.get("params"), ("params",), "params").items():
        key: Key = ("params", pname)
        if not _NAME.fullmatch(pname):
            raise doc.error(key, f"parameter name {pname!r} is not an identifier")
        spec = doc.mapping({"type": raw} if isinstance(raw, str) else raw, key, f"parameter {pname!r}",
                           ("type", "default", "description"))
        tname = doc.typed(spec, "type", key, str, "a type name", default="any")
        if tname.removesuffix("?") not in TYPES:
            raise doc.error((*key, "type"), f"unknown parameter type {tname!r}",
                            hint=f"use one of {', '.join(TYPES)} (add ? to allow null, e.g. int?)")
        annotation = TYPES[tname.removesuffix("?")]
        if tname.endswith("?"):
            annotation = annotation | None
        default = None if tname.endswith("?") else inspect.Parameter.empty  # optional: null by default
        if "default" in spec:
            try:
                default = _coerce(name, pname, tname, spec["default"])
            except DefinitionError as exc:
                raise doc.error((*key, "default"), f"default of parameter {pname!r}: {exc.message}") from None
        out.append(inspect.Parameter(pname, inspect.Parameter.KEYWORD_ONLY, default=default,
                                     annotation=annotation))
    return out


# -- steps ----------------------------------------------------------------------------------------
def _step(doc: Document, name: str, spec: Any, tasks: dict[str, Task], *, steps: set[str],
          params: set[str]) -> Step:
    key: Key = ("steps", name)
    where = f"{doc.at(*key)}: step {name!r}"
    if not _NAME.fullmatch(name) or name in ("params", "result"):
        raise doc.error(key, f"step name {name!r} must be an identifier other than params and result",
                        hint="use letters, digits and _ (e.g. merged_events)")
    spec = doc.mapping(spec, key, f"step {name!r}", STEP_KEYS)
    tname = doc.typed(spec, "task", key, str, "a task name")
    if tname is None:
        raise doc.error(key, f"step {name!r} has no task:", hint=f"known tasks: {', '.join(tasks) or 'none'}")
    if tname in tasks:
        task = tasks[tname]
    elif ":" in tname:
        task = _python_task(doc, (*key, "task"), tname)
    else:
        raise doc.error((*key, "task"), f"step {name!r} uses unknown task {tname!r}",
                        hint=f"{suggest(tname, tasks)}declare it under tasks: "
                             f"(known: {', '.join(tasks) or 'none'})")
    mapped = {k: parse_value(v, f"{where} map.{k}") for k, v in
              doc.mapping(spec.get("map"), (*key, "map"), "map").items()}
    args = {k: parse_value(v, f"{where} args.{k}") for k, v in
            doc.mapping(spec.get("args"), (*key, "args"), "args").items()}
    if "map" in spec and not mapped:
        raise doc.error((*key, "map"), "map: is empty", hint="name the argument(s) to fan out over")
    for k, v in mapped.items():
        if not isinstance(v, StepRef) or v.mode == "gather":
            raise doc.error((*key, "map", k), f"map.{k} of step {name!r} must be a step output ($STEP or "
                            f"each($STEP)), got {v!r}",
                            hint="a parameter or literal is a single value: pass it under args:")
    for k, v in args.items():
        if isinstance(v, StepRef) and (v.mode == "each" or (mapped and v.mode == "auto")):
            raise doc.error((*key, "args", k), f"args.{k} of {'mapped ' if mapped else ''}step {name!r} "
                            "would be iterated", hint="move it to map: to fan out over it (one activity "
                            "per item), or write gather($STEP) to pass the whole output as one list")
        if k in mapped:
            raise doc.error((*key, "args", k), f"argument {k!r} is under both map: and args:")
    when = parse_condition(spec["when"], f"{where} when") if "when" in spec else None
    loop = None
    if "loop" in spec:
        lkey = (*key, "loop")
        loop = doc.mapping(spec["loop"], lkey, "loop", LOOP_KEYS)
        if "until" not in loop or "max_iterations" not in loop:
            raise doc.error(lkey, "loop: needs until: and max_iterations:",
                            hint="e.g. loop: {until: \"$result.delta < 0.001\", max_iterations: 10}")
        loop = {"until": parse_condition(loop["until"], f"{where} loop.until", allow_result=True),
                "max_iterations": doc.typed(loop, "max_iterations", lkey, int, "a whole number"),
                "state_arg": doc.typed(loop, "state_arg", lkey, str, "a name", default="state"),
                "on_exhausted": doc.typed(loop, "on_exhausted", lkey, str, "a word", default="accept"),
                "initial": parse_value(loop.get("initial"), f"{where} loop.initial")}
        if loop["max_iterations"] < 1 or loop["on_exhausted"] not in ("accept", "fail"):
            raise doc.error(lkey, "loop: max_iterations must be >= 1 and on_exhausted accept or fail")
        if loop["state_arg"] not in task.spec.parameters:
            raise doc.error(lkey, f"loop body {task.name!r} has no parameter {loop['state_arg']!r}",
                            hint="name the parameter that receives the previous result with state_arg:")
    deps: list[str] = []
    for ref in all_refs([mapped, args, when, loop and loop["until"], loop and loop["initial"]]):
        if isinstance(ref, ParamRef) and ref.name not in params:
            raise DefinitionError(f"{where} refers to $params.{ref.name}, which is not a parameter",
                                  hint=f"{suggest(ref.name, params)}declare it under params: "
                                       f"(declared: {', '.join(sorted(params)) or 'none'})")
        if not isinstance(ref, StepRef):
            continue
        if ref.step not in steps:
            raise DefinitionError(f"{where} refers to ${ref.step}, which is not a step",
                                  hint=f"{suggest(ref.step, steps)}steps: {', '.join(sorted(steps))}; "
                                       "parameters are $params.NAME")
        if ref.step not in deps:
            deps.append(ref.step)
    priority = doc.typed(spec, "priority", key, int, "a whole number")
    return Step(name, task, mapped, args, when, priority, loop, deps)


def dependency_order(steps: dict[str, Step], source: str) -> list[Step]:
    """The steps so that each comes after those it uses; a cycle is one clear error."""
    state: dict[str, int] = {}
    path: list[str] = []
    order: list[Step] = []

    def visit(name: str) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join([*path[path.index(name):], name])
            raise DefinitionError(
                f"{source}: the steps depend on each other in a cycle: {cycle}",
                hint="a step cannot use its own output, directly or through other steps: remove one "
                     "of these references, or use loop: on one step for a bounded iteration")
        state[name] = 1
        path.append(name)
        for dep in steps[name].deps:
            visit(dep)
        path.pop()
        state[name] = 2
        order.append(steps[name])

    for name in steps:
        visit(name)
    return order


# -- building -------------------------------------------------------------------------------------
def _select(value: Any, path: tuple[str | int, ...], name: str) -> Any:
    for seg in path:
        try:
            value = value[seg]
        except (KeyError, IndexError, TypeError):
            raise DefinitionError(f"$params.{name} has no {seg!r} (its value is {value!r})") from None
    return value


def _resolve(value: Any, params: dict[str, Any]) -> Any:
    if isinstance(value, StepRef):
        return Ref(value.step, value.path, value.mode)
    if isinstance(value, ParamRef):
        if value.name not in params:
            raise DefinitionError(f"$params.{value.name} is not a parameter of the workflow",
                                  hint=f"declare it under params: (known: {', '.join(params) or 'none'})")
        return _select(params[value.name], value.path, value.name)
    if isinstance(value, ResultRef):
        return ResultPlaceholder(value.path)
    if isinstance(value, Lit):
        return value.value
    if isinstance(value, Op):
        return OpExpr(value.op, tuple(_resolve(a, params) for a in value.args))
    if isinstance(value, list):
        return [_resolve(v, params) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, params) for k, v in value.items()}
    return value


def _condition(node: Node, params: dict[str, Any]) -> Expr:
    value = _resolve(node, params)
    return value if isinstance(value, Expr) else OpExpr("and", (value,))  # a constant condition


def _wire(doc: Document, order: list[Step], output: Any, values: dict[str, Any]) -> Any:
    builder = require_builder("a declarative workflow")
    if not isinstance(builder, GraphBuilder):
        raise DefinitionError("declarative workflows need the standard graph builder")
    for step in order:
        where = f"{doc.at('steps', step.name)}: step {step.name!r}"
        try:
            kwargs = _resolve({**step.map, **step.args}, values)
            loop = None
            if step.loop is not None:
                loop = {"until": _condition(step.loop["until"], values).to_json(),
                        "max_iterations": step.loop["max_iterations"], "state_arg": step.loop["state_arg"],
                        "on_exhausted": step.loop["on_exhausted"]}
                kwargs[step.loop["state_arg"]] = _resolve(step.loop["initial"], values)
            when = None if step.when is None else _condition(step.when, values)
            builder.add_call(step.task, (), kwargs, mapped=bool(step.map), when=when,
                             priority=step.priority, name=step.name, loop=loop)
        except DefinitionError as exc:
            raise wrap(where, exc) from None
    try:
        return _resolve(output, values)
    except DefinitionError as exc:
        raise wrap(f"{doc.at('output')}: output", exc) from None


def load_declarative(path: Path, name: str | None = None) -> Workflow:
    """Load a declarative workflow file; ``name``, if given, must be its ``workflow:`` name."""
    doc = read_document(path)
    data = doc.mapping(doc.data, (), "the workflow file", TOP_KEYS)
    wf_name = doc.typed(data, "workflow", (), str, "the workflow's name") or path.stem
    if name is not None and name != wf_name:
        raise WorkflowLoadError(f"{path.name} defines workflow {wf_name!r}, not {name!r}",
                                hint=f"use {path.name} or {path.name}:{wf_name}")
    parameters = _params(doc, wf_name)
    tasks = _tasks(doc)
    step_specs = doc.mapping(data.get("steps"), ("steps",), "steps")
    if not step_specs:
        raise doc.error(("steps",), "the workflow has no steps", hint="add steps: with at least one step")
    names = {p.name for p in parameters}
    steps = {n: _step(doc, n, s, tasks, steps=set(step_specs), params=names) for n, s in step_specs.items()}
    order = dependency_order(steps, path.name)
    output = parse_value(data.get("output"), f"{doc.at('output')}: output")
    for ref in all_refs(output):
        if isinstance(ref, ParamRef) and ref.name not in names:
            raise doc.error(("output",), f"output refers to $params.{ref.name}, which is not a parameter")
        if isinstance(ref, StepRef) and ref.step not in steps:
            raise doc.error(("output",), f"output refers to ${ref.step}, which is not a step",
                            hint=f"{suggest(ref.step, steps)}steps: {', '.join(steps)}")

    def build(**values: Any) -> Any:
        return _wire(doc, order, output, values)

    fn: Callable[..., Any] = build
    fn.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    fn.__annotations__ = {p.name: p.annotation for p in parameters}
    fn.__name__ = fn.__qualname__ = wf_name
    fn.__doc__ = doc.typed(data, "description", (), str, "a string")
    return Workflow(fn, wf_name, bool(doc.typed(data, "pin", (), bool, "true or false")))
