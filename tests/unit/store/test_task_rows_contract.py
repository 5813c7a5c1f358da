"""Store contract, task registry part: a definition the store could not read back is never
written; a row that cannot be read (written by an older skyweave) is reported and skipped, never
fatal; ``remove_task`` takes a version out and keeps what provenance needs (issue 11, point 6)."""

from __future__ import annotations

import logging
import time

import pytest
from sqlalchemy import Engine, insert

from skyweave.errors import ControlError, DefinitionError, StoreError, UnknownTaskError
from skyweave.model.records import ActivityRecord, Changeset, RunRecord
from skyweave.model.specs import OutputSpec, TaskKind, TaskSpec
from skyweave.store import Store
from skyweave.store.schema import encode_json, task_routes, tasks

BAD = TaskSpec(name="stats", version="1", kind=TaskKind.COMMAND, ref="echo",
               outputs={"stats": OutputSpec(path={"path": "s.txt", "type": "my.stats"})})  # type: ignore[arg-type]
"""What ``command(..., outputs={"stats": {"path": .., "type": ..}})`` made before definitions were checked."""


def spec(version: str, name: str = "stats") -> TaskSpec:
    return TaskSpec(name=name, version=version, kind=TaskKind.COMMAND, ref="echo {outputs.stats}",
                    outputs={"stats": OutputSpec(path="s.txt", type="my.stats")})


def write_unchecked(store: Store, bad: TaskSpec = BAD, *, current: bool = True) -> None:
    """A row as an older skyweave wrote it: straight into the tables, no check."""
    writer: Engine = store._writer  # type: ignore[attr-defined]  # every SQL store has one
    with writer.begin() as conn:
        conn.execute(insert(tasks), {"name": bad.name, "version": bad.version, "spec": encode_json(bad),
                                     "code_hash": "h", "registered_at": time.time()})
        if current:
            conn.execute(insert(task_routes), {"name": bad.name, "version": bad.version,
                                               "updated_at": time.time()})


def ran(store: Store, version: str, *, state: str = "failed") -> None:
    store.apply(Changeset(runs=[RunRecord(id="run-1", workflow="w", state="failed")],
                          activities=[ActivityRecord(id="act-1", run_id="run-1", node="stats",
                                                     task_name="stats", task_version=version, state=state)]))


def test_a_definition_that_could_not_be_read_back_is_not_registered(store: Store) -> None:
    with pytest.raises(DefinitionError, match=r"task stats@1 has a malformed definition, not registered"):
        store.register_task(BAD)
    assert store.list_tasks() == [] and store.unreadable_tasks() == []


def test_an_unreadable_row_is_reported_once_and_skipped(store: Store, caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    store.register_task(spec("1", name="other"))
    write_unchecked(store)
    with caplog.at_level(logging.WARNING, logger="skyweave.store"):
        assert [(s.name, s.version) for s, _ in store.list_tasks()] == [("other", "1")]
        assert [(s.name, s.version) for s, _ in store.list_tasks()] == [("other", "1")]
    warnings = [r.getMessage() for r in caplog.records if "stats@1" in r.getMessage()]
    assert len(warnings) == 1
    assert "cannot be read" in warnings[0] and "`skyweave tasks remove stats@1`" in warnings[0]
    (problem,) = store.unreadable_tasks()
    assert (problem.name, problem.version, problem.current) == ("stats", "1", True)
    assert "outputs" in problem.error and problem.spec == encode_json(BAD)
    for attempt in (lambda: store.get_task("stats"), lambda: store.get_task("stats", "1"),
                    lambda: store.register_task(spec("1"))):
        with pytest.raises(StoreError, match=r"task stats@1 is registered .* cannot be read") as caught:
            attempt()
        assert "skyweave tasks remove stats@1" in (caught.value.hint or "")


def test_removing_an_unreadable_row_lets_the_task_be_registered_again(store: Store) -> None:
    write_unchecked(store)
    removed = store.remove_task("stats", "1")
    assert (removed.readable, removed.activities, removed.current) == (False, 0, None)
    assert removed.spec == encode_json(BAD)
    with pytest.raises(UnknownTaskError):
        store.get_task("stats")
    store.register_task(spec("1"))
    assert store.get_task("stats") == spec("1") and store.unreadable_tasks() == []


def test_removing_the_current_version_routes_to_the_latest_remaining(store: Store) -> None:
    store.register_task(spec("1"))
    store.register_task(spec("2"))
    store.register_task(spec("3"), make_current=False)
    assert store.get_task("stats").version == "2"
    assert store.remove_task("stats", "2").current == "3"
    assert store.get_task("stats").version == "3"
    assert store.remove_task("stats", "1").current == "3"  # not the current one: routing unchanged
    assert [(s.version, cur) for s, cur in store.list_tasks()] == [("3", True)]
    with pytest.raises(UnknownTaskError, match="has no version '9'"):
        store.remove_task("stats", "9")


def test_a_version_activities_ran_stays_for_their_provenance(store: Store) -> None:
    store.register_task(spec("1"))
    ran(store, "1")
    with pytest.raises(ControlError, match=r"stats@1 cannot be removed: 1 activity \(run run-1\) ran it"):
        store.remove_task("stats", "1")
    assert store.get_task("stats", "1") == spec("1")


def test_an_unreadable_version_activities_ran_can_go_and_their_records_stay(store: Store) -> None:
    write_unchecked(store)
    ran(store, "1")
    removed = store.remove_task("stats", "1")
    assert removed.activities == 1 and not removed.readable
    assert store.get_activity("act-1").task_version == "1"
    assert store.get_run("run-1").state == "failed"


def test_a_version_an_unfinished_run_will_run_cannot_go(store: Store) -> None:
    store.register_task(spec("1"))
    store.apply(Changeset(runs=[RunRecord(id="run-9", workflow="w", state="running",
                                          graph={"tasks": {"stats": "1"}, "nodes": {}})]))
    with pytest.raises(ControlError, match="unfinished run run-9 will run it") as caught:
        store.remove_task("stats", "1")
    assert "skyweave cancel run-9" in (caught.value.hint or "")
    store.apply(Changeset(runs=[RunRecord(id="run-9", workflow="w", state="cancelled",
                                          graph={"tasks": {"stats": "1"}, "nodes": {}})]))
    assert store.remove_task("stats", "1").current is None


def test_a_pin_to_another_version_does_not_hold_this_one(store: Store) -> None:
    store.register_task(spec("1"))
    store.register_task(spec("2"))
    store.apply(Changeset(runs=[RunRecord(id="run-9", workflow="w", state="running", pins={"stats": "2"},
                                          graph={"tasks": {"stats": "1"}, "nodes": {}})]))
    assert store.remove_task("stats", "1").current == "2"
    assert store.get_task("stats") == spec("2")
