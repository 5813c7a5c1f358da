"""Catalogue queries shared by the SQL stores: the extra ``find_products`` filters and pinning.

``catalogue_filters`` turns the catalogue filters of ``Store.find_products`` (version, name,
creation-time window, pinned) into SQLAlchemy criteria on the ``products`` table, so a backend's
``find_products`` adds them with one loop.  ``CatalogueQueries`` is a mixin giving a SQL store
``pin_products``; it needs the store's ``_writer`` engine (whose transactions take the write lock).

Pinning is a column of its own (``products.pinned``, revision 0003), not an attribute: retention
(``storage/cleanup.py``) never deletes a pinned product, nor anything a pinned product was made from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, select, update

from skyweave.errors import NotFoundError
from skyweave.store.schema import products

CHUNK = 500
"""Ids per ``IN (...)`` clause: well below SQLite's bound-parameter limit."""


def catalogue_filters(
    *,
    version: str | None = None,
    name: str | None = None,
    created_after: float | None = None,
    created_before: float | None = None,
    pinned: bool | None = None,
) -> list[ColumnElement[bool]]:
    """Criteria for the given filters (``None``: no filter).  The time window is half-open:
    ``created_after <= created_at < created_before`` (epoch seconds, UTC)."""
    criteria: list[ColumnElement[bool]] = []
    if version is not None:
        criteria.append(products.c.version == version)
    if name is not None:
        criteria.append(products.c.name == name)
    if created_after is not None:
        criteria.append(products.c.created_at >= created_after)
    if created_before is not None:
        criteria.append(products.c.created_at < created_before)
    if pinned is not None:
        criteria.append(products.c.pinned.is_(True) if pinned else products.c.pinned.is_not(True))
    return criteria


def set_pinned(conn: Connection, ids: Sequence[str], pinned: bool, url: str) -> None:
    """Pin or unpin ``ids`` in ``conn``'s transaction; ``NotFoundError`` (nothing changed) when an
    id is not a product."""
    wanted = list(dict.fromkeys(ids))
    known: set[str] = set()
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start:start + CHUNK]
        known.update(conn.execute(select(products.c.id).where(products.c.id.in_(chunk))).scalars())
    missing = [i for i in wanted if i not in known]
    if missing:
        shown = ", ".join(repr(i) for i in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise NotFoundError(f"no product {shown} in store {url}",
                            hint="search products with `skyweave products list --state all`",
                            kind="product", id=missing[0])
    for start in range(0, len(wanted), CHUNK):
        conn.execute(update(products).where(products.c.id.in_(wanted[start:start + CHUNK]))
                     .values(pinned=pinned))


class CatalogueQueries:
    """``pin_products`` for a SQL store that has ``url`` and a ``_writer`` engine."""

    url: str
    _writer: Any

    def pin_products(self, ids: Sequence[str], pinned: bool = True) -> None:
        if ids:
            with self._writer.begin() as conn:
                set_pinned(conn, ids, pinned, self.url)
