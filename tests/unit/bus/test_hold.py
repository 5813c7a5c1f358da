"""The bus contract for pausing (every backend, through ``conftest.BUS_FACTORIES``).

A *held* dispatch (a paused run's) is never claimed until released, and ``hold`` is atomic with
claims and with ``begin``: a claim (or a ``begin``) that starts after ``hold`` returned never hands
out (or begins) a held dispatch, whichever handle (process) calls it.  A worker *begins* what it
took just before it starts it and gives a held one back with ``extend(ids, 0)``; one begun before
the hold is not ``held`` (it starts: a pause waits for it to be reported started instead).  "Not claimed while its lease ran out" is proved with a
sentinel redelivered under the same short lease.
"""

from __future__ import annotations

import threading

from skyweave.bus import Bus

from .conftest import OpenHandle
from .test_contract import LONG, SHORT, eventually, ids


def test_held_dispatches_are_not_claimed_until_released(open_handle: OpenHandle) -> None:
    controller, worker = open_handle(), open_handle()
    controller.enqueue([("a", 0, b""), ("b", 5, b""), ("c", 0, b"")])
    controller.hold(["b", "never-enqueued"])
    assert ids(worker.claim("w", 10, LONG)) == ["a", "c"]
    assert worker.claim("w", 10, LONG) == []
    assert worker.queued() == 3
    controller.release(["b"])
    assert ids(worker.claim("w", 10, LONG)) == ["b"]


def test_release_keeps_the_place_by_age(open_handle: OpenHandle) -> None:
    controller, worker = open_handle(), open_handle()
    controller.enqueue([("old", 1, b""), ("new", 1, b"")])
    controller.hold(["old"])
    controller.release(["old"])
    assert ids(worker.claim("w", 10, LONG)) == ["old", "new"]


def test_a_held_dispatch_whose_lease_expires_stays_held(bus: Bus) -> None:
    bus.enqueue([("running", 1, b"")])
    assert ids(bus.claim("w", 1, SHORT)) == ["running"]
    bus.hold(["running"])  # its worker went on running it; then the worker died
    bus.enqueue([("sentinel", 0, b"")])
    assert ids(bus.claim("w", 1, SHORT)) == ["sentinel"]
    seen: list[str] = []

    def sentinel_again() -> bool:
        seen.extend(ids(bus.claim("w", 10, LONG)))
        return "sentinel" in seen

    eventually(sentinel_again)  # claimed after "running": that lease ran out too
    assert seen == ["sentinel"], "the held dispatch was not delivered again"
    bus.release(["running"])
    assert [(c.id, c.deliveries) for c in bus.claim("w", 10, LONG)] == [("running", 2)]


def test_ack_and_withdraw_drop_the_hold(bus: Bus) -> None:
    bus.enqueue([("done", 0, b""), ("dropped", 0, b"")])
    bus.hold(["done", "dropped"])
    assert bus.withdraw(["dropped"]) == 1, "a held dispatch is not under a lease: withdraw takes it"
    bus.ack(["done"])
    assert bus.queued() == 0
    bus.enqueue([("done", 0, b"")])  # the same id again is a fresh dispatch, not held
    assert ids(bus.claim("w", 10, LONG)) == ["done"]


def test_hold_is_atomic_with_claims_from_other_handles(open_handle: OpenHandle) -> None:
    """Workers claim one at a time while the controller holds everything; no claim that began after
    ``hold`` returned may hand out a held dispatch."""
    n = 400
    controller = open_handle()
    controller.enqueue([(f"m{i}", i % 3, b"") for i in range(n)])
    workers = [open_handle(), open_handle()]
    held = threading.Event()
    late: list[str] = []
    started = threading.Barrier(3)

    def claim_until_held(k: int) -> None:
        started.wait()
        while True:
            after_hold = held.is_set()
            got = ids(workers[k].claim(f"w{k}", 1, LONG))
            if after_hold:
                late.extend(got)
                return
    threads = [threading.Thread(target=claim_until_held, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    started.wait()
    controller.hold([f"m{i}" for i in range(n)])
    held.set()
    for t in threads:
        t.join(timeout=60)
    assert late == [], f"claimed after the hold: {late}"


def test_a_worker_sees_the_hold_and_gives_the_dispatch_back(open_handle: OpenHandle) -> None:
    """Work a worker took ahead (not started yet) is begun just before it starts; a held one is
    not begun, and is given back with ``extend(ids, 0)``: it waits on the bus, held, until released."""
    controller, worker = open_handle(), open_handle()
    controller.enqueue([("ahead", 0, b""), ("other", 0, b"")])
    taken = ids(worker.claim("w", 2, LONG))
    assert worker.held(taken) == []
    controller.hold(["ahead", "never-enqueued"])
    assert worker.held([*taken, "never-enqueued"]) == ["ahead"]
    assert worker.begin([*taken, "never-enqueued"]) == ["other"]
    worker.extend(["ahead"], 0.0)
    assert worker.claim("w", 10, LONG) == []
    controller.release(["ahead"])
    assert ids(eventually(lambda: worker.claim("w", 10, LONG))) == ["ahead"]


def test_a_dispatch_begun_before_the_hold_is_not_held(open_handle: OpenHandle) -> None:
    """``held`` names what will not start; one begun before the hold starts all the same, so whoever
    paused waits for it to be reported started.  A done one is never begun."""
    controller, worker = open_handle(), open_handle()
    controller.enqueue([("begun", 0, b""), ("waiting", 0, b""), ("done", 0, b"")])
    assert ids(worker.claim("w", 3, LONG)) == ["begun", "waiting", "done"]
    assert worker.begin(["begun"]) == ["begun"]
    worker.report([], ["done"])
    controller.hold(["begun", "waiting", "done"])
    assert controller.held(["begun", "waiting"]) == ["waiting"]
    assert worker.begin(["waiting", "done"]) == []
    controller.ack(["begun"])
    controller.enqueue([("begun", 0, b"")])  # the same id again: a fresh dispatch, not begun
    controller.hold(["begun"])
    assert controller.held(["begun"]) == ["begun"]


def test_hold_is_atomic_with_begin_from_other_handles(open_handle: OpenHandle) -> None:
    """Workers begin what they claimed, one at a time, while the controller holds everything: no
    ``begin`` that started after ``hold`` returned may begin a held dispatch, and every dispatch is
    either begun (before the hold) or held, never both nor neither."""
    n = 300
    controller = open_handle()
    controller.enqueue([(f"m{i}", 0, b"") for i in range(n)])
    workers = [open_handle(), open_handle()]
    taken = [ids(workers[k].claim(f"w{k}", n, LONG)) for k in range(2)]
    held = threading.Event()
    late: list[str] = []
    begun: list[str] = []
    started = threading.Barrier(3)

    def begin_until_held(k: int) -> None:
        started.wait()
        for message_id in taken[k]:
            after_hold = held.is_set()
            got = workers[k].begin([message_id])
            begun.extend(got)
            if after_hold:
                late.extend(got)
    threads = [threading.Thread(target=begin_until_held, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    started.wait()
    controller.hold([f"m{i}" for i in range(n)])
    held.set()
    for t in threads:
        t.join(timeout=60)
    assert late == [], f"begun after the hold: {late}"
    still_held = controller.held([f"m{i}" for i in range(n)])
    assert sorted(begun + still_held) == sorted(f"m{i}" for i in range(n))
