"""The worker service on a real in-memory bus and thread executor: what it publishes, and when."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec

from skyweave.bus.base import CONTROLLER_GROUP
from skyweave.bus.memory import MemoryBus
from skyweave.executors.base import ExecutionEnv, Outcome
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

    def report(self, events: Sequence[bytes], done: Sequence[str]) -> None:
        self.batches.append([type(m.decode_message(d).body).__name__ for d in events])
        super().report(events, done)


class ManualClock:
    """The worker's clock, moved by the test: the started-report grace is then a decision the test
    controls, not a race between the activity and the machine's load."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _worker(env: ExecutionEnv, clock: ManualClock) -> tuple[RecordingBus, WorkerService]:
    bus = RecordingBus()
    worker = WorkerService(bus, ThreadExecutor(env, threads=1), heartbeat_s=3600, clock=clock)
    worker.start()
    bus.batches.clear()                                     # the start-up heartbeat
    return bus, worker


def _enqueue(bus: MemoryBus, d: m.DispatchActivity) -> None:
    bus.enqueue([(d.activity_id, 0, m.encode_message(d.activity_id, d))])


def _step_until(worker: WorkerService, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not done():
        assert time.monotonic() < deadline
        worker.step(0.01)


def test_a_start_seen_within_the_grace_leaves_with_the_end(env: ExecutionEnv, tmp_path: Path) -> None:
    """An activity seen running is not reported started on its own while the grace (20 ms of the
    worker's clock) lasts: the start waits and leaves with the end, so the controller writes once."""
    clock = ManualClock()
    bus, worker = _worker(env, clock)
    release = tmp_path / "release"
    try:
        _enqueue(bus, dispatch(by_path("wait_for_file"), {"path": str(release)}))
        _step_until(worker, lambda: bool(worker._held))     # seen running, held
        for _ in range(5):
            worker.step(0.01)
        assert bus.batches == []
        clock.now += worker.started_grace_s / 2
        release.touch()
        _step_until(worker, lambda: bool(bus.batches))
        assert bus.batches == [["ActivityStarted", "ActivityFinished"]]
    finally:
        release.touch()
        worker.close()


def test_a_long_activity_is_reported_started_once_the_grace_is_over(env: ExecutionEnv,
                                                                    tmp_path: Path) -> None:
    clock = ManualClock()
    bus, worker = _worker(env, clock)
    release = tmp_path / "release"
    try:
        _enqueue(bus, dispatch(by_path("wait_for_file"), {"path": str(release)}))
        _step_until(worker, lambda: bool(worker._held))
        assert bus.batches == []
        clock.now += worker.started_grace_s
        worker.step(0.01)
        assert bus.batches == [["ActivityStarted"]]
        release.touch()
        _step_until(worker, lambda: len(bus.batches) > 1)
        assert bus.batches == [["ActivityStarted"], ["ActivityFinished"]]
        events = [type(m.decode_message(e.data).body).__name__ for e in bus.read(CONTROLLER_GROUP, 50)]
        assert events == ["WorkerHeartbeat", "ActivityStarted", "ActivityFinished"]
    finally:
        release.touch()
        worker.close()


def test_a_dispatch_enqueued_while_the_worker_waits_for_a_running_activity_wakes_it(
        env: ExecutionEnv, tmp_path: Path) -> None:
    """With a long activity running and a slot free, the worker waits in the executor, not on the
    bus: a dispatch enqueued while it waits wakes it at once (``on_enqueue`` + ``LocalExecutor.wake``),
    instead of when the long one next reports.  Here the long activity ends only once the new
    dispatch is claimed (or after 10 s without that): without the wake, the claim comes after it."""
    bus = RecordingBus()
    executor = LocalExecutor(env, processes=2)
    worker = WorkerService(bus, executor, heartbeat_s=3600)
    worker.start()
    release = tmp_path / "release"
    d = dispatch(by_path("add"), {"x": 1, "y": 2})
    waiting, claimed_first = threading.Event(), threading.Event()
    collect = executor.collect

    def collect_and_tell(timeout: float) -> list[Outcome]:
        waiting.set()
        return collect(timeout)

    def enqueue_while_waiting_then_release() -> None:
        waiting.wait(10)
        _enqueue(bus, d)
        end = time.monotonic() + 10
        while time.monotonic() < end and not claimed_first.is_set():
            if d.activity_id in worker._messages:
                claimed_first.set()
            time.sleep(0.005)
        release.touch()

    try:
        _enqueue(bus, dispatch(by_path("wait_for_file"), {"path": str(release)}))
        _step_until(worker, lambda: ["ActivityStarted"] in bus.batches)   # nothing left to report
        executor.collect = collect_and_tell  # type: ignore[method-assign]
        helper = threading.Thread(target=enqueue_while_waiting_then_release)
        helper.start()
        while d.activity_id not in worker._messages:
            worker.step(60.0)  # without the wake, this step waits for the long activity to end
        helper.join()
        assert claimed_first.is_set()
    finally:
        release.touch()
        worker.close()
        bus.close()


def test_an_outcome_is_reported_with_its_dispatch_kept_done_until_the_controller_acks(
        env: ExecutionEnv) -> None:
    """The worker forgets an activity only once its outcome is on the bus, and the dispatch stays
    there (done, never handed out again) until the controller has committed the outcome."""
    bus, worker = _worker(env, ManualClock())
    try:
        d = dispatch(by_path("add"), {"x": 1, "y": 2})
        _enqueue(bus, d)
        _step_until(worker, lambda: any("ActivityFinished" in b for b in bus.batches))
        assert worker._messages == {}, "the worker has forgotten it"
        assert bus.present([d.activity_id]) == [d.activity_id], "kept on the bus until acked"
        _enqueue(bus, d)  # sent again (a restarted controller): no second execution
        for _ in range(5):
            worker.step(0.01)
        events = [m.decode_message(e.data).body for e in bus.read(CONTROLLER_GROUP, 50)]
        assert [type(b).__name__ for b in events if not isinstance(b, m.WorkerHeartbeat)].count(
            "ActivityFinished") == 1
        bus.commit(CONTROLLER_GROUP, str(10**9), ack=[d.activity_id])
        assert bus.queued() == 0
    finally:
        worker.close()


def test_a_dispatch_delivered_again_is_handed_back_unrun(env: ExecutionEnv, tmp_path: Path) -> None:
    """A second delivery means an earlier holder's lease ran out: that holder may have run it, so
    the worker does not run it again on the same attempt; the controller decides a new one."""
    bus, worker = _worker(env, ManualClock())
    marker = tmp_path / "ran"
    try:
        d = dispatch(by_path("touch_file"), {"path": str(marker)})
        _enqueue(bus, d)
        assert [c.id for c in bus.claim("dead-worker", 1, 0.01)] == [d.activity_id]
        _step_until(worker, lambda: any("ActivityReturned" in b for b in bus.batches))
        (returned,) = [b for b in (m.decode_message(e.data).body for e in bus.read(CONTROLLER_GROUP, 50))
                       if isinstance(b, m.ActivityReturned)]
        assert (returned.activity_id, returned.attempt, returned.worker) == (d.activity_id, d.attempt, worker.id)
        assert "delivered 2 times" in returned.reason
        assert not marker.exists(), "it did not run"
        assert bus.claim("other", 5, 60) == [], "done: not handed out a third time"
    finally:
        worker.close()


def _finished(bus: RecordingBus) -> int:
    return sum(batch.count("ActivityFinished") for batch in bus.batches)


def test_short_work_taken_ahead_waits_in_the_worker_behind_long_work_and_a_hold_sends_it_back(
        env: ExecutionEnv, tmp_path: Path) -> None:
    """A task known to be short is not handed to an executor whose slots all run long work: it
    waits in the worker, unbegun, so when its run is paused (held on the bus) it goes back to the
    bus unstarted once the slot frees, instead of starting then.  (Handed over at once, it would
    have waited in the executor and started after the pause.)"""
    clock = ManualClock()
    bus, worker = _worker(env, clock)
    release = tmp_path / "release"
    try:
        _enqueue(bus, dispatch(by_path("add"), {"x": 1, "y": 2}))
        _step_until(worker, lambda: _finished(bus) == 1)   # now known to be short here
        _enqueue(bus, dispatch(by_path("wait_for_file"), {"path": str(release)}))
        _step_until(worker, lambda: bool(worker._held))     # the only slot runs it
        short = dispatch(by_path("add"), {"x": 3, "y": 4})
        _enqueue(bus, short)
        _step_until(worker, lambda: short.activity_id in worker._messages)
        worker.step(0.01)
        assert [d.activity_id for d in worker._ahead] == [short.activity_id]
        assert worker.executor.active == 1, "not handed to the busy executor"
        bus.hold([short.activity_id])                       # its run is paused
        release.touch()
        _step_until(worker, lambda: short.activity_id not in worker._messages)
        _step_until(worker, lambda: worker.executor.active == 0)
        assert _finished(bus) == 2, "only the long one ended; the held one did not start"
        assert bus.held([short.activity_id]) == [short.activity_id]
        assert bus.claim("other", 10, 60.0) == [], "given back, still held"
        assert bus.withdraw([short.activity_id]) == 1, "resume takes it back to dispatch it again"
    finally:
        release.touch()
        worker.close()


def test_urgent_work_claimed_later_goes_before_work_taken_ahead_earlier(env: ExecutionEnv, tmp_path: Path) -> None:
    """What a worker took ahead waits in the bus's order, not in the order it was claimed: an urgent
    dispatch claimed after a low-priority one (both waiting for the only slot) starts first."""
    clock = ManualClock()
    bus, worker = _worker(env, clock)
    release = tmp_path / "release"
    try:
        bus.enqueue([("blocker", 0, m.encode_message("blocker", dispatch(by_path("wait_for_file"),
                                                                          {"path": str(release)})))])
        _step_until(worker, lambda: bool(worker._held))      # the only slot runs it
        low, urgent = dispatch(by_path("add"), {"x": 1, "y": 0}), dispatch(by_path("add"), {"x": 2, "y": 0})
        bus.enqueue([(low.activity_id, 0, m.encode_message(low.activity_id, low))])
        _step_until(worker, lambda: low.activity_id in worker._messages)
        bus.enqueue([(urgent.activity_id, 9, m.encode_message(urgent.activity_id, urgent))])
        _step_until(worker, lambda: urgent.activity_id in worker._messages)
        assert [d.activity_id for d in worker._ahead] == [urgent.activity_id, low.activity_id]
        release.touch()
        _step_until(worker, lambda: _finished(bus) == 3)
        ended = [body.activity_id for e in bus.read(CONTROLLER_GROUP, 50)
                 if isinstance(body := m.decode_message(e.data).body, m.ActivityFinished)]
        assert ended[1:] == [urgent.activity_id, low.activity_id]
    finally:
        release.touch()
        worker.close()


def test_a_newer_dispatch_of_an_activity_waiting_here_supersedes_the_older(env: ExecutionEnv, tmp_path: Path) -> None:
    """The controller took this worker for dead and dispatched an activity again while its first
    dispatch still waited here unstarted: the activity waits once, starts once (the newer attempt),
    and the older dispatch is handed back as returned.  (It waited twice, and the worker died with a
    KeyError when the slot freed.)"""
    clock = ManualClock()
    bus, worker = _worker(env, clock)
    release = tmp_path / "release"
    try:
        bus.enqueue([("blocker", 0, m.encode_message("blocker", dispatch(by_path("wait_for_file"),
                                                                          {"path": str(release)})))])
        _step_until(worker, lambda: bool(worker._held))      # the only slot runs it
        first = dispatch(by_path("add"), {"x": 1, "y": 0})
        again = msgspec.structs.replace(first, attempt=2)
        bus.enqueue([(m.dispatch_id(first.activity_id, 1), 0, m.encode_message("d1", first))])
        _step_until(worker, lambda: first.activity_id in worker._messages)
        bus.enqueue([(m.dispatch_id(first.activity_id, 2), 0, m.encode_message("d2", again))])
        _step_until(worker, lambda: worker._messages.get(first.activity_id) == m.dispatch_id(first.activity_id, 2))
        assert [(d.activity_id, d.attempt) for d in worker._ahead] == [(first.activity_id, 2)]
        release.touch()
        _step_until(worker, lambda: _finished(bus) == 2)
        bodies = [m.decode_message(e.data).body for e in bus.read(CONTROLLER_GROUP, 50)]
        finished = [(b.activity_id, b.attempt) for b in bodies if isinstance(b, m.ActivityFinished)]
        returned = [(b.activity_id, b.attempt) for b in bodies if isinstance(b, m.ActivityReturned)]
        assert (first.activity_id, 2) in finished and (first.activity_id, 1) not in finished
        assert returned == [(first.activity_id, 1)]
    finally:
        release.touch()
        worker.close()


class SlowExtendBus(MemoryBus):
    """Renewing leases waits out an outage of the bus's server: the worker's clock moves on meanwhile."""

    def __init__(self, clock: ManualClock, outage_s: float) -> None:
        super().__init__()
        self.clock, self.outage_s = clock, outage_s

    def extend(self, ids: Sequence[str], lease_s: float) -> None:
        self.clock.now += self.outage_s
        super().extend(ids, lease_s)


def test_a_heartbeat_is_dated_when_it_is_sent_not_before_the_outage_it_waited_out(
        env: ExecutionEnv, tmp_path: Path) -> None:
    """A heartbeat dated before the lease renewal that waited 10 s for the bus would tell the
    controller this worker had been silent for 10 s: it would be judged dead and its work run twice."""
    clock = ManualClock()
    bus = SlowExtendBus(clock, outage_s=10.0)
    worker = WorkerService(bus, ThreadExecutor(env, threads=1), heartbeat_s=1.0, clock=clock)
    release = tmp_path / "release"
    try:
        worker.start()
        _enqueue(bus, dispatch(by_path("wait_for_file"), {"path": str(release)}))
        _step_until(worker, lambda: bool(worker._messages))  # holding a dispatch: a beat renews its lease
        bus.commit(CONTROLLER_GROUP, bus.read(CONTROLLER_GROUP, 1000)[-1].offset)  # the start-up beat
        clock.now += 1.0
        began = clock.now
        worker.step(0.01)
        beats = [b for d in bus.read(CONTROLLER_GROUP, 1000)
                 if isinstance(b := m.decode_message(d.data).body, m.WorkerHeartbeat)]
        assert [b.at for b in beats] == [began + 10.0]
    finally:
        release.touch()
        _step_until(worker, lambda: not worker._messages)
        worker.close()
