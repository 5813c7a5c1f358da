"""Drop the ``events`` and ``outbox`` tables: nothing ever wrote them (issue 12 point 3).

The activity rows are the controller's outbox (an activity is written ``dispatched`` with its
attempt before its dispatch is enqueued, and a restarted controller dispatches again what the bus
no longer holds); notifications for listeners live on the bus's event log, not in the store.  A
store that has rows in either table was written by something other than skyweave: the upgrade
refuses it rather than delete them.  The downgrade creates both tables again, empty.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    conn = op.get_bind()
    for table in ("events", "outbox"):
        if conn.execute(sa.text(f"SELECT 1 FROM {table} LIMIT 1")).first() is not None:
            raise RuntimeError(
                f"the store's {table!r} table has rows, which skyweave never writes: this upgrade "
                f"drops that table. Copy the rows elsewhere if they matter, delete them, and run "
                f"the upgrade again")
    op.drop_index("ix_events_run_id_seq", table_name="events")
    op.drop_table("events")
    op.drop_table("outbox")


def downgrade() -> None:
    op.create_table(
        "events",
        sa.Column("seq", _SEQ, nullable=False, autoincrement=True),
        sa.Column("id", sa.String(), nullable=False), sa.Column("kind", sa.String(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False), sa.Column("run_id", sa.String()),
        sa.Column("activity_id", sa.String()), sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_events"),
        sa.UniqueConstraint("id", name="uq_events_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_run_id_seq", "events", ["run_id", "seq"])
    op.create_table(
        "outbox",
        sa.Column("seq", _SEQ, nullable=False, autoincrement=True),
        sa.Column("id", sa.String(), nullable=False), sa.Column("channel", sa.String(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_outbox"),
        sa.UniqueConstraint("id", name="uq_outbox_id"),
    )
