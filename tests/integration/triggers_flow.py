"""A workflow for the trigger tests: counts the bytes of one arriving file (or echoes what an event gave)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from skyweave import File, task, workflow


@task(version="1")
def measure(path: File, obs_id: str = "") -> dict[str, Any]:
    return {"obs_id": obs_id, "bytes": len(Path(path).read_bytes())}


@workflow
def ingest(path: File, obs_id: str = "") -> Any:
    return measure(path=path, obs_id=obs_id)


@task(version="1")
def point(ra: float, dec: float, time: str, stream: str) -> dict[str, Any]:
    return {"ra": ra, "dec": dec, "time": time, "stream": stream}


@workflow
def follow_up(ra: float, dec: float, time: str, stream: str) -> Any:
    return point(ra=ra, dec=dec, time=time, stream=stream)


@task(version="1")
def tick(at: str) -> str:
    return at


@workflow
def nightly(at: str) -> Any:
    return tick(at=at)
