"""Retention: an index on (trigger, recorded_at, seq) of the trigger ledger, so that ``skyweave
prune`` deletes old rows by an index range, in batches each starting where the last one ended,
instead of scanning the whole ledger.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_trigger_firings_trigger_recorded_at_seq"


def upgrade() -> None:
    op.create_index(INDEX, "trigger_firings", ["trigger", "recorded_at", "seq"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="trigger_firings")
