"""What only ``SQLiteStore`` does: upserts written once per key, WAL checkpoints off the writer's
path (a background thread of the store that writes)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import msgspec
import pytest

from skyweave.model.records import ActivityRecord, AttemptRecord, Changeset, RunRecord
from skyweave.store import SQLiteStore
from skyweave.store import sqlite as sqlite_store


def _activity(id: str, state: str = "queued") -> ActivityRecord:
    return ActivityRecord(id=id, run_id="run-1", node="n", task_name="t", task_version="1", state=state)


def _checkpointers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "skyweave-store-checkpoint"]


def test_a_key_written_twice_in_a_changeset_ends_with_its_last_row_at_its_first_place(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    try:
        first = _activity("act-b")
        again = msgspec.structs.replace(first, state="dispatched", attempt=1)
        store.apply(Changeset(runs=[RunRecord(id="run-1", workflow="w", state="running")],
                              activities=[first, _activity("act-a"), again],
                              attempts=[AttemptRecord(activity_id="act-b", attempt=1, state="running"),
                                        AttemptRecord(activity_id="act-b", attempt=1, state="failed")]))
        listed = store.list_activities(run_id="run-1")
        assert [(a.id, a.state) for a in listed] == [("act-b", "dispatched"), ("act-a", "queued")]
        assert [a.state for a in store.list_attempts("act-b")] == ["failed"]
    finally:
        store.close()


def test_the_wal_is_checkpointed_by_the_store_soon_after_writes(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_S", 0.01)
    done = threading.Event()
    checkpoint = SQLiteStore.checkpoint

    def counted(self: SQLiteStore) -> None:
        checkpoint(self)
        done.set()

    monkeypatch.setattr(SQLiteStore, "checkpoint", counted)
    store = SQLiteStore(tmp_path / "s.db")
    try:
        with store._engine.connect() as conn:  # SQLite's own checkpoint is only a backstop
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == sqlite_store.AUTOCHECKPOINT_PAGES
        store.apply(Changeset(runs=[RunRecord(id="run-1", workflow="w", state="running")],
                              activities=[_activity(f"act-{i}") for i in range(500)]))
        assert done.wait(10)
        assert len(store.list_activities(run_id="run-1")) == 500
    finally:
        store.close()


def test_closing_a_store_stops_its_checkpoint_thread_at_once(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # with a 60 s interval, a close that waited for the thread's next turn would take 60 s
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_S", 60.0)
    before = len(_checkpointers())
    store = SQLiteStore(tmp_path / "s.db")
    store.apply(Changeset(runs=[RunRecord(id="run-1", workflow="w", state="running")]))
    assert len(_checkpointers()) == before + 1
    started = time.monotonic()
    store.close()
    assert time.monotonic() - started < 30.0
    assert len(_checkpointers()) == before
