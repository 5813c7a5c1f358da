"""The bus contract for aging (every backend, through ``conftest.BUS_FACTORIES``).

Claims follow the *effective* priority ``priority + waited / aging_s``: under a steady stream of
higher-priority work, a low-priority dispatch is claimed before every dispatch of priority ``p``
higher enqueued more than ``p * aging_s`` after it — it is never starved.  Time is a fake clock
handed to the bus, so nothing here waits for aging.  (The general order is checked against a model
in ``test_contract.test_claim_order_matches_model``.)
"""

from __future__ import annotations

from pathlib import Path

from skyweave.bus import Bus

from .conftest import BusFactory
from .test_contract import LONG, ids


def _open(factory: BusFactory, tmp_path: Path, aging_s: float, now: list[float]) -> tuple[Bus, Bus]:
    opener = factory(tmp_path, aging_s=aging_s, clock=lambda: now[0])
    return opener(), opener()


def test_age_overtakes_priority_after_priority_times_aging(bus_factory: BusFactory, tmp_path: Path) -> None:
    now = [1000.0]
    controller, worker = _open(bus_factory, tmp_path, 10.0, now)
    try:
        controller.enqueue([("low", 0, b"")])
        now[0] += 29.0
        controller.enqueue([("before", 3, b"")])  # 29 s later: 3 - 2.9 > 0, still ahead
        now[0] += 2.0
        controller.enqueue([("after", 3, b"")])  # 31 s later: the low one has aged past it
        now[0] += 500.0
        assert ids(worker.claim("w", 10, LONG)) == ["before", "low", "after"]
    finally:
        controller.close()
        worker.close()


def test_reprioritized_dispatch_keeps_its_age(bus_factory: BusFactory, tmp_path: Path) -> None:
    now = [0.0]
    controller, worker = _open(bus_factory, tmp_path, 10.0, now)
    try:
        controller.enqueue([("old", 0, b"")])
        now[0] += 15.0
        controller.enqueue([("new", 2, b"")])
        controller.reprioritize(["old"], 1)  # effective 1 + 1.5 > 2 + 0: ahead again
        assert ids(worker.claim("w", 10, LONG)) == ["old", "new"]
    finally:
        controller.close()
        worker.close()


def test_low_priority_is_not_starved_by_a_saturating_stream(bus_factory: BusFactory, tmp_path: Path) -> None:
    """Each second two priority-3 dispatches arrive and a worker claims one (the backlog grows);
    the priority-0 one, enqueued behind a backlog, is claimed right after every priority-3 dispatch
    enqueued less than 3 * aging_s after it (a tie goes to the older), never after one enqueued later."""
    aging_s = 2.0
    now = [0.0]
    controller, worker = _open(bus_factory, tmp_path, aging_s, now)
    enqueued_at: dict[str, float] = {}

    def arrive(name: str, priority: int) -> None:
        controller.enqueue([(name, priority, b"")])
        enqueued_at[name] = now[0]

    try:
        for i in range(5):
            arrive(f"backlog{i}", 3)
        arrive("low", 0)
        order: list[str] = []
        for step in range(100):
            now[0] += 1.0
            arrive(f"s{step}a", 3)
            arrive(f"s{step}b", 3)
            order += ids(worker.claim("w", 1, LONG))
            if "low" in order:
                break
        assert "low" in order, "starved"
        ahead = order[: order.index("low")]
        sooner = {n for n, at in enqueued_at.items() if n != "low" and at < enqueued_at["low"] + 3 * aging_s}
        assert set(ahead) == sooner, "exactly those enqueued less than 3 * aging_s after it go first"
        assert len(ahead) == 5 + 2 * 5
    finally:
        controller.close()
        worker.close()


def test_lost_work_enqueued_first_counts_as_old_as_the_oldest_of_its_priority(
        bus_factory: BusFactory, tmp_path: Path) -> None:
    now = [0.0]
    controller, worker = _open(bus_factory, tmp_path, 10.0, now)
    try:
        controller.enqueue([("old", 0, b"")])
        now[0] += 25.0
        controller.enqueue([("urgent", 3, b"")])  # 3 - 0 > 0 + 2.5: ahead of "old"
        now[0] += 10.0
        controller.enqueue([("lost", 0, b"")], first=True)  # as old as "old", and ahead of it
        assert ids(worker.claim("w", 10, LONG)) == ["urgent", "lost", "old"]
    finally:
        controller.close()
        worker.close()


def test_claimed_rank_orders_claims_made_at_different_times(bus_factory: BusFactory, tmp_path: Path) -> None:
    """``Claimed.rank`` lets a worker keep what it claimed at different times in the bus's order."""
    now = [0.0]
    controller, worker = _open(bus_factory, tmp_path, 1.0, now)
    try:
        claimed = []
        for name, priority, later in (("low", 0, 0.0), ("urgent", 3, 1.0), ("late", 3, 4.0)):
            now[0] += later
            controller.enqueue([(name, priority, b"")])
            claimed += worker.claim("w", 1, LONG)
        assert [c.id for c in sorted(claimed, key=lambda c: c.rank)] == ["urgent", "low", "late"]
    finally:
        controller.close()
        worker.close()
