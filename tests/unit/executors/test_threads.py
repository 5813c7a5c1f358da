"""ThreadExecutor: in-process, same boundary; timeouts and cancellation are reported, not enforced."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skyweave.executors.base import ExecutionEnv
from skyweave.executors.threads import ThreadExecutor
from skyweave.model.messages import ActivityFinished
from skyweave.storage.local import LocalStorage

from .helpers import by_path, dispatch, run_until, wait_started


@pytest.fixture
def threads(env: ExecutionEnv) -> Iterator[ThreadExecutor]:
    executor = ThreadExecutor(env, threads=2)
    executor.start()
    yield executor
    executor.close()


def test_only_the_activity_logger_is_captured(threads: ThreadExecutor) -> None:
    d = dispatch(by_path("chatty"))
    threads.submit([d])
    outcome = run_until(threads, [d.activity_id])[d.activity_id]
    assert isinstance(outcome, ActivityFinished)
    log = LocalStorage.local_path(outcome.log_uri).read_text()
    assert "hello from the activity logger" in log
    assert "hello from print" not in log


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


def test_a_memory_limit_it_cannot_enforce_is_said_once_per_task(threads: ThreadExecutor,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    batch = [dispatch(by_path("add"), {"x": i, "y": 0}, memory_mb=100) for i in range(3)]
    with caplog.at_level("WARNING", logger="skyweave.executors.threads"):
        threads.submit(batch)
        run_until(threads, [d.activity_id for d in batch])
    said = [r.getMessage() for r in caplog.records if "does not enforce" in r.getMessage()]
    assert said == ["task 'add' declares memory_mb=100, which the threads executor does not enforce "
                    "(use the local executor to enforce it)"]
