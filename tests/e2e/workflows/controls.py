"""Workflows for the run-control tests: each activity appends ``TAG I`` to a side-effect file as it
starts, so a test counts starts (and their order) from outside the worker processes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from skyweave import task, workflow


@task(version="1")
def indices(n: int) -> list[int]:
    return list(range(n))


@task(version="1", cache=False)  # side effects: always run, never reused
def logged(i: int, tag: str, log: str, gate: str, seconds: float) -> int:
    """Writes its start to ``log``; then waits until ``gate`` exists (empty: ``seconds`` of work)."""
    with Path(log).open("a") as fh:  # one short append: atomic between processes
        fh.write(f"{tag} {i}\n")
    if gate:
        while not Path(gate).exists():
            time.sleep(0.02)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return i


@workflow
def started_log(n: int = 4, tag: str = "a", log: str = "starts.log", gate: str = "",
                seconds: float = 0.0) -> Any:
    return logged.map(i=indices(n=n), tag=tag, log=log, gate=gate, seconds=seconds)


@workflow
def one_logged(tag: str = "a", log: str = "starts.log", seconds: float = 0.0) -> Any:
    return logged(i=0, tag=tag, log=log, gate="", seconds=seconds)


@workflow
def listed_log(n: int = 4, tag: str = "a", log: str = "starts.log") -> Any:
    """``n`` activities of ``logged``, all there (and dispatched) as the run starts."""
    return [logged(i=i, tag=tag, log=log, gate="", seconds=0.0) for i in range(n)]


@task(version="1", cache=False)
def blocker(i: int, log: str, gate: str) -> int:
    """Like ``logged`` (``b I``), under another name: a worker does not know how long it takes."""
    with Path(log).open("a") as fh:
        fh.write(f"b {i}\n")
    while not Path(gate).exists():
        time.sleep(0.02)
    return i


@workflow
def blocked(n: int = 2, log: str = "starts.log", gate: str = "gate") -> Any:
    return [blocker(i=i, log=log, gate=gate) for i in range(n)]


@task(version="1", cache=False)
def paced(tag: str, log: str, seconds: float) -> str:
    """Writes ``TAG 0`` to ``log`` as it starts, then works ``seconds``: long enough (>= 0.2 s) that a
    worker hands it to its executor only into a free slot."""
    with Path(log).open("a") as fh:
        fh.write(f"{tag} 0\n")
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return tag


@workflow
def one_paced(tag: str = "a", log: str = "starts.log", seconds: float = 0.3) -> Any:
    return paced(tag=tag, log=log, seconds=seconds)
