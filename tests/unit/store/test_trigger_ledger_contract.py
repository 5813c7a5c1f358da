"""Store contract, triggers part: one ledger row per (trigger, event key), and a run only for a row
actually recorded - the ground of "exactly one run per event" (issue 16, point 3)."""

from __future__ import annotations

import threading
import time

import pytest

from skyweave.errors import ControlError, NotFoundError
from skyweave.model.records import RunRecord
from skyweave.model.triggers import Firing, FiringState, TriggerKind, TriggerSpec, TriggerState
from skyweave.store import Store
from tests.unit.store.conftest import OpenHandle

SPEC = TriggerSpec(name="arrivals", kind=TriggerKind.FILES, workflow="wf.py:w", source={"folder": "/in"})


def firing(key: str, state: FiringState = FiringState.FIRED, run: str | None = None, reason: str = "") -> Firing:
    return Firing(trigger=SPEC.name, key=key, state=state, at=1.0, recorded_at=time.time(),
                  fields={"path": f"/in/{key}"}, run_id=run, reason=reason)


def run(run_id: str) -> RunRecord:
    return RunRecord(id=run_id, workflow="w", state="submitted", created_at=time.time(),
                     labels={"trigger": SPEC.name})


def runs_in(store: Store) -> set[str]:
    return {r.id for r in store.list_runs(graph=False, limit=10_000)}


def test_a_trigger_is_saved_listed_paused_and_removed(store: Store) -> None:
    rec = store.save_trigger(SPEC)
    assert rec.spec == SPEC and rec.state is TriggerState.ACTIVE and rec.skipped == 0
    with pytest.raises(ControlError, match="exists already"):
        store.save_trigger(SPEC)
    assert store.set_trigger_state("arrivals", TriggerState.PAUSED).state is TriggerState.PAUSED
    changed = TriggerSpec(name="arrivals", kind=TriggerKind.FILES, workflow="other.py:w", source={"folder": "/in"})
    replaced = store.save_trigger(changed, replace=True)
    assert replaced.spec.workflow == "other.py:w" and replaced.state is TriggerState.PAUSED  # state kept
    assert [r.spec.name for r in store.list_triggers()] == ["arrivals"]
    store.remove_trigger("arrivals")
    with pytest.raises(NotFoundError, match="skyweave triggers list"):
        store.get_trigger("arrivals")


def test_an_event_key_starts_one_run_however_often_it_is_recorded(store: Store) -> None:
    store.save_trigger(SPEC)
    assert store.record_firings("arrivals", [firing("a", run="run-1")], [run("run-1")]) == ["a"]
    # seen again (a restart, a rescan): neither the row nor the run it would start is written
    assert store.record_firings("arrivals", [firing("a", run="run-2")], [run("run-2")]) == []
    assert runs_in(store) == {"run-1"}
    assert store.get_trigger("arrivals").skipped == 1
    assert store.known_keys("arrivals", ["a", "b"]) == {"a"}
    assert store.trigger_counts("arrivals") == {"fired": 1}


def test_the_cursor_moves_in_the_same_transaction_as_the_firings(store: Store) -> None:
    store.save_trigger(SPEC)
    store.record_firings("arrivals", [firing("t1", run="r1")], [run("r1")], cursor="2026-12-06T10:00:00+00:00")
    assert store.get_trigger("arrivals").cursor == "2026-12-06T10:00:00+00:00"
    with pytest.raises(NotFoundError):  # an unknown trigger: nothing at all is written
        store.record_firings("nobody", [firing("t2", run="r2")], [run("r2")], cursor="x")
    assert runs_in(store) == {"r1"}


def test_a_held_event_is_fired_once_when_released(store: Store) -> None:
    store.save_trigger(SPEC)
    store.record_firings("arrivals", [firing("h", FiringState.HELD, reason="trigger paused")])
    assert store.trigger_history("arrivals", states=[FiringState.HELD])[0].key == "h"
    assert store.record_firings("arrivals", [firing("h", run="r1")], [run("r1")]) == ["h"]
    # a second release (another process, a repeated step) finds it fired already
    assert store.record_firings("arrivals", [firing("h", run="r2")], [run("r2")]) == []
    assert runs_in(store) == {"r1"}
    (row,) = store.trigger_history("arrivals")
    assert row.state is FiringState.FIRED and row.run_id == "r1"


def test_refire_on_purpose_replaces_the_row_and_says_so(store: Store) -> None:
    store.save_trigger(SPEC)
    store.record_firings("arrivals", [firing("a", run="r1")], [run("r1")])
    again = firing("a", run="r2", reason="re-fired on purpose (was fired, run r1)")
    assert store.record_firings("arrivals", [again], [run("r2")], refire=True) == ["a"]
    assert runs_in(store) == {"r1", "r2"}
    (row,) = store.trigger_history("arrivals")
    assert row.run_id == "r2" and "re-fired on purpose" in row.reason


def test_unfinished_and_unannounced_runs_of_a_trigger(store: Store) -> None:
    store.save_trigger(SPEC)
    store.record_firings("arrivals", [firing("a", run="r1"), firing("b", run="r2")], [run("r1"), run("r2")])
    assert store.unannounced_runs("arrivals") == sorted(store.unannounced_runs("arrivals"))
    assert set(store.unannounced_runs("arrivals")) == {"r1", "r2"}
    assert set(store.trigger_runs("arrivals")) == {"r1", "r2"}


def test_two_processes_recording_the_same_events_start_each_run_once(open_handle: OpenHandle) -> None:
    first, second = open_handle(), open_handle()
    first.save_trigger(SPEC)
    keys = [f"k{i}" for i in range(40)]
    recorded: list[list[str]] = [[], []]

    def record(which: int, store: Store) -> None:
        for key in keys:
            rid = f"{key}-by-{which}"
            recorded[which] += store.record_firings("arrivals", [firing(key, run=rid)], [run(rid)])

    threads = [threading.Thread(target=record, args=(i, s)) for i, s in enumerate((first, second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(recorded[0] + recorded[1]) == sorted(keys)  # each key recorded by exactly one
    assert len(runs_in(first)) == len(keys)
