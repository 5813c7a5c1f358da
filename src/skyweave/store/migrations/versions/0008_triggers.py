"""Triggers: their definitions and the ledger of events each one fired (one row per event key).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "triggers",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("skipped", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_triggers"),
    )
    op.create_table(
        "trigger_firings",
        sa.Column("seq", _seq, autoincrement=True, nullable=False),
        sa.Column("trigger", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("recorded_at", sa.Float(), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_trigger_firings"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_trigger_firings_trigger_key", "trigger_firings", ["trigger", "key"], unique=True)
    op.create_index("ix_trigger_firings_trigger_state_seq", "trigger_firings",
                    ["trigger", "state", "seq"])
    op.create_index("ix_trigger_firings_run_id", "trigger_firings", ["run_id"])


def downgrade() -> None:
    op.drop_table("trigger_firings")
    op.drop_table("triggers")
