"""The store contract: every backend in ``conftest.STORE_FACTORIES`` must pass these tests.

The last section holds what only the SQLite backend promises (file checks, migrations on open).
"""

from __future__ import annotations

import importlib.util
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from skyweave.errors import DefinitionError, LeaseLostError, NotFoundError, StoreError, UnknownTaskError
from skyweave.model.records import (
    ActivityRecord,
    AttemptRecord,
    Changeset,
    Detour,
    ProductRecord,
    RunRecord,
    UsageRecord,
)
from skyweave.model.specs import RetryPolicy, TaskSpec
from skyweave.store import SQLiteStore, Store, open_store
from skyweave.store import migrations as store_migrations
from skyweave.store.schema import SCHEMA_REVISION, VERSION_TABLE, metadata

OpenHandle = Callable[[], Store]
"""The ``open_handle`` fixture (conftest): opens one more handle on the store under test."""


def run(id: str = "run-1", **fields: object) -> RunRecord:
    return msgspec.structs.replace(RunRecord(id=id, workflow="ep_l0_l3", state="running"), **fields)


def activity(id: str = "act-1", run_id: str = "run-1", **fields: object) -> ActivityRecord:
    base = ActivityRecord(id=id, run_id=run_id, node="decode", task_name="l1_decode",
                          task_version="1", state="queued")
    return msgspec.structs.replace(base, **fields)


def product(id: str = "prd-1", **fields: object) -> ProductRecord:
    return msgspec.structs.replace(ProductRecord(id=id, uri=f"file:///data/{id}.fits"), **fields)


# -- changesets: round trips, upserts, idempotency -------------------------------------------------

def test_every_record_type_round_trips(store: Store) -> None:
    the_run = run(workflow_ref="pipelines.ep:workflow", params={"obs_id": "06800000001", "snr": 5.5},
                  priority=7, graph={"nodes": [{"name": "decode"}]}, pins={"l1_decode": "1"},
                  parent_run="run-0", created_at=10.5, started_at=11.0, labels={"site": "naoc"})
    the_activity = activity(
        key="3.1", code_hash="abc", priority=7, arguments={"packets": "prd-0", "window": [0, 10]},
        result={"sources": 3}, attempt=2, max_attempts=3, created_at=12.0, queued_at=12.5,
        started_at=13.0, ended_at=14.0, worker="wrk-1", host="node7", exit_code=0,
        error={"type": "ValueError", "message": "x"}, log_uri="file:///logs/act-1.log",
        usage={"cpu_s": 1.5}, aspects=["provenance", "timing"], parent_activity="act-0",
        iteration=1, cache_key="k1", image_digest="sha256:" + "ab" * 32,
        detours=[Detour(kind="provide", product_type="ep.aux.attitude", param="attitude",
                        reason="does not cover the observation", at=13.5, provider_activity="act-9"),
                 Detour(kind="park", product_type="ep.aux.orbit", param="orbit", product_id="prd-7")])
    the_attempt = AttemptRecord(activity_id="act-1", attempt=2, state="succeeded", worker="wrk-1",
                                host="node7", pid=4242, started_at=13.0, ended_at=14.0, exit_code=0,
                                error=None, usage={"max_rss_mb": 120}, image_digest="sha256:" + "ab" * 32)
    the_product = product(type="ep.l1.events", name="events", obs_id="06800000001", detector="cmos3",
                          version="1", checksum="sha256:00", size=2**40, created_at=14.0,
                          activity_id="act-1", run_id="run-1", attributes={"exposure_s": 1200.0})
    the_usage = UsageRecord(activity_id="act-1", product_id="prd-0", role="packets")
    store.apply(Changeset(runs=[the_run], activities=[the_activity], attempts=[the_attempt],
                          products=[the_product], usages=[the_usage]))

    assert store.get_run("run-1") == the_run
    assert store.get_activity("act-1") == the_activity
    assert store.list_attempts("act-1") == [the_attempt]
    assert store.get_product("prd-1") == the_product
    assert store.list_usages(activity_id="act-1") == [the_usage]


