"""Fixtures for the radio pipeline tests: a simulated observation (the ``activity``
context is in tests/pipelines/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("radio_nenufar", reason="install the pipeline: pip install -e pipelines/radio_nenufar")

from radio_nenufar.simulate import simulate_observation


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One observation: all 102 mini-arrays, 4 sub-bands (30-75 MHz), 5 sources, seed 1."""
    return simulate_observation(tmp_path_factory.mktemp("sim"), "nenu0001", 1)
