"""The worker service on a real in-memory bus and thread executor: what it publishes, and when."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

from skyweave.bus.base import CONTROLLER_GROUP
from skyweave.bus.memory import MemoryBus
from skyweave.executors.base import ExecutionEnv
from skyweave.executors.local import LocalExecutor
from skyweave.executors.threads import ThreadExecutor
from skyweave.executors.worker import WorkerService
from skyweave.model import messages as m

from .helpers import by_path, dispatch


class RecordingBus(MemoryBus):
    """A memory bus that remembers which events were published together."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []

    def publish(self, messages: Sequence[bytes]) -> None:
        self.batches.append([type(m.decode_message(d).body).__name__ for d in messages])
        super().publish(messages)


def _worker(env: ExecutionEnv) -> tuple[RecordingBus, WorkerService]:
    bus = RecordingBus()
    worker = WorkerService(bus, ThreadExecutor(env, threads=1), heartbeat_s=3600)
    worker.start()
    bus.batches.clear()                                     # the start-up heartbeat
    return bus, worker


def _enqueue(bus: MemoryBus, d: m.DispatchActivity) -> None:
    bus.enqueue([(d.activity_id, 0, m.encode_message(d.activity_id, d))])


def test_a_short_activity_reports_start_and_end_together(env: ExecutionEnv) -> None:
    """A 5 ms activity seen running by ``collect`` is not reported started on its own: the start
    waits (at most 20 ms) and leaves with the end, so the controller writes once."""
    bus, worker = _worker(env)
    try:
        for _ in range(5):
            _enqueue(bus, dispatch(by_path("burn_cpu"), {"seconds": 0.005}))
        deadline = time.monotonic() + 10
        while sum(b.count("ActivityFinished") for b in bus.batches) < 5:
            assert time.monotonic() < deadline
            worker.step(0.01)
        assert all("ActivityFinished" in b for b in bus.batches), bus.batches
        assert any("ActivityStarted" in b for b in bus.batches), bus.batches   # seen running, held
        events = [type(m.decode_message(e.data).body).__name__ for e in bus.read(CONTROLLER_GROUP, 50)]
        for i, name in enumerate(events):                   # a start always precedes its end
            if name == "ActivityStarted":
                assert "ActivityFinished" in events[i + 1:]
    finally:
        worker.close()


def test_a_long_activity_is_reported_started_while_it_runs(env: ExecutionEnv, tmp_path: Path) -> None:
    bus, worker = _worker(env)
    release = tmp_path / "release"
    try:
        _enqueue(bus, dispatch(by_path("wait_for_file"), {"path": str(release)}))
        t0 = time.monotonic()
        while ["ActivityStarted"] not in bus.batches:
            assert time.monotonic() - t0 < 5, bus.batches
            worker.step(0.01)
        assert time.monotonic() - t0 < 1.0                  # held at most started_grace_s (20 ms)
        release.touch()
        while not any("ActivityFinished" in b for b in bus.batches):
            assert time.monotonic() - t0 < 10
            worker.step(0.01)
        assert bus.batches == [["ActivityStarted"], ["ActivityFinished"]]
    finally:
        release.touch()
        worker.close()


def test_a_dispatch_enqueued_while_the_worker_waits_for_a_running_activity_wakes_it(
        env: ExecutionEnv) -> None:
    """With a long activity running and a slot free, the worker waits in the executor, not on the
    bus: an enqueued dispatch wakes it at once (``on_enqueue`` + ``LocalExecutor.wake``), instead
    of when the long one next reports."""
    bus = MemoryBus()
    worker = WorkerService(bus, LocalExecutor(env, processes=2), heartbeat_s=3600)
    worker.start()
    try:
        _enqueue(bus, dispatch(by_path("burn_cpu"), {"seconds": 3.0}))
        deadline = time.monotonic() + 10
        while worker.executor.active == 0:
            assert time.monotonic() < deadline
            worker.step(0.01)
        d = dispatch(by_path("add"), {"x": 1, "y": 2})
        timer = threading.Timer(0.05, _enqueue, (bus, d))
        timer.start()
        started = time.monotonic()
        while d.activity_id not in worker._messages:
            worker.step(2.0)  # without the wake, this step would wait for the long activity
        assert time.monotonic() - started < 1.0
        timer.join()
    finally:
        worker.close()
        bus.close()
