"""Checks of a pipeline's Dockerfile that need no Docker (it cannot run here)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in dockerfile.read_text().splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def _local_base(ins: list[tuple[str, str]]) -> str:
    """The image FROM names (an ``ARG`` default when it is ``${ARG}``); fails if from a registry."""
    args = {k: v for word, rest in ins if word == "ARG" for k, _, v in [rest.partition("=")]}
    (base,) = [rest for word, rest in ins if word == "FROM"]
    image = args[base[2:-1]] if base.startswith("${") else base
    assert "/" not in image and "." not in image.partition(":")[0], f"{image} would come from a registry"
    return image


def _copied(ins: list[tuple[str, str]]) -> set[str]:
    """Every ``COPY`` source, each checked to exist in the build context (the repository root)."""
    copies = [shlex.split(rest) for word, rest in ins if word == "COPY"]
    assert copies
    for *sources, _dest in copies:
        for src in sources:
            assert (ROOT / src).exists(), f"COPY source {src} missing from the build context"
    return {s for *sources, _ in copies for s in sources}


def check_dockerfile(package_dir: str, module: str) -> None:
    """The pipeline image builds FROM the local skyweave image, which builds FROM a local Python
    base (no registry in either); every ``COPY`` source exists in the build context (the repository
    root); skyweave is installed by the first, the pipeline by the second; the entry point is
    ``python -m <module>``."""
    core = instructions(ROOT / "docker" / "skyweave.Dockerfile")
    _local_base(core)
    assert {"src", "pyproject.toml"} <= _copied(core)
    assert any(word == "RUN" and "pip install" in rest and "/src" in rest for word, rest in core)
    ins = instructions(ROOT / package_dir / "Dockerfile")
    assert _local_base(ins) == "skyweave:local"            # what docker/skyweave.Dockerfile is tagged
    package = package_dir.rsplit("/", 1)[1]
    assert {f"{package_dir}/{package}", f"{package_dir}/pyproject.toml"} <= _copied(ins)
    (entry,) = [json.loads(rest) for word, rest in ins if word == "ENTRYPOINT"]
    assert entry == ["python", "-m", module]
    assert any(word == "RUN" and "pip install" in rest and f"./{package_dir}" in rest for word, rest in ins)
