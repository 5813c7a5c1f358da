"""Tasks and workflows defined where no source file holds them: a notebook cell, the IPython
prompt, ``python -c``, or ``exec`` of code whose source is in ``linecache``.

Workers import a Python task from a file (``executors/resolve.py``) and the server loads an
uploaded workflow from a file, so such code is *assembled* into one: ``assemble(obj)`` writes the
text of a module defining ``obj`` and everything it reaches in the session's namespace:

* functions, classes, tasks and workflows defined in the session: their source as ``linecache``
  holds it (IPython keeps every cell there, as ``<ipython-input-N-…>`` or
  ``/tmp/ipykernel_…/….py``; the code of ``python -c`` is read from ``sys.orig_argv``);
* modules (``import numpy as np``) and what installed modules export
  (``from scipy.ndimage import gaussian_filter``);
* constants: their ``repr`` when it reads back as the same value (numbers, strings, and lists,
  tuples, dicts and sets of them), else the cell's one ``NAME = ...`` statement.

What is reached is found by Python's own scope analysis (``symtable``): the names a definition
uses when it runs (decorators, defaults, annotations, base classes, class bodies) and those its
functions read as globals.  Each definition comes after what its definition uses.  A name that
cannot be written (no source kept, a value no statement or module gives) is refused, naming it.

The module starts with ``__skyweave_requires__``: for each module it imports, the distribution and
version the session had, so a worker lacking one says which (``missing_package``).
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import heapq
import importlib.metadata
import symtable
import sys
import tempfile
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyweave.authoring.cellsource import assignment, class_definition, file_order, function_source
from skyweave.errors import DefinitionError
from skyweave.model.specs import TaskSpec

MAIN_REF = "__main__"
"""The module part of the reference of a task defined interactively (``__main__:NAME``), until
its assembled module is snapshotted (``Client.register_task``)."""
REQUIRES = "__skyweave_requires__"
_LITERAL_MAX = 100_000


def defined_interactively(fn: Any) -> bool:
    """Whether no source file holds ``fn`` (its module has no file, or not this code's)."""
    fn = getattr(fn, "fn", fn)
    code = getattr(fn, "__code__", None)
    if code is None:
        return False
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    path = getattr(module, "__file__", None)
    if not path or not Path(path).is_file():
        return True
    return Path(code.co_filename).resolve() != Path(path).resolve()


def assemble(*roots: Any) -> str:
    """The text of a module that defines ``roots`` (tasks, workflows, functions defined
    interactively, sharing one namespace) and everything they reach."""
    functions = [getattr(r, "fn", r) for r in roots]
    namespace: dict[str, Any] = functions[0].__globals__
    assembly = _Assembly(namespace)
    for fn in functions:
        if fn.__globals__ is not namespace:
            raise DefinitionError(f"{fn.__qualname__} is not defined in the same session as "
                                  f"{functions[0].__qualname__}", hint="assemble them one at a time")
        if getattr(namespace.get(fn.__name__), "fn", namespace.get(fn.__name__)) is not fn:
            raise DefinitionError(
                f"{fn.__name__!r} in this session is no longer the one being sent (it was defined "
                "again, or the name now holds something else)",
                hint=f"run the cell that defines {fn.__name__!r} again, then submit")
        assembly.need(fn.__name__, f"{fn.__name__!r}")
    return assembly.text(", ".join(f.__name__ for f in functions))


@contextlib.contextmanager
def on_file(spec: TaskSpec, fn: Any) -> Iterator[TaskSpec]:
    """``spec`` as it is, or, for a Python task defined interactively (``__main__:NAME``), with its
    reference naming a temporary file of its assembled module while the context lasts (for
    ``Client.register_task`` to snapshot like any task file)."""
    if spec.kind != "python" or not spec.ref.startswith(f"{MAIN_REF}:") or fn is None:
        yield spec
        return
    with tempfile.TemporaryDirectory(prefix="skyweave-cell-") as folder:
        path = Path(folder) / f"{fn.__name__}.py"
        path.write_text(assemble(fn))
        fields = {f: getattr(spec, f) for f in spec.__struct_fields__}
        yield TaskSpec(**{**fields, "ref": f"{path}:{fn.__qualname__}"})


def missing_package(exc: ModuleNotFoundError, requires: Any) -> tuple[str, str]:
    """``(what is missing, how to install it)`` for an import that failed in assembled code,
    with the distribution and version the session had (``__skyweave_requires__``)."""
    top = (exc.name or str(exc)).split(".")[0]
    found = requires.get(top) if isinstance(requires, dict) else None
    if found:
        dist, version = found
        return (f"the package {dist!r} (module {top!r}; the session that sent the task has {version})",
                f"install it where the workers run: pip install '{dist}=={version}'")
    return (f"the module {top!r}",
            f"install the package that provides {top!r} where the workers run, or define what the "
            "task uses from it in the notebook")


@dataclass
class _Piece:
    name: str
    text: str
    needs: set[str]
    order: tuple[int, int]


@dataclass
class _Assembly:
    namespace: dict[str, Any]
    imports: dict[str, tuple[str, str]] = field(default_factory=dict)
    """name -> (import statement, module imported)"""
    constants: dict[str, str] = field(default_factory=dict)
    pieces: dict[str, _Piece] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)

    def need(self, first: str, user: str) -> None:
        todo = [(first, user)]
        while todo:
            name, used_by = todo.pop()
            if name in self.done:
                continue
            self.done.add(name)
            if name not in self.namespace:
                continue  # a builtin, or a name the code reads only if it exists: as in the session
            for more in self._write(name, self.namespace[name], used_by):
                todo.append((more, f"{name!r}"))

    # -- one name ----------------------------------------------------------------------------------
    def _write(self, name: str, value: Any, used_by: str) -> set[str]:
        """Write the definition of ``name``; the names it uses in turn."""
        if isinstance(value, types.ModuleType):
            module = value.__name__
            as_ = "" if module == name else f" as {name}"
            self.imports[name] = (f"import {module}{as_}", module)
            return set()
        own = getattr(value, "fn", value)
        if isinstance(own, types.FunctionType) and own.__globals__ is self.namespace \
                and own.__name__ == name:
            text = function_source(own)
            if text is None:
                raise _no_source(name, used_by)
            if own is not value and not text.lstrip().startswith("@"):
                raise DefinitionError(f"{name!r} is a task or workflow made without a decorator",
                                      hint="decorate the function with @task / @workflow in its cell")
            return self._piece(name, text, own.__code__.co_filename, own.__code__.co_firstlineno)
        if isinstance(value, type) and value.__module__ == self.namespace.get("__name__") \
                and value.__name__ == name:
            found = class_definition(value)
            if found is None:
                raise _no_source(name, used_by)
            return self._piece(name, *found)
        imported = _importable(name, value)
        if imported is not None:
            self.imports[name] = imported
            return set()
        literal = _literal(value)
        if literal is not None:
            self.constants[name] = f"{name} = {literal}"
            return set()
        statement = assignment(name)
        if statement is None:
            raise DefinitionError(
                f"{used_by} uses {name!r} (a {type(value).__qualname__}), which skyweave cannot send to "
                "the workers: it is not a plain constant, no module exports it, and no one "
                f"'{name} = ...' statement of the session makes it",
                hint=f"pass {name!r} as a parameter, make it inside the task, or assign it once in "
                     "a cell of its own")
        return self._piece(name, *statement)

    def _piece(self, name: str, text: str, filename: str, line: int) -> set[str]:
        at_definition, later = _names(text)
        at_definition.discard(name)
        self.pieces[name] = _Piece(name, text, at_definition, (file_order(filename), line))
        return (at_definition | later) - {name}

    # -- the module --------------------------------------------------------------------------------
    def text(self, what: str) -> str:
        requires = _requires(module for _, module in self.imports.values())
        head = [f"# Assembled by skyweave from code defined interactively (a notebook cell, a prompt or "
                f"python -c):\n# {what} and what it uses, as the session held them.",
                f"{REQUIRES} = {requires!r}", ""]
        head += sorted(statement for statement, _ in self.imports.values())
        body = [*sorted(self.constants.values()), *(p.text.rstrip() for p in self._ordered())]
        return "\n".join(head) + "\n\n" + "\n\n\n".join(body) + "\n"

    def _ordered(self) -> list[_Piece]:
        """Pieces in an order where each follows what its definition uses (then session order)."""
        waiting = {n: p.needs & set(self.pieces) for n, p in self.pieces.items()}
        ready = [(p.order, n) for n, p in self.pieces.items() if not waiting[n]]
        heapq.heapify(ready)
        out: list[_Piece] = []
        while ready or waiting:
            # (nothing ready: a cycle, which a session that ran cannot hold; keep session order)
            name = heapq.heappop(ready)[1] if ready else min(waiting, key=lambda n: self.pieces[n].order)
            if name not in waiting:
                continue
            del waiting[name]
            out.append(self.pieces[name])
            for other, needs in waiting.items():
                needs.discard(name)
                if not needs:
                    heapq.heappush(ready, (self.pieces[other].order, other))
        return out


