"""What only ``PostgreSQLStore`` does, against the server of ``scripts/services.sh``: someone else's
schema refused untouched, a new store migrated once by processes opening it together, a pool of the
size the settings give, attributes in ``JSONB`` found through their GIN index, a lost server
reported as a retryable error and its return as a reconnect."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, inspect
from sqlalchemy.engine import make_url

from skyweave.errors import StoreError, StoreUnavailableError
from skyweave.model.records import Changeset, ProductRecord, RunRecord
from skyweave.store import open_store
from skyweave.store.postgresql import PostgreSQLStore
from skyweave.store.schema import SCHEMA_REVISION, VERSION_TABLE

pytestmark = pytest.mark.integration


@pytest.fixture
def admin(postgres_store_url: str) -> Iterator[Engine]:
    engine = create_engine(postgres_store_url)
    yield engine
    engine.dispose()


def test_someone_elses_schema_is_refused_untouched(postgres_store_url: str, admin: Engine) -> None:
    with admin.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE sources (ra float8, dec float8)")
        conn.exec_driver_sql("INSERT INTO sources VALUES (83.6, 22.0)")
    with pytest.raises(StoreError, match=r"not a skyweave store \(schema 't_\w+' has tables sources\)"):
        open_store(postgres_store_url)
    with admin.connect() as conn:
        assert inspect(conn).get_table_names() == ["sources"]
        assert conn.exec_driver_sql("SELECT ra, dec FROM sources").all() == [(83.6, 22.0)]


def test_processes_opening_a_new_store_together_migrate_it_once(postgres_store_url: str, admin: Engine
                                                                ) -> None:
    opened: list[PostgreSQLStore] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_one() -> None:
        start.wait()
        try:
            opened.append(PostgreSQLStore(postgres_store_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in opened:
        store.close()
    assert errors == []
    with admin.connect() as conn:
        assert conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalars().all() \
            == [SCHEMA_REVISION]
        assert conn.exec_driver_sql("SELECT count(*) FROM meta WHERE key = 'created_at'").scalar() == 1


def test_the_pool_holds_the_connections_the_settings_give(postgres_store_url: str) -> None:
    store = open_store(postgres_store_url, pool_size=3)
    try:
        assert isinstance(store, PostgreSQLStore)
        assert store._engine.pool.size() == 3  # type: ignore[attr-defined]
    finally:
        store.close()


def test_attributes_are_jsonb_matched_through_the_gin_index(postgres_store_url: str, admin: Engine) -> None:
    store = open_store(postgres_store_url)
    try:
        store.apply(Changeset(products=[
            ProductRecord(id=f"prd-{i}", uri=f"file:///p{i}", attributes={"band": "soft" if i % 2 else "hard",
                                                                       "ccd": i % 7})
            for i in range(2000)]))
        with admin.begin() as conn:
            assert conn.exec_driver_sql(
                "SELECT data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = 'products' "
                "AND column_name = 'attributes'").scalar() == "jsonb"
            conn.exec_driver_sql("ANALYZE products")
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # a table this small would be scanned
            plan = "\n".join(conn.exec_driver_sql(
                """EXPLAIN SELECT id FROM products WHERE attributes @> '{"ccd": 3}'""").scalars())
        assert "ix_products_attributes" in plan
        found = store.find_products(match={"ccd": 3, "band": "soft"})
        assert sorted(p.id for p in found) == sorted(f"prd-{i}" for i in range(2000) if i % 7 == 3 and i % 2)
    finally:
        store.close()


def test_every_spelling_of_the_url_opens_the_same_store(postgres_store_url: str) -> None:
    first = open_store(postgres_store_url)
    try:
        first.apply(Changeset(products=[ProductRecord(id="prd-1", uri="file:///p1")]))
    finally:
        first.close()
    rest = postgres_store_url.partition("://")[2]
    for scheme in ("postgres", "postgresql+psycopg", "POSTGRESQL"):
        store = open_store(f"{scheme}://{rest}")
        try:
            assert [p.id for p in store.find_products()] == ["prd-1"]
        finally:
            store.close()


def test_a_lost_server_is_a_retryable_error_and_its_return_a_reconnect(postgres_database: str) -> None:
    """Connections killed, then refused (as while the server restarts), then allowed again."""
    name = f"lost_{secrets.token_hex(4)}"
    server = create_engine(postgres_database, isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        store = open_store(make_url(postgres_database).set(database=name).render_as_string(hide_password=False),
                           retry_s=0)
        try:
            store.apply(Changeset(runs=[RunRecord(id="run-1", workflow="w", state="running")]))
            with server.connect() as conn:
                conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                conn.exec_driver_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
            with pytest.raises(StoreUnavailableError, match="cannot reach the PostgreSQL store") as raised:
                store.get_run("run-1")
            assert raised.value.retryable
            with pytest.raises(StoreUnavailableError):
                store.apply(Changeset(runs=[RunRecord(id="run-2", workflow="w", state="running")]))
            with server.connect() as conn:
                conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            assert store.get_run("run-1").state == "running"  # back: the pool reconnects
            store.apply(Changeset(runs=[RunRecord(id="run-2", workflow="w", state="running")]))
            assert sorted(r.id for r in store.list_runs()) == ["run-1", "run-2"]
        finally:
            store.close()
    finally:
        with server.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        server.dispose()


class _AllowOnRetry(logging.Handler):
    """Lets connections in again at the first retry the store logs (the server "comes back")."""

    def __init__(self, server: Engine, name: str) -> None:
        super().__init__()
        self.server, self.name, self.retries = server, name, []  # type: list[str]

    def emit(self, record: logging.LogRecord) -> None:
        self.retries.append(record.getMessage())
        if len(self.retries) == 1:
            with self.server.connect() as conn:
                conn.exec_driver_sql(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')


def test_an_operation_waits_for_the_server_to_come_back_and_says_so(postgres_database: str) -> None:
    """With ``retry_s``, a write made while the server refuses connections is retried (logged) until
    it is back, and then done once: the caller sees no error (a controller rides out a restart)."""
    name = f"back_{secrets.token_hex(4)}"
    server = create_engine(postgres_database, isolation_level="AUTOCOMMIT")
    logger = logging.getLogger("skyweave.store.retry")
    handler = _AllowOnRetry(server, name)
    try:
        with server.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        store = open_store(make_url(postgres_database).set(database=name).render_as_string(hide_password=False),
                           retry_s=60)
        try:
            with server.connect() as conn:
                conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                conn.exec_driver_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
            logger.addHandler(handler)
            store.apply(Changeset(runs=[RunRecord(id="run-1", workflow="w", state="running")]))
            assert [r.id for r in store.list_runs()] == ["run-1"]
        finally:
            logger.removeHandler(handler)
            store.close()
    finally:
        with server.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        server.dispose()
    assert len(handler.retries) >= 1
    assert "cannot reach the PostgreSQL store" in handler.retries[0] and "in apply" in handler.retries[0]
    assert "retrying in" in handler.retries[0]
