"""Containers: the image digest each activity and attempt actually ran in, beside its command line.

The digest was known only from the task version (pinned at registration); a Python task without an
image of its own runs in the worker's default image, whose digest is known only where it ran.
Existing rows have none (NULL).  ``ADD COLUMN`` of a nullable column copies no table on SQLite or
PostgreSQL, so upgrading a large store is quick.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("activities", sa.Column("image_digest", sa.String(), nullable=True))
    op.add_column("attempts", sa.Column("image_digest", sa.String(), nullable=True))


def downgrade() -> None:
    for table in ("attempts", "activities"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("image_digest")
