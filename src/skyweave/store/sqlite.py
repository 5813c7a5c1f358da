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
  ``ON CONFLICT DO NOTHING`` for products (first registration wins), usages, events and outbox.

The file is checked before anything writes to it (``migrations.probe_sqlite_file``): a file that
is not a SQLite database, or a database holding someone else's tables, is refused untouched.
"""

from __future__ import annotations

import difflib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import (
    ColumnElement,
    Connection,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.engine import URL

from skyweave.errors import DefinitionError, NotFoundError, UnknownTaskError
from skyweave.model.records import (
    ActivityRecord,
    AttemptRecord,
    Changeset,
    EventRecord,
    OutboxRecord,
    ProductRecord,
    RunRecord,
    UsageRecord,
)
from skyweave.model.specs import TaskSpec
from skyweave.store.base import Store
from skyweave.store.catalogue_sql import CatalogueQueries, catalogue_filters
from skyweave.store.lineage_sql import LineageQueries
from skyweave.store.migrations import probe_sqlite_file, upgrade
from skyweave.store.schema import (
    ACTIVITY,
    ATTEMPT,
    EVENT,
    OUTBOX,
    PRODUCT,
    RUN,
    USAGE,
    activities,
    attempts,
    controller_lease,
    encode_json,
    events,
    outbox,
    products,
    runs,
    task_routes,
    tasks,
    usages,
)

BUSY_TIMEOUT_MS = 30_000
"""How long a writer waits for another process's write transaction before giving up."""

PRODUCT_COLUMN_KEYS = frozenset({"obs_id", "detector", "version", "name", "type"})
"""``find_products(match=...)`` keys that are product columns; any other key is an attribute."""

