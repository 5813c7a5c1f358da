"""SubprocessExecutor specifics (the contract suite covers the rest): a process that ends without
writing an outcome is reported, with why, and its files are cleaned up."""

from __future__ import annotations

from pathlib import Path

from skyweave.executors.base import ExecutionEnv
from skyweave.executors.per_process import SubprocessExecutor
from skyweave.model.messages import ActivityFailed, ActivityFinished
from tests.unit.executors.helpers import by_path, dispatch, run_until


def test_a_process_that_ends_without_an_outcome_is_reported(env: ExecutionEnv) -> None:
    executor = SubprocessExecutor(env, processes=2)
    executor.start()
    try:
        exits, killed, fine = (dispatch(by_path(name)) for name in ("hard_exit", "kill_self", "whoami"))
        executor.submit([exits, killed, fine])
        final = run_until(executor, [exits.activity_id, killed.activity_id, fine.activity_id])
    finally:
        executor.close()
    for d, how in ((exits, "exited with code 1"), (killed, "was killed by signal SIGKILL")):
        outcome = final[d.activity_id]
        assert isinstance(outcome, ActivityFailed), outcome
        assert outcome.error_type == "skyweave.WorkerDied" and outcome.retryable is True
        assert f"{how} without an outcome while running task {d.task.name!r}" in outcome.message
    ran = final[fine.activity_id]
    assert isinstance(ran, ActivityFinished) and ran.result == ran.pid  # in a process of its own
    assert list(Path(env.work_root / ".jobs").iterdir()) == []  # job, outcome, stderr, start mark removed
