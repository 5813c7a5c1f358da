from __future__ import annotations

from pathlib import Path

import pytest

from skyweave.executors.base import ExecutionEnv


@pytest.fixture
def env(tmp_path: Path) -> ExecutionEnv:
    return ExecutionEnv(
        worker="wrk-test",
        storage_root=tmp_path / "storage",
        work_root=tmp_path / "work",
        log_root=tmp_path / "logs",
    )
