from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import CLI


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    """The ``skyweave`` CLI with a fresh store in ``tmp_path``."""
    return CLI(tmp_path, tmp_path / "store")
