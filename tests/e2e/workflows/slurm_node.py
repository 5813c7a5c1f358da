"""A task whose first attempt waits to be stopped (the e2e Slurm test downs its node meanwhile)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from skyweave import task, workflow


@task(version="1", retries=1, backoff=0.2)
def outlast(marker: str) -> str:
    """Attempt 1 leaves ``marker`` and waits (up to 120 s) for its node to fail; the retry finds it."""
    path = Path(marker)
    if path.exists():
        return "ran again"
    path.write_text("started")
    time.sleep(120)
    return "never stopped"


@workflow
def survive(marker: str = "marker") -> Any:
    return outlast(marker=marker)