def test_null_json_fields_stay_null(store: Store) -> None:
    store.apply(Changeset(activities=[activity(result=None, error=None, usage=None)]))
    got = store.get_activity("act-1")
    assert (got.result, got.error, got.usage) == (None, None, None)


def test_empty_changeset_is_a_no_op(store: Store) -> None:
    store.apply(Changeset())
    assert store.list_runs() == []


def test_runs_activities_and_attempts_are_upserted_whole(store: Store) -> None:
    store.apply(Changeset(runs=[run()], activities=[activity()],
                          attempts=[AttemptRecord(activity_id="act-1", attempt=1, state="running")]))
    store.apply(Changeset(
        runs=[run(state="succeeded", ended_at=20.0)],
        activities=[activity(state="succeeded", result=[1, 2], detours=[Detour(
            kind="park", product_type="t", param="p")])],
        attempts=[AttemptRecord(activity_id="act-1", attempt=1, state="succeeded", exit_code=0)]))
    assert store.get_run("run-1").state == "succeeded"
    assert store.get_run("run-1").ended_at == 20.0
    got = store.get_activity("act-1")
    assert (got.state, got.result, len(got.detours)) == ("succeeded", [1, 2], 1)
    assert [(a.state, a.exit_code) for a in store.list_attempts("act-1")] == [("succeeded", 0)]
    assert len(store.list_activities()) == 1


def test_a_product_is_registered_once_and_the_first_registration_wins(store: Store) -> None:
    store.apply(Changeset(products=[product(uri="file:///first"), product(uri="file:///second")]))
    store.apply(Changeset(products=[product(uri="file:///third")]))
    assert store.get_product("prd-1").uri == "file:///first"
    assert len(store.find_products(state=None)) == 1


def test_usage_rows_are_idempotent(store: Store) -> None:
    usage = UsageRecord(activity_id="act-1", product_id="prd-1", role="image")
    for _ in range(2):
        store.apply(Changeset(usages=[usage, usage]))
    assert store.list_usages(product_id="prd-1") == [usage]


def test_a_changeset_is_one_transaction(store: Store) -> None:
    broken = activity(id="act-2")
    broken.node = None  # type: ignore[assignment]  # violates NOT NULL after the run was written
    with pytest.raises(Exception):  # noqa: B017, PT011 -- the backend's own integrity error
        store.apply(Changeset(runs=[run()], activities=[activity(), broken]))
    assert store.list_runs() == []
    assert store.list_activities() == []


def test_find_reusable_returns_the_latest_succeeded_activity_per_cache_key(store: Store) -> None:
    acts = [activity(id=f"act-{i}", state="succeeded", cache_key=f"key-{i}") for i in range(1200)]
    acts += [activity(id="act-again", state="succeeded", cache_key="key-7"),
             activity(id="act-failed", state="failed", cache_key="key-8"),
             activity(id="act-running", state="running", cache_key="key-new")]
    store.apply(Changeset(runs=[run()], activities=acts))
    keys = [f"key-{i}" for i in range(1200)] + ["key-7", "key-new", "key-none"]
    found = store.find_reusable(keys)  # more keys than one query takes
    assert len(found) == 1200
    assert found["key-7"].id == "act-again"  # the later one
    assert found["key-8"].id == "act-8"
    assert found["key-1199"] == acts[1199]
    assert store.find_reusable([]) == {}
    assert store.find_reusable(["key-new", "key-none"]) == {}


# -- reads ------------------------------------------------------------------------------------------

def test_the_head_of_a_run_is_the_run_without_its_graph(store: Store) -> None:
    graph = {"nodes": {f"n{i}": {"task": "l1_decode", "args": {"x": i}} for i in range(50)}}
    full = run(graph=graph, params={"obs_id": "ep1"}, pins={"l1_decode": "2"}, labels={"team": "x"},
               parent_run="run-0", created_at=1.0, started_at=2.0, ended_at=3.0, error="boom",
               state="failed", priority=7)
    store.apply(Changeset(runs=[full]))
    head = store.get_run_head("run-1")
    assert head.graph == {}
    assert head == msgspec.structs.replace(full, graph={})
    assert store.get_run("run-1") == full
    assert store.list_runs(graph=False) == [head] and store.list_runs() == [full]
    store.apply(Changeset(runs=[msgspec.structs.replace(full, state="running", error=None)]))
    assert (store.get_run_head("run-1").state, store.get_run_head("run-1").error) == ("running", None)


