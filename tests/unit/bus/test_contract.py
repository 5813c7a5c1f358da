"""The contract every bus backend passes (``skyweave.bus.base.Bus``), then backend specifics.

Time-dependent checks never rely on a fixed sleep: they poll until the condition holds, bounded by
a deadline.  "Did not happen" is proved with a sentinel: a message claimed with the same short
lease is redelivered, so the lease under test has expired too.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skyweave.bus import CONTROLLER_GROUP, Bus, BusError, Claimed, MemoryBus, SQLiteBus, open_bus
from skyweave.bus import sqlite as sqlite_module
from skyweave.errors import NotFoundError
from skyweave.model.messages import RunSubmitted, decode_message, encode_message

from .conftest import BUS_FACTORIES, BusFactory, OpenHandle

T = TypeVar("T")
SHORT = 0.05
LONG = 60.0


def eventually(probe: Callable[[], T | None], timeout: float = 10.0) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.005)


def ids(claimed: list[Claimed]) -> list[str]:
    return [c.id for c in claimed]


# -- dispatch queue ---------------------------------------------------------------------------------


def test_claims_highest_priority_first_then_oldest(bus: Bus) -> None:
    bus.enqueue([("a", 0, b"a"), ("b", 5, b"b")])
    bus.enqueue([("c", 0, b"c"), ("d", 5, b"d"), ("e", -1, b"e")])
    assert ids(bus.claim("w", 1, LONG)) == ["b"]
    got = bus.claim("w", 10, LONG)
    assert ids(got) == ["d", "a", "c", "e"]
    assert [c.data for c in got] == [b"d", b"a", b"c", b"e"]
    assert all(c.deliveries == 1 for c in got)


def test_enqueue_is_idempotent_by_id(bus: Bus) -> None:
    bus.enqueue([("a", 0, b"first"), ("a", 9, b"second")])
    bus.enqueue([("a", 0, b"third")])
    assert bus.queued() == 1
    [claimed] = bus.claim("w", 10, LONG)
    assert claimed.data == b"first"
    bus.enqueue([("a", 0, b"again while claimed")])
    assert bus.queued() == 1
    assert bus.claim("w", 10, LONG) == []


def test_claim_returns_at_most_max_n(bus: Bus) -> None:
    bus.enqueue([(f"m{i}", 0, b"") for i in range(5)])
    assert ids(bus.claim("w", 2, LONG)) == ["m0", "m1"]
    assert ids(bus.claim("w", 10, LONG)) == ["m2", "m3", "m4"]
    assert bus.claim("w", 10, LONG) == []
    assert bus.claim("w", 0, LONG) == []


def test_expired_lease_is_delivered_again(bus: Bus) -> None:
    bus.enqueue([("low", 0, b"l"), ("high", 1, b"h")])
    assert ids(bus.claim("w1", 2, SHORT)) == ["high", "low"]  # one claim: one lease deadline
    again = eventually(lambda: bus.claim("w2", 2, LONG))
    assert [(c.id, c.data, c.deliveries) for c in again] == [("high", b"h", 2), ("low", b"l", 2)]
    assert bus.queued() == 2


def test_ack_removes(bus: Bus) -> None:
    bus.enqueue([("a", 0, b""), ("sentinel", 0, b"")])
    assert ids(bus.claim("w", 2, SHORT)) == ["a", "sentinel"]
    bus.ack(["a", "never-enqueued"])
    assert bus.queued() == 1
    assert ids(eventually(lambda: bus.claim("w", 10, LONG))) == ["sentinel"]
    assert bus.queued() == 1


def test_extend_keeps_a_lease(bus: Bus) -> None:
    bus.enqueue([("kept", 1, b""), ("sentinel", 0, b"")])
    assert ids(bus.claim("w", 2, SHORT)) == ["kept", "sentinel"]
    bus.extend(["kept"], LONG)
    assert ids(eventually(lambda: bus.claim("w", 10, LONG))) == ["sentinel"]


def test_extend_does_not_claim(bus: Bus) -> None:
    bus.enqueue([("a", 0, b"")])
    bus.extend(["a", "missing"], LONG)
    assert ids(bus.claim("w", 1, LONG)) == ["a"]


def test_withdraw_removes_only_unleased(bus: Bus) -> None:
    bus.enqueue([("held", 2, b""), ("expiring", 1, b""), ("waiting", 0, b"")])
    assert ids(bus.claim("w", 1, LONG)) == ["held"]
    assert ids(bus.claim("w", 1, SHORT)) == ["expiring"]
    assert bus.withdraw(["held", "waiting", "missing"]) == 1
    assert bus.queued() == 2
    eventually(lambda: bus.withdraw(["expiring"]) == 1)
    assert bus.queued() == 1
    assert bus.withdraw([]) == 0


def test_reprioritize_moves_unclaimed_dispatches_only(bus: Bus) -> None:
    bus.enqueue([("held", 5, b""), ("a", 1, b""), ("b", 1, b""), ("c", 1, b"")])
    assert ids(bus.claim("w", 1, LONG)) == ["held"]
    assert bus.reprioritize(["c", "held", "missing"], 9) == 1, "a claimed one is not changed"
    assert ids(bus.claim("w", 1, LONG)) == ["c"]
    assert bus.reprioritize(["a"], 0) == 1
    assert ids(bus.claim("w", 2, LONG)) == ["b", "a"]


def test_revoke_marks_held_dispatches_until_acked(open_handle: OpenHandle) -> None:
    controller, worker = open_handle(), open_handle()
    controller.enqueue([("running", 0, b""), ("other", 0, b"")])
    held = ids(worker.claim("w", 2, LONG))
    assert sorted(held) == ["other", "running"]
    assert worker.revoked(held) == []
    controller.revoke(["running", "never-enqueued"])
    assert worker.revoked(held) == ["running"]
    worker.ack(["running"])
    assert worker.revoked(["running", "other"]) == []
    controller.enqueue([("running", 0, b"")])  # the same id again is a fresh dispatch, not revoked
    assert worker.revoked(["running"]) == []


def test_queued_counts_claimed_and_unclaimed(bus: Bus) -> None:
    assert bus.queued() == 0
    bus.enqueue([(f"m{i}", i % 3, b"") for i in range(10)])
    claimed = bus.claim("w", 4, LONG)
    assert bus.queued() == 10
    bus.ack(ids(claimed))
    assert bus.queued() == 6


# -- outcomes kept until the controller acks them; a dead worker's dispatches reclaimed ----------------


def test_report_publishes_and_keeps_the_dispatch_done_until_acked(open_handle: OpenHandle) -> None:
    controller, worker = open_handle(), open_handle()
    controller.enqueue([("a:1", 0, b"dispatch"), ("sentinel", 0, b"")])
    assert ids(worker.claim("w", 2, SHORT)) == ["a:1", "sentinel"]
    worker.report([b"finished a"], ["a:1", "gone:1"])
    assert [d.data for d in controller.read(CONTROLLER_GROUP, 10)] == [b"finished a"]
    # done: never handed out again, not even once its lease has run out
    assert ids(eventually(lambda: worker.claim("w2", 10, LONG))) == ["sentinel"]
    assert controller.present(["a:1", "sentinel", "other"]) == ["a:1", "sentinel"]
    # a restarted controller sending the same dispatch again changes nothing while it is there
    controller.enqueue([("a:1", 0, b"dispatch")])
    assert worker.claim("w", 10, LONG) == []
    # nor can it be withdrawn, reprioritised or extended back into a lease
    assert controller.withdraw(["a:1"]) == 0
    assert controller.reprioritize(["a:1"], 9) == 0
    worker.extend(["a:1"], SHORT)
    assert controller.queued() == 2
    controller.commit(CONTROLLER_GROUP, controller.read(CONTROLLER_GROUP, 1)[0].offset, ack=["a:1"])
    assert controller.present(["a:1"]) == []
    assert controller.read(CONTROLLER_GROUP, 10) == []
    assert controller.queued() == 1


def test_report_after_the_lease_ran_out_still_marks_done(bus: Bus) -> None:
    bus.enqueue([("a", 0, b""), ("sentinel", 0, b"")])
    assert ids(bus.claim("w", 2, SHORT)) == ["a", "sentinel"]
    assert ids(eventually(lambda: bus.claim("w", 1, SHORT))) in (["a"], ["sentinel"])
    bus.report([], ["a", "sentinel"])
    assert bus.claim("w", 10, LONG) == []
    assert bus.holders() == []
    bus.ack(["a", "sentinel"])
    assert bus.queued() == 0


def test_reclaim_takes_back_what_a_worker_holds_and_has_not_reported(open_handle: OpenHandle) -> None:
    controller, dead, alive = open_handle(), open_handle(), open_handle()
    controller.enqueue([("d1", 3, b""), ("d2", 2, b""), ("d3", 1, b""), ("a1", 0, b""), ("free", -1, b"")])
    assert ids(dead.claim("dead", 3, LONG)) == ["d1", "d2", "d3"]
    assert ids(alive.claim("alive", 1, LONG)) == ["a1"]
    dead.report([b"d3 finished"], ["d3"])
    controller.revoke(["d1"])
    assert controller.holders() == ["alive", "dead"]
    assert sorted(controller.reclaim("dead")) == ["d1", "d2"]
    assert controller.holders() == ["alive"]
    assert controller.present(["d1", "d2", "d3", "a1", "free"]) == ["d3", "a1", "free"]
    assert controller.revoked(["d1"]) == []
    assert controller.reclaim("dead") == []
    assert controller.reclaim("never-seen") == []
    # the dead worker's late report of a reclaimed dispatch is published, and marks nothing
    dead.report([b"d2 finished late"], ["d2"])
    assert [d.data for d in controller.read(CONTROLLER_GROUP, 10)] == [b"d3 finished", b"d2 finished late"]
    assert ids(alive.claim("alive", 10, LONG)) == ["free"]


def test_reclaim_includes_a_lease_that_ran_out_unless_claimed_again(bus: Bus) -> None:
    bus.enqueue([("a", 1, b""), ("b", 0, b"")])
    assert ids(bus.claim("dead", 2, SHORT)) == ["a", "b"]
    assert ids(eventually(lambda: bus.claim("other", 1, LONG))) == ["a"]
    assert bus.reclaim("dead") == ["b"]
    assert bus.holders() == ["other"]


def test_commit_acks_in_the_same_step(bus: Bus) -> None:
    bus.enqueue([("a", 0, b""), ("b", 0, b"")])
    bus.claim("w", 2, LONG)
    bus.report([b"x", b"y"], ["a", "b"])
    bus.commit(CONTROLLER_GROUP, bus.read(CONTROLLER_GROUP, 1)[0].offset, ack=["a"])
    assert bus.present(["a", "b"]) == ["b"]
    assert [d.data for d in bus.read(CONTROLLER_GROUP, 10)] == [b"y"]


def test_handles_share_one_queue(open_handle: OpenHandle) -> None:
    producer, consumer = open_handle(), open_handle()
    producer.enqueue([("a", 0, b"x")])
    assert ids(consumer.claim("w", 5, LONG)) == ["a"]
    consumer.ack(["a"])
    assert producer.queued() == 0


@pytest.mark.parametrize("factory", BUS_FACTORIES)
@settings(max_examples=30, deadline=None)
@given(
    messages=st.lists(st.tuples(st.integers(0, 20), st.integers(-2, 2)), max_size=30),
    batch=st.integers(1, 8),
    aging_s=st.sampled_from([1.0, 4.0, 60.0]),
    gaps=st.lists(st.integers(0, 9), min_size=5, max_size=5),
)
def test_claim_order_matches_model(factory: BusFactory, messages: list[tuple[int, int]], batch: int,
                                   aging_s: float, gaps: list[int]) -> None:
    """Claims come by effective priority: ``priority + waited / aging_s``, oldest first among equals
    (enqueued in batches of 7, the clock moving ``gaps[i]`` seconds before batch ``i``)."""
    now = [0.0]
    first: dict[str, tuple[float, int]] = {}
    for index, (key, priority) in enumerate(messages):
        at = float(sum(gaps[: index // 7 + 1]))
        first.setdefault(f"m{key}", (at - priority * aging_s, index))
    expected = sorted(first, key=first.__getitem__)
    with tempfile.TemporaryDirectory() as tmp:
        bus = factory(Path(tmp), aging_s=aging_s, clock=lambda: now[0])()
        try:
            for start in range(0, len(messages), 7):
                now[0] += gaps[start // 7]
                bus.enqueue([(f"m{k}", p, f"m{k}".encode()) for k, p in messages[start : start + 7]])
            now[0] += 1000.0  # claimed much later: the order does not depend on when
            got: list[str] = []
            while claimed := bus.claim("w", batch, LONG):
                assert len(claimed) <= batch
                got += ids(claimed)
            assert got == expected
        finally:
            bus.close()


def test_concurrent_claims_hand_each_message_out_once(open_handle: OpenHandle) -> None:
    n = 2000
    open_handle().enqueue([(f"m{i}", i % 4, b"") for i in range(n)])
    handles = [open_handle(), open_handle()]
    got: list[list[str]] = [[], []]
    start = threading.Barrier(2)

    def consume(k: int) -> None:
        start.wait()
        while claimed := handles[k].claim(f"w{k}", 1 + (len(got[k]) % 16), LONG):
            got[k] += ids(claimed)
            handles[k].ack(ids(claimed))

    threads = [threading.Thread(target=consume, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    everything = got[0] + got[1]
    assert len(everything) == n
    assert set(everything) == {f"m{i}" for i in range(n)}
    assert handles[0].queued() == 0


# -- events -----------------------------------------------------------------------------------------


def test_publish_then_read_in_order(bus: Bus) -> None:
    bus.publish([b"e1", b"e2"])
    bus.publish([b"e3"])
    bus.publish([])
    got = bus.read(CONTROLLER_GROUP, 10)
    assert [d.data for d in got] == [b"e1", b"e2", b"e3"]
    offsets = [d.offset for d in got]
    assert all(isinstance(o, str) for o in offsets) and len(set(offsets)) == len(offsets)
    assert [d.data for d in bus.read(CONTROLLER_GROUP, 2)] == [b"e1", b"e2"]


def test_read_without_commit_reads_again(bus: Bus) -> None:
    bus.publish([b"e1", b"e2"])
    assert bus.read("g", 10) == bus.read("g", 10)


def test_read_of_nothing_joins_the_group_and_returns_nothing(bus: Bus) -> None:
    # a listener joins with read(group, 0) before anything is published, and after
    assert bus.read("joiner", 0) == []
    bus.publish([b"e1"])
    assert bus.read("joiner", 0) == []
    assert [d.data for d in bus.read("joiner", 5)] == [b"e1"]


def test_offsets_are_opaque_and_only_the_bus_own_are_taken(bus: Bus) -> None:
    """A group commits what ``read`` gave it, as given (a Redis stream entry id is a string);
    anything else is refused with a clear error and moves nothing."""
    bus.publish([b"e1", b"e2", b"e3"])
    got = bus.read("g", 10)
    assert all(isinstance(d.offset, str) for d in got)
    for bogus in ("", "not-an-offset", "1.5", "-1"):
        with pytest.raises(NotFoundError, match="is not an event offset of this bus"):
            bus.commit("g", bogus)
    assert bus.read("g", 10) == got
    bus.commit("g", got[1].offset)
    assert [d.data for d in bus.read("g", 10)] == [b"e3"]
    bus.commit("g", got[0].offset)  # never backwards
    assert [d.data for d in bus.read("g", 10)] == [b"e3"]


def test_groups_commit_independently(bus: Bus) -> None:
    bus.publish([b"e1", b"e2", b"e3"])
    first, second = (d.offset for d in bus.read("a", 2))
    bus.commit("a", second)
    assert [d.data for d in bus.read("a", 10)] == [b"e3"]
    assert [d.data for d in bus.read("b", 10)] == [b"e1", b"e2", b"e3"]
    bus.commit("a", first)  # never moves backwards
    assert [d.data for d in bus.read("a", 10)] == [b"e3"]
    bus.publish([b"e4"])
    assert [d.data for d in bus.read("a", 10)] == [b"e3", b"e4"]


def test_events_are_shared_between_handles(open_handle: OpenHandle) -> None:
    writer, reader = open_handle(), open_handle()
    writer.publish([encode_message("msg-1", RunSubmitted(run_id="run-1"))])
    [delivered] = reader.read(CONTROLLER_GROUP, 10)
    reader.commit(CONTROLLER_GROUP, delivered.offset)
    assert decode_message(delivered.data).body == RunSubmitted(run_id="run-1")
    assert writer.read(CONTROLLER_GROUP, 10) == []


def test_listener_commits_never_drop_what_the_controller_has_not_read(open_handle: OpenHandle) -> None:
    listener, controller = open_handle(), open_handle()
    listener.read("late", 1)  # a known group that never commits
    for chunk in range(40):
        listener.publish([f"e{chunk}-{i}".encode() for i in range(100)])
        delivered = listener.read("log", 1000)
        listener.commit("log", delivered[-1].offset)
    assert len(controller.read(CONTROLLER_GROUP, 10_000)) == 4000
    assert len(controller.read("late", 10_000)) == 4000


def test_dead_letters_are_kept(open_handle: OpenHandle) -> None:
    bus, other = open_handle(), open_handle()
    assert bus.dead_letters() == []
    bus.dead_letter(b"\x00garbage", "malformed bus message: bad JSON")
    bus.dead_letter(b"{}", "missing field")
    assert [(x.data, x.error, x.dispatch) for x in other.dead_letters()] == [
        (b"\x00garbage", "malformed bus message: bad JSON", None),
        (b"{}", "missing field", None),
    ]
    assert len({x.id for x in other.dead_letters()}) == 2


def _poison(worker: Bus, message_id: str, priority: int = 5) -> None:
    """Enqueue ``message_id`` and have it claimed until the bus puts it aside (max_deliveries 2)."""
    worker.max_deliveries = 2
    worker.enqueue([(message_id, priority, b"crashes every worker")])
    for delivery in (1, 2):  # each 1 ms lease runs out: the next claim gets it again
        [claimed] = eventually(lambda: worker.claim("w", 1, 0.001))
        assert (claimed.id, claimed.deliveries) == (message_id, delivery)
    eventually(lambda: worker.claim("w", 5, LONG) == [] and worker.dead_letters())


def test_a_poisoned_dispatch_is_put_aside_and_redriven(open_handle: OpenHandle) -> None:
    worker, controller = open_handle(), open_handle()
    _poison(worker, "poison")
    [letter] = controller.dead_letters()
    assert (letter.dispatch, letter.priority, letter.data) == ("poison", 5, b"crashes every worker")
    assert "poison was delivered 2 times without being acknowledged" in letter.error
    assert controller.queued() == 0 and controller.present(["poison"]) == []

    assert controller.redrive([letter.id]) == 1
    assert worker.dead_letters() == []
    controller.enqueue([("fine", 4, b"ok")])
    # claimable again, with its priority and its deliveries counted from zero
    assert [(c.id, c.deliveries, c.data) for c in worker.claim("w", 5, LONG)] == [
        ("poison", 1, b"crashes every worker"), ("fine", 1, b"ok")]


def test_redriving_what_is_not_a_poisoned_dispatch_changes_nothing(open_handle: OpenHandle) -> None:
    worker, controller = open_handle(), open_handle()
    _poison(worker, "poison")
    controller.dead_letter(b"{not json", "malformed bus message: bad JSON")
    poisoned, malformed = controller.dead_letters()
    with pytest.raises(NotFoundError, match="no dead letter 'nope'") as unknown:
        controller.redrive([poisoned.id, "nope"])
    assert unknown.value.hint is not None and "skyweave dead-letters" in unknown.value.hint
    with pytest.raises(NotFoundError, match="is a malformed message, not a dispatch"):
        controller.redrive([malformed.id, poisoned.id])
    assert controller.dead_letters() == [poisoned, malformed]
    assert controller.queued() == 0
    assert controller.redrive([]) == 0


def test_redriving_a_dispatch_already_back_on_the_bus_only_drops_the_letter(open_handle: OpenHandle) -> None:
    worker, controller = open_handle(), open_handle()
    _poison(worker, "poison")
    [letter] = controller.dead_letters()
    controller.enqueue([("poison", 0, b"dispatched again")])
    assert controller.redrive([letter.id, letter.id]) == 0
    assert controller.dead_letters() == []
    assert [(c.id, c.data) for c in worker.claim("w", 5, LONG)] == [("poison", b"dispatched again")]


# -- waiting ----------------------------------------------------------------------------------------


WAKE_TIMEOUT_S = 60.0  # a wait that times out instead of waking takes this long; one that wakes, far less


def _time_wait(waiter: Bus, act: Callable[[], None], timeout: float = WAKE_TIMEOUT_S) -> float:
    """Seconds ``waiter.wait(timeout)`` took while another thread does ``act`` once it waits."""
    waiter.read("g", 1)  # the loop a consumer runs: read or claim, then wait
    waiting = threading.Event()

    def act_once_waiting() -> None:
        waiting.wait()
        act()

    thread = threading.Thread(target=act_once_waiting)
    thread.start()
    try:
        started = time.monotonic()
        waiting.set()
        waiter.wait(timeout)
        return time.monotonic() - started
    finally:
        thread.join()


@pytest.mark.parametrize("same_handle", [True, False], ids=["same-handle", "other-handle"])
def test_wait_returns_early_on_publish_and_enqueue(open_handle: OpenHandle, same_handle: bool) -> None:
    waiter = open_handle()
    other = waiter if same_handle else open_handle()
    # woken, not timed out: the margin is the timeout itself, not a speed the machine must have
    assert _time_wait(waiter, lambda: other.publish([b"e"])) < WAKE_TIMEOUT_S / 2
    assert _time_wait(waiter, lambda: other.enqueue([("d", 0, b"")])) < WAKE_TIMEOUT_S / 2


def test_wait_does_not_miss_a_change_made_before_it_started(open_handle: OpenHandle) -> None:
    waiter, other = open_handle(), open_handle()
    assert waiter.read("g", 10) == []
    other.publish([b"e"])
    started = time.monotonic()
    waiter.wait(WAKE_TIMEOUT_S)
    assert time.monotonic() - started < WAKE_TIMEOUT_S / 2  # returned at once, did not time out


def test_wait_times_out_when_nothing_happens(bus: Bus) -> None:
    bus.read("g", 1)
    bus.wait(0.0)  # may return at once after the first read
    started = time.monotonic()
    bus.wait(SHORT)
    assert time.monotonic() - started >= SHORT * 0.9


# -- sqlite specifics -------------------------------------------------------------------------------


def _claim_until_empty(path: str, start: Barrier, results: Queue[list[str]]) -> None:
    """One worker process: claim and ack until the queue is empty."""
    bus = SQLiteBus(path)
    got: list[str] = []
    try:
        start.wait(timeout=60)
        while bus.queued():
            claimed = bus.claim(f"p{multiprocessing.current_process().pid}", 4, LONG)
            got += ids(claimed)
            time.sleep(0.0005)  # "work": leaves the write lock free, so the processes interleave
            bus.ack(ids(claimed))
    finally:
        bus.close()
        results.put(got)


def test_processes_claim_each_message_once(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    n = 2000
    bus = SQLiteBus(path)
    try:
        bus.enqueue([(f"m{i}", i % 3, b"") for i in range(n)])
    finally:
        bus.close()
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(2), ctx.Queue()
    processes = [ctx.Process(target=_claim_until_empty, args=(str(path), start, results)) for _ in range(2)]
    for p in processes:
        p.start()
    got = [results.get(timeout=120) for _ in processes]
    for p in processes:
        p.join(timeout=30)
        assert p.exitcode == 0
    results.close()
    results.join_thread()
    everything = got[0] + got[1]
    assert sorted(everything) == sorted(f"m{i}" for i in range(n))


def test_sqlite_trims_events_all_groups_committed(tmp_path: Path) -> None:
    bus = SQLiteBus(tmp_path / "bus.db")
    try:
        for _ in range(sqlite_module.TRIM_EVERY):
            bus.publish([b"e"] * 10)
            bus.commit(CONTROLLER_GROUP, bus.read(CONTROLLER_GROUP, 100)[-1].offset)
        bus.publish([b"last"])
        [last] = bus.read(CONTROLLER_GROUP, 100)
        assert last.offset == str(sqlite_module.TRIM_EVERY * 10 + 1)  # offsets never reused
    finally:
        bus.close()
    with sqlite3.connect(tmp_path / "bus.db") as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (1,)
    conn.close()


def test_memory_trims_events_all_groups_committed() -> None:
    bus = MemoryBus()
    for _ in range(100):
        bus.publish([b"e"] * 100)
        bus.commit(CONTROLLER_GROUP, bus.read(CONTROLLER_GROUP, 1000)[-1].offset)
    assert len(bus._events) < 2048  # internal: memory stays bounded
    bus.publish([b"last"])
    assert [d.offset for d in bus.read(CONTROLLER_GROUP, 10)] == ["10001"]


def test_closed_sqlite_bus_raises_bus_error(tmp_path: Path) -> None:
    bus = SQLiteBus(tmp_path / "bus.db")
    bus.close()
    with pytest.raises(BusError, match="bus database"):
        bus.queued()
    with pytest.raises(BusError):
        bus.enqueue([("a", 0, b"")])


# -- open_bus ---------------------------------------------------------------------------------------


def test_open_bus_memory() -> None:
    assert open_bus("memory://") is not open_bus("memory://")
    shared = open_bus("memory://test-open-bus")
    assert isinstance(shared, MemoryBus)
    assert open_bus("memory://test-open-bus") is shared


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("sqlite:///{tmp}/sub/q.db", "sub/q.db"),
        ("sqlite:///{tmp}/dir/", "dir/bus.db"),
        ("{tmp}/state", "state/bus.db"),
        ("{tmp}/file.db", "file.db"),
    ],
)
def test_open_bus_sqlite(tmp_path: Path, spec: str, expected: str) -> None:
    bus = open_bus(spec.format(tmp=tmp_path))
    try:
        assert isinstance(bus, SQLiteBus)
        assert bus.path == tmp_path / expected
        assert bus.path.exists()
    finally:
        bus.close()


def test_open_bus_relative_sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    bus = open_bus("sqlite:///.skyweave/bus.db")
    try:
        assert (tmp_path / ".skyweave" / "bus.db").exists()
    finally:
        bus.close()


def test_open_bus_takes_max_deliveries_for_every_backend(tmp_path: Path) -> None:
    """The ``max_deliveries`` setting reaches the SQLite and in-process buses as Redis's URL
    parameter reaches Redis; unset, each keeps its default (never)."""
    sqlite = open_bus(f"sqlite:///{tmp_path}/bus.db", max_deliveries=2)
    try:
        assert sqlite.max_deliveries == 2
        sqlite.enqueue([("act-1:1", 0, b"kills its worker")])
        for _ in range(2):  # two workers take it and die: their leases have run out
            assert sqlite.claim("doomed", 1, -1.0)
        assert sqlite.claim("next", 1, 60.0) == []
        [letter] = sqlite.dead_letters()
        assert letter.dispatch == "act-1:1" and "2 times" in letter.error
    finally:
        sqlite.close()
    assert open_bus("memory://", max_deliveries=3).max_deliveries == 3
    assert open_bus("memory://").max_deliveries == 0
    default = open_bus(f"sqlite:///{tmp_path}/other.db")
    try:
        assert default.max_deliveries == 0
    finally:
        default.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("amqp://broker", "supported schemes: memory://, redis://, rediss://, sqlite://"),
        ("sqlite://", "names no file"),
        ("", "unknown bus URL"),
    ],
)
def test_open_bus_errors(url: str, message: str) -> None:
    with pytest.raises(BusError, match=message):
        open_bus(url)


def test_sqlite_bus_file_from_before_done_dispatches_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    with sqlite3.connect(path) as conn:  # the dispatch table as older versions made it
        conn.execute("CREATE TABLE dispatch (id TEXT PRIMARY KEY, priority INTEGER NOT NULL, "
                     "seq INTEGER NOT NULL, data BLOB NOT NULL, lease_until REAL, worker TEXT, "
                     "deliveries INTEGER NOT NULL DEFAULT 0)")
        conn.execute("INSERT INTO dispatch (id, priority, seq, data) VALUES ('old', 0, 0, x'00')")
    conn.close()
    bus = SQLiteBus(path)
    try:
        assert ids(bus.claim("w", 5, LONG)) == ["old"]
        bus.report([], ["old"])
        assert bus.present(["old"]) == ["old"]
        assert bus.holders() == []
    finally:
        bus.close()


def test_enqueue_first_goes_ahead_of_its_priority_only(bus: Bus) -> None:
    bus.enqueue([("a", 0, b""), ("b", 0, b""), ("urgent", 5, b"")])
    bus.enqueue([("lost1", 0, b""), ("lost2", 0, b"")], first=True)
    bus.enqueue([("c", 0, b"")])
    bus.enqueue([("lost3", 0, b""), ("a", 0, b"")], first=True)  # an id already there keeps its place
    assert ids(bus.claim("w", 10, LONG)) == ["urgent", "lost1", "lost2", "lost3", "a", "b", "c"]
