"""Store contract, catalogue part: the extra ``find_products`` filters, pinning, and the migrations
after 0001 (``pinned``; ``JSONB`` attributes on PostgreSQL): a store made at 0001 upgrades and keeps
its data."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest
from alembic import command
from sqlalchemy import Connection, MetaData, Table, create_engine, insert, inspect

from skyweave.errors import NotFoundError
from skyweave.model.records import AttemptRecord, Changeset, ProductRecord
from skyweave.store import Store, sqlite_path
from skyweave.store import migrations as store_migrations
from skyweave.store.schema import SCHEMA_REVISION, VERSION_TABLE

OpenHandle = Callable[[], Store]


def product(id: str, **fields: object) -> ProductRecord:
    return msgspec.structs.replace(ProductRecord(id=id, uri=f"file:///data/{id}.fits"), **fields)


@pytest.fixture
def catalogue(store: Store) -> Store:
    store.apply(Changeset(products=[
        product("prd-1", type="ep.l1.events", name="a.fits", version="1", created_at=100.0),
        product("prd-2", type="ep.l1.events", name="b.fits", version="2", created_at=200.0),
        product("prd-3", type="ep.l2.image", name="a.fits", version="2", created_at=300.0),
    ]))
    return store


def ids(store: Store, **query: object) -> list[str]:
    return [p.id for p in store.find_products(**query)]  # type: ignore[arg-type]


def test_filters_by_version_and_name(catalogue: Store) -> None:
    assert ids(catalogue, version="2") == ["prd-3", "prd-2"]
    assert ids(catalogue, name="a.fits") == ["prd-3", "prd-1"]
    assert ids(catalogue, name="a.fits", version="1") == ["prd-1"]
    assert ids(catalogue, type="ep.l1.events", version="2") == ["prd-2"]
    assert ids(catalogue, version="9") == []


def test_time_window_is_half_open(catalogue: Store) -> None:
    assert ids(catalogue, created_after=200.0) == ["prd-3", "prd-2"]
    assert ids(catalogue, created_before=200.0) == ["prd-1"]
    assert ids(catalogue, created_after=150.0, created_before=300.0) == ["prd-2"]
    assert ids(catalogue, created_after=301.0) == []


def test_products_start_unpinned_and_pin_unpin(catalogue: Store) -> None:
    assert ids(catalogue, pinned=True) == []
    assert ids(catalogue, pinned=False) == ["prd-3", "prd-2", "prd-1"]
    catalogue.pin_products(["prd-1", "prd-3", "prd-1"])
    assert ids(catalogue, pinned=True) == ["prd-3", "prd-1"]
    assert ids(catalogue, pinned=False) == ["prd-2"]
    catalogue.pin_products(["prd-3"], False)
    assert ids(catalogue, pinned=True) == ["prd-1"]
    catalogue.pin_products([])  # nothing to do


def test_pinning_is_independent_of_state(catalogue: Store) -> None:
    catalogue.pin_products(["prd-2"])
    catalogue.mark_products(["prd-2"], "deleted")
    assert ids(catalogue, pinned=True) == []  # default state filter: available
    assert ids(catalogue, pinned=True, state=None) == ["prd-2"]
    assert ids(catalogue, pinned=True, state="deleted") == ["prd-2"]
    assert catalogue.get_product("prd-2").state == "deleted"


def test_pinning_an_unknown_product_changes_nothing(catalogue: Store) -> None:
    with pytest.raises(NotFoundError, match="prd-404") as info:
        catalogue.pin_products(["prd-1", "prd-404"])
    assert "products list" in (info.value.hint or "")
    assert ids(catalogue, pinned=True) == []


def test_a_second_registration_does_not_unpin(catalogue: Store) -> None:
    catalogue.pin_products(["prd-1"])
    catalogue.apply(Changeset(products=[product("prd-1", type="ep.l1.events", created_at=100.0)]))
    assert ids(catalogue, pinned=True) == ["prd-1"]


def test_pins_are_seen_by_other_handles(open_handle: OpenHandle) -> None:
    first, second = open_handle(), open_handle()
    first.apply(Changeset(products=[product("prd-1")]))
    first.pin_products(["prd-1"])
    assert ids(second, pinned=True) == ["prd-1"]


# -- upgrading a store made before the pinned column (and, on PostgreSQL, before JSONB attributes) --

def test_a_store_at_revision_0001_upgrades_and_keeps_its_data(store_url: str, open_handle: OpenHandle) -> None:
    if store_url.startswith("sqlite:///"):  # the store makes its directory; this engine would not
        sqlite_path(store_url).parent.mkdir(parents=True)
    engine = create_engine(store_url)
    try:
        with engine.begin() as conn:
            command.upgrade(store_migrations.alembic_config(conn), "0001")
            assert "pinned" not in {c["name"] for c in inspect(conn).get_columns("products")}
            old = {"id": "prd-old", "uri": "file:///data/old.fits", "type": "ep.l1.events", "name": "old",
                   "created_at": 5.0, "attributes": '{"band": "soft", "snr": 5.5}', "state": "available"}
            conn.execute(insert(_products_at_0001(conn)), [old])
    finally:
        engine.dispose()

    store = open_handle()
    assert store.get_product("prd-old").type == "ep.l1.events"
    assert store.get_product("prd-old").attributes == {"band": "soft", "snr": 5.5}
    assert ids(store, match={"band": "soft"}) == ids(store, pinned=False) == ["prd-old"]
    store.pin_products(["prd-old"])
    assert ids(store, pinned=True, created_before=6.0) == ["prd-old"]
    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar() \
                == SCHEMA_REVISION
            assert "ix_products_created_at" in {i["name"] for i in inspect(conn).get_indexes("products")}
    finally:
        engine.dispose()


def test_upgrading_drops_the_never_written_events_and_outbox_tables(
        store_url: str, open_handle: OpenHandle) -> None:
    """Revision 0006 drops the two tables nothing wrote (issue 12 point 3), keeping the rest."""
    _at_revision(store_url, "0005", [("products", _OLD_PRODUCT)])
    store = open_handle()
    assert store.get_product("prd-old").name == "old"
    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            assert not {"events", "outbox"} & set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_upgrading_refuses_to_drop_rows_it_did_not_write(store_url: str, open_handle: OpenHandle) -> None:
    """Rows in the outbox (something else wrote them) stop the upgrade, and stay."""
    _at_revision(store_url, "0005", [("outbox", {"id": "msg-1", "channel": "event", "priority": 0,
                                                  "data": b"x"})])
    with pytest.raises(Exception, match="'outbox' table has rows") as info:
        open_handle()
    assert "delete them" in str(info.value)
    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM outbox").scalar() == 1
    finally:
        engine.dispose()


_OLD_PRODUCT = {"id": "prd-old", "uri": "file:///data/old.fits", "type": "ep.l1.events", "name": "old",
                "created_at": 5.0, "attributes": "{}", "state": "available"}


def test_activities_and_attempts_of_a_0010_store_upgrade_without_an_image_digest(
        store_url: str, open_handle: OpenHandle) -> None:
    """Revision 0011 adds the digest each attempt ran in; rows written before have none (NULL),
    and new ones keep it."""
    activity = {"id": "act-old", "run_id": "run-old", "node": "n", "task_name": "t", "task_version": "1",
                "state": "succeeded", "key": "", "code_hash": "", "priority": 0, "arguments": "{}",
                "attempt": 1, "max_attempts": 1, "created_at": 1.0, "queued_at": 1.0, "aspects": "[]",
                "detours": "[]", "iteration": 0}
    attempt = {"activity_id": "act-old", "attempt": 1, "state": "succeeded"}
    _at_revision(store_url, "0010", [("activities", activity), ("attempts", attempt)])
    store = open_handle()
    assert store.get_activity("act-old").image_digest is None
    assert [a.image_digest for a in store.list_attempts("act-old")] == [None]
    digest = "sha256:" + "cd" * 32
    store.apply(Changeset(
        activities=[msgspec.structs.replace(store.get_activity("act-old"), attempt=2, image_digest=digest)],
        attempts=[AttemptRecord(activity_id="act-old", attempt=2, state="succeeded", image_digest=digest)]))
    assert store.get_activity("act-old").image_digest == digest
    assert [a.image_digest for a in store.list_attempts("act-old")] == [None, digest]


def _at_revision(store_url: str, revision: str, rows: list[tuple[str, dict[str, object]]]) -> None:
    """Make the store at ``store_url`` an Alembic ``revision`` one, holding ``rows``."""
    if store_url.startswith("sqlite:///"):
        sqlite_path(store_url).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(store_url)
    try:
        with engine.begin() as conn:
            command.upgrade(store_migrations.alembic_config(conn), revision)
            for table, row in rows:
                conn.execute(insert(Table(table, MetaData(), autoload_with=conn)), [row])
    finally:
        engine.dispose()


def _products_at_0001(conn: Connection) -> Table:
    """The products table as revision 0001 made it (reflected: the schema module is newer)."""
    return Table("products", MetaData(), autoload_with=conn)
