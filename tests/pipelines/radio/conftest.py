"""Fixtures for the radio pipeline tests: a simulated observation and an activity context for
calling task functions directly (outside a workflow, ``skyweave.context()`` needs one)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skyweave import ActivityContext
from skyweave.testing import activity_context

pytest.importorskip("radio_nenufar", reason="install the pipeline: pip install -e pipelines/radio_nenufar")

from radio_nenufar.simulate import simulate_observation


@pytest.fixture
def activity(tmp_path: Path) -> Iterator[ActivityContext]:
    """An activity context whose outputs go to ``tmp_path / "work"``."""
    with activity_context(tmp_path / "work") as ctx:
        yield ctx


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One observation: all 102 mini-arrays, 4 sub-bands (30-75 MHz), 5 sources, seed 1."""
    return simulate_observation(tmp_path_factory.mktemp("sim"), "nenu0001", 1)
