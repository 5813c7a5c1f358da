"""The workflow graph: nodes (task calls and loops) and how their arguments are wired.

A graph is plain JSON, built once at submission by running the ``@workflow`` function, stored on
the run, and interpreted by the controller — which therefore never imports user code.

Each node has a *depth*: 0 for a single activity, 1 for a fan-out over a list, 2 for a fan-out
inside a fan-out, and so on.  Each reference argument says how it is *iterated*:

``bcast``  the source has depth <= this node's: take its instance at the key prefix
``zip``    the source is fanned out at this node's depth: instance by instance
``each``   one instance per item of the source's value (adds a level: the unknown fan-out)
``gather`` the source is deeper: collect all its instances under the key prefix into a list
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path, PurePath
from typing import Any

from skyweave.authoring.external import File, Folder, UntrackedPathWarning, is_url
from skyweave.authoring.refs import Expr, Ref, to_json_value
from skyweave.errors import DefinitionError, ParameterError
from skyweave.model.product import Product

GRAPH_VERSION = 1


def _check_literal(task_name: str, param: str, type_name: str, value: Any) -> None:
    expected: dict[str, type | tuple[type, ...]] = {
        "int": int, "float": (int, float), "str": str, "bool": bool, "list": (list, tuple), "dict": dict,
    }
    want = expected.get(type_name.removesuffix("?"))
    if want is None or value is None:
        return
    ok = not (type_name in ("int", "float") and isinstance(value, bool)) and isinstance(value, want)
    if not ok:
        raise ParameterError(
            f"parameter {param!r} of task {task_name!r} expects {type_name}, got {value!r} "
            f"({type(value).__name__})",
            hint=f"pass a {type_name} (workflow parameters from the CLI are converted by annotation)",
        )


class GraphBuilder:
    """Collects nodes while a ``@workflow`` function runs."""

    def __init__(self, workflow: str) -> None:
        self.workflow = workflow
        self.nodes: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, Any] = {}
        self._next_suffix: dict[str, int] = {}
        """Base name -> the suffix to try next: every smaller one (from 2) is taken."""
        self._task = ""

    # -- naming ---------------------------------------------------------------------------------
    def _node_id(self, base: str) -> str:
        """``base``, else ``base_2``, ``base_3``…: the smallest free one, as always (stored runs
        and tests know these ids), found without probing from 2 again on every call (a task
        called in a Python loop of N made that quadratic).  Nodes are never removed, so every
        suffix below the remembered one stays taken."""
        if base not in self.nodes:
            return base
        n = self._next_suffix.get(base, 2)
        while f"{base}_{n}" in self.nodes:
            n += 1
        self._next_suffix[base] = n + 1
        return f"{base}_{n}"

    # -- arguments ------------------------------------------------------------------------------
    def _depth(self, node: str) -> int:
        if node not in self.nodes:
            raise DefinitionError(f"reference to unknown node {node!r}")
        return int(self.nodes[node]["depth"])

    def _arg_json(self, value: Any, *, top: bool, mapped: bool) -> tuple[Any, int]:
        """The JSON for one argument, and the depth it iterates at (0 if it does not iterate)."""
        if isinstance(value, Ref):
            d = self._depth(value.node)
            mode = value.mode
            if mode == "each":
                if not (mapped and top):
                    raise DefinitionError(
                        f"each({value.node}) only works as a direct argument of task.map(...)")
                it, idepth = "each", d + 1
            elif mode == "gather":
                it, idepth = "gather", 0
            elif mode == "bcast":
                if d > 0:
                    raise DefinitionError(
                        f"unmapped({value.node}) refers to a fanned-out output; pass it plainly to "
                        "iterate it in step, or gather() it")
                it, idepth = "bcast", 0
            elif mapped and top:
                it, idepth = ("each", 1) if d == 0 else ("zip", d)
            else:
                it, idepth = ("bcast", 0) if d == 0 else ("gather", 0)
            return {"ref": value.node, "path": list(value.path), "iter": it}, idepth
        if isinstance(value, Expr):
            raise DefinitionError("a condition can only be passed as when=..., not as an argument")
        if isinstance(value, File | Folder) and not value.id:
            spec = value.spec()
            there = Path(spec["path"]).is_dir() if spec["kind"] == "folder" else Path(spec["path"]).is_file()
            if not there and not is_url(spec["path"]):  # an object by URL is looked up at submission
                raise DefinitionError(
                    f"{type(value).__name__}({str(value.path)!r}) passed to task {self._task!r} does not "
                    f"exist (no {spec['kind']} at {spec['path']})",
                    hint=f"give the path of an existing {spec['kind']} (relative paths are relative to "
                         "the directory you submit from)")
            return {"in_place": spec}, 0
        if isinstance(value, list | tuple):
            return {"list": [self._arg_json(v, top=False, mapped=mapped)[0] for v in value]}, 0
        if isinstance(value, dict):
            return {"dict": {str(k): self._arg_json(v, top=False, mapped=mapped)[0]
                             for k, v in value.items()}}, 0
        if isinstance(value, Product):
            if not value.id:
                raise DefinitionError("a Product passed into a workflow must be a registered product",
                                      hint="register it with `skyweave products add` and pass its id")
            return {"product": value.id}, 0
        return {"lit": value}, 0

    def add_call(self, task: Any, args: tuple[Any, ...], kwargs: dict[str, Any], *, mapped: bool,
                 when: Expr | None = None, priority: int | None = None, name: str | None = None,
                 loop: dict[str, Any] | None = None) -> Ref:
        spec = task.spec
        task.check_cacheable()
        self._task = spec.name
        names = list(spec.parameters)
        if len(args) > len(names):
            raise DefinitionError(f"task {spec.name!r} takes {len(names)} arguments, got {len(args)}")
        bound = dict(zip(names, args, strict=False))
        for key, value in kwargs.items():
            if key in bound:
                raise DefinitionError(f"task {spec.name!r} got parameter {key!r} twice")
            bound[key] = value
        unknown = [k for k in bound if k not in spec.parameters]
        if unknown:
            raise DefinitionError(
                f"task {spec.name!r} has no parameter {unknown[0]!r}",
                hint=f"its parameters are: {', '.join(names) or '(none)'}")
        missing = [p for p in names if p not in bound and p not in spec.defaults
                   and not (loop and p == loop["state_arg"])]
        if missing and spec.kind == "python":
            raise DefinitionError(
                f"task {spec.name!r} is missing parameter {missing[0]!r}",
                hint=f"pass {missing[0]}=... in the call")
        json_args: dict[str, Any] = {}
        depth = 0
        iterating: list[tuple[str, str, int]] = []
        for pname, given in list(bound.items()):
            value = bound[pname] = _as_declared(spec.parameters[pname], given)
            _warn_if_untracked_path(spec, pname, value)
            if not isinstance(value, Ref | list | tuple | dict | Product):
                _check_literal(spec.name, pname, spec.parameters[pname], value)
            arg, idepth = self._arg_json(value, top=True, mapped=mapped)
            json_args[pname] = arg
            if "iter" in arg and arg["iter"] in ("each", "zip"):
                iterating.append((pname, arg["iter"], idepth))
                depth = max(depth, idepth)
        if mapped and not iterating:
            # only gathers: one activity per group, collecting a nested fan-out one level up
            gathered = [self._depth(a["ref"]) for a in json_args.values()
                        if isinstance(a, dict) and a.get("iter") == "gather"]
            depth = max(gathered, default=0) - 1
            if depth < 1:
                raise DefinitionError(
                    f"{spec.name}.map(...) needs at least one argument that is the output of another task",
                    hint=f"call {spec.name}(...) without .map for a single activity")
        # an each() over a shallower source takes the item of this activity's group (its key prefix)
        when_json = None
        if when is not None:
            if not isinstance(when, Expr):
                raise DefinitionError(f"when= of {spec.name!r} must be a condition on task outputs")
            when_json = when.to_json()
            for ref in refs_in(when_json):
                if self._depth(ref) > depth:
                    raise DefinitionError(f"when= of {spec.name!r} refers to fanned-out {ref!r}; "
                                          "map the condition's task alongside instead")
        node_id = self._node_id(name or spec.name)
        self.nodes[node_id] = {
            "id": node_id, "task": spec.name, "version": spec.version, "args": json_args,
            "depth": depth, "mapped": mapped, "when": when_json, "priority": priority, "loop": loop,
        }
        self.tasks[spec.name] = task
        for provider in task.provider_tasks():
            self.tasks.setdefault(provider.spec.name, provider)
        return Ref(node_id)


def _as_declared(type_name: str, value: Any) -> Any:
    """A path given to a parameter declared ``File``/``Folder`` becomes one."""
    kind = type_name.removesuffix("?")
    if kind in ("File", "Folder") and isinstance(value, str | PurePath):
        path = os.fspath(value)
        return File(path) if kind == "File" else Folder(path)
    return value


def _warn_if_untracked_path(spec: Any, param: str, value: Any) -> None:
    """Warn when a plain string or path names an existing file or folder: the cache key would hold
    the string, not the content, and an edited file would be reused stale."""
    if not spec.cache or (spec.cache_params is not None and param not in spec.cache_params):
        return
    items = value if isinstance(value, list | tuple) else [value]
    for item in items:
        if not isinstance(item, str | PurePath):
            continue
        text = os.fspath(item)
        if not text or len(text) > 4096 or "\0" in text or not os.path.exists(text):
            continue
        kind = "Folder" if os.path.isdir(text) else "File"
        warnings.warn(UntrackedPathWarning(
            f"parameter {param!r} of task {spec.name!r} names an existing {kind.lower()} ({text!r}) as a "
            f"plain string: results are cached on the string, not on the {kind.lower()}'s content, so "
            f"after it changes skyweave would reuse stale results. Pass skyweave.{kind}({text!r}) "
            f"instead (or declare the parameter `{param}: skyweave.{kind}`); if it is not input data, "
            "leave it out of the cache key with cache_params=[...]"), stacklevel=_user_stacklevel())
        return


def _user_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside skyweave (the workflow function's line)."""
    frame = sys._getframe(2)
    level = 2
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith("skyweave."):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def refs_in(data: Any) -> list[str]:
    """Every node referenced in an argument or expression JSON."""
    found: list[str] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "ref" in item:
                found.append(item["ref"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def output_json(value: Any) -> Any:
    """The workflow's return value as JSON (refs, lists and dicts of refs, literals)."""
    if value is None:
        return None
    if isinstance(value, Ref):
        return {"ref": value.node, "path": list(value.path), "iter": "gather"}
    if isinstance(value, list | tuple):
        return {"list": [output_json(v) for v in value]}
    if isinstance(value, dict):
        return {"dict": {str(k): output_json(v) for k, v in value.items()}}
    return to_json_value(value)


def upstream(node: dict[str, Any]) -> list[str]:
    return refs_in(node["args"]) + refs_in(node.get("when")) + refs_in(
        (node.get("loop") or {}).get("until"))


def validate_graph(graph: dict[str, Any]) -> None:
    """Check a graph (e.g. loaded from JSON): known nodes, no cycles, consistent depths."""
    nodes = graph.get("nodes")
    if not isinstance(nodes, dict) or not nodes:
        raise DefinitionError("the workflow has no tasks", hint="call at least one task in it")
    for node_id, node in nodes.items():
        for ref in upstream(node):
            if ref not in nodes:
                raise DefinitionError(f"node {node_id!r} uses unknown node {ref!r}",
                                      hint=f"known nodes: {', '.join(sorted(nodes))}")
    topological_order(graph)


def topological_order(graph: dict[str, Any]) -> list[str]:
    """Nodes with every node after the ones it uses; raises on a cycle.  Iterative: a chain of
    100,000 calls built in a Python loop is as deep as it is long."""
    nodes = graph["nodes"]
    order: list[str] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in nodes:
        if root in state:
            continue
        state[root] = 1
        stack: list[tuple[str, list[str]]] = [(root, upstream(nodes[root])[::-1])]
        while stack:
            node_id, refs = stack[-1]
            while refs:
                ref = refs.pop()
                mark = state.get(ref, 0)
                if mark == 0:
                    state[ref] = 1
                    stack.append((ref, upstream(nodes[ref])[::-1]))  # popped in order
                    break
                if mark == 1:
                    path = [n for n, _ in stack]
                    cycle = [*path[path.index(ref):], ref]
                    raise DefinitionError(f"the workflow's wiring has a cycle: {' -> '.join(cycle)}",
                                          hint="use skyweave.loop(...) for a bounded loop instead of a cycle")
            else:
                stack.pop()
                state[node_id] = 2
                order.append(node_id)
    return order
