"""Layers import downward only, and no modules import each other in a loop.

A module may import its own layer or lower ones, never higher; every import statement counts,
wherever it is (inside a function too), relative ones resolved and names taken from the root
package followed to the module they come from (``tests/unit/importgraph.py``).
"""

from __future__ import annotations

from pathlib import Path

from tests.unit.importgraph import ImportGraph

SRC = Path(__file__).resolve().parents[2] / "src" / "skyweave"

LAYER = {
    "errors": 0, "model": 0,
    "authoring": 1, "config": 1,
    "bus": 2, "store": 2, "storage": 2, "aspects": 2, "provenance": 2, "listeners": 2,
    "controller": 3, "executors": 3,
    "engine": 4, "execute": 4, "execute_warm": 4, "client": 4, "images": 4, "results": 4, "runcontrol": 4, "reprocess": 4, "plan": 4, "pausing": 4, "progress": 4, "logs": 4, "remote": 4, "workflows": 4, "demo": 5, "examples": 5, "testing": 5, "standalone": 5,
    "triggers": 5,
    "argo": 5, "stage": 5, "schemas": 0,
    "cli": 6, "web": 6, "server": 6,
}


def upward_imports(graph: ImportGraph, layers: dict[str, int]) -> list[str]:
    """Every import of a higher layer, as ``module:line imports target (layer a -> b)``.
    Importing the root package itself counts as importing the highest layer it re-exports."""

    def layer(module: str) -> int | None:
        parts = module.split(".")
        if len(parts) > 1:
            return layers.get(parts[1])
        found = [n for n in (layer(t) for t in graph.exports.values() if t != module) if n is not None]
        return max(found, default=None)

    bad = []
    for imp in graph.imports:
        own, target = layer(imp.source), layer(imp.target)
        if imp.source != graph.package and own is not None and target is not None and target > own:
            bad.append(f"{imp} (layer {own} -> {target})")
    return bad


def _graph() -> ImportGraph:
    return ImportGraph(SRC.parent, "skyweave")


def test_imports_go_downward_only() -> None:
    graph = _graph()
    assert not graph.unresolved, "names the root package does not export:\n" + "\n".join(graph.unresolved)
    bad = upward_imports(graph, LAYER)
    assert not bad, "\n".join(bad)


def test_no_import_cycles() -> None:
    cycles = _graph().cycles()
    assert not cycles, "modules importing each other (move what both need into a lower module):\n" + (
        "\n".join(" <-> ".join(group) for group in cycles))


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in SRC.glob("*.py") if p.stem != "__init__"}
    assert packages | modules <= set(LAYER), (packages | modules) - set(LAYER)


# -- the checker itself, on a planted package ---------------------------------------------------------
PLANTED = {
    "__init__.py": "from pkg.high.thing import High\nfrom pkg.low.base import Base\n",
    "low/__init__.py": "",
    "low/base.py": "class Base: ...\n",
    "low/by_root.py": "from pkg import High\n",
    "low/by_relative.py": "from ..high import thing\n",
    "low/in_function.py": "def f():\n    from pkg.high.thing import High\n    return High\n",
    "low/typing_only.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                           "    from pkg.high.thing import High\n"),
    "low/fine.py": "from pkg import Base\nfrom . import base\nfrom .base import Base as B\n",
    "low/ping.py": "from . import pong\n",
    "low/pong.py": "def f():\n    from .ping import x\n",
    "high/__init__.py": "",
    "high/thing.py": "from pkg.low.base import Base\nclass High(Base): ...\n",
}


def _plant(root: Path, files: dict[str, str]) -> ImportGraph:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return ImportGraph(root, "pkg")


def test_the_checker_finds_every_planted_upward_import_and_cycle(tmp_path: Path) -> None:
    graph = _plant(tmp_path, PLANTED)
    bad = upward_imports(graph, {"low": 0, "high": 1})
    assert [b.split(" imports ")[0] for b in bad] == [
        "pkg.low.by_relative:1", "pkg.low.by_root:1", "pkg.low.in_function:2", "pkg.low.typing_only:3"]
    assert all(b.endswith("imports pkg.high.thing (layer 0 -> 1)") for b in bad)
    assert graph.cycles() == [["pkg.low.ping", "pkg.low.pong"]]


def test_the_checker_passes_a_clean_package_and_names_unknown_root_exports(tmp_path: Path) -> None:
    clean = {k: v for k, v in PLANTED.items() if not k.startswith(("low/by_", "low/in_", "low/typing", "low/p"))}
    graph = _plant(tmp_path, {**clean, "low/odd.py": "from pkg import Nothing\n"})
    assert upward_imports(graph, {"low": 0, "high": 1}) == []
    assert graph.cycles() == []
    assert graph.unresolved == ["pkg.low.odd:1 from pkg import Nothing"]
