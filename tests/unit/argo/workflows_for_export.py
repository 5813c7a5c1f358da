"""Workflows the Argo export tests export (never run)."""

from __future__ import annotations

from typing import Any

from skyweave import Resources, command, task, workflow

reproject = command("reproject", "reproject --band {params.band} --out {outputs.image}", version="2",
                    parameters={"band": str}, outputs={"image": "band.fits"}, image="registry.example/reproject:2.1",
                    retries=3, backoff=5.0, timeout=600.5, priority=7,
                    resources=Resources(cpus=2, memory_mb=4096, gpus=1))


@task(version="1")
def bands(n: int) -> list[str]:
    return [f"b{i}" for i in range(n)]


@task(version="1")
def total(images: list[Any]) -> int:
    return len(images)


@task(version="1")
def quality(count: int) -> float:
    return count / 10


@task(version="1")
def alert(score: float) -> str:
    return f"alert {score}"


@task(version="1")
def after_alert(message: str) -> str:
    return message


@workflow
def survey(n: int = 3) -> Any:
    names = bands(n=n)
    images = reproject.map(band=names)
    count = total(images=images)
    score = quality(count=count)
    message = alert.options(when=score > 0.5)(score=score)
    return after_alert(message=message)
