"""No module reaches into another one's private members (issue 12 point 7).

A collaborator that needs something of another part gets it through a public, typed interface
(the controller's collaborators declare theirs as ``Host`` protocols): ``thing._x`` is allowed only
on ``self``/``cls`` and on private names the same module defines (a class building an instance
of itself).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parents[2] / "src" / "skyweave"
ALLOWED = {"sys._getframe", "self.fs._call_s3", "os._exit"}
"""CPython's own API for the caller's frame (how ``@workflow`` finds where it was declared); s3fs's
async API (fsspec names the coroutine versions of its methods ``_name``: ``storage/s3.py``
streams a GET with it); ``os._exit``, the documented way for a forked child to end without running
its parent's clean-up (``execute_warm.py``)."""


def _defined(tree: ast.AST) -> set[str]:
    """Private names a module defines: functions, methods, class attributes, ``self._x =``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if n.startswith("_")}


def reach_ins(source: str) -> list[str]:
    tree = ast.parse(source)
    own = _defined(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        text = ast.unparse(node)
        if node.attr in own or text in ALLOWED:
            continue
        found.append(f"{node.lineno}: {text}")
    return found


def test_no_module_reaches_into_private_members() -> None:
    problems = [f"{path.relative_to(SRC)}:{hit}" for path in sorted(SRC.rglob("*.py"))
                for hit in reach_ins(path.read_text())]
    assert problems == [], "private members used from outside their module:\n" + "\n".join(problems)


def test_the_check_sees_a_reach_in() -> None:
    assert reach_ins("def f(ctrl):\n    return ctrl._now\n") == ["2: ctrl._now"]
    assert reach_ins("class A:\n    _x = 1\n    def f(self, o):\n        return o._x\n") == []
