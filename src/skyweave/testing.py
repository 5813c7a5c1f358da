"""Helpers for testing tasks outside a workflow.

A task called directly runs its function, but ``skyweave.context()`` (where outputs are written)
exists only inside an activity; ``activity_context`` provides one::

    with activity_context(tmp_path / "work") as ctx:
        product = decode_cmos(l0, "cmos04")   # writes under tmp_path / "work"
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from skyweave.model.context import ActivityContext, reset_context, set_context
from skyweave.model.specs import TaskSpec


@contextmanager
def activity_context(workdir: Path, *, task: str = "direct-call", version: str = "test",
                     activity_id: str = "act-test", run_id: str = "run-test") -> Iterator[ActivityContext]:
    """Make ``skyweave.context()`` work for a direct call; outputs go to ``workdir``."""
    ctx = ActivityContext(activity_id=activity_id, run_id=run_id, attempt=1,
                          task=TaskSpec(name=task, version=version), workdir=Path(workdir),
                          log=logging.getLogger(f"skyweave.activity.{task}"))
    token = set_context(ctx)
    try:
        yield ctx
    finally:
        reset_context(token)
