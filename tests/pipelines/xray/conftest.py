"""Fixtures for the X-ray pipeline tests: simulated observations (the ``activity``
context is in tests/pipelines/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("xray_ep", reason="install the pipeline: pip install -e pipelines/xray_ep")

from xray_ep.simulate import simulate_observation


@pytest.fixture(scope="module")
def observation(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One observation (seed 11, transient on, complete aux files) with its aux archive."""
    base = tmp_path_factory.mktemp("obs")
    return simulate_observation(base / "obs", "ep0011", 11, transient=True, archive_dir=base / "archive")
