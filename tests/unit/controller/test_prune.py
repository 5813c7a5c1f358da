"""``controller/prune.py``: one prune over the bus, the trigger ledger and the activity logs; what
goes, what stays and why (issue 13, point 3).  SQLite and the real PostgreSQL store; the logs in a
local storage folder, reached through the ``Storage`` port as on S3."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from skyweave.bus import CONTROLLER_GROUP, SQLiteBus
from skyweave.config.settings import PruneSettings, load_settings
from skyweave.controller.prune import DAY_S, PeriodicPrune, prune
from skyweave.engine import Engine
from skyweave.model.records import ActivityRecord, AttemptRecord, Changeset, ProductRecord, RunRecord
from skyweave.model.triggers import Firing, FiringState, TriggerKind, TriggerSpec
from skyweave.storage import open_storage
from skyweave.store import Store, open_store

NOW = time.time()
OLD = NOW - 200 * DAY_S
LIMITS = PruneSettings.model_validate({"listener_idle_days": 7, "dead_letters_days": 30,
                                       "trigger_ledger_days": 90, "logs_days": 90})


def act(id: str, state: str) -> ActivityRecord:
    return ActivityRecord(id=id, run_id="run-1", node=id, task_name=id, task_version="1", state=state,
                          attempt=1, ended_at=None if state == "running" else OLD)


@pytest.fixture(params=[pytest.param("sqlite"), pytest.param("postgresql", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = str(tmp_path / "store") if request.param == "sqlite" else request.getfixturevalue("postgres_store_url")
    opened = open_store(url)
    opened.apply(Changeset(
        runs=[RunRecord(id="run-1", workflow="w", state="running")],
        activities=[act("made", "succeeded"), act("cleaned", "succeeded"), act("failed", "failed"),
                    act("running", "running"), act("recent", "succeeded")],
        attempts=[AttemptRecord(activity_id=a, attempt=1, state="failed" if a == "failed" else "succeeded")
                  for a in ("made", "cleaned", "failed", "recent")],
        products=[ProductRecord(id="p-made", uri="file:///x/made", type="t", created_at=OLD, activity_id="made",
                                run_id="run-1"),
                  ProductRecord(id="p-cleaned", uri="file:///x/cleaned", type="t", created_at=OLD,
                                activity_id="cleaned", run_id="run-1")]))
    opened.mark_products(["p-cleaned"], "deleted")  # `skyweave cleanup` took its file
    yield opened
    opened.close()


@pytest.fixture
def logs_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "files" / "logs"
    folder.mkdir(parents=True)
    for name in ("made", "cleaned", "failed", "running", "stranger", "recent"):
        path = folder / f"{name}.1.log"
        path.write_text(f"log of {name}\n")
        if name != "recent":
            os.utime(path, (OLD, OLD))
    return folder


def test_logs_go_once_old_finished_and_without_a_product_left(store: Store, logs_dir: Path) -> None:
    logs = open_storage(logs_dir.parent).within("logs")
    planned = prune(store, [], logs, LIMITS, NOW, dry_run=True)
    assert sorted(planned.logs) == ["cleaned.1.log", "failed.1.log"]
    assert planned.logs_kept == {"a product of its activity is still available": 1,
                                 "activity not finished": 1, "not an activity of this store": 1}
    assert len(list(logs_dir.iterdir())) == 6  # the dry run deleted nothing

    done = prune(store, [], logs, LIMITS, NOW)
    assert sorted(done.logs) == ["cleaned.1.log", "failed.1.log"] and done.ok
    assert sorted(p.name for p in logs_dir.iterdir()) == [
        "made.1.log", "recent.1.log", "running.1.log", "stranger.1.log"]
    # provenance stays: the activity, its attempts (the failed one's too), the deleted product's row
    assert store.get_activity("failed").state == "failed"
    assert [a.state for a in store.list_attempts("failed")] == ["failed"]
    assert store.get_product("p-cleaned").activity_id == "cleaned"


def test_logs_are_kept_without_a_limit(store: Store, logs_dir: Path) -> None:
    logs = open_storage(logs_dir.parent).within("logs")
    for forever in (LIMITS.model_copy(update={"logs_days": None}), PruneSettings(logs_days=0)):
        assert prune(store, [], logs, forever, NOW).logs == []
    assert len(list(logs_dir.iterdir())) == 6


def test_one_prune_covers_bus_ledger_and_logs(store: Store, logs_dir: Path, tmp_path: Path) -> None:
    bus = SQLiteBus(tmp_path / "bus.db")
    try:
        bus.publish([b"e1", b"e2"])
        bus.commit("server:gone:8080", bus.read("server:gone:8080", 1)[0].offset)
        bus.commit(CONTROLLER_GROUP, bus.read(CONTROLLER_GROUP, 2)[-1].offset)
        spec = TriggerSpec(name="nightly", kind=TriggerKind.SCHEDULE, workflow="w.py:w")
        store.save_trigger(spec)
        store.record_firings("nightly", [Firing(trigger="nightly", key="t1", state=FiringState.FIRED, at=OLD,
                                                recorded_at=OLD)])
        later = NOW + 8 * DAY_S  # the server died; eight days on
        report = prune(store, [bus], open_storage(logs_dir.parent).within("logs"), LIMITS, later)
        assert report.ok, report.failed
        [(url, pruned)] = report.bus
        assert url == bus.url and pruned.groups == ["server:gone:8080"] and pruned.events == 2
        assert report.trigger_firings == {"nightly": 1}
        assert len(report.logs) == 2
        assert "1 idle listener group(s), 2 bus event(s)" in report.summary()
        assert report.to_json()["trigger_firings"] == {"nightly": 1}
    finally:
        bus.close()


def test_the_periodic_prune_runs_in_the_controller_and_stops_with_it(tmp_path: Path) -> None:
    settings = load_settings(store=str(tmp_path / "store"), prune={"every_s": 3600})
    engine = Engine(settings, worker=False)
    assert engine.pruner is not None
    engine.start()
    try:
        assert engine.pruner.is_alive()
        report = engine.pruner.prune_now()
        assert report is not None and report.ok and engine.pruner.reports == [report]
    finally:
        engine.stop()
    assert not engine.pruner.is_alive()
    off = Engine(load_settings(store=str(tmp_path / "store"), prune={"every_s": 0}), worker=False)
    assert off.pruner is None
    off.store.close()


def test_a_failing_prune_is_logged_and_the_thread_goes_on(tmp_path: Path) -> None:
    class Broken(SQLiteBus):
        def prune(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
            raise RuntimeError("disk on fire")

    store = open_store(str(tmp_path / "store"))
    bus = Broken(tmp_path / "bus.db")
    try:
        pruner = PeriodicPrune(store, [bus], lambda: None, LIMITS, threading.Event())
        assert pruner.prune_now() is None and pruner.reports == []
    finally:
        bus.close()
        store.close()
