"""The running activity's context, reachable from task code through ``skyweave.context()``."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyweave.errors import SkyweaveError
from skyweave.model.specs import TaskSpec


@dataclass
class ActivityContext:
    activity_id: str
    run_id: str
    attempt: int
    task: TaskSpec
    workdir: Path
    log: logging.Logger
    obs_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def output(self, filename: str) -> Path:
        """Where to write an output file (inside the activity's work directory)."""
        path = self.workdir / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


_current: ContextVar[ActivityContext | None] = ContextVar("skyweave_activity", default=None)


def context() -> ActivityContext:
    """The context of the activity running now; fails clearly outside of one."""
    ctx = _current.get()
    if ctx is None:
        raise SkyweaveError(
            "skyweave.context() was called outside a running activity",
            hint="call it from inside a @task function while skyweave runs it",
        )
    return ctx


def set_context(ctx: ActivityContext | None) -> object:
    return _current.set(ctx)


def reset_context(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]
