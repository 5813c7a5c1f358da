"""Catalogue: products can be pinned (kept by retention, with everything they were made from),
and the creation time is indexed for ``products list --since/--until`` and retention planning.

Existing products start unpinned.  Adding a column with a constant default needs no table copy
on SQLite (``ALTER TABLE ... ADD COLUMN``), so upgrading a large store is quick.

Revision ID: 0003
Revises: 0001
Create Date: 2025-01-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("products", sa.Column("pinned", sa.Boolean(create_constraint=False), nullable=False,
                                        server_default=sa.false()))
    op.create_index("ix_products_created_at", "products", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_products_created_at", table_name="products")
    with op.batch_alter_table("products") as batch:
        batch.drop_column("pinned")
