"""The store's tables, as SQLAlchemy Core metadata shared by every SQL backend.

Columns mirror the record structs of ``skyweave.model.records`` one to one, with three kinds of
translation:

* JSON-valued fields (parameters, results, errors, attributes, detours...) are ``TEXT`` holding
  JSON encoded by msgspec, read back byte for byte (key order, ``1e20`` a float).  Product
  ``attributes``, the one JSON column queried inside SQL (``find_products(match=...)``), is
  ``JSONB`` on PostgreSQL, with a GIN index (revision 0004); SQLite reads it with ``json_extract``.
  The other JSON columns stay ``TEXT`` on every backend: nothing queries inside them, and ``JSONB``
  would reorder their keys and turn a float without a fraction into an integer.
* Timestamps are ``REAL`` seconds since the Unix epoch (UTC): the engine's hot path writes hundreds
  of thousands of them, and converting to aware datetimes happens at the edges (CLI, API, exports).
* A few tables carry a ``seq`` integer the records do not have: it fixes insertion order
  (activities "in creation order") independently of clocks.

``RecordCodec`` (at the end) turns records into row dicts and rows back into records; the
backends use one per table.

The schema is created and evolved by the Alembic migrations in ``store/migrations``;
``tests/unit/store/test_contract.py`` checks that migrating an empty database yields exactly this
metadata, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import msgspec
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect

from skyweave.model.records import (
    ActivityRecord,
    AttemptRecord,
    Detour,
    ProductRecord,
    RunRecord,
    TokenRecord,
    UsageRecord,
    WorkflowRecord,
)

SCHEMA_REVISION = "0011"  # 0001 -> 0003 -> 0002 -> 0004 -> ... -> 0011 (see 0002_lineage_indexes.py)
"""The Alembic head revision this code expects; opening a store at this revision skips Alembic."""

VERSION_TABLE = "skyweave_version"
"""Alembic's version table, named so that a shared PostgreSQL database shows whose it is."""

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# An integer that aliases SQLite's rowid (cheap, monotonic) and is a BIGINT identity elsewhere.
Seq = BigInteger().with_variant(Integer(), "sqlite")

JSONText = Text().with_variant(JSONB(none_as_null=True), "postgresql")
"""A queried JSON column: text on SQLite, ``JSONB`` on PostgreSQL (values are bound as JSON text)."""

ONLY_ON = "only_on"
"""``info`` key of a schema item made on some dialects only (with ``ddl_if``): the dialect names.
``migrations.include_object`` leaves such items out of schema comparisons on other dialects."""