def test_missing_ids_raise_not_found_with_what_to_do(store: Store) -> None:
    with pytest.raises(NotFoundError, match="no run 'run-x' in store") as raised:
        store.get_run("run-x")
    assert "skyweave runs" in str(raised.value)
    with pytest.raises(NotFoundError, match="no run 'run-x' in store"):
        store.get_run_head("run-x")
    with pytest.raises(NotFoundError, match="no activity 'act-x'"):
        store.get_activity("act-x")
    with pytest.raises(NotFoundError, match="no product 'prd-x'"):
        store.get_product("prd-x")


def test_list_runs_newest_first_with_state_filter_and_limit(store: Store) -> None:
    store.apply(Changeset(runs=[run("run-a", created_at=1.0), run("run-c", created_at=3.0, state="failed"),
                                run("run-b", created_at=2.0)]))
    assert [r.id for r in store.list_runs()] == ["run-c", "run-b", "run-a"]
    assert [r.id for r in store.list_runs(states=["running"])] == ["run-b", "run-a"]
    assert [r.id for r in store.list_runs(limit=1)] == ["run-c"]
    assert store.list_runs(states=[]) == []


def test_activities_in_creation_order_filtered_and_counted(store: Store) -> None:
    # Ids deliberately out of alphabetical order, all created in the same instant.
    ids = ["act-z", "act-a", "act-m", "act-b"]
    store.apply(Changeset(activities=[
        activity(ids[0], state="succeeded"), activity(ids[1], task_name="l2_calibrate"),
        activity(ids[2], run_id="run-2")]))
    store.apply(Changeset(activities=[activity(ids[3], state="failed"), activity(ids[0], state="failed")]))
    assert [a.id for a in store.list_activities()] == ids
    assert [a.id for a in store.list_activities(run_id="run-1")] == ["act-z", "act-a", "act-b"]
    assert [a.id for a in store.list_activities(states=["failed"])] == ["act-z", "act-b"]
    assert [a.id for a in store.list_activities(task_name="l2_calibrate")] == ["act-a"]
    assert [a.id for a in store.list_activities(run_id="run-1", limit=2)] == ["act-z", "act-a"]
    assert store.count_activities("run-1") == {"failed": 2, "queued": 1}
    assert store.count_activities("run-none") == {}


def test_find_products_by_type_columns_attributes_and_state(store: Store) -> None:
    store.apply(Changeset(products=[
        product("prd-1", type="ep.l2.image", obs_id="obs1", detector="cmos1", created_at=1.0,
                attributes={"band": "soft", "snr": 5.5, "good": True, "tags": ["a", "b"]}),
        product("prd-2", type="ep.l2.image", obs_id="obs1", detector="cmos2", created_at=2.0,
                run_id="run-1", activity_id="act-1", attributes={"band": "hard", "snr": 5}),
        product("prd-3", type="ep.l1.events", obs_id="obs2", created_at=3.0, version="2"),
    ]))

    def ids(**query: object) -> list[str]:
        return [p.id for p in store.find_products(**query)]  # type: ignore[arg-type]

    assert ids() == ["prd-3", "prd-2", "prd-1"]
    assert ids(type="ep.l2.image") == ["prd-2", "prd-1"]
    assert ids(match={"obs_id": "obs1", "detector": "cmos1"}) == ["prd-1"]
    assert ids(match={"type": "ep.l1.events", "version": "2"}) == ["prd-3"]
    assert ids(match={"detector": None}) == ["prd-3"]
    assert ids(match={"band": "hard"}) == ["prd-2"]
    assert ids(match={"snr": 5.5}) == ["prd-1"]
    assert ids(match={"snr": 5}) == ["prd-2"]
    assert ids(match={"good": True}) == ["prd-1"]
    assert ids(match={"tags": ["a", "b"]}) == ["prd-1"]
    assert ids(type="ep.l2.image", match={"band": "soft"}) == ["prd-1"]
    assert ids(match={"band": "none"}) == []
    assert ids(run_id="run-1") == ids(activity_id="act-1") == ["prd-2"]
    assert ids(limit=1) == ["prd-3"]

    store.mark_products(["prd-3"], "deleted")
    assert ids() == ["prd-2", "prd-1"]
    assert ids(state="deleted") == ["prd-3"]
    assert ids(state=None) == ["prd-3", "prd-2", "prd-1"]
    assert store.get_product("prd-3").state == "deleted"


