"""What every pipeline's tests share: an activity context for calling task functions directly
(outside a workflow, ``skyweave.context()`` needs one).  A pipeline's own conftest may override it
(the burst tests run the detector as the trained model's version)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skyweave import ActivityContext
from skyweave.testing import activity_context


@pytest.fixture
def activity(tmp_path: Path) -> Iterator[ActivityContext]:
    """An activity context whose outputs go to ``tmp_path / "work"``."""
    with activity_context(tmp_path / "work") as ctx:
        yield ctx
