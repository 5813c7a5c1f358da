"""Reading records back from a SQL store: runs, activities, attempts, products and
usages (``RecordQueries``).

Plain SQLAlchemy Core over the tables of ``schema``, shared by every SQL backend; the backend
provides ``_engine`` (reads take a plain connection) and ``url`` (named in errors).  Product
attributes are matched with ``json_extract``, which SQLite has built in (the PostgreSQL backend
overrides ``_attribute_equals`` with ``JSONB`` operators).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Engine, func, literal, select

from skyweave.errors import NotFoundError
from skyweave.model.records import (
    ActivityRecord,
    AttemptRecord,
    ProductRecord,
    RunRecord,
    UsageRecord,
)
from skyweave.store.base import ActivityGroup, Store
from skyweave.store.catalogue_sql import catalogue_filters
from skyweave.store.schema import (
    ACTIVITY,
    ATTEMPT,
    PRODUCT,
    RUN,
    RUN_HEAD,
    USAGE,
    activities,
    attempts,
    encode_json,
    products,
    runs,
    usages,
)

PRODUCT_COLUMN_KEYS = frozenset({"obs_id", "detector", "version", "name", "type"})
"""``find_products(match=...)`` keys that are product columns; any other key is an attribute."""


class RecordQueries(Store):
    """The record reads of ``Store`` for a SQL backend (see the module docstring)."""

    _engine: Engine
    url: str

    def get_run(self, run_id: str) -> RunRecord:
        with self._engine.connect() as conn:
            row = conn.execute(select(*RUN.columns).where(runs.c.id == run_id)).first()
        if row is None:
            raise NotFoundError(f"no run {run_id!r} in store {self.url}",
                                hint="list runs with `skyweave runs`", kind="run", id=run_id)
        return RUN.from_row(row)

    def get_run_head(self, run_id: str) -> RunRecord:
        with self._engine.connect() as conn:
            row = conn.execute(select(*RUN_HEAD.columns).where(runs.c.id == run_id)).first()
        if row is None:
            raise NotFoundError(f"no run {run_id!r} in store {self.url}",
                                hint="list runs with `skyweave runs`", kind="run", id=run_id)
        return RUN_HEAD.from_row(row)

    def list_runs(self, *, states: Sequence[str] | None = None, limit: int = 100,
                  graph: bool = True) -> list[RunRecord]:
        codec = RUN if graph else RUN_HEAD
        query = select(*codec.columns).order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit)
        if states is not None:
            query = query.where(runs.c.state.in_(list(states)))
        with self._engine.connect() as conn:
            return [codec.from_row(row) for row in conn.execute(query)]

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

    def activity_groups(self, run_id: str) -> list[ActivityGroup]:
        a = activities.c
        query = (select(a.node, func.min(a.task_name), a.state, func.count(), func.min(a.started_at),
                        func.max(a.ended_at))
                 .where(a.run_id == run_id).group_by(a.node, a.state).order_by(a.node, a.state))
        with self._engine.connect() as conn:
            return [ActivityGroup(node=str(n), task_name=str(t), state=str(s), count=int(c),
                                  first_started=None if f is None else float(f),
                                  last_ended=None if e is None else float(e))
                    for n, t, s, c, f, e in conn.execute(query).all()]

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
                                hint="search products with `skyweave products list`",
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
            query = query.where(self._product_criterion(key, value))
        query = query.where(*catalogue_filters(version=version, name=name, created_after=created_after,
                                               created_before=created_before, pinned=pinned))
        with self._engine.connect() as conn:
            return [PRODUCT.from_row(row) for row in conn.execute(query.limit(limit))]

    def list_usages(self, *, activity_id: str | None = None, product_id: str | None = None,
                    run_id: str | None = None) -> list[UsageRecord]:
        query = select(*USAGE.columns).order_by(usages.c.activity_id, usages.c.role, usages.c.product_id)
        if run_id is not None:
            query = query.where(usages.c.activity_id.in_(
                select(activities.c.id).where(activities.c.run_id == run_id).scalar_subquery()))
        if activity_id is not None:
            query = query.where(usages.c.activity_id == activity_id)
        if product_id is not None:
            query = query.where(usages.c.product_id == product_id)
        with self._engine.connect() as conn:
            return [USAGE.from_row(row) for row in conn.execute(query)]

    def _attribute_equals(self, key: str, value: Any) -> ColumnElement[bool]:
        """Product attribute ``key`` equals ``value`` (``None``: missing or null), as SQL.  SQLite's
        ``json_extract``; a backend with its own JSON type overrides this."""
        extracted = func.json_extract(products.c.attributes, f'$."{key}"')
        if value is None:
            return extracted.is_(None)
        # json_extract returns objects and arrays as minified JSON text, scalars as SQL values.
        wanted: Any = encode_json(value) if isinstance(value, dict | list) else value
        return extracted == literal(wanted)

    def _product_criterion(self, key: str, value: Any) -> ColumnElement[bool]:
        if key in PRODUCT_COLUMN_KEYS or key in {"run_id", "activity_id", "state"}:
            column = products.c[key]
            return column.is_(None) if value is None else column == value
        return self._attribute_equals(key, value)
