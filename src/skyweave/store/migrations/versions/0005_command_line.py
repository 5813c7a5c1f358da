"""Command and image tasks: the rendered command line of an activity, beside its exit code.

Existing activities have none (NULL).  ``ALTER TABLE ... ADD COLUMN`` of a nullable column needs no
table copy on SQLite or PostgreSQL, so upgrading a large store is quick.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("activities", sa.Column("command", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("activities") as batch:
        batch.drop_column("command")
