"""Alembic migrations of the store schema: which revision a database is at, and ``upgrade``.

Backends never need an ``alembic.ini``: ``upgrade`` builds the Alembic configuration in code,
points ``script_location`` at this package directory (so it works from an installed wheel) and
hands Alembic the caller's connection, so the migration commits or rolls back with the caller's
transaction.  When the database is already at ``SCHEMA_REVISION`` Alembic is not loaded at all:
opening an existing store costs one query.  ``probe_sqlite_file`` answers the same question for
a SQLite file *before* anything is allowed to write to it, and refuses files that are not ours:
an empty file too, because skyweave never leaves one (a new store is built aside and linked into
place whole, ``SQLiteStore``), so an empty store file is a truncated or overwritten store.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy import Connection, insert, inspect, select

from skyweave.errors import NotAStoreError, StoreError
from skyweave.store.schema import ONLY_ON, SCHEMA_REVISION, VERSION_TABLE, meta

MIGRATIONS_DIR = Path(__file__).resolve().parent

SQLITE_HEADER = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite database file."""


def current_revision(conn: Connection) -> str | None:
    """The schema revision recorded in the database, or ``None`` for a database without one."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar()


def include_object(dialect: str) -> Any:
    """An Alembic ``include_object`` hook for comparisons on ``dialect``: it leaves out the schema
    items made only on other dialects (``info[ONLY_ON]`` in ``store/schema.py``)."""

    def include(obj: Any, _name: str | None, _kind: str, _reflected: bool, _compare_to: Any) -> bool:
        only_on = getattr(obj, "info", {}).get(ONLY_ON)
        return only_on is None or dialect in only_on

    return include


def probe_sqlite_file(path: Path, url: str) -> Literal["new", "current", "upgrade"]:
    """What ``path`` holds, found without writing to it; ``StoreError`` if it is not ours to use.

    ``new``: missing (its parent directory is created).  ``current``: a skyweave store at
    ``SCHEMA_REVISION``.  ``upgrade``: a skyweave store at another revision.  Anything else raises
    and the file is left byte for byte as it was: a directory (``StoreError``), or a file that is
    not a skyweave store (``NotAStoreError``: empty, not SQLite, a SQLite database without our
    tables - someone else's or an empty one -, or a corrupt one).
    """
    use = "point --store at a directory or a .db file"
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not a store file", hint=use, store=url)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        return "new"
    aside = (f"{use}; or start a new store in its place with `skyweave init --force` (same --store), "
             "which moves this file aside and deletes nothing")
    with path.open("rb") as file:
        header = file.read(len(SQLITE_HEADER))
    if not header:
        raise NotAStoreError(
            f"{path} is empty (0 bytes){_beside(path)}: it is not a skyweave store. If it held your "
            "store, it was truncated or overwritten: restore it from a backup (the store's product "
            "files are untouched)", hint=aside, store=url, path=str(path))
    if header != SQLITE_HEADER:
        raise NotAStoreError(f"{path} is not a skyweave store (file is not a database)", hint=aside,
                             store=url, path=str(path))
    try:
        connection = sqlite3.connect(path)
        try:
            names = {row[0] for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
            revision = (connection.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone()
                        if VERSION_TABLE in names else None)
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        raise NotAStoreError(f"{path} is not a skyweave store (unreadable database: {exc})",
                             hint=aside, store=url, path=str(path)) from exc
    if VERSION_TABLE in names:
        return "current" if revision is not None and revision[0] == SCHEMA_REVISION else "upgrade"
    if names:
        shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
        raise NotAStoreError(f"{path} is a SQLite database but not a skyweave store (it has tables {shown})",
                             hint=aside, store=url, path=str(path))
    raise NotAStoreError(f"{path} is an empty SQLite database{_beside(path)}, not a skyweave store",
                         hint=aside, store=url, path=str(path))


SIDECARS = ("-wal", "-shm", "-journal")
"""Files SQLite keeps beside a database, named after it."""


def _beside(path: Path) -> str:
    """A note naming non-empty SQLite files beside ``path`` (they may hold the lost changes)."""
    found = [f"{path.name}{s} ({size} bytes)" for s in SIDECARS
             if (size := _size(path.with_name(path.name + s)))]
    if not found:
        return ""
    return f", with {' and '.join(found)} beside it (keep them: they may hold recent changes)"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def alembic_config(conn: Connection | None = None) -> Config:
    """An Alembic configuration for these migrations, bound to ``conn`` when given."""
    config = Config()
    # ConfigParser interpolates '%', which may appear in an install path.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if conn is not None:
        config.attributes["connection"] = conn
    return config


_ALEMBIC = threading.Lock()
"""Alembic runs a migration through module-level proxies (``alembic.op``, ``alembic.context``):
two threads of one process migrating two databases at once would mix their operations."""


def upgrade(conn: Connection, url: str) -> None:
    """Bring the schema of ``conn``'s database to ``SCHEMA_REVISION`` inside the open transaction.

    Run it in a transaction that holds the write lock, so two processes opening a new store at
    the same time cannot both create it.  A revision this code does not know (the store was
    written by a newer skyweave) raises ``StoreError`` and changes nothing.
    """
    found = current_revision(conn)
    if found == SCHEMA_REVISION:
        return
    try:
        with _ALEMBIC:
            command.upgrade(alembic_config(conn), "head")
    except CommandError as exc:
        raise StoreError(
            f"store {url} has schema revision {found!r}, which this skyweave (revision "
            f"{SCHEMA_REVISION!r}) does not know",
            hint="the store was written by a newer skyweave: upgrade skyweave, or use another store",
            store=url, revision=found) from exc
    if conn.execute(select(meta.c.key).where(meta.c.key == "created_at")).first() is None:
        conn.execute(insert(meta), [
            {"key": "created_at", "value": repr(time.time())},
            {"key": "created_by", "value": f"skyweave {_skyweave_version()}"},
        ])


def _skyweave_version() -> str:
    try:
        return version("skyweave")
    except PackageNotFoundError:  # running from a source tree
        return "(source)"
