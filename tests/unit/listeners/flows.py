"""Workflows for the listener tests."""

from __future__ import annotations

from typing import Any

from skyweave import Fatal, task, workflow


@task(version="1")
def explode(x: int) -> int:
    raise Fatal(f"bad input {x}")


@workflow
def failing(x: int = 1) -> Any:
    return explode(x=x)


@task(version="1")
def follow_up(reason: str) -> str:
    return f"followed up: {reason}"


@workflow
def urgent(reason: str = "") -> Any:
    return follow_up(reason=reason)
