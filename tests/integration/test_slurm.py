"""The Slurm executor on the real one-node cluster ``scripts/services.sh start slurm`` runs
(slurmctld + slurmd + munge): a fan-out goes out as one job array, Slurm is asked once per poll,
and a job Slurm kills at its time limit is reported with Slurm's reason.  (The executor contract
suite runs on the same cluster: tests/unit/executors/contract.)"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from skyweave.executors.base import ExecutionEnv
from skyweave.executors.slurm import SlurmExecutor
from skyweave.executors.slurm_commands import SlurmCommands, parse_options
from skyweave.model.messages import ActivityFailed, ActivityFinished
from tests.services import service_url
from tests.unit.executors.helpers import by_path, dispatch, run_until, wait_started

pytestmark = pytest.mark.integration


@pytest.fixture
def env(tmp_path: Path) -> ExecutionEnv:
    return ExecutionEnv(worker="wrk-slurm", storage_root=tmp_path / "storage", work_root=tmp_path / "work",
                        log_root=tmp_path / "logs")


def slurm_executor(env: ExecutionEnv, options: str = "", max_jobs: int = 8) -> SlurmExecutor:
    executor = SlurmExecutor(env, parse_options(service_url("slurm") + options), max_jobs=max_jobs)
    executor.start()
    return executor


@pytest.fixture
def release(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "release"
    yield path
    path.touch()


def test_a_fan_out_is_one_job_array_followed_by_one_squeue_per_poll(env: ExecutionEnv) -> None:
    executor = slurm_executor(env, "&poll_s=0.2")
    try:
        batch = [dispatch(by_path("add"), {"x": i, "y": 10}) for i in range(6)]
        executor.submit(batch)
        final = run_until(executor, [d.activity_id for d in batch])
    finally:
        executor.close()
    assert {d.activity_id: final[d.activity_id].result for d in batch} == {  # type: ignore[union-attr]
        d.activity_id: i + 10 for i, d in enumerate(batch)}
    calls = executor.slurm.calls  # type: ignore[attr-defined]
    assert isinstance(executor.slurm, SlurmCommands)
    assert calls["sbatch"] == 1  # the six activities of one task: one array
    assert not list(executor.dir.iterdir())  # scripts, job, outcome and output files removed


@pytest.mark.slow
def test_a_job_killed_at_its_slurm_time_limit_is_reported_with_the_reason(
        env: ExecutionEnv, release: Path) -> None:
    """Slurm's shortest limit is one minute and slurmctld looks every 30 s: this takes 60-90 s."""
    executor = slurm_executor(env, "&time_limit=1&poll_s=1")
    try:
        d = dispatch(by_path("wait_for_file"), {"path": str(release), "limit_s": 300.0}, attempt=2)
        executor.submit([d])
        outcome = run_until(executor, [d.activity_id], deadline_s=150)[d.activity_id]
    finally:
        executor.close()
    assert isinstance(outcome, ActivityFailed), outcome
    assert not isinstance(outcome, ActivityFinished)
    assert (outcome.error_type, outcome.retryable, outcome.attempt) == ("skyweave.SlurmTimeLimit", True, 2)
    assert "reached its Slurm time limit of 1:00 (state TIMEOUT" in outcome.message, outcome.message
    assert outcome.host == "sw1"


@pytest.mark.slow
def test_a_job_lost_with_its_node_is_reported_node_failure_not_requeued(
        env: ExecutionEnv, release: Path) -> None:
    """(~10-25 s with the node's return.) The node is set DOWN while the job runs: Slurm ends it NODE_FAIL (reason NodeDown) and, as
    the executor submits with --no-requeue, does not run it again behind skyweave's back."""
    executor = slurm_executor(env, "&poll_s=0.2")
    scontrol = {**os.environ, "SLURM_CONF": executor.options.conf}
    try:
        d = dispatch(by_path("wait_for_file"), {"path": str(release), "limit_s": 120.0})
        executor.submit([d])
        wait_started(executor, d.activity_id, [])
        subprocess.run(["scontrol", "update", "NodeName=sw1", "State=DOWN", "Reason=skyweave-test"],
                       env=scontrol, check=True, capture_output=True)
        outcome = run_until(executor, [d.activity_id])[d.activity_id]
    finally:
        executor.close()
        subprocess.run(["scontrol", "update", "NodeName=sw1", "State=RESUME"], env=scontrol,
                       check=False, capture_output=True)  # refused if it has returned already
        _wait_idle(scontrol)
    assert isinstance(outcome, ActivityFailed), outcome
    assert (outcome.error_type, outcome.retryable) == ("skyweave.SlurmNodeFailure", True)
    assert "was lost with its node (state NODE_FAIL, reason NodeDown)" in outcome.message


def _wait_idle(env: dict[str, str]) -> None:
    end = time.monotonic() + 60
    while time.monotonic() < end:
        state = subprocess.run(["sinfo", "-h", "-n", "sw1", "-o", "%t"], env=env, capture_output=True,
                               text=True, check=False).stdout.strip()
        if state in ("idle", "mix", "alloc"):
            return
        time.sleep(0.2)
    raise AssertionError(f"node sw1 did not come back ({state})")
