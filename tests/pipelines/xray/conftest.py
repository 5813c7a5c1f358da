"""Fixtures for the X-ray pipeline tests: simulated observations and an activity context for
calling task functions directly (outside a workflow, ``skyweave.context()`` needs one)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skyweave import ActivityContext
from skyweave.model.context import reset_context, set_context
from skyweave.model.specs import TaskSpec

pytest.importorskip("xray_ep", reason="install the pipeline: pip install -e pipelines/xray_ep")

from xray_ep.simulate import simulate_observation


@pytest.fixture
def activity(tmp_path: Path) -> Iterator[ActivityContext]:
    """An activity context whose outputs go to ``tmp_path / "work"``."""
    ctx = ActivityContext(activity_id="act-test", run_id="run-test", attempt=1,
                          task=TaskSpec(name="direct-call", version="test"), workdir=tmp_path / "work",
                          log=logging.getLogger("skyweave.activity.xray-test"))
    token = set_context(ctx)
    yield ctx
    reset_context(token)


@pytest.fixture(scope="module")
def observation(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One observation (seed 11, transient on, complete aux files) with its aux archive."""
    base = tmp_path_factory.mktemp("obs")
    return simulate_observation(base / "obs", "ep0011", 11, transient=True, archive_dir=base / "archive")