def _no_source(name: str, used_by: str) -> DefinitionError:
    return DefinitionError(
        f"{used_by} needs {name!r}, whose source Python did not keep (code read from standard input "
        "or run with exec of a string): workers need the source to run it",
        hint="define it in a notebook cell, an IPython prompt, python -c or a .py file")


def _names(text: str) -> tuple[set[str], set[str]]:
    """``(names used when the statement runs, names its functions read as globals later)``."""
    at_definition: set[str] = set()
    later: set[str] = set()
    todo = [(symtable.symtable(text, "<assembled>", "exec"), False)]
    while todo:
        table, deferred = todo.pop()
        for symbol in table.get_symbols():
            if symbol.is_referenced() and (symbol.is_global() or table.get_type() == "module"):
                (later if deferred else at_definition).add(symbol.get_name())
        inner = deferred or table.get_type() == "function"
        todo.extend((child, inner) for child in table.get_children())
    return at_definition - set(dir(builtins)), later - set(dir(builtins))


def _importable(name: str, value: Any) -> tuple[str, str] | None:
    """``(from M import X as name, M)`` when an imported module exports ``value``."""
    module_name = getattr(value, "__module__", None)
    if not isinstance(module_name, str) or module_name in ("__main__", "builtins"):
        return None
    module = sys.modules.get(module_name)
    if module is None:
        return None
    for attr in (getattr(value, "__qualname__", None), getattr(value, "__name__", None), name):
        if isinstance(attr, str) and attr.isidentifier() and getattr(module, attr, None) is value:
            return (f"from {module_name} import {attr}{'' if attr == name else f' as {name}'}",
                    module_name)
    return None


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float | complex | str | bytes):
        return True
    if isinstance(value, list | tuple | set):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(_plain(k) and _plain(v) for k, v in value.items())
    return False


def _literal(value: Any) -> str | None:
    if type(value) not in (type(None), bool, int, float, complex, str, bytes, list, tuple, set, dict) \
            or not _plain(value):
        return None
    text = repr(value)
    if len(text) > _LITERAL_MAX:
        return None
    try:
        back = ast.literal_eval(text)
    except (ValueError, SyntaxError, RecursionError):
        return None
    return text if back == value and type(back) is type(value) else None


def _requires(modules: Any) -> dict[str, tuple[str, str]]:
    """Top-level module -> (distribution, version) for the non-standard modules imported."""
    tops = sorted({m.split(".")[0] for m in modules} - set(sys.stdlib_module_names))
    if not tops:
        return {}
    owners = importlib.metadata.packages_distributions()
    out = {}
    for top in tops:
        for dist in owners.get(top, []):
            try:
                out[top] = (dist, importlib.metadata.version(dist))
            except importlib.metadata.PackageNotFoundError:
                continue
            break
    return out
