"""Podman 4.3's conmon (2.1.6, Debian 12) writes an empty ``oom`` file into its working directory
when the kernel kills a container for memory (containers/conmon#504, fixed upstream in 2024), and
podman starts conmon in the directory ``podman run`` was started in: the worker's; podman's own
``OOMKilled`` stays false.  The container executor starts each podman client in a folder of the
attempt's own, so the worker's directory (often the user's project) does not fill up with ``oom``
files and the file tells a kernel memory kill (``MemoryLimit``) from any other SIGKILL (real podman:
``scripts/services.sh start podman``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from skyweave.executors.base import ExecutionEnv
from skyweave.executors.container import ContainerExecutor
from skyweave.model.messages import ActivityFailed
from tests.services import podman_setting
from tests.unit.executors.helpers import TASKS_IMPORT_ROOT, by_path, dispatch, run_until

pytestmark = pytest.mark.integration


def test_a_container_killed_for_memory_leaves_nothing_in_the_workers_directory(
        env: ExecutionEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    here = tmp_path / "where-the-worker-runs"
    here.mkdir()
    monkeypatch.chdir(here)
    setting = podman_setting(pid="host", mount=str(env.storage_root.parent))
    executor = ContainerExecutor(setting, dataclasses.replace(env, import_path=(str(TASKS_IMPORT_ROOT),)),
                                 processes=1)
    executor.start()
    try:  # the kernel's limit (memory_mb + 64 MB) is usually crossed before the executor looks
        greedy = dispatch(by_path("hold_memory"), {"mb": 600, "seconds": 30.0}, memory_mb=100)
        executor.submit([greedy])
        outcome = run_until(executor, [greedy.activity_id])[greedy.activity_id]
    finally:
        executor.close()
    assert isinstance(outcome, ActivityFailed), outcome
    assert sorted(p.name for p in here.iterdir()) == []
    # the kernel killed it (podman's inspect says OOMKilled=false; conmon's file says it), or, if the
    # executor's own check (every 0.2 s) caught it first, the executor stopped it
    assert outcome.error_type == "skyweave.MemoryLimit" and outcome.retryable is False, outcome
    assert list((env.work_root / ".jobs").iterdir()) == []  # the attempt's folder went with it
