"""Fixtures for the X-ray pipeline tests: simulated observations and an activity context for
calling task functions directly (outside a workflow, ``skyweave.context()`` needs one)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skyweave import ActivityContext
from skyweave.testing import activity_context

pytest.importorskip("xray_ep", reason="install the pipeline: pip install -e pipelines/xray_ep")

from xray_ep.simulate import simulate_observation


@pytest.fixture
def activity(tmp_path: Path) -> Iterator[ActivityContext]:
    """An activity context whose outputs go to ``tmp_path / "work"``."""
    with activity_context(tmp_path / "work") as ctx:
        yield ctx


@pytest.fixture(scope="module")
def observation(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One observation (seed 11, transient on, complete aux files) with its aux archive."""
    base = tmp_path_factory.mktemp("obs")
    return simulate_observation(base / "obs", "ep0011", 11, transient=True, archive_dir=base / "archive")
