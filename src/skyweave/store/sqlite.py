"""``SQLiteStore``: the embedded store, one SQLite file shared by several processes.

The controller, workers and CLI each open the same file; SQLite's WAL mode lets readers run while
one writer commits.  Choices made for speed and for sharing:

* one SQLAlchemy engine per store object; every connection gets ``journal_mode=WAL``,
  ``synchronous=NORMAL`` (durable at checkpoints, never corrupt), a 30 s ``busy_timeout`` and
  ``foreign_keys=OFF`` (ids are checked by the controller, not per row);
* transactions are begun by us, not by the driver: writes with ``BEGIN IMMEDIATE``, which takes
  the write lock up front so a writer waits for another (``busy_timeout``) instead of failing when
  its snapshot turns stale; reads with a plain ``BEGIN`` for a consistent snapshot;
* a ``Changeset`` is encoded (msgspec JSON) before the transaction starts and written with one
  ``executemany`` per table: ``INSERT ... ON CONFLICT DO UPDATE`` for runs, activities and attempts,
  ``ON CONFLICT DO NOTHING`` for products (first registration wins), and usages;
* the controller's per-step calls (``apply``, ``find_reusable``) skip SQLAlchemy's per-call work:
  their SQL is compiled once and run on a pooled connection's sqlite3 handle (a one-activity
  ``apply`` went from ~90 to ~30 µs, a cache lookup from ~240 to ~25 µs; W2 in bench/ pays both
  once per step).  Same transactions: ``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on error;
* WAL checkpoints (copying the log into the database, with an fsync) run in a background thread
  of the store that writes (``CHECKPOINT_S`` after a write, ``PRAGMA wal_checkpoint(PASSIVE)``:
  it never blocks a writer), not in whichever commit crossed SQLite's 1000-page mark: that commit
  took 3-10 ms, which in a chain of 0.6 ms steps (W2 in bench/) was a tenth of the time.  SQLite's
  own checkpoint stays as a backstop at ``AUTOCHECKPOINT_PAGES``.  Durability is unchanged (a
  commit is durable in the WAL, as before).

The file is checked before anything writes to it (``migrations.probe_sqlite_file``): a file that
is not a SQLite database, a database holding someone else's tables, or an empty file, is refused
untouched.  A new store is built in a temporary file beside its path and hard-linked into place
whole (``_create``), so no process ever sees a half-made store, and an empty or table-less file at
a store's path always means something went wrong (a truncated store) rather than a store being
born: two processes creating the same store both build one, the first link wins and the other
opens it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    create_engine,
    event,
    select,
    update,
)
from sqlalchemy.engine import URL

from skyweave.model.records import ActivityRecord, Changeset
from skyweave.store.base import Store, check_fence
from skyweave.store.catalogue_sql import CatalogueQueries
from skyweave.store.lease_sql import ControllerLease
from skyweave.store.lineage_sql import LineageQueries
from skyweave.store.migrations import SIDECARS, probe_sqlite_file, upgrade
from skyweave.store.records_sql import RecordQueries
from skyweave.store.schema import (
    ACTIVITY,
    ATTEMPT,
    PRODUCT,
    RUN,
    USAGE,
    activities,
    attempts,
    controller_lease,
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

BUSY_TIMEOUT_MS = 30_000
"""How long a writer waits for another process's write transaction before giving up."""


