"""Where the source of code defined interactively is: a notebook cell, the IPython prompt,
``python -c``, ``exec`` of code registered in ``linecache`` (``interactive.assemble`` writes a
module from it).

IPython keeps every cell in ``linecache`` (``<ipython-input-N-…>``, ``/tmp/ipykernel_…/….py``);
Python keeps the code of ``python -c`` in ``sys.orig_argv`` only.  Functions are found by the line
their code starts at; classes (whose code objects Python does not keep before 3.13) by their
methods' lines or, for a class without methods, as the only definition of that name.
"""

from __future__ import annotations

import ast
import functools
import linecache
import re
import sys
import textwrap
import types
from typing import Any

COMMAND = "<string>"
_CELL = re.compile(r"^<(ipython-input|python-input)-(\d+)|/ipykernel_\d+/")


def source_lines(filename: str) -> list[str]:
    """The lines of the code compiled under ``filename``: ``linecache`` (IPython cells, files),
    else the code of ``python -c`` for ``<string>``."""
    lines = linecache.getlines(filename)
    if lines or filename != COMMAND:
        return lines
    argv: list[str] = list(getattr(sys, "orig_argv", []))
    if "-c" in argv[:-1]:
        return (argv[argv.index("-c") + 1] + "\n").splitlines(keepends=True)
    return []


@functools.lru_cache(maxsize=256)
def _parse(text: str) -> ast.Module | None:
    try:
        return ast.parse(text)
    except SyntaxError:  # an IPython cell with magics: not ours to read
        return None


def function_source(fn: types.FunctionType) -> str | None:
    """The source of a function's definition (decorators included), dedented; None when Python
    kept none or what it kept does not define this function at that line."""
    code = fn.__code__
    lines = source_lines(code.co_filename)
    tree = _parse("".join(lines)) if lines else None
    if tree is None:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == fn.__name__:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            if first == code.co_firstlineno and node.end_lineno is not None:
                return textwrap.dedent("".join(lines[first - 1:node.end_lineno]))
    return None


def _cells() -> list[str]:
    names = [*linecache.cache, *getattr(linecache, "_ipython_cache", {})]
    return list(dict.fromkeys(n for n in names if _CELL.search(n)))


def file_order(filename: str) -> int:
    match = _CELL.search(filename)
    if match and match.group(2):
        return int(match.group(2))
    cells = _cells()
    return cells.index(filename) if filename in cells else -1


def class_source(cls: Any) -> str | None:
    """The source of a class defined interactively (``inspect.getsource`` finds none before
    Python 3.13: it looks in the module's file)."""
    found = class_definition(cls) if isinstance(cls, type) else None
    return found[0] if found else None


def class_definition(cls: type) -> tuple[str, str, int] | None:
    methods = [m.__code__ for m in vars(cls).values() if isinstance(m, types.FunctionType)]
    files = list(dict.fromkeys(c.co_filename for c in methods)) or _cells()
    found: dict[str, tuple[str, str, int]] = {}
    for filename in files:
        lines = source_lines(filename)
        tree = _parse("".join(lines)) if lines else None
        for node in ast.walk(tree) if tree is not None else ():
            if not (isinstance(node, ast.ClassDef) and node.name == cls.__name__ and node.end_lineno):
                continue
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            if all(first <= c.co_firstlineno <= node.end_lineno for c in methods):
                text = textwrap.dedent("".join(lines[first - 1:node.end_lineno]))
                found[text] = (text, filename, first)
    return next(iter(found.values())) if len(found) == 1 else None


def assignment(name: str) -> tuple[str, str, int] | None:
    """The one top-level ``name = ...`` statement of the session's cells (None: none, or several
    different ones: which ran last is not known)."""
    found: dict[str, tuple[str, str, int]] = {}
    for filename in [*_cells(), COMMAND]:
        lines = source_lines(filename)
        tree = _parse("".join(lines)) if lines else None
        for node in tree.body if tree is not None else ():
            if _changes(node, name):
                return None  # NAME.append(...), NAME[k] = ...: the statement alone is not the value
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, ast.AnnAssign) and node.value is not None else []
            if any(isinstance(t, ast.Name) and t.id == name for t in targets) and node.end_lineno:
                text = "".join(lines[node.lineno - 1:node.end_lineno])
                found[text] = (text, filename, node.lineno)
    return next(iter(found.values())) if len(found) == 1 else None


def _changes(node: ast.stmt, name: str) -> bool:
    """Whether a top-level statement changes ``name`` in place (a call of one of its methods, an
    item or attribute set, ``+=``)."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return False
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) \
                and isinstance(sub.func.value, ast.Name) and sub.func.value.id == name:
            return True
        if isinstance(sub, ast.Subscript | ast.Attribute) and isinstance(sub.ctx, ast.Store | ast.Del) \
                and isinstance(sub.value, ast.Name) and sub.value.id == name:
            return True
        if isinstance(sub, ast.AugAssign) and isinstance(sub.target, ast.Name) and sub.target.id == name:
            return True
    return False
