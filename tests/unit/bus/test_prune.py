"""Bus contract, retention part: ``prune`` drops the consumer groups of listeners gone for good and
the events kept only for them, and old dead letters; never an event a live group has not committed,
never the controller's group (issue 13, point 3).

Every backend runs it (``conftest.BUS_FACTORIES``: memory, SQLite, the real Redis).  Time is not
waited for: ``prune`` is given a ``now`` days ahead, as a controller would see it after an outage.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from skyweave.bus import CONTROLLER_GROUP, Bus, SQLiteBus
from skyweave.bus.base import Pruned
from tests.unit.bus.conftest import OpenHandle

DAY = 86_400.0


def publish(bus: Bus, n: int, tag: str = "e") -> None:
    bus.publish([f"{tag}{i}".encode() for i in range(n)])


def read_all(bus: Bus, group: str) -> list[bytes]:
    return [d.data for d in bus.read(group, 1000)]


def commit_n(bus: Bus, group: str, n: int) -> None:
    """Commit the first ``n`` events ``group`` has not committed yet."""
    bus.commit(group, bus.read(group, n)[-1].offset)


def test_a_dead_listener_group_is_dropped_and_the_events_it_held_go(open_handle: OpenHandle) -> None:
    controller, listener = open_handle(), open_handle()
    publish(controller, 10)
    commit_n(listener, "server:old-host:8080", 2)   # a server that died long ago
    commit_n(controller, CONTROLLER_GROUP, 10)
    now = time.time()

    assert controller.prune(now, group_idle_s=7 * DAY, dead_letter_age_s=None).groups == []
    assert len(read_all(listener, "server:old-host:8080")) == 8  # a live group loses nothing

    later = now + 8 * DAY
    planned = controller.prune(later, group_idle_s=7 * DAY, dead_letter_age_s=None, dry_run=True)
    assert planned == Pruned(groups=["server:old-host:8080"], events=8)  # it held 8 events alone
    assert len(read_all(listener, "server:old-host:8080")) == 8  # the dry run changed nothing

    later = time.time() + 8 * DAY
    assert controller.prune(later, group_idle_s=7 * DAY, dead_letter_age_s=None) == Pruned(
        groups=["server:old-host:8080"], events=8)
    assert read_all(controller, CONTROLLER_GROUP) == []
    publish(controller, 1, "new")
    # back: created again, it reads from the oldest event still on the bus: the 8 are gone
    assert read_all(listener, "server:old-host:8080") == [b"new0"]
    assert controller.prune(time.time(), group_idle_s=7 * DAY, dead_letter_age_s=None).groups == []


def test_the_controller_group_is_never_dropped_nor_what_it_has_not_read(open_handle: OpenHandle) -> None:
    controller, listener = open_handle(), open_handle()
    publish(controller, 5)
    commit_n(listener, "alerts", 5)
    commit_n(controller, CONTROLLER_GROUP, 3)
    pruned = controller.prune(time.time() + 30 * DAY, group_idle_s=DAY, dead_letter_age_s=None)
    assert pruned.groups == ["alerts"]
    assert read_all(controller, CONTROLLER_GROUP) == [b"e3", b"e4"]
    assert read_all(listener, "alerts") == [b"e3", b"e4"]  # back: the oldest events still there


def test_without_limits_prune_keeps_every_group_and_letter(bus: Bus) -> None:
    publish(bus, 3)
    commit_n(bus, "alerts", 1)
    bus.dead_letter(b"{bad", "malformed")
    pruned = bus.prune(time.time() + 365 * DAY, group_idle_s=None, dead_letter_age_s=None)
    assert pruned.groups == [] and pruned.dead_letters == 0
    assert read_all(bus, "alerts") == [b"e1", b"e2"] and len(bus.dead_letters()) == 1


def test_old_dead_letters_go_and_new_ones_stay(open_handle: OpenHandle) -> None:
    bus, other = open_handle(), open_handle()
    bus.dead_letter(b"{bad", "malformed")
    now = time.time()
    assert bus.prune(now + DAY, group_idle_s=None, dead_letter_age_s=30 * DAY) == Pruned()
    assert other.prune(now + 31 * DAY, group_idle_s=None, dead_letter_age_s=30 * DAY,
                       dry_run=True) == Pruned(dead_letters=1)
    assert len(bus.dead_letters()) == 1
    assert other.prune(now + 31 * DAY, group_idle_s=None, dead_letter_age_s=30 * DAY) == Pruned(dead_letters=1)
    assert bus.dead_letters() == []


def test_groups_of_a_bus_file_made_before_pruning_count_as_seen_at_the_first_prune(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    with sqlite3.connect(path) as conn:  # the groups table as it was before groups were timed
        conn.execute("CREATE TABLE groups (name TEXT PRIMARY KEY, committed INTEGER NOT NULL)")
        conn.execute("INSERT INTO groups VALUES ('old-listener', 0)")
    bus = SQLiteBus(path)
    try:
        now = time.time()
        assert bus.prune(now + 30 * DAY, group_idle_s=DAY, dead_letter_age_s=None, dry_run=True).groups == []
        assert bus.prune(now, group_idle_s=DAY, dead_letter_age_s=None).groups == []  # seen now
        assert bus.prune(now + 2 * DAY, group_idle_s=DAY, dead_letter_age_s=None).groups == ["old-listener"]
    finally:
        bus.close()