CHECKPOINT_S = 0.25
"""How soon after a write the store's background thread checkpoints the WAL."""
AUTOCHECKPOINT_PAGES = 10_000
"""SQLite checkpoints in the committing thread only when the WAL holds this many pages (40 MB):
a backstop, should the background thread fall behind."""


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # the driver must not BEGIN on its own; see _on_begin
    cursor = dbapi_connection.cursor()
    for pragma in (f"busy_timeout={BUSY_TIMEOUT_MS}", "journal_mode=WAL", "synchronous=NORMAL",
                   "foreign_keys=OFF", "cache_size=-32768", f"wal_autocheckpoint={AUTOCHECKPOINT_PAGES}"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _on_begin(connection: Connection) -> None:
    write = connection.get_execution_options().get("skyweave_write", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _engine(path: Path) -> Engine:
    # URL.create, not the string: a path may hold characters a URL parser would split on.
    engine = create_engine(URL.create("sqlite", database=str(path)))
    event.listen(engine, "connect", _on_connect)
    event.listen(engine, "begin", _on_begin)
    return engine


def _create(path: Path, url: str) -> None:
    """Build a new store in a temporary file beside ``path`` and link it into place whole; if a
    file appeared at ``path`` meanwhile (another process's new store), leave that one alone."""
    partial = path.with_name(f".{path.name}.new-{os.getpid()}-{threading.get_ident()}")
    engine = _engine(partial)
    try:
        with engine.execution_options(skyweave_write=True).begin() as conn:
            upgrade(conn, url)
        engine.dispose()  # the last connection closing checkpoints the WAL into the file
        try:
            os.link(partial, path)
        except FileExistsError:
            pass  # another process linked its new store first: that one is the store
        except OSError:  # a file system without hard links: a rename, if the path is still free
            if not path.exists():
                os.replace(partial, path)
    finally:
        engine.dispose()
        for leftover in (partial, *(partial.with_name(partial.name + s) for s in SIDECARS)):
            leftover.unlink(missing_ok=True)


class SQLiteStore(RecordQueries, TaskRegistry, CatalogueQueries, LineageQueries, ControllerLease,
                  TokenRegistry, TriggerLedger, WorkflowRegistry, Store):
    """The store in one SQLite file; see the module docstring for how it is shared and kept fast.
    Reads come from ``RecordQueries``, the task registry from ``TaskRegistry``, lineage queries
    (recursive SQL) from ``LineageQueries``: SQL shared with other SQL backends."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).absolute()
        self.url = f"sqlite:///{self.path}"
        state = probe_sqlite_file(self.path, self.url)
        if state == "new":
            _create(self.path, self.url)
            state = probe_sqlite_file(self.path, self.url)  # ours, or another process's if it won
        self._engine = _engine(self.path)
        self._writer = self._engine.execution_options(skyweave_write=True)
        """The same engine, but its transactions begin with ``BEGIN IMMEDIATE``: use it for writes."""
        if state != "current":
            try:
                with self._writer.begin() as conn:
                    upgrade(conn, self.url)
            except BaseException:
                self._engine.dispose()
                raise
        self._written = threading.Event()
        """Set by every write; the checkpoint thread (started by the first write) clears it."""
        self._closing = threading.Event()
        self._checkpointer: threading.Thread | None = None
        self._compiled: dict[tuple[int, tuple[str, ...]], tuple[str, tuple[str, ...]] | None] = {}
        dialect = self._writer.dialect
        self._upsert_runs = upsert(dialect, runs, ["id"])
        self._upsert_activities = upsert(dialect, activities, ["id"])
        self._upsert_attempts = upsert(dialect, attempts, ["activity_id", "attempt"])
        self._insert_products = insert_new(dialect, products, ["id"])
        self._insert_usages = insert_new(dialect, usages, ["activity_id", "product_id", "role"])
        columns = str(select(*ACTIVITY.columns).compile(dialect=dialect))
        state_col, key_col, seq_col = (str(c.compile(dialect=dialect)) for c in (
            activities.c.state, activities.c.cache_key, activities.c.seq))
        self._reusable_sql = (f"{columns} WHERE {key_col} IN ({{marks}}) AND {state_col} = 'succeeded' "
                              f"ORDER BY {seq_col}")
        """``find_reusable``'s query, ``marks`` to be filled with one ``?`` per cache key."""

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    # -- writes ---------------------------------------------------------------------------------
    def apply(self, changes: Changeset) -> None:
        # Encode everything first: the write lock is held only for the inserts themselves.
        # an upsert's last row for a key is what the table ends with: write only that one, at the
        # place of the first (the row's seq); the controller often records a new activity twice
        # in a step (created, then dispatched once its cache check is answered)
        batches = [
            (self._upsert_runs, [RUN.to_row(r) for r in {r.id: r for r in changes.runs}.values()]),
            (self._upsert_activities,
             [ACTIVITY.to_row(a) for a in {a.id: a for a in changes.activities}.values()]),
            (self._upsert_attempts,
             [ATTEMPT.to_row(a) for a in {(a.activity_id, a.attempt): a for a in changes.attempts}.values()]),
            (self._insert_products, [PRODUCT.to_row(p) for p in changes.products]),
            (self._insert_usages, [USAGE.to_row(u) for u in changes.usages]),
        ]
        if not any(rows for _, rows in batches):
            return
        work: list[tuple[str, list[tuple[Any, ...]]]] = []
        for stmt, rows in batches:
            if not rows:
                continue
            plan = self._plan(stmt, rows[0])
            if plan is None:  # a default or expression to evaluate: SQLAlchemy's way
                self._apply_slowly(batches, changes.lease_owner)
                return
            sql, order = plan  # rows encoded as parameter tuples before the write lock is taken
            work.append((sql, [tuple(row[k] for k in order) for row in rows]))
        with self._raw(write=True) as db:
            if changes.lease_owner:  # fencing, under the write lock: no takeover can slip in
                row = db.execute("SELECT owner, expires_at FROM controller_lease WHERE id = 1").fetchone()
                check_fence(changes.lease_owner, None if row is None else (row[0], row[1]), time.time())
            for sql, params in work:
                db.executemany(sql, params)
        self._wrote()

    def _wrote(self) -> None:
        """Have the WAL checkpointed soon, off the writer's path (see the module docstring)."""
        self._written.set()
        if self._checkpointer is None and not self._closing.is_set():
            self._checkpointer = threading.Thread(
                target=_checkpoints, args=(weakref.ref(self), self._written, self._closing),
                name="skyweave-store-checkpoint", daemon=True)
            self._checkpointer.start()

    def checkpoint(self) -> None:
        """Copy what the WAL holds into the database file, without waiting for readers or writers
        (``PASSIVE``): what a reader still uses, or a writer adds meanwhile, waits for the next."""
        pooled = self._engine.raw_connection()
        try:
            driver = pooled.driver_connection
            assert driver is not None
            driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            pooled.close()

    def _apply_slowly(self, batches: list[tuple[Any, list[dict[str, Any]]]], lease_owner: str) -> None:
        with self._writer.begin() as conn:
            if lease_owner:
                lease = controller_lease.c
                row = conn.execute(select(lease.owner, lease.expires_at).where(lease.id == 1)).first()
                check_fence(lease_owner, None if row is None else (row[0], row[1]), time.time())
            for stmt, rows in batches:
                if rows:
                    conn.execute(stmt, rows)
        self._wrote()

    def _plan(self, stmt: Any, row: dict[str, Any]) -> tuple[str, tuple[str, ...]] | None:
        """``stmt``'s SQL for rows with ``row``'s columns and the order its parameters take,
        compiled once per column set; ``None`` when it needs a value SQLAlchemy computes."""
        keys = tuple(row)
        cache_key = (id(stmt), keys)
        if cache_key not in self._compiled:
            compiled = stmt.compile(dialect=self._writer.dialect, column_keys=list(keys))
            order = tuple(compiled.positiontup or ())
            self._compiled[cache_key] = None if set(order) - set(keys) else (str(compiled), order)
        return self._compiled[cache_key]

    @contextmanager
    def _raw(self, *, write: bool) -> Iterator[Any]:
        """A pooled connection's sqlite3 handle inside a transaction of our own (``BEGIN
        IMMEDIATE`` for a write, ``BEGIN`` for a consistent read), committed at the end and rolled
        back on any error.  For the per-step hot paths; everything else goes through SQLAlchemy."""
        pooled = self._engine.raw_connection()
        try:
            db = pooled.driver_connection
            assert db is not None
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            pooled.close()

    def find_reusable(self, cache_keys: Sequence[str]) -> dict[str, ActivityRecord]:
        found: dict[str, ActivityRecord] = {}
        keys = list(dict.fromkeys(cache_keys))
        if not keys:
            return found
        with self._raw(write=False) as db:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                sql = self._reusable_sql.format(marks=", ".join("?" * len(chunk)))
                for row in db.execute(sql, chunk):
                    rec = ACTIVITY.from_row(row)
                    if rec.cache_key is not None:
                        found[rec.cache_key] = rec  # ordered by seq: the latest wins
        return found

    def mark_products(self, ids: Sequence[str], state: str) -> None:
        if ids:
            with self._writer.begin() as conn:
                conn.execute(update(products).where(products.c.id == bindparam("b_id")).values(state=state),
                             [{"b_id": i} for i in ids])

    def close(self) -> None:
        self._closing.set()
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            self._written.set()  # wake it: it sees the store closing and stops
            checkpointer.join(timeout=10)
        self._engine.dispose()


def _checkpoints(ref: weakref.ReferenceType[SQLiteStore], written: threading.Event,
                 closing: threading.Event) -> None:
    """The checkpoint thread: ``CHECKPOINT_S`` after a write, checkpoint; stop once the store is
    closing or gone (it holds the store only while it checkpoints)."""
    while True:
        written.wait(timeout=60.0)  # a timeout: notice a store dropped without close()
        # let the writes of a busy stretch pile up: one checkpoint for all
        if closing.wait(CHECKPOINT_S) or ref() is None:
            return
        if not written.is_set():
            continue
        store = ref()
        if store is None:
            return
        written.clear()
        try:
            store.checkpoint()
        except Exception:  # a checkpoint is an optimisation: SQLite's own backstop remains
            log.debug("WAL checkpoint of %s failed", store, exc_info=True)
        del store


