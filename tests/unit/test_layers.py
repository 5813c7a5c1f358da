"""Layers import downward only: a module may import its own layer or lower ones, never higher."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "skyweave"

LAYER = {
    "errors": 0, "model": 0,
    "authoring": 1, "config": 1,
    "bus": 2, "store": 2, "storage": 2, "aspects": 2, "provenance": 2, "listeners": 2,
    "controller": 3, "executors": 3,
    "engine": 4, "client": 4, "reprocess": 4, "demo": 5, "examples": 5, "testing": 5, "standalone": 5,
    "cli": 6, "web": 6,
}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "skyweave" or len(parts) < 2:
        return None
    return LAYER.get(parts[1])


def test_imports_go_downward_only() -> None:
    bad: list[str] = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        module = ".".join(rel.parts)
        own = _layer(module)
        if own is None:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                target = _layer(name)
                if target is not None and target > own:
                    bad.append(f"{module} (layer {own}) imports {name} (layer {target})")
    assert not bad, "\n".join(bad)


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in SRC.glob("*.py") if p.stem != "__init__"}
    assert packages | modules <= set(LAYER), (packages | modules) - set(LAYER)
