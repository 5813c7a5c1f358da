"""ThreadExecutor: in-process, same boundary; timeouts and cancellation are reported, not enforced."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skyweave.executors.base import ExecutionEnv, Outcome
from skyweave.executors.threads import ThreadExecutor
from skyweave.model.messages import ActivityFailed, ActivityFinished, ActivityStarted
from skyweave.storage.local import LocalStorage

from .helpers import by_module, by_path, dispatch
from .test_local import run_until, wait_started


@pytest.fixture
def threads(env: ExecutionEnv) -> Iterator[ThreadExecutor]:
    executor = ThreadExecutor(env, threads=2)
    executor.start()
    yield executor
    executor.close()


def test_runs_activities_and_reports_each_once(threads: ThreadExecutor) -> None:
    batch = [dispatch(by_module("add"), {"x": i, "y": 2}) for i in range(50)]
    threads.submit(batch)
    final = run_until(threads, [d.activity_id for d in batch])
    assert [final[d.activity_id].result for d in batch] == [i + 2 for i in range(50)]  # type: ignore[union-attr]
    assert threads.active == 0


def test_only_the_activity_logger_is_captured(threads: ThreadExecutor) -> None:
    d = dispatch(by_path("chatty"))
    threads.submit([d])
    outcome = run_until(threads, [d.activity_id])[d.activity_id]
    assert isinstance(outcome, ActivityFinished)
    log = LocalStorage.local_path(outcome.log_uri).read_text()
    assert "hello from the activity logger" in log
    assert "hello from print" not in log


def test_timeout_and_cancel_are_reported_at_once(threads: ThreadExecutor, tmp_path: Path) -> None:
    release = tmp_path / "release"
    slow = dispatch(by_path("wait_for_file"), {"path": str(release)}, timeout_s=0.2)
    running = dispatch(by_path("wait_for_file"), {"path": str(release)})
    queued = dispatch(by_path("add"), {"x": 1, "y": 1})
    events: list[Outcome] = []
    try:
        threads.submit([slow, running, queued])
        wait_started(threads, running.activity_id, events)
        threads.cancel([running.activity_id, queued.activity_id])
        final = {e.activity_id: e for e in events if not isinstance(e, ActivityStarted)}
        wanted = [d.activity_id for d in (slow, running, queued) if d.activity_id not in final]
        final.update(run_until(threads, wanted))
    finally:
        release.touch()  # let the abandoned threads end
    timed_out = final[slow.activity_id]
    assert isinstance(timed_out, ActivityFailed)
    assert timed_out.error_type == "skyweave.TaskTimeout"
    assert "exceeded its timeout of 0.2 s" in timed_out.message
    for d in (running, queued):
        cancelled = final[d.activity_id]
        assert isinstance(cancelled, ActivityFailed)
        assert cancelled.error_type == "skyweave.Cancelled"
        assert cancelled.retryable is False
    assert threads.active == 0
    later = dispatch(by_path("add"), {"x": 2, "y": 3})
    threads.submit([later])
    outcome = run_until(threads, [later.activity_id])[later.activity_id]
    assert isinstance(outcome, ActivityFinished)
    assert outcome.result == 5
    # the abandoned activities' own outcomes, arriving later, are dropped
    assert not [e for e in threads.collect(0.0) if not isinstance(e, ActivityStarted)]


class _EndsWhileCollectLooks(queue.SimpleQueue[Any]):
    """A finished-outcome queue that, when ``armed``, lets the running activity end (and the next
    one start) just after ``collect`` found the queue empty: the interleaving of a loaded machine,
    where the pool thread runs while ``collect`` waits for the GIL between its drain and its look."""

    def __init__(self, executor: ThreadExecutor, release: Path, next_id: str) -> None:
        self.executor, self.release, self.next_id = executor, release, next_id
        self.armed = False

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        try:
            return super().get(block, timeout)
        except queue.Empty:
            if self.armed:
                self.armed = False
                self.release.touch()
                end = time.monotonic() + 10
                while self.next_id not in self.executor._running:
                    assert time.monotonic() < end, "the next activity never started"
                    time.sleep(0.001)
            raise


def test_a_start_is_never_reported_without_the_end_that_preceded_it(env: ExecutionEnv,
                                                                     tmp_path: Path) -> None:
    """One thread: the second activity starting means the first has ended.  ``collect`` must not
    report the second's start and leave the first's end for later (the worker would then publish
    that start alone, and the end in another batch)."""
    executor = ThreadExecutor(env, threads=1)
    executor.start()
    release = tmp_path / "release"
    first = dispatch(by_path("wait_for_file"), {"path": str(release)})
    second = dispatch(by_path("wait_for_file"), {"path": str(tmp_path / "second")})
    finished = _EndsWhileCollectLooks(executor, release, second.activity_id)
    executor._finished = finished
    try:
        executor.submit([first, second])
        wait_started(executor, first.activity_id, [])
        finished.armed = True
        outcomes = executor.collect(0.0)
        assert not finished.armed
        reported = [(type(o).__name__, o.activity_id) for o in outcomes]
        assert ("ActivityStarted", second.activity_id) in reported
        assert ("ActivityFinished", first.activity_id) in reported
    finally:
        release.touch()
        (tmp_path / "second").touch()
        executor.close()
