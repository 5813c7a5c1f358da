"""``PostgreSQLStore``: the scale-out store, one PostgreSQL database (or schema) shared by hosts.

``postgresql://user@host:port/db`` (or ``postgresql+psycopg://``, or ``postgres://``) names it;
the driver is always psycopg 3 (``pip install 'skyweave[postgres]'``).  Libpq parameters go in the
query string as usual, e.g. ``?options=-csearch_path%3Dmy_schema`` to keep the store's tables in a
schema of a shared database (the schema must exist).  The reads, the task registry, the catalogue
and the lineage CTEs are the SQL shared with SQLite (``records_sql``, ``tasks_sql``,
``catalogue_sql``, ``lineage_sql``); what differs:

* a connection pool of ``pool_size`` connections (``Settings.store_pool_size``) plus as many
  again in overflow, checked before use (``pool_pre_ping``: a restarted server costs a reconnect,
  not an error);
* a ``Changeset`` is one transaction of ``INSERT ... ON CONFLICT`` statements, each sent as one
  ``executemany`` (psycopg pipelines the rows);
* product attributes are ``JSONB`` (revision 0004) matched with ``@>`` (the GIN index) and ``->``
  (exact equality); the engine binds JSON as text, the codec (``schema.RecordCodec``) decodes it;
* migrations run inside one transaction holding an advisory lock, so processes opening a new
  store at the same time create it once (DDL is transactional in PostgreSQL);
* the controller lease is a row updated with ``ON CONFLICT ... WHERE`` (row-locked: two
  controllers racing for an expired lease cannot both win); a fenced ``apply`` holds it ``FOR
  SHARE`` and may idle at most ``FENCED_IDLE_MS`` (a frozen controller cannot block a takeover);
* a server that is down, restarting or refusing connections, or a connection lost mid-statement,
  raises ``StoreUnavailableError`` (retryable: nothing half-committed); every operation (and the
  opening) tries again with backoff for ``retry_s`` seconds (``store_retry_s``, ``store/retry.py``),
  saying so in the log, before it raises; the pool reconnects once the server is back.

A database (or schema) that holds tables but no ``skyweave_version`` is someone else's: refused
untouched, as for SQLite files.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from sqlalchemy import (
    ARRAY,
    ColumnElement,
    String,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    inspect,
    literal,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError

from skyweave.errors import StoreError, StoreUnavailableError
from skyweave.model.records import Changeset
from skyweave.store.base import DEFAULT_POOL_SIZE, Store, check_fence
from skyweave.store.catalogue_sql import CatalogueQueries
from skyweave.store.lease_sql import ControllerLease
from skyweave.store.lineage_sql import LineageQueries
from skyweave.store.migrations import current_revision, upgrade
from skyweave.store.records_sql import RecordQueries
from skyweave.store.retry import DEFAULT_RETRY_S, retried, retry_unavailable
from skyweave.store.schema import (
    ACTIVITY,
    ATTEMPT,
    PRODUCT,
    RUN,
    SCHEMA_REVISION,
    USAGE,
    VERSION_TABLE,
    activities,
    attempts,
    controller_lease,
    encode_json,
    insert_new,
    products,
    runs,
    upsert,
    usages,
)
from skyweave.store.tasks_sql import TaskRegistry
from skyweave.store.tokens_sql import TokenRegistry
from skyweave.store.triggers_sql import TriggerLedger
from skyweave.store.workflows_sql import WorkflowRegistry

log = logging.getLogger(__name__)

MIGRATION_LOCK = 0x736B7977  # "skyw"
"""Advisory lock key held while a process migrates the store (others wait, then find it done)."""

FENCED_IDLE_MS = 3000
"""A fenced transaction (a controller's ``apply``) that sits idle this long is ended by the server:
a controller frozen mid-transaction (paused, swapped out) would otherwise hold its share lock on
the lease row, and so keep a standby from taking an expired lease, for as long as it stays frozen.
Ended, the transaction did not commit; the frozen controller, woken, retries and finds the lease
gone (``LeaseLostError``)."""

CONNECT_TIMEOUT_S = 10
"""Seconds to wait for the server to accept a connection."""

_DRIVER = "postgresql+psycopg"
_IDS = ARRAY(String)
"""Ids bound as one array parameter (``= ANY(:ids)``): one statement however many there are."""


def engine_url(url: str) -> URL:
    """The SQLAlchemy URL for a store URL: the psycopg 3 driver, whatever alias was given."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        shown = re.sub(r"//[^/@]*@", "//", url, count=1)  # never a password in a message
        raise StoreError(f"cannot parse the store URL {shown!r}",
                         hint="write postgresql://user@host:5432/database", store=shown) from exc
    backend, _, driver = parsed.drivername.lower().partition("+")
    if backend not in {"postgresql", "postgres"} or driver not in {"", "psycopg"}:
        raise StoreError(f"unsupported PostgreSQL driver {parsed.drivername!r} in the store URL",
                         hint="write postgresql:// or postgresql+psycopg:// (psycopg 3 is the driver)",
                         store=parsed.render_as_string(hide_password=True))
    if not parsed.database:
        raise StoreError("the store URL names no database",
                         hint="write postgresql://user@host:5432/database",
                         store=parsed.render_as_string(hide_password=True))
    return parsed.set(drivername=_DRIVER)


def _json_text(value: Any) -> str:
    """Bind JSON as text: record fields arrive already encoded (``RecordCodec.to_row``)."""
    return value if isinstance(value, str) else encode_json(value)


def _json_raw(value: bytes) -> bytes:
    """Leave ``JSONB`` results as the server's text: ``RecordCodec.from_row`` decodes them."""
    return value


@retry_unavailable
class PostgreSQLStore(RecordQueries, TaskRegistry, CatalogueQueries, LineageQueries, ControllerLease,
                      TokenRegistry, TriggerLedger, WorkflowRegistry, Store):
    """The store in a PostgreSQL database; see the module docstring."""

    def __init__(self, url: str, *, pool_size: int = DEFAULT_POOL_SIZE,
                 retry_s: float = DEFAULT_RETRY_S) -> None:
        target = engine_url(url)
        self.url = make_url(url).render_as_string(hide_password=True)
        self.retry_s = retry_s
        """Seconds an operation waits for an unreachable server before it raises (``store.retry``)."""
        # a host that does not answer is an error after CONNECT_TIMEOUT_S, not a hang (unless the
        # URL says otherwise)
        timeout = {} if "connect_timeout" in target.query else {"connect_timeout": CONNECT_TIMEOUT_S}
        self._engine = create_engine(
            target, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
            json_serializer=_json_text, json_deserializer=_json_raw, connect_args=timeout)
        self._writer = self._engine  # TaskRegistry and CatalogueQueries write through ``_writer``
        event.listen(self._engine, "handle_error", self._unavailable)
        try:
            self._migrate()
        except BaseException:
            self._engine.dispose()
            raise
        dialect = self._engine.dialect
        self._upserts = (upsert(dialect, runs, ["id"]), upsert(dialect, activities, ["id"]),
                         upsert(dialect, attempts, ["activity_id", "attempt"]))
        self._inserts = (insert_new(dialect, products, ["id"]),
                         insert_new(dialect, usages, ["activity_id", "product_id", "role"]))

    def __repr__(self) -> str:
        return f"PostgreSQLStore({self.url!r})"

    def _unavailable(self, context: ExceptionContext) -> None:
        """Turn a lost or refused connection (at connect or mid-statement) into a retryable
        ``StoreUnavailableError``; other errors (constraints, bad SQL) stay what they are."""
        if context.is_disconnect or isinstance(context.original_exception, psycopg.OperationalError):
            raise StoreUnavailableError(
                f"cannot reach the PostgreSQL store {self.url}: "
                f"{str(context.original_exception).strip() or type(context.original_exception).__name__}",
                hint="check that the server runs and the URL (host, port, user, database) is right; "
                     "what was being written did not commit and can be tried again",
                store=self.url) from context.sqlalchemy_exception

    @retried
    def _migrate(self) -> None:
        """Bring the schema to ``SCHEMA_REVISION`` (one query when it is there already)."""
        with self._engine.connect() as conn:
            if current_revision(conn) == SCHEMA_REVISION:
                return
        with self._engine.begin() as conn:
            conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK)))
            names = set(inspect(conn).get_table_names())
            if names and VERSION_TABLE not in names:
                shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
                schema = conn.execute(select(func.current_schema())).scalar()
                raise StoreError(
                    f"{self.url} is a PostgreSQL database but not a skyweave store (schema {schema!r} "
                    f"has tables {shown})",
                    hint="give skyweave a database of its own, or a schema of its own with "
                         "?options=-csearch_path%3Dschema_name", store=self.url)
            upgrade(conn, self.url)

    # -- writes ---------------------------------------------------------------------------------
    def apply(self, changes: Changeset) -> None:
        # an upsert's last row for a key is what the table ends with: write only that one, at the
        # place of the first (the row's seq), as SQLiteStore does
        run_upsert, activity_upsert, attempt_upsert = self._upserts
        product_insert, usage_insert = self._inserts
        batches = [
            (run_upsert, [RUN.to_row(r) for r in {r.id: r for r in changes.runs}.values()]),
            (activity_upsert, [ACTIVITY.to_row(a) for a in {a.id: a for a in changes.activities}.values()]),
            (attempt_upsert,
             [ATTEMPT.to_row(a) for a in {(a.activity_id, a.attempt): a for a in changes.attempts}.values()]),
            (product_insert, [PRODUCT.to_row(p) for p in changes.products]),
            (usage_insert, [USAGE.to_row(u) for u in changes.usages]),
        ]
        if not any(rows for _, rows in batches):
            return
        with self._engine.begin() as conn:
            if changes.lease_owner:  # fencing: FOR SHARE holds off a takeover until this commits
                conn.exec_driver_sql(f"SET LOCAL idle_in_transaction_session_timeout = {FENCED_IDLE_MS}")
                lease = controller_lease.c
                row = conn.execute(select(lease.owner, lease.expires_at).where(lease.id == 1)
                                   .with_for_update(read=True)).first()
                check_fence(changes.lease_owner, None if row is None else (row[0], row[1]), time.time())
            for stmt, rows in batches:
                if rows:
                    conn.execute(stmt, rows)

    def mark_products(self, ids: Sequence[str], state: str) -> None:
        if ids:
            with self._engine.begin() as conn:
                conn.execute(update(products).where(products.c.id == any_(bindparam("ids", type_=_IDS)))
                             .values(state=state), {"ids": list(ids)})

    # -- reads ----------------------------------------------------------------------------------
    def _attribute_equals(self, key: str, value: Any) -> ColumnElement[bool]:
        document = type_coerce(products.c.attributes, JSONB)
        item = document[key]
        if value is None:  # missing or JSON null, as json_extract on SQLite
            return or_(item.is_(None), item == literal("null", JSONB))
        # @> lets the GIN index find candidates; -> = keeps the match exact (an array attribute
        # contains more than the array asked for, but does not equal it)
        return document.op("@>", is_comparison=True)(literal(encode_json({key: value}), JSONB)) & (
            item == literal(encode_json(value), JSONB))

    def close(self) -> None:
        self._engine.dispose()
