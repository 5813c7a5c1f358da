"""The store: everything durable (runs, activities, products, provenance, the task registry).

``open_store`` picks the backend from a URL or a path, so that code and configuration never name
an implementation class:

* ``sqlite:///relative.db`` or ``sqlite:////abs/path.db`` — one SQLite file (``SQLiteStore``);
* a plain path to a directory (``.skyweave``) — ``<dir>/skyweave.db``, the directory created if
  missing; a plain path to a file (``run.db``, ``store.sqlite``) — that file;
* ``postgresql://…`` — the PostgreSQL backend (scale-out), once it is installed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from skyweave.errors import StoreError
from skyweave.store.base import Store
from skyweave.store.sqlite import SQLiteStore

__all__ = ["DEFAULT_FILENAME", "SQLiteStore", "Store", "open_store"]

DEFAULT_FILENAME = "skyweave.db"
"""The database file inside a store directory."""

_FILE_SUFFIXES = frozenset({".db", ".sqlite", ".sqlite3"})


def _open_sqlite(url: str) -> Store:
    return SQLiteStore(sqlite_path(url))


def _no_postgres(url: str) -> Store:
    raise StoreError(
        f"cannot open {url!r}: PostgreSQL stores come with the PostgreSQL backend, which is not "
        "part of this installation",
        hint="use an embedded store instead: a directory (e.g. .skyweave) or sqlite:///path/skyweave.db",
        store=url)


BACKENDS: dict[str, Callable[[str], Store]] = {
    "sqlite": _open_sqlite,
    "postgresql": _no_postgres,
    "postgres": _no_postgres,
}
"""URL scheme (before any ``+driver``) -> opener.  A backend registers itself here."""


def open_store(url_or_path: str) -> Store:
    """Open (creating if needed) the store at ``url_or_path``; ``StoreError`` says how to fix a bad one.

    Nothing is written to a path until it is known to be a skyweave store, an empty file or a new
    one: a file that is not a SQLite database, or someone else's database, is refused untouched.
    """
    if "://" not in url_or_path:
        return _open_sqlite(url_or_path)
    scheme = url_or_path.split("://", 1)[0].split("+", 1)[0].lower()
    opener = BACKENDS.get(scheme)
    if opener is None:
        raise StoreError(
            f"unknown store URL scheme {scheme!r} in {url_or_path!r}",
            hint="use a directory, sqlite:///path/skyweave.db, or postgresql://… (needs the PostgreSQL "
                 "backend); known schemes: " + ", ".join(sorted(BACKENDS)),
            store=url_or_path)
    return opener(url_or_path)


def sqlite_path(url_or_path: str) -> Path:
    """The database file for a ``sqlite:///`` URL or a plain path (see the module docstring).

    ``sqlite:///x.db`` is relative to the working directory and ``sqlite:////x.db`` absolute, as
    in SQLAlchemy.  A plain path that is an existing directory, or a new path without a database
    suffix, names a store directory; the directory is created.
    """
    if "://" in url_or_path:
        rest = url_or_path.partition("://")[2]
        if not rest.startswith("/") or rest in {"/", "/:memory:"} or "?" in rest:
            raise StoreError(
                f"cannot use {url_or_path!r} as a store: give a file, as in sqlite:///skyweave.db "
                "(relative) or sqlite:////abs/path/skyweave.db (absolute)",
                hint="in-memory and query-string SQLite URLs are not supported; use a temporary directory",
                store=url_or_path)
        return Path(rest[1:]).absolute()
    path = Path(url_or_path).expanduser()
    if path.is_dir() or (not path.exists() and path.suffix.lower() not in _FILE_SUFFIXES):
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the store directory {str(path)!r}: {exc.strerror or exc}",
                hint="point --store at a directory you can write (not below a file)",
                store=url_or_path) from exc
        return (path / DEFAULT_FILENAME).absolute()
    return path.absolute()