def test_usages_by_activity_and_by_product(store: Store) -> None:
    used = [UsageRecord(activity_id="act-2", product_id="prd-1", role="image"),
            UsageRecord(activity_id="act-1", product_id="prd-1", role="image"),
            UsageRecord(activity_id="act-1", product_id="prd-2", role="attitude")]
    store.apply(Changeset(usages=used))
    assert store.list_usages(activity_id="act-1") == [used[2], used[1]]
    assert store.list_usages(product_id="prd-1") == [used[1], used[0]]
    assert store.list_usages(activity_id="act-1", product_id="prd-2") == [used[2]]
    store.apply(Changeset(activities=[activity("act-1", "run-1"), activity("act-2", "run-2")]))
    assert store.list_usages(run_id="run-1") == [used[2], used[1]]
    assert store.list_usages(run_id="run-2", product_id="prd-1") == [used[0]]
    assert store.list_usages(run_id="run-3") == []


# -- task registry --------------------------------------------------------------------------------

def spec(version: str, name: str = "l1_decode", **fields: object) -> TaskSpec:
    return msgspec.structs.replace(TaskSpec(name=name, version=version, ref="pipelines.ep:decode"),
                                   **fields)


def test_registry_routes_new_activations_to_the_current_version(store: Store) -> None:
    store.register_task(spec("1", retry=RetryPolicy(max_attempts=3), code_hash="h1"))
    store.register_task(spec("2", code_hash="h2"), make_current=False)
    assert store.get_task("l1_decode") == spec("1", retry=RetryPolicy(max_attempts=3), code_hash="h1")
    assert store.get_task("l1_decode", "2").code_hash == "h2"
    store.set_current_version("l1_decode", "2")
    assert store.get_task("l1_decode").version == "2"
    store.register_task(spec("3"))
    assert store.get_task("l1_decode").version == "3"
    assert [(s.version, current) for s, current in store.list_tasks()] == [
        ("1", False), ("2", False), ("3", True)]


def test_first_version_is_current_even_when_not_made_current(store: Store) -> None:
    store.register_task(spec("1"), make_current=False)
    assert store.get_task("l1_decode").version == "1"


def test_registering_is_idempotent_but_a_version_never_changes(store: Store) -> None:
    store.register_task(spec("1"))
    store.register_task(spec("1"))
    assert len(store.list_tasks()) == 1
    with pytest.raises(DefinitionError, match="already registered with a different definition"):
        store.register_task(spec("1", ref="pipelines.ep:decode_v2"))
    assert store.get_task("l1_decode", "1") == spec("1")


def test_unknown_task_errors_list_what_is_registered(store: Store) -> None:
    store.register_task(spec("1"))
    store.register_task(spec("1", name="l2_calibrate"))
    with pytest.raises(UnknownTaskError, match="l1_decode, l2_calibrate") as raised:
        store.get_task("l2_calib")
    assert "did you mean 'l2_calibrate'" in str(raised.value)
    with pytest.raises(UnknownTaskError, match="no version '9' — registered versions: 1"):
        store.get_task("l1_decode", "9")
    with pytest.raises(UnknownTaskError, match="no version '9'"):
        store.set_current_version("l1_decode", "9")
    assert store.get_task("l1_decode").version == "1"