runs = Table(
    "runs",
    metadata,
    Column("id", String, primary_key=True),
    Column("workflow", String, nullable=False),
    Column("state", String, nullable=False),
    Column("workflow_ref", String, nullable=False),
    Column("params", Text, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("graph", Text, nullable=False),
    Column("pins", Text, nullable=False),
    Column("parent_run", String),
    Column("parent_activity", String),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("error", Text),
    Column("labels", Text, nullable=False),
    Column("workflow_hash", String, nullable=False, server_default=""),
    Index(None, "created_at"),
    Index(None, "state"),
)

activities = Table(
    "activities",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("id", String, nullable=False, unique=True),
    Column("run_id", String, nullable=False),
    Column("node", String, nullable=False),
    Column("task_name", String, nullable=False),
    Column("task_version", String, nullable=False),
    Column("state", String, nullable=False),
    Column("key", String, nullable=False),
    Column("code_hash", String, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("arguments", Text, nullable=False),
    Column("result", Text),
    Column("attempt", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("queued_at", Float, nullable=False),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("worker", String),
    Column("host", String),
    Column("exit_code", Integer),
    Column("command", Text),
    Column("image_digest", String),
    Column("error", Text),
    Column("log_uri", String),
    Column("usage", Text),
    Column("aspects", Text, nullable=False),
    Column("detours", Text, nullable=False),
    Column("parent_activity", String),
    Column("iteration", Integer, nullable=False),
    Column("cache_key", String),
    Index(None, "run_id", "state"),
    Index(None, "task_name", "task_version"),
    Index(None, "cache_key"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("activity_id", String, primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("state", String, nullable=False),
    Column("worker", String),
    Column("host", String),
    Column("pid", Integer),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("exit_code", Integer),
    Column("error", Text),
    Column("usage", Text),
    Column("image_digest", String),
)

products = Table(
    "products",
    metadata,
    Column("id", String, primary_key=True),
    Column("uri", String, nullable=False),
    Column("type", String, nullable=False),
    Column("name", String, nullable=False),
    Column("obs_id", String),
    Column("detector", String),
    Column("version", String),
    Column("checksum", String),
    Column("size", BigInteger),
    Column("created_at", Float, nullable=False),
    Column("activity_id", String),
    Column("run_id", String),
    Column("attributes", JSONText, nullable=False),
    Column("state", String, nullable=False),
    Column("pinned", Boolean(create_constraint=False), nullable=False, server_default=false()),
    # Not a ProductRecord field (rows are inserted without it): read with find_products(pinned=...).
    Index(None, "type"),
    Index(None, "obs_id"),
    Index(None, "activity_id", "id"),  # covering: lineage walks (activity -> its products)
    Index(None, "run_id"),
    Index(None, "created_at"),
    # find_products(match=...) on PostgreSQL: containment (@>) answered by the index (revision 0004)
    Index("ix_products_attributes", "attributes", postgresql_using="gin",
          postgresql_ops={"attributes": "jsonb_path_ops"}, info={ONLY_ON: ("postgresql",)}
          ).ddl_if(dialect="postgresql"),
)

usages = Table(
    "usages",
    metadata,
    Column("activity_id", String, primary_key=True),
    Column("product_id", String, primary_key=True),
    Column("role", String, primary_key=True),
    Index(None, "product_id", "activity_id"),  # covering: lineage walks (product -> its users)
)

tasks = Table(
    "tasks",
    metadata,
    Column("name", String, primary_key=True),
    Column("version", String, primary_key=True),
    Column("spec", Text, nullable=False),
    Column("code_hash", String, nullable=False),
    Column("registered_at", Float, nullable=False),
)

task_routes = Table(
    "task_routes",
    metadata,
    Column("name", String, primary_key=True),
    Column("version", String, nullable=False),
    Column("updated_at", Float, nullable=False),
)

controller_lease = Table(
    "controller_lease",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1: one lease per store
    Column("owner", String, nullable=False),
    Column("expires_at", Float, nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String, primary_key=True),
    Column("name", String, nullable=False),
    Column("scopes", Text, nullable=False),
    Column("secret_hash", String, nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
)
"""The server's API tokens (``skyweave tokens``): the sha256 of each secret, never the secret."""

workflows = Table(
    "workflows",
    metadata,
    Column("name", String, primary_key=True),
    Column("version", String, primary_key=True),
    Column("kind", String, nullable=False),
    Column("filename", String, nullable=False),
    Column("entry", String, nullable=False),
    Column("source", Text, nullable=False),
    Column("code_hash", String, nullable=False),
    Column("origin", Text, nullable=False),
    Column("registered_at", Float, nullable=False),
)
"""The workflow registry (``skyweave workflows``): each version's code snapshot and its hash."""

triggers = Table(
    "triggers",
    metadata,
    Column("name", String, primary_key=True),
    Column("spec", Text, nullable=False),
    Column("state", String, nullable=False),
    Column("cursor", Text),
    Column("skipped", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

trigger_firings = Table(
    "trigger_firings",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("trigger", String, nullable=False),
    Column("key", String, nullable=False),
    Column("state", String, nullable=False),
    Column("at", Float, nullable=False),
    Column("recorded_at", Float, nullable=False),
    Column("fields", Text, nullable=False),
    Column("run_id", String),
    Column("reason", Text, nullable=False),
    Index(None, "trigger", "key", unique=True),  # one ledger row per event: one run per event
    Index(None, "trigger", "state", "seq"),
    Index(None, "run_id"),
    Index(None, "trigger", "recorded_at", "seq"),  # retention deletes old rows by this range (0009)
    sqlite_autoincrement=True,
)
"""The ledger of triggers (``model/triggers.py``): one row per (trigger, event key)."""

meta = Table(
    "meta",
    metadata,
    Column("key", String, primary_key=True),
    Column("value", Text, nullable=False),
)
"""Facts about the store itself (``created_at``, ``created_by``)."""


# -- records <-> rows ---------------------------------------------------------------------------------

R = TypeVar("R", bound=msgspec.Struct)

_encode = msgspec.json.Encoder().encode
_decode_any = msgspec.json.Decoder().decode


def encode_json(value: Any) -> str:
    """``value`` as compact JSON text (msgspec; structs, dicts, lists and scalars)."""
    return _encode(value).decode()


class RecordCodec(Generic[R]):
    """Maps one record type to rows of its table: JSON fields encoded as text, ``None`` kept NULL.

    ``columns`` are the table columns that hold the record's fields, in field order, for
    ``select(*codec.columns)``; ``to_row`` leaves out ``seq`` (the database numbers rows).
    ``omit``: fields not read at all (the record gets their defaults), for light reads.
    """

    def __init__(self, record_type: type[R], table: Table,
                 json_fields: Mapping[str, Callable[[str], Any]] | Sequence[str] = (),
                 *, omit: Sequence[str] = ()) -> None:
        self.record_type = record_type
        self.fields: tuple[str, ...] = tuple(f for f in record_type.__struct_fields__ if f not in omit)
        self.columns = [table.c[name] for name in self.fields]
        self.decoders: dict[str, Callable[[str], Any]] = (
            dict(json_fields) if isinstance(json_fields, Mapping)
            else dict.fromkeys(json_fields, _decode_any))
        for name in omit:
            self.decoders.pop(name, None)

    def to_row(self, record: R) -> dict[str, Any]:
        row = msgspec.structs.asdict(record)
        for name in self.decoders:
            value = row[name]
            if value is not None:
                row[name] = _encode(value).decode()
        row.pop("seq", None)
        return row

    def from_row(self, row: Sequence[Any]) -> R:
        values = dict(zip(self.fields, row, strict=True))
        for name, decode in self.decoders.items():
            text = values[name]
            if text is not None:
                values[name] = decode(text)
        return self.record_type(**values)


RUN = RecordCodec(RunRecord, runs, ["params", "graph", "pins", "labels"])
RUN_HEAD = RecordCodec(RunRecord, runs, ["params", "pins", "labels"], omit=["graph"])
"""A run without its graph (``Store.get_run_head``)."""
ACTIVITY = RecordCodec(ActivityRecord, activities, {
    "arguments": _decode_any, "result": _decode_any, "error": _decode_any, "usage": _decode_any,
    "aspects": _decode_any, "detours": msgspec.json.Decoder(list[Detour]).decode})
ATTEMPT = RecordCodec(AttemptRecord, attempts, ["error", "usage"])
PRODUCT = RecordCodec(ProductRecord, products, ["attributes"])
USAGE = RecordCodec(UsageRecord, usages)
TOKEN = RecordCodec(TokenRecord, api_tokens, ["scopes"])
WORKFLOW = RecordCodec(WorkflowRecord, workflows)


def dialect_insert(dialect: Dialect, table: Table) -> postgresql.Insert | sqlite.Insert:
    """``INSERT`` into ``table`` with ``on_conflict_do_update`` / ``_nothing`` for ``dialect``."""
    if dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def upsert(dialect: Dialect, table: Table, keys: Sequence[str]) -> Any:
    """Insert into ``table``, or update every column but ``keys`` and ``seq`` of the row with ``keys``."""
    stmt = dialect_insert(dialect, table)
    updated = {c.name: stmt.excluded[c.name] for c in table.c if c.name not in keys and c.name != "seq"}
    return stmt.on_conflict_do_update(index_elements=list(keys), set_=updated)


def insert_new(dialect: Dialect, table: Table, keys: Sequence[str]) -> Any:
    """Insert into ``table`` unless a row with ``keys`` is there already (then leave it as it is)."""
    return dialect_insert(dialect, table).on_conflict_do_nothing(index_elements=list(keys))
