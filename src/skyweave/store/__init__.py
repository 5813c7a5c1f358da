"""The store: everything durable (runs, activities, products, provenance, the task registry).

``open_store`` picks the backend from a URL or a path, through the ``BACKENDS`` registry keyed by
URL scheme, so that code and configuration never name an implementation class:

* ``sqlite:///relative.db`` or ``sqlite:////abs/path.db`` — one SQLite file (``SQLiteStore``);
* a plain path to a directory (``.skyweave``) — ``<dir>/skyweave.db``, the directory created if
  missing; a plain path to a file (``run.db``, ``store.sqlite``) — that file;
* ``postgresql://user@host:port/database`` (also ``postgresql+psycopg://``, ``postgres://``) — a
  PostgreSQL database (``PostgreSQLStore``, scale-out; needs ``pip install 'skyweave[postgres]'``).

An existing file that is not a skyweave store (empty, not a database, someone else's database)
is refused (``NotAStoreError``), never written over; ``init_store(..., force=True)`` (``skyweave
init --force``) moves it aside, with SQLite's files beside it, and starts a new store there.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from skyweave.errors import NotAStoreError, StoreError
from skyweave.store.base import DEFAULT_POOL_SIZE, Store
from skyweave.store.migrations import SIDECARS
from skyweave.store.retry import DEFAULT_RETRY_S
from skyweave.store.sqlite import SQLiteStore

__all__ = ["BACKENDS", "DEFAULT_FILENAME", "DEFAULT_POOL_SIZE", "InitResult", "SQLiteStore", "Store",
           "init_store", "open_store", "register_backend"]

DEFAULT_FILENAME = "skyweave.db"
"""The database file inside a store directory."""

_FILE_SUFFIXES = frozenset({".db", ".sqlite", ".sqlite3"})

StoreOpener = Callable[[str, int, float], Store]
"""Opens the store at a URL, given the connection pool size and how long an operation waits for an
unreachable server (both ignored by embedded backends)."""


def _open_sqlite(url: str, _pool_size: int, _retry_s: float) -> Store:
    return SQLiteStore(sqlite_path(url))


def _shown(url: str) -> str:
    """``url`` without its user and password, for messages."""
    return re.sub(r"//[^/@]*@", "//", url, count=1)


def _open_postgresql(url: str, pool_size: int, retry_s: float) -> Store:
    if importlib.util.find_spec("psycopg") is None:  # an optional dependency: the [postgres] extra
        raise StoreError(
            f"cannot open {_shown(url)!r}: the PostgreSQL store needs psycopg 3, which is not installed",
            hint="pip install 'skyweave[postgres]', or use an embedded store: a directory (e.g. "
                 ".skyweave) or sqlite:///path/skyweave.db",
            store=_shown(url))
    from skyweave.store.postgresql import PostgreSQLStore

    return PostgreSQLStore(url, pool_size=pool_size, retry_s=retry_s)


BACKENDS: dict[str, StoreOpener] = {}
"""URL scheme (before any ``+driver``) -> opener; filled by ``register_backend``."""


def register_backend(scheme: str, opener: StoreOpener) -> None:
    """Make ``open_store`` open ``scheme://…`` URLs with ``opener`` (a later registration wins)."""
    BACKENDS[scheme.lower()] = opener


register_backend("sqlite", _open_sqlite)
register_backend("postgresql", _open_postgresql)
register_backend("postgres", _open_postgresql)


def open_store(url_or_path: str, *, pool_size: int = DEFAULT_POOL_SIZE,
               retry_s: float = DEFAULT_RETRY_S) -> Store:
    """Open (creating if needed) the store at ``url_or_path``; ``StoreError`` says how to fix a bad one.

    Nothing is written to a path until it is known to be a skyweave store or a new one: a file that
    is not a SQLite database, someone else's database, or an empty file, is refused untouched.
    ``pool_size``: connections a server-backed store keeps open (``Settings.store_pool_size``);
    ``retry_s``: how long its operations wait for an unreachable server (``Settings.store_retry_s``).
    """
    if "://" not in url_or_path:
        return _open_sqlite(url_or_path, pool_size, retry_s)
    scheme = url_or_path.split("://", 1)[0].split("+", 1)[0].lower()
    opener = BACKENDS.get(scheme)
    if opener is None:
        raise StoreError(
            f"unknown store URL scheme {scheme!r} in {_shown(url_or_path)!r}",
            hint="use a directory, sqlite:///path/skyweave.db or postgresql://user@host/database; "
                 "known schemes: " + ", ".join(sorted(BACKENDS)),
            store=_shown(url_or_path))
    return opener(url_or_path, pool_size, retry_s)


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
    # exists() before is_dir(): a directory another process makes in between is still seen as one
    if (not path.exists() and path.suffix.lower() not in _FILE_SUFFIXES) or path.is_dir():
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the store directory {str(path)!r}: {exc.strerror or exc}",
                hint="point --store at a directory you can write (not below a file)",
                store=url_or_path) from exc
        return (path / DEFAULT_FILENAME).absolute()
    return path.absolute()


@dataclass(frozen=True)
class InitResult:
    """What ``init_store`` did: ``created`` a new store (else it was one already), and the files it
    ``moved_aside`` (original path -> new path) to make room."""

    store: Store
    created: bool
    moved_aside: dict[str, str]


def init_store(url_or_path: str, *, force: bool = False, now: datetime | None = None,
               pool_size: int = DEFAULT_POOL_SIZE) -> InitResult:
    """Open the store at ``url_or_path``, creating it if there is none.

    A file there that is not a skyweave store raises ``NotAStoreError`` unless ``force``: then it
    and its SQLite sidecars (``-wal``, ``-shm``, ``-journal``) are renamed to
    ``<name>.replaced-<UTC time>`` (nothing is deleted) and a new store is made in its place.  An
    existing skyweave store is opened as it is, ``force`` or not.
    """
    if "://" in url_or_path and not url_or_path.lower().startswith("sqlite"):
        return InitResult(open_store(url_or_path, pool_size=pool_size), created=False, moved_aside={})
    path = sqlite_path(url_or_path)
    existed = path.exists()
    try:
        return InitResult(open_store(url_or_path), created=not existed, moved_aside={})
    except NotAStoreError:
        if not force:
            raise
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.replaced-{stamp}")
    n = 1
    while any(aside.with_name(aside.name + s).exists() for s in ("", *SIDECARS)):
        n += 1
        aside = path.with_name(f"{path.name}.replaced-{stamp}-{n}")
    moved: dict[str, str] = {}
    for suffix in ("", *SIDECARS):
        source = path.with_name(path.name + suffix)
        if source.exists():
            target = aside.with_name(aside.name + suffix)
            os.rename(source, target)
            moved[str(source)] = str(target)
    return InitResult(open_store(url_or_path), created=True, moved_aside=moved)
