"""The contract every executor keeps (``skyweave.executors.base.Executor``).

Each test submits dispatches and collects until what it expects has arrived (``run_until``,
``wait_started``): nothing sleeps, and the deadline only fails a test that hangs.  A test that
releases a waiting task does so in ``finally``, so no thread or process outlives the test waiting.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from skyweave.executors.base import ExecutionEnv, Executor, Outcome
from skyweave.model.messages import (
    ActivityFailed,
    ActivityFinished,
    ActivityNeedsInput,
    ActivityStarted,
    DispatchActivity,
)
from skyweave.storage.local import LocalStorage
from tests.unit.executors.helpers import (
    DEADLINE_S,
    by_module,
    by_path,
    dispatch,
    run_until,
    wait_gone,
    wait_started,
)


@pytest.fixture
def release(tmp_path: Path) -> Iterator[Path]:
    """A file that waiting tasks (``wait_for_file``, ``pid_then_wait``) run until it exists."""
    path = tmp_path / "release"
    yield path
    path.touch()


def _finished(outcome: Outcome) -> ActivityFinished:
    assert isinstance(outcome, ActivityFinished), outcome
    return outcome


def _failed(outcome: Outcome) -> ActivityFailed:
    assert isinstance(outcome, ActivityFailed), outcome
    return outcome


def _pid(pid_file: Path, executor: Executor) -> int:
    """The process the task runs in, once it has written it (collecting meanwhile; nothing may end)."""
    events: list[Outcome] = []
    end = time.monotonic() + DEADLINE_S
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < end, "the task never wrote its pid"
        events.extend(executor.collect(0.05))
        assert not [e for e in events if not isinstance(e, ActivityStarted)], events
    return int(pid_file.read_text())


# -- success ------------------------------------------------------------------------------------------


def test_each_activity_gets_one_final_outcome_with_its_result(executor: Executor, env: ExecutionEnv) -> None:
    batch = [dispatch(by_module("add"), {"x": i, "y": 2}, attempt=1 + i % 3) for i in range(8)]
    executor.submit(batch)
    assert executor.active == 8
    events: list[Outcome] = []
    final = run_until(executor, [d.activity_id for d in batch], events=events)  # fails on a second final
    for i, d in enumerate(batch):
        outcome = _finished(final[d.activity_id])
        assert outcome.result == i + 2
        assert (outcome.attempt, outcome.worker) == (d.attempt, env.worker)
        assert outcome.started_at <= outcome.at
    assert executor.active == 0
    ended: set[str] = set()
    started: list[str] = []
    for event in events:  # a start is reported at most once, and never after its end
        if isinstance(event, ActivityStarted):
            assert event.activity_id not in ended
            started.append(event.activity_id)
        else:
            ended.add(event.activity_id)
    assert len(started) == len(set(started))


def test_a_submission_seen_twice_runs_once(executor: Executor) -> None:
    d = dispatch(by_path("add"), {"x": 1, "y": 1})
    executor.submit([d, d])
    executor.submit([d])
    assert executor.active == 1
    assert _finished(run_until(executor, [d.activity_id])[d.activity_id]).result == 2
    assert not [o for o in executor.collect(0.0) if not isinstance(o, ActivityStarted)]


def test_a_long_activity_is_reported_started_then_finished(executor: Executor, release: Path) -> None:
    d = dispatch(by_path("wait_for_file"), {"path": str(release)})
    submitted = time.time()
    executor.submit([d])
    events: list[Outcome] = []
    started = wait_started(executor, d.activity_id, events)
    assert not [e for e in events if not isinstance(e, ActivityStarted)]  # still running: it waits for us
    assert (started.attempt, started.worker) == (d.attempt, executor.env.worker)  # type: ignore[attr-defined]
    released = time.time()
    release.touch()
    outcome = _finished(run_until(executor, [d.activity_id])[d.activity_id])
    assert outcome.result == "seen"
    # Both start times lie between the submission (an engine's clock may keep whole seconds only) and
    # the end; the start event came while the activity still waited for its release.  Not closer: a
    # polling executor notices the start late, and an engine may call a job started (Kubernetes: the
    # Job active) before its process reaches the task (the outcome's started_at).
    assert submitted - 1.0 <= started.at <= released
    assert submitted - 1.0 <= outcome.started_at <= outcome.at
    assert started.at <= outcome.at


# -- failure, retries, needs ------------------------------------------------------------------------------


def test_a_failure_keeps_the_users_error_and_traceback(executor: Executor) -> None:
    d = dispatch(by_path("boom"), attempt=2)
    outcome = _failed(run_until_submitted(executor, d))
    assert (outcome.error_type, outcome.message) == ("ValueError", "boom with 42")
    assert "_deep_helper" in outcome.traceback and "raise ValueError" in outcome.traceback
    assert "boundary.py" not in outcome.traceback
    assert outcome.attempt == 2
    assert outcome.retryable is True  # an ordinary error may be passing: worth another attempt


def test_the_retryable_flag_comes_from_the_error(executor: Executor) -> None:
    fatal = _failed(run_until_submitted(executor, dispatch(by_path("fatal"))))
    assert fatal.error_type == "skyweave.errors.Fatal"
    assert fatal.retryable is False
    assert "re-run L1 decoding" in fatal.message  # the hint travels with it


def test_a_missing_input_is_reported_as_a_need(executor: Executor) -> None:
    outcome = run_until_submitted(executor, dispatch(by_path("needs_attitude"), {"obs_id": "obs-7"}))
    assert isinstance(outcome, ActivityNeedsInput), outcome
    assert (outcome.need.param, outcome.need.product_type) == ("attitude", "ep.aux.attitude")
    assert outcome.need.match == {"obs_id": "obs-7"}


# -- products -----------------------------------------------------------------------------------------


def test_products_are_written_through_the_storage_with_their_checksums(
        executor: Executor, env: ExecutionEnv) -> None:
    d = dispatch(by_path("make_products"), {"n": 2})
    outcome = _finished(run_until_submitted(executor, d))
    assert len(outcome.products) == 3
    storage = LocalStorage(env.storage_root)
    for product in outcome.products:
        path = storage.local_path(product.uri)
        assert path.is_relative_to(env.storage_root)
        data = path.read_bytes()
        assert product.checksum == "sha256:" + hashlib.sha256(data).hexdigest()
        assert product.size == len(data)
    assert outcome.result["count"] == 2
    assert [f["$product"] for f in outcome.result["files"]] == [p.id for p in outcome.products[:2]]
    assert not (env.work_root / f"{d.activity_id}-{d.attempt}").exists()  # cleaned after a success


# -- timeout, cancel, memory --------------------------------------------------------------------------


def test_a_timeout_is_reported_and_retryable(executor: Executor, release: Path) -> None:
    d = dispatch(by_path("wait_for_file"), {"path": str(release)}, timeout_s=0.3)
    outcome = _failed(run_until_submitted(executor, d))
    assert outcome.error_type == "skyweave.TaskTimeout"
    assert "exceeded its timeout of 0.3 s" in outcome.message
    assert outcome.retryable is True


def test_a_timeout_stops_the_running_work(executor: Executor, release: Path, tmp_path: Path) -> None:
    _needs(executor, "stops_running_work")
    pid_file = tmp_path / "pid"
    d = dispatch(by_path("pid_then_wait"), {"pid_file": str(pid_file), "path": str(release)}, timeout_s=1.5)
    executor.submit([d])
    pid = _pid(pid_file, executor)
    assert pid != os.getpid()
    assert _failed(run_until(executor, [d.activity_id])[d.activity_id]).error_type == "skyweave.TaskTimeout"
    wait_gone(pid)
    after = dispatch(by_path("add"), {"x": 2, "y": 2})
    executor.submit([after])
    assert _finished(run_until(executor, [after.activity_id])[after.activity_id]).result == 4


def test_cancel_reports_queued_and_running_activities_cancelled(executor: Executor, release: Path) -> None:
    running = [dispatch(by_path("wait_for_file"), {"path": str(release)}) for _ in range(2)]
    queued = dispatch(by_path("add"), {"x": 1, "y": 2})
    events: list[Outcome] = []
    executor.submit(running)
    for d in running:
        wait_started(executor, d.activity_id, events)
    executor.submit([queued])  # both slots busy: it waits
    executor.cancel([d.activity_id for d in (*running, queued)])
    executor.cancel(["act-never-submitted"])  # unknown ids are ignored
    final = {e.activity_id: e for e in events if not isinstance(e, ActivityStarted)}
    assert not final
    final = run_until(executor, [d.activity_id for d in (*running, queued)])
    for d in (*running, queued):
        outcome = _failed(final[d.activity_id])
        assert outcome.error_type == "skyweave.Cancelled"
        assert outcome.retryable is False
    assert executor.active == 0
    release.touch()  # work an executor could not stop ends now (and frees its slot): its outcome is dropped
    later = dispatch(by_path("add"), {"x": 2, "y": 3})
    executor.submit([later])
    after: list[Outcome] = []
    assert _finished(run_until(executor, [later.activity_id], events=after)[later.activity_id]).result == 5
    after += executor.collect(0.2)
    assert not [o.activity_id for o in after if o.activity_id != later.activity_id]


def test_cancel_stops_the_running_work(executor: Executor, release: Path, tmp_path: Path) -> None:
    _needs(executor, "stops_running_work")
    pid_file = tmp_path / "pid"
    d = dispatch(by_path("pid_then_wait"), {"pid_file": str(pid_file), "path": str(release)})
    executor.submit([d])
    pid = _pid(pid_file, executor)
    executor.cancel([d.activity_id])
    assert _failed(run_until(executor, [d.activity_id])[d.activity_id]).error_type == "skyweave.Cancelled"
    wait_gone(pid)


def test_memory_over_the_limit_stops_the_activity(executor: Executor) -> None:
    """``resources.memory_mb``: 400 MB held under a 250 MB limit is stopped, not retried (the same
    limit would stop it again), with how much it used; one within its limit runs."""
    _needs(executor, "enforces_memory")
    greedy = dispatch(by_path("hold_memory"), {"mb": 400, "seconds": 30.0}, memory_mb=250)
    modest = dispatch(by_path("hold_memory"), {"mb": 20, "seconds": 0.0}, memory_mb=250)
    executor.submit([greedy, modest])
    final = run_until(executor, [greedy.activity_id, modest.activity_id])
    stopped = _failed(final[greedy.activity_id])
    assert stopped.error_type == "skyweave.MemoryLimit" and stopped.retryable is False
    assert "over its memory limit of 250 MB" in stopped.message
    if executor.capabilities.reports_memory_used:
        used = int(stopped.message.split(" used ")[1].split(" MB")[0])
        assert 250 < used < 2000
    assert _finished(final[modest.activity_id]).result == 20


def run_until_submitted(executor: Executor, d: DispatchActivity) -> Outcome:
    executor.submit([d])
    return run_until(executor, [d.activity_id])[d.activity_id]


def _needs(executor: Executor, capability: str) -> None:
    if not getattr(executor.capabilities, capability):
        pytest.skip(f"the {executor.name} executor declares it cannot: {capability} is False")