# -- controller lease -----------------------------------------------------------------------------

def test_controller_lease_is_held_by_one_live_owner(store: Store) -> None:
    assert store.controller_lease_holder() is None
    assert store.acquire_controller_lease("ctl-a", ttl_s=10, now=100.0)
    assert store.controller_lease_holder() == ("ctl-a", 110.0)
    assert not store.acquire_controller_lease("ctl-b", ttl_s=10, now=105.0)
    assert store.acquire_controller_lease("ctl-a", ttl_s=10, now=108.0)  # renewed to 118
    assert not store.acquire_controller_lease("ctl-b", ttl_s=10, now=115.0)
    assert store.controller_lease_holder() == ("ctl-a", 118.0)
    assert store.acquire_controller_lease("ctl-b", ttl_s=10, now=118.0)  # expired: taken over
    assert not store.acquire_controller_lease("ctl-a", ttl_s=10, now=119.0)
    store.release_controller_lease("ctl-a")  # not the owner: no effect
    assert not store.acquire_controller_lease("ctl-a", ttl_s=10, now=120.0)
    store.release_controller_lease("ctl-b")
    assert store.controller_lease_holder() is None
    assert store.acquire_controller_lease("ctl-a", ttl_s=10, now=121.0)


def test_a_fenced_changeset_commits_only_under_its_owners_live_lease(store: Store) -> None:
    """Fencing: a controller that lost the lease (paused past its expiry, another took over)
    writes nothing, checked in the very transaction of its writes."""
    now = time.time()
    with pytest.raises(LeaseLostError, match="held by nobody"):
        store.apply(Changeset(runs=[run()], lease_owner="ctl-a"))
    assert store.acquire_controller_lease("ctl-a", ttl_s=3600, now=now)
    store.apply(Changeset(runs=[run()], lease_owner="ctl-a"))
    assert store.get_run("run-1").state == "running"
    assert store.acquire_controller_lease("ctl-b", ttl_s=3600, now=now + 7200)  # a's expired: b took over
    with pytest.raises(LeaseLostError, match=r"ctl-a lost .*\(held by ctl-b\)"):
        store.apply(Changeset(runs=[run(state="paused")], lease_owner="ctl-a"))
    assert store.get_run("run-1").state == "running"
    store.apply(Changeset(runs=[run(state="paused")], lease_owner="ctl-b"))
    assert store.get_run("run-1").state == "paused"
    store.release_controller_lease("ctl-b")
    assert store.acquire_controller_lease("ctl-a", ttl_s=10, now=now - 100)  # expired at once
    with pytest.raises(LeaseLostError):
        store.apply(Changeset(activities=[activity("act-late")], lease_owner="ctl-a"))
    assert [a.id for a in store.list_activities(run_id="run-1")] == []


# -- schema ------------------------------------------------------------------------------------------

