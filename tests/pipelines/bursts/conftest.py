"""Fixtures for the burst pipeline tests: a model trained once per session and an activity context
for calling task functions directly (outside a workflow, ``skyweave.context()`` needs one)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skyweave import ActivityContext, Product
from skyweave.testing import activity_context

pytest.importorskip("nenufar_bursts", reason="install the pipeline: pip install -e pipelines/nenufar_bursts")

from nenufar_bursts import conventions as cv
from nenufar_bursts import train

TRAIN_SEED = 1
TRAIN_CHUNKS = 300


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``{"artifact", "card", "model": Product}`` trained on 300 simulated chunks (seed 1)."""
    artifact, card = train.fit(TRAIN_SEED, TRAIN_CHUNKS)
    model_path, _card = train.save(artifact, card, tmp_path_factory.mktemp("model"))
    return {"artifact": artifact, "card": card,
            "model": Product(model_path, type=cv.MODEL, version=card["version"], id="prd-model", uri="file:x")}


@pytest.fixture
def activity(tmp_path: Path, trained: dict[str, Any]) -> Iterator[ActivityContext]:
    """An activity context (task version = the trained model's version); outputs go to ``tmp_path/work``."""
    with activity_context(tmp_path / "work", task=cv.DETECTOR_TASK,
                          version=trained["card"]["version"]) as ctx:
        yield ctx
