"""Workflows for the alert-overtakes-queued-work test: two activities that hold both worker
slots until the test opens their gates, a backlog of normal work queued behind them, and the
pipeline's alert task run again on stored inputs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from skyweave import Product, task, workflow
from xray_ep import alert

HOLDERS = 2


@task(version="1", cache=False)
def hold_slot(k: int, gate: str) -> int:
    """Says it holds its slot (the file ``{gate}.holding{k}``), then runs until ``{gate}.{k}`` exists."""
    Path(f"{gate}.holding{k}").touch()
    while not Path(f"{gate}.{k}").exists():
        time.sleep(0.02)
    return k


@task(version="1", cache=False)
def queued_work(i: int) -> int:
    return i


@workflow
def holders(gate: str) -> Any:
    return [hold_slot(k=k, gate=gate) for k in range(HOLDERS)]


@workflow
def backlog(n: int) -> Any:
    return [queued_work(i=i) for i in range(n)]


@workflow
def alert_again(source: dict[str, Any], test: dict[str, Any], lc: str, obs_id: str) -> Any:
    """The pipeline's alert of a transient it found, made again (``provenance`` differs from the
    pipeline's, so it is not reused from the cache)."""
    return alert.make_voevent(source=source, test=test, lc=Product("", id=lc), obs_id=obs_id,
                              provenance="ivo://test/alert-again")
