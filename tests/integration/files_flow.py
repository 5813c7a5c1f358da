"""Tasks and workflows over external data named in place (``File``/``Folder``), for test_files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from skyweave import File, Folder, Product, context, task, workflow


@task(version="1")
def find_exposures(raw_dir: Folder) -> list[File]:
    return raw_dir.files()


@task(version="1")
def calibrate(raw_file: File, bias: float) -> Product:
    counts = [float(v) for v in Path(raw_file).read_text().split()]
    out = context().output(Path(raw_file).stem + "_cal.txt")
    out.write_text(" ".join(f"{c - bias:.1f}" for c in counts))
    return Product(out, type="t.calibrated", attributes={"exposure": Path(raw_file).stem})


@task(version="1")
def measure(image: Product) -> dict[str, Any]:
    values = [float(v) for v in image.local_path.read_text().split()]
    return {"exposure": image.attributes["exposure"], "mean": sum(values) / len(values)}


@task(version="1")
def summarise(stats: list[dict[str, Any]]) -> dict[str, float]:
    return {s["exposure"]: s["mean"] for s in stats}


@workflow
def reduce(raw_dir: Folder, bias: float = 1.0) -> Any:
    images = calibrate.map(raw_file=find_exposures(raw_dir=raw_dir), bias=bias)
    return summarise(stats=measure.map(image=images))


@workflow
def reduce_txt(raw_dir: str, hash: str = "stat") -> Any:
    files = find_exposures(raw_dir=Folder(raw_dir, glob="*.txt", hash=hash))
    return summarise(stats=measure.map(image=calibrate.map(raw_file=files, bias=1.0)))


@workflow
def one_file(raw: str) -> Any:
    """A task parameter declared ``File`` turns the plain path into one."""
    return measure(image=calibrate(raw_file=raw, bias=0.0))


@task(version="1")
def count_lines(path: str) -> int:
    return len(Path(path).read_text().splitlines())


@workflow
def untracked(path: str) -> Any:
    return count_lines(path=path)