def test_migrations_build_exactly_the_schema_module(store_url: str, open_handle: OpenHandle) -> None:
    open_handle().close()
    assert ScriptDirectory.from_config(store_migrations.alembic_config()).get_current_head() \
        == SCHEMA_REVISION
    engine = create_engine(store_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={
                "version_table": VERSION_TABLE,
                "include_object": store_migrations.include_object(connection.dialect.name)})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_opening_a_current_store_does_not_run_alembic(open_handle: OpenHandle,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    open_handle().close()

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("alembic ran on a store already at head")

    monkeypatch.setattr("alembic.command.upgrade", refuse)
    open_handle().close()


def test_a_store_from_a_newer_skyweave_is_refused(store_url: str, open_handle: OpenHandle) -> None:
    open_handle().close()
    engine = create_engine(store_url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"UPDATE {VERSION_TABLE} SET version_num = '9999'")
    finally:
        engine.dispose()
    with pytest.raises(StoreError, match=r"(?s)schema revision '9999'.*upgrade skyweave"):
        open_handle()


# -- several handles (processes) on one store -----------------------------------------------------

def test_reopening_a_store_keeps_its_data(open_handle: OpenHandle) -> None:
    first = open_handle()
    first.apply(Changeset(runs=[run()]))
    first.register_task(spec("1"))
    first.close()
    again = open_handle()
    assert again.get_run("run-1") == run()
    assert again.get_task("l1_decode") == spec("1")


def test_handles_see_each_others_commits(open_handle: OpenHandle) -> None:
    controller, cli = open_handle(), open_handle()
    controller.apply(Changeset(runs=[run()]))
    assert cli.get_run("run-1").state == "running"
    cli.apply(Changeset(runs=[run(state="paused")]))
    assert controller.get_run("run-1").state == "paused"
    assert controller.acquire_controller_lease("ctl-a", ttl_s=10, now=1.0)
    assert not cli.acquire_controller_lease("ctl-b", ttl_s=10, now=2.0)


def test_concurrent_writers_on_separate_handles_lose_nothing(open_handle: OpenHandle) -> None:
    handles = [open_handle() for _ in range(3)]

    def write(n: int, store: Store) -> None:
        for batch in range(20):
            store.apply(Changeset(activities=[activity(f"act-{n}-{batch}-{i}") for i in range(10)]))

    threads = [threading.Thread(target=write, args=(n, h)) for n, h in enumerate(handles)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert handles[0].count_activities("run-1") == {"queued": 600}


# -- opening by URL or path (SQLite specifics) -----------------------------------------------------

def test_open_store_accepts_directories_files_and_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    monkeypatch.chdir(tmp_path)
    cases = {".skyweave": tmp_path / ".skyweave" / "skyweave.db",
             "nested/dir": tmp_path / "nested" / "dir" / "skyweave.db",
             "plain.db": tmp_path / "plain.db",
             "sqlite:///relative.db": tmp_path / "relative.db",
             f"sqlite:///{tmp_path}/absolute.db": tmp_path / "absolute.db"}
    for given, expected in cases.items():
        store = open_store(given)
        store.close()
        assert isinstance(store, SQLiteStore)
        assert store.path == expected
        assert store.url == f"sqlite:///{expected}"
    reopened = open_store(".skyweave")  # an existing directory
    reopened.close()
    assert reopened.url == f"sqlite:///{tmp_path / '.skyweave' / 'skyweave.db'}"


@pytest.mark.parametrize(("url", "message"), [
    ("redis://localhost/0", "unknown store URL scheme 'redis'"),
    ("postgresql+psycopg2://db/skyweave", "unsupported PostgreSQL driver 'postgresql[+]psycopg2'"),
    ("postgresql://user:secret@db", "the store URL names no database"),
    ("postgresql://user:secret@db:port/skyweave", "cannot parse the store URL 'postgresql://db:port/skyweave'"),
    # nothing listens on port 1: refused at once
    ("postgresql://user:secret@127.0.0.1:1/skyweave", "cannot reach the PostgreSQL store "
                                                      "postgresql://user:[*]{3}@127.0.0.1:1/skyweave"),
    ("sqlite:///:memory:", "give a file"),
])
def test_open_store_refuses_unsupported_urls(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as raised:
        open_store(url, retry_s=0)
    assert "secret" not in str(raised.value)


def test_a_postgresql_url_without_psycopg_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "psycopg" else find_spec(name, *args))
    with pytest.raises(StoreError, match=r"(?s)needs psycopg 3.*skyweave\[postgres\]") as raised:
        open_store("postgresql://user:secret@db/skyweave")
    assert "secret" not in str(raised.value)


def test_a_file_that_is_not_a_database_is_refused_untouched(tmp_path: Path) -> None:
    garbage = tmp_path / "notes.db"
    garbage.write_bytes(b"these are my observing notes\n" * 100)
    before = garbage.read_bytes()
    for given in (str(garbage), f"sqlite:///{garbage}"):
        with pytest.raises(StoreError, match=r"is not a skyweave store \(file is not a database\)"):
            open_store(given)
    assert garbage.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_someone_elses_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE sources (ra REAL, dec REAL)")
    connection.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"not a skyweave store.*sources"):
        open_store(str(path))
    assert path.read_bytes() == before

