from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skyweave.client import Client
from skyweave.examples.mini_xray import observation


@pytest.fixture(scope="module")
def xray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, str]]:
    """A real mini_xray run (fan-out, a backtrack with its provider, products), shared by a module."""
    root: Path = tmp_path_factory.mktemp("prov")
    with Client(str(root / "st"), executor="threads", workers=2) as client:
        handle = client.run(observation, {"obs_id": "ep0001", "seed": 3})
        assert handle.status == "succeeded"
        yield client, handle.id
