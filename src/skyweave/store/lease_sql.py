"""The controller lease of a SQL store (``ControllerLease``).

The lease is the single row ``id = 1`` of ``controller_lease``: a controller takes it when it is free,
expired or already its own, and keeps it by taking it again before it expires.  Shared by the SQL
backends; the backend provides ``_engine`` (reads) and ``_writer`` (write transactions).
"""

from __future__ import annotations

from sqlalchemy import Engine, delete, select

from skyweave.store.base import Store
from skyweave.store.schema import controller_lease, dialect_insert


class ControllerLease(Store):
    """``acquire_controller_lease``, ``release_controller_lease`` and ``controller_lease_holder`` in SQL."""

    _engine: Engine
    _writer: Engine

    def acquire_controller_lease(self, owner: str, ttl_s: float, now: float) -> bool:
        lease = controller_lease.c
        stmt = dialect_insert(self._writer.dialect, controller_lease).values(
            id=1, owner=owner, expires_at=now + ttl_s)
        upsert = stmt.on_conflict_do_update(
            index_elements=["id"],
            set_={"owner": owner, "expires_at": now + ttl_s},
            where=(lease.owner == owner) | (lease.expires_at <= now),
        )
        with self._writer.begin() as conn:
            conn.execute(upsert)
            holder = conn.execute(select(lease.owner).where(lease.id == 1)).scalar_one()
        return bool(holder == owner)

    def release_controller_lease(self, owner: str) -> None:
        with self._writer.begin() as conn:
            conn.execute(delete(controller_lease).where(controller_lease.c.owner == owner))

    def controller_lease_holder(self) -> tuple[str, float] | None:
        """``(owner, expires_at)`` as stored, expired or not (the caller knows what "now" is)."""
        lease = controller_lease.c
        with self._engine.connect() as conn:
            row = conn.execute(select(lease.owner, lease.expires_at).where(lease.id == 1)).first()
        return None if row is None else (str(row[0]), float(row[1]))
