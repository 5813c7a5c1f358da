"""The workflow registry (``skyweave workflows register|list``; submit ``NAME@VERSION``): one row
per workflow version with its code snapshot and hash; runs submitted by name record that hash.

A new table and a column with a default: quick on any store.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("version", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("filename", sa.String(), nullable=False),
        sa.Column("entry", sa.String(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("code_hash", sa.String(), nullable=False),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column("registered_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", "version", name="pk_workflows"),
    )
    op.add_column("runs", sa.Column("workflow_hash", sa.String(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("workflow_hash")
    op.drop_table("workflows")
