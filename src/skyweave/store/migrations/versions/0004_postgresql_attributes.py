"""PostgreSQL: product attributes as ``JSONB`` with a GIN index, for ``find_products(match=...)``.

The only JSON column queried inside SQL becomes ``JSONB`` (the others stay ``TEXT``: see
``store/schema.py``), indexed with ``jsonb_path_ops`` so that an attribute match (``@>``) is an
index lookup in a large catalogue.  On SQLite nothing changes: ``json_extract`` reads the text.

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0004"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.alter_column("products", "attributes", type_=JSONB(), postgresql_using="attributes::jsonb")
    op.create_index("ix_products_attributes", "products", ["attributes"], postgresql_using="gin",
                    postgresql_ops={"attributes": "jsonb_path_ops"})


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_products_attributes", table_name="products")
    op.alter_column("products", "attributes", type_=sa.Text(),
                    postgresql_using="attributes::text")
