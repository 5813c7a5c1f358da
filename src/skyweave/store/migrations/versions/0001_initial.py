"""The initial store schema: runs, activities, attempts, products, usages, events, outbox, the
task registry, the controller lease and store metadata.

Written out in full rather than taken from ``skyweave.store.schema`` so that later changes to the
schema module cannot change what this revision does; a contract test compares the migrated
database with the schema module.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _real(name: str, *, nullable: bool = True) -> sa.Column[float]:
    return sa.Column(name, sa.Float(), nullable=nullable)


def _text(name: str, *, nullable: bool = True) -> sa.Column[str]:
    return sa.Column(name, sa.Text(), nullable=nullable)


def _str(name: str, *, nullable: bool = True) -> sa.Column[str]:
    return sa.Column(name, sa.String(), nullable=nullable)


def _int(name: str, *, nullable: bool = True) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "runs",
        _str("id", nullable=False), _str("workflow", nullable=False), _str("state", nullable=False),
        _str("workflow_ref", nullable=False), _text("params", nullable=False),
        _int("priority", nullable=False), _text("graph", nullable=False), _text("pins", nullable=False),
        _str("parent_run"), _str("parent_activity"), _real("created_at", nullable=False),
        _real("started_at"), _real("ended_at"), _text("error"), _text("labels", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_index("ix_runs_created_at", "runs", ["created_at"])
    op.create_index("ix_runs_state", "runs", ["state"])

    op.create_table(
        "activities",
        sa.Column("seq", _SEQ, nullable=False, autoincrement=True),
        _str("id", nullable=False), _str("run_id", nullable=False), _str("node", nullable=False),
        _str("task_name", nullable=False), _str("task_version", nullable=False),
        _str("state", nullable=False), _str("key", nullable=False), _str("code_hash", nullable=False),
        _int("priority", nullable=False), _text("arguments", nullable=False), _text("result"),
        _int("attempt", nullable=False), _int("max_attempts", nullable=False),
        _real("created_at", nullable=False), _real("queued_at", nullable=False),
        _real("started_at"), _real("ended_at"), _str("worker"), _str("host"), _int("exit_code"),
        _text("error"), _str("log_uri"), _text("usage"), _text("aspects", nullable=False),
        _text("detours", nullable=False), _str("parent_activity"), _int("iteration", nullable=False),
        _str("cache_key"),
        sa.PrimaryKeyConstraint("seq", name="pk_activities"),
        sa.UniqueConstraint("id", name="uq_activities_id"),
    )
    op.create_index("ix_activities_run_id_state", "activities", ["run_id", "state"])
    op.create_index("ix_activities_task_name_task_version", "activities", ["task_name", "task_version"])
    op.create_index("ix_activities_cache_key", "activities", ["cache_key"])

    op.create_table(
        "attempts",
        _str("activity_id", nullable=False), _int("attempt", nullable=False),
        _str("state", nullable=False), _str("worker"), _str("host"), _int("pid"),
        _real("started_at"), _real("ended_at"), _int("exit_code"), _text("error"), _text("usage"),
        sa.PrimaryKeyConstraint("activity_id", "attempt", name="pk_attempts"),
    )

    op.create_table(
        "products",
        _str("id", nullable=False), _str("uri", nullable=False), _str("type", nullable=False),
        _str("name", nullable=False), _str("obs_id"), _str("detector"), _str("version"),
        _str("checksum"), sa.Column("size", sa.BigInteger(), nullable=True),
        _real("created_at", nullable=False), _str("activity_id"), _str("run_id"),
        _text("attributes", nullable=False), _str("state", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_products"),
    )
    for column in ("type", "obs_id", "activity_id", "run_id"):
        op.create_index(f"ix_products_{column}", "products", [column])

    op.create_table(
        "usages",
        _str("activity_id", nullable=False), _str("product_id", nullable=False),
        _str("role", nullable=False),
        sa.PrimaryKeyConstraint("activity_id", "product_id", "role", name="pk_usages"),
    )
    op.create_index("ix_usages_product_id", "usages", ["product_id"])

    op.create_table(
        "events",
        sa.Column("seq", _SEQ, nullable=False, autoincrement=True),
        _str("id", nullable=False), _str("kind", nullable=False), _real("at", nullable=False),
        _str("run_id"), _str("activity_id"), _text("body", nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_events"),
        sa.UniqueConstraint("id", name="uq_events_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_run_id_seq", "events", ["run_id", "seq"])

    op.create_table(
        "outbox",
        sa.Column("seq", _SEQ, nullable=False, autoincrement=True),
        _str("id", nullable=False), _str("channel", nullable=False), _int("priority", nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_outbox"),
        sa.UniqueConstraint("id", name="uq_outbox_id"),
    )

    op.create_table(
        "tasks",
        _str("name", nullable=False), _str("version", nullable=False), _text("spec", nullable=False),
        _str("code_hash", nullable=False), _real("registered_at", nullable=False),
        sa.PrimaryKeyConstraint("name", "version", name="pk_tasks"),
    )
    op.create_table(
        "task_routes",
        _str("name", nullable=False), _str("version", nullable=False),
        _real("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_task_routes"),
    )
    op.create_table(
        "controller_lease",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
        _str("owner", nullable=False), _real("expires_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_controller_lease"),
    )
    op.create_table(
        "meta",
        _str("key", nullable=False), _text("value", nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_meta"),
    )


def downgrade() -> None:
    for table in ("meta", "controller_lease", "task_routes", "tasks", "outbox", "events", "usages",
                  "products", "attempts", "activities", "runs"):
        op.drop_table(table)