_TASK_DECODER = msgspec.json.Decoder(TaskSpec)


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # the driver must not BEGIN on its own; see _on_begin
    cursor = dbapi_connection.cursor()
    for pragma in (f"busy_timeout={BUSY_TIMEOUT_MS}", "journal_mode=WAL", "synchronous=NORMAL",
                   "foreign_keys=OFF", "cache_size=-32768"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _on_begin(connection: Connection) -> None:
    write = connection.get_execution_options().get("skyweave_write", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _upsert(table: Any, keys: Sequence[str]) -> Any:
    stmt = insert(table)
    updated = {c.name: stmt.excluded[c.name] for c in table.c if c.name not in keys and c.name != "seq"}
    return stmt.on_conflict_do_update(index_elements=list(keys), set_=updated)


def _insert_new(table: Any, keys: Sequence[str]) -> Any:
    return insert(table).on_conflict_do_nothing(index_elements=list(keys))


class SQLiteStore(CatalogueQueries, LineageQueries, Store):
    """The store in one SQLite file; see the module docstring for how it is shared and kept fast.
    Lineage queries (recursive SQL) come from ``LineageQueries``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).absolute()
        self.url = f"sqlite:///{self.path}"
        state = probe_sqlite_file(self.path, self.url)
        # URL.create, not the string: a path may hold characters a URL parser would split on.
        self._engine = create_engine(URL.create("sqlite", database=str(self.path)))
        event.listen(self._engine, "connect", _on_connect)
        event.listen(self._engine, "begin", _on_begin)
        self._writer = self._engine.execution_options(skyweave_write=True)
        """The same engine, but its transactions begin with ``BEGIN IMMEDIATE``: use it for writes."""
        if state != "current":
            try:
                with self._writer.begin() as conn:
                    upgrade(conn, self.url)
            except BaseException:
                self._engine.dispose()
                raise
        self._compiled: dict[tuple[int, tuple[str, ...]], tuple[str, tuple[str, ...]]] = {}
        self._upsert_runs = _upsert(runs, ["id"])
        self._upsert_activities = _upsert(activities, ["id"])
        self._upsert_attempts = _upsert(attempts, ["activity_id", "attempt"])
        self._insert_products = _insert_new(products, ["id"])
        self._insert_usages = _insert_new(usages, ["activity_id", "product_id", "role"])
        self._insert_events = _insert_new(events, ["id"])
        self._insert_outbox = _insert_new(outbox, ["id"])

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    # -- writes ---------------------------------------------------------------------------------
    def apply(self, changes: Changeset) -> None:
        # Encode everything first: the write lock is held only for the inserts themselves.
        batches = [
            (self._upsert_runs, [RUN.to_row(r) for r in changes.runs]),
            (self._upsert_activities, [ACTIVITY.to_row(a) for a in changes.activities]),
            (self._upsert_attempts, [ATTEMPT.to_row(a) for a in changes.attempts]),
            (self._insert_products, [PRODUCT.to_row(p) for p in changes.products]),
            (self._insert_usages, [USAGE.to_row(u) for u in changes.usages]),
            (self._insert_events, [EVENT.to_row(e) for e in changes.events]),
            (self._insert_outbox, [OUTBOX.to_row(o) for o in changes.outbox]),
        ]
        if not any(rows for _, rows in batches) and not changes.outbox_published:
            return
        with self._writer.begin() as conn:
            for stmt, rows in batches:
                if rows:
                    self._executemany(conn, stmt, rows)
            if changes.outbox_published:
                conn.execute(delete(outbox).where(outbox.c.id == bindparam("b_id")),
                             [{"b_id": i} for i in changes.outbox_published])

    def _executemany(self, conn: Any, stmt: Any, rows: list[dict[str, Any]]) -> None:
        """Run a Core statement for many rows, compiled once per column set and handed straight to
        sqlite3's executemany: SQLAlchemy's per-row parameter processing cost more than SQLite."""
        keys = tuple(rows[0])
        cached = self._compiled.get((id(stmt), keys))
        if cached is None:
            compiled = stmt.compile(dialect=self._writer.dialect, column_keys=list(keys))
            order = tuple(compiled.positiontup or ())
            if set(order) - set(keys):  # a default or expression we cannot pass through: slow path
                conn.execute(stmt, rows)
                return
            cached = self._compiled[(id(stmt), keys)] = (str(compiled), order)
        sql, order = cached
        conn.exec_driver_sql(sql, [tuple(row[k] for k in order) for row in rows])

    def clear_outbox(self, ids: Sequence[str]) -> None:
        if ids:
            with self._writer.begin() as conn:
                conn.execute(delete(outbox).where(outbox.c.id == bindparam("b_id")),
                             [{"b_id": i} for i in ids])

    def mark_products(self, ids: Sequence[str], state: str) -> None:
        if ids:
            with self._writer.begin() as conn:
                conn.execute(update(products).where(products.c.id == bindparam("b_id")).values(state=state),
                             [{"b_id": i} for i in ids])

    def register_task(self, spec: TaskSpec, *, make_current: bool = True) -> None:
        """Add ``spec``; re-registering an identical spec is a no-op, a different one is refused.

        The first version registered under a name becomes current even with ``make_current=False``
        (a task must route somewhere); later ones only when ``make_current`` is true.
        """
        now = time.time()
        with self._writer.begin() as conn:
            stored = conn.execute(select(tasks.c.spec).where(
                tasks.c.name == spec.name, tasks.c.version == spec.version)).scalar_one_or_none()
            if stored is None:
                conn.execute(insert(tasks), {"name": spec.name, "version": spec.version,
                                             "spec": encode_json(spec), "code_hash": spec.code_hash,
                                             "registered_at": now})
            elif _TASK_DECODER.decode(stored) != spec:
                raise DefinitionError(
                    f"task {spec.key!r} is already registered with a different definition",
                    hint="give the changed task a new version (e.g. bump it in @task(version=...)) and "
                         "register that; a registered version never changes",
                    task=spec.name, version=spec.version)
            routed = conn.execute(select(task_routes.c.version).where(
                task_routes.c.name == spec.name)).scalar_one_or_none()
            if make_current or routed is None:
                self._route(conn, spec.name, spec.version, now)

    def set_current_version(self, name: str, version: str) -> None:
        with self._writer.begin() as conn:
            exists = conn.execute(select(tasks.c.version).where(
                tasks.c.name == name, tasks.c.version == version)).scalar_one_or_none()
            if exists is None:
                raise self._unknown_task(conn, name, version)
            self._route(conn, name, version, time.time())

    @staticmethod
    def _route(conn: Connection, name: str, version: str, now: float) -> None:
        stmt = insert(task_routes).values(name=name, version=version, updated_at=now)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=["name"], set_={"version": version, "updated_at": now}))

    # -- reads ----------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> RunRecord:
        with self._engine.connect() as conn:
            row = conn.execute(select(*RUN.columns).where(runs.c.id == run_id)).first()
        if row is None:
            raise NotFoundError(f"no run {run_id!r} in store {self.url}",
                                hint="list runs with `skyweave runs`", kind="run", id=run_id)
        return RUN.from_row(row)

    def list_runs(self, *, states: Sequence[str] | None = None, limit: int = 100) -> list[RunRecord]:
        query = select(*RUN.columns).order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit)
        if states is not None:
            query = query.where(runs.c.state.in_(list(states)))
        with self._engine.connect() as conn:
            return [RUN.from_row(row) for row in conn.execute(query)]

    def get_activity(self, activity_id: str) -> ActivityRecord:
        with self._engine.connect() as conn:
            row = conn.execute(select(*ACTIVITY.columns).where(activities.c.id == activity_id)).first()
        if row is None:
            raise NotFoundError(f"no activity {activity_id!r} in store {self.url}",
                                hint="list a run's activities with `skyweave status <run-id>`",
                                kind="activity", id=activity_id)
        return ACTIVITY.from_row(row)

    def list_activities(
        self,
        *,
        run_id: str | None = None,
        states: Sequence[str] | None = None,
        task_name: str | None = None,
        limit: int | None = None,
    ) -> list[ActivityRecord]:
        query = select(*ACTIVITY.columns).order_by(activities.c.seq).limit(limit)
        if run_id is not None:
            query = query.where(activities.c.run_id == run_id)
        if states is not None:
            query = query.where(activities.c.state.in_(list(states)))
        if task_name is not None:
            query = query.where(activities.c.task_name == task_name)
        with self._engine.connect() as conn:
            return [ACTIVITY.from_row(row) for row in conn.execute(query)]

    def find_reusable(self, cache_keys: Sequence[str]) -> dict[str, ActivityRecord]:
        found: dict[str, ActivityRecord] = {}
        keys = list(dict.fromkeys(cache_keys))
        with self._engine.connect() as conn:
            for start in range(0, len(keys), 500):
                query = (select(*ACTIVITY.columns)
                         .where(activities.c.cache_key.in_(keys[start:start + 500]))
                         .where(activities.c.state == "succeeded")
                         .order_by(activities.c.seq))
                for row in conn.execute(query):
                    rec = ACTIVITY.from_row(row)
                    if rec.cache_key is not None:
                        found[rec.cache_key] = rec  # ordered by seq: the latest wins
        return found

    def count_activities(self, run_id: str) -> dict[str, int]:
        query = (select(activities.c.state, func.count()).where(activities.c.run_id == run_id)
                 .group_by(activities.c.state))
        with self._engine.connect() as conn:
            return dict(conn.execute(query).all())

    def list_attempts(self, activity_id: str) -> list[AttemptRecord]:
        query = (select(*ATTEMPT.columns).where(attempts.c.activity_id == activity_id)
                 .order_by(attempts.c.attempt))
        with self._engine.connect() as conn:
            return [ATTEMPT.from_row(row) for row in conn.execute(query)]

    def get_product(self, product_id: str) -> ProductRecord:
        with self._engine.connect() as conn:
            row = conn.execute(select(*PRODUCT.columns).where(products.c.id == product_id)).first()
        if row is None:
            raise NotFoundError(f"no product {product_id!r} in store {self.url}",
                                hint="search products with `skyweave products`",
                                kind="product", id=product_id)
        return PRODUCT.from_row(row)

    def find_products(
        self,
        *,
        type: str | None = None,
        match: dict[str, Any] | None = None,
        run_id: str | None = None,
        activity_id: str | None = None,
        state: str | None = "available",
        limit: int | None = None,
        version: str | None = None,
        name: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        pinned: bool | None = None,
    ) -> list[ProductRecord]:
        """Products matching every given field, newest first.

        ``match`` keys in ``PRODUCT_COLUMN_KEYS`` compare columns; other keys compare the product's
        attributes (``json_extract``).  ``None`` matches a missing or null value.
        """
        criteria: dict[str, Any] = {"type": type} if type is not None else {}
        criteria.update(match or {})
        if run_id is not None:
            criteria["run_id"] = run_id
        if activity_id is not None:
            criteria["activity_id"] = activity_id
        if state is not None:
            criteria["state"] = state
        query = select(*PRODUCT.columns).order_by(products.c.created_at.desc(), products.c.id.desc())
        for key, value in criteria.items():
            query = query.where(_product_criterion(key, value))
        query = query.where(*catalogue_filters(version=version, name=name, created_after=created_after,
                                               created_before=created_before, pinned=pinned))
        with self._engine.connect() as conn:
            return [PRODUCT.from_row(row) for row in conn.execute(query.limit(limit))]

    def list_usages(self, *, activity_id: str | None = None, product_id: str | None = None
                    ) -> list[UsageRecord]:
        query = select(*USAGE.columns).order_by(usages.c.activity_id, usages.c.role, usages.c.product_id)
        if activity_id is not None:
            query = query.where(usages.c.activity_id == activity_id)
        if product_id is not None:
            query = query.where(usages.c.product_id == product_id)
        with self._engine.connect() as conn:
            return [USAGE.from_row(row) for row in conn.execute(query)]

    def get_task(self, name: str, version: str | None = None) -> TaskSpec:
        with self._engine.connect() as conn:
            if version is None:
                version = conn.execute(select(task_routes.c.version).where(
                    task_routes.c.name == name)).scalar_one_or_none()
            stored = None if version is None else conn.execute(select(tasks.c.spec).where(
                tasks.c.name == name, tasks.c.version == version)).scalar_one_or_none()
            if stored is None:
                raise self._unknown_task(conn, name, version)
        return _TASK_DECODER.decode(stored)

    def list_tasks(self) -> list[tuple[TaskSpec, bool]]:
        query = (select(tasks.c.spec, task_routes.c.version == tasks.c.version)
                 .outerjoin(task_routes, task_routes.c.name == tasks.c.name)
                 .order_by(tasks.c.name, tasks.c.registered_at, tasks.c.version))
        with self._engine.connect() as conn:
            return [(_TASK_DECODER.decode(spec), bool(current)) for spec, current in conn.execute(query)]

    def _unknown_task(self, conn: Connection, name: str, version: str | None) -> UnknownTaskError:
        names = list(conn.execute(select(tasks.c.name).distinct().order_by(tasks.c.name)).scalars())
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            return UnknownTaskError(
                f"no task named {name!r} — registered: {', '.join(names) or '(none)'}",
                hint=f"did you mean {close[0]!r}?" if close
                else "register the task first (`skyweave registry`), or check --store",
                task=name, known=names, store=self.url)
        versions = list(conn.execute(select(tasks.c.version).where(tasks.c.name == name)
                                     .order_by(tasks.c.registered_at)).scalars())
        return UnknownTaskError(
            f"task {name!r} has no version {version!r} — registered versions: {', '.join(versions)}",
            hint="register that version first, or pick one of these",
            task=name, version=version, known=versions, store=self.url)

    def pending_outbox(self, limit: int = 10_000) -> list[OutboxRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(*OUTBOX.columns).order_by(outbox.c.seq).limit(limit))
            return [OUTBOX.from_row(row) for row in rows]

    def list_events(self, *, run_id: str | None = None, after_seq: int = 0, limit: int = 1000
                    ) -> list[EventRecord]:
        query = select(*EVENT.columns).where(events.c.seq > after_seq).order_by(events.c.seq).limit(limit)
        if run_id is not None:
            query = query.where(events.c.run_id == run_id)
        with self._engine.connect() as conn:
            return [EVENT.from_row(row) for row in conn.execute(query)]

    # -- controller lease -------------------------------------------------------------------------
    def acquire_controller_lease(self, owner: str, ttl_s: float, now: float) -> bool:
        lease = controller_lease.c
        stmt = insert(controller_lease).values(id=1, owner=owner, expires_at=now + ttl_s)
        stmt = stmt.on_conflict_do_update(
            index_elements=["id"],
            set_={"owner": owner, "expires_at": now + ttl_s},
            where=(lease.owner == owner) | (lease.expires_at <= now),
        )
        with self._writer.begin() as conn:
            conn.execute(stmt)
            holder = conn.execute(select(lease.owner).where(lease.id == 1)).scalar_one()
        return bool(holder == owner)

    def release_controller_lease(self, owner: str) -> None:
        with self._writer.begin() as conn:
            conn.execute(delete(controller_lease).where(controller_lease.c.owner == owner))

    def controller_lease_holder(self) -> tuple[str, float] | None:
        """``(owner, expires_at)`` as stored, expired or not (the caller knows what "now" is)."""
        lease = controller_lease.c
        with self._engine.connect() as conn:
            row = conn.execute(select(lease.owner, lease.expires_at).where(lease.id == 1)).first()
        return None if row is None else (str(row[0]), float(row[1]))

    def close(self) -> None:
        self._engine.dispose()


def _product_criterion(key: str, value: Any) -> ColumnElement[bool]:
    if key in PRODUCT_COLUMN_KEYS or key in {"run_id", "activity_id", "state"}:
        column = products.c[key]
        return column.is_(None) if value is None else column == value
    extracted: ColumnElement[Any] = func.json_extract(products.c.attributes, f'$."{key}"')
    if value is None:
        return extracted.is_(None)
    # json_extract returns objects and arrays as minified JSON text, scalars as SQL values.
    wanted: Any = encode_json(value) if isinstance(value, dict | list) else value
    return extracted == literal(wanted)
