"""The import graph of a package, read from its source the way Python would resolve it.

Used by ``test_layers.py`` (layers import downward only, no import cycles).  Every import
statement counts, wherever it is: relative ones (``from ..store import x``) are resolved against
the importing module, and a name imported from the root package (``from skyweave import Client``)
is followed to the module the root package takes it from, since that is what runs.  Imports
under ``if TYPE_CHECKING:`` never run: they count for layers (a type from a higher layer is
still a dependency on it) but not for cycles.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Import:
    source: str
    """The importing module."""
    target: str
    """The module whose code the statement runs (or would run) to get the name."""
    line: int
    typing_only: bool
    """Under ``if TYPE_CHECKING:``: never executed."""

    def __str__(self) -> str:
        return f"{self.source}:{self.line} imports {self.target}"


def modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` (found under ``root``), by dotted name; packages by their
    own name (their ``__init__.py``)."""
    found: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _statements(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement of a module, and whether it is under ``if TYPE_CHECKING:``."""
    out: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit(node: ast.AST, typing_only: bool) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            out.append((node, typing_only))
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, typing_only)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, typing_only)

    visit(tree, False)
    return out


class ImportGraph:
    def __init__(self, root: Path, package: str) -> None:
        self.package = package
        self.modules = modules(root, package)
        self.trees = {name: ast.parse(path.read_text(), str(path)) for name, path in self.modules.items()}
        self.exports = self._exports()
        self.unresolved: list[str] = []
        """``from <root> import NAME`` where the root package does not say where NAME comes from."""
        self.imports = [imp for name in self.modules for imp in self._imports_of(name)]

    def _base(self, module: str, level: int, name: str | None) -> str:
        """The absolute module a (possibly relative) ``from`` statement in ``module`` names."""
        if level == 0:
            return name or ""
        is_package = self.modules[module].name == "__init__.py"
        parts = module.split(".")
        parts = parts if is_package else parts[:-1]
        parts = parts[: len(parts) - (level - 1)]
        return ".".join([*parts, name] if name else parts)

    def _exports(self) -> dict[str, str]:
        """Names the root package offers -> the module it gets each from (eager imports, lazy
        ones inside functions, and ``{"Name": "package.module"}`` tables of a lazy loader)."""
        tree = self.trees.get(self.package)
        found: dict[str, str] = {}
        if tree is None:
            return found
        for stmt, _ in _statements(tree):
            if isinstance(stmt, ast.ImportFrom):
                base = self._base(self.package, stmt.level, stmt.module)
                if base != self.package and not base.startswith(self.package + "."):
                    continue  # typing, importlib...: not something the package offers
                for alias in stmt.names:
                    sub = f"{base}.{alias.name}"
                    found[alias.asname or alias.name] = sub if sub in self.modules else base
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if (isinstance(key, ast.Constant) and isinstance(key.value, str)
                            and isinstance(value, ast.Constant) and isinstance(value.value, str)):
                        target = value.value.split(":")[0]
                        if target.startswith("."):
                            target = self.package + target
                        if target in self.modules:
                            found.setdefault(key.value, target)
        return found

    def _imports_of(self, module: str) -> list[Import]:
        out: list[Import] = []
        for stmt, typing_only in _statements(self.trees[module]):
            targets: list[str] = []
            if isinstance(stmt, ast.Import):
                targets = [alias.name for alias in stmt.names]
            else:
                base = self._base(module, stmt.level, stmt.module)
                for alias in stmt.names:
                    sub = f"{base}.{alias.name}"
                    if sub in self.modules:
                        targets.append(sub)
                    elif base == self.package and module != self.package:
                        if alias.name in self.exports:
                            targets.append(self.exports[alias.name])
                        else:
                            self.unresolved.append(f"{module}:{stmt.lineno} from {base} import {alias.name}")
                    else:
                        targets.append(base)
            out.extend(Import(module, t, stmt.lineno, typing_only) for t in dict.fromkeys(targets)
                       if t == self.package or t.startswith(self.package + "."))
        return out

    def cycles(self) -> list[list[str]]:
        """Groups of modules that import each other, directly or around a loop, by statements
        that run (strongly connected components of more than one module, or a self-import)."""
        edges: dict[str, set[str]] = {name: set() for name in self.modules}
        for imp in self.imports:
            if not imp.typing_only and imp.target in edges:
                edges[imp.source].add(imp.target)
        # Tarjan's algorithm, iterative (no recursion limit on large packages)
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        on_stack: set[str] = set()
        stack: list[str] = []
        groups: list[list[str]] = []
        for root, targets in edges.items():
            if root in index:
                continue
            work = [(root, iter(sorted(targets)))]
            index[root] = low[root] = len(index)
            stack.append(root)
            on_stack.add(root)
            while work:
                node, children = work[-1]
                child = next(children, None)
                if child is not None:
                    if child not in index:
                        index[child] = low[child] = len(index)
                        stack.append(child)
                        on_stack.add(child)
                        work.append((child, iter(sorted(edges[child]))))
                    elif child in on_stack:
                        low[node] = min(low[node], index[child])
                    continue
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1 or node in edges[node]:
                        groups.append(sorted(group))
        return groups
