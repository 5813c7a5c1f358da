"""The message bus between the controller and the workers, chosen by URL scheme from a registry
(``BACKENDS``; a backend adds itself with ``register_backend``).

* ``memory://`` — a new in-process bus; ``memory://name`` — the process-wide bus of that name
  (every call with the same name returns the same object).
* ``sqlite:///relative/bus.db``, ``sqlite:////absolute/bus.db`` — a file shared by processes on one
  host; a URL or bare path naming a directory means ``<dir>/bus.db``.
* ``redis://host:port/db`` (``rediss://`` for TLS) — controller and workers on several hosts; needs
  ``pip install 'skyweave[redis]'`` (see ``skyweave.bus.redis`` for its query parameters).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

from skyweave.bus.base import CONTROLLER_GROUP, Bus, Claimed, Delivered
from skyweave.bus.memory import MemoryBus
from skyweave.bus.sqlite import SQLiteBus
from skyweave.errors import BusError

__all__ = [
    "BACKENDS",
    "CONTROLLER_GROUP",
    "Bus",
    "BusError",
    "Claimed",
    "Delivered",
    "MemoryBus",
    "SQLiteBus",
    "open_bus",
    "register_backend",
]

BUS_FILE = "bus.db"
_DB_SUFFIXES = (".db", ".sqlite", ".sqlite3")



class BusOpener(Protocol):
    """Opens the bus at a URL of its scheme; ``aging_s`` is the seconds of waiting that add 1 to a
    dispatch's effective priority (see ``skyweave.bus.base``); ``max_deliveries`` how many claims
    of a dispatch that never finishes send it to the dead letters (0: never; ``None``: the URL's
    ``?max_deliveries=`` where the backend reads one, else its default)."""

    def __call__(self, url: str, *, aging_s: float, max_deliveries: int | None) -> Bus: ...



BACKENDS: dict[str, BusOpener] = {}
"""URL scheme -> opener; filled by ``register_backend``."""

_named: dict[str, MemoryBus] = {}
_named_lock = threading.Lock()


def register_backend(scheme: str, opener: BusOpener) -> None:
    """Make ``open_bus`` open ``scheme://…`` URLs with ``opener`` (a later registration wins)."""
    BACKENDS[scheme.lower()] = opener


def open_bus(url: str, *, aging_s: float = 60.0, max_deliveries: int | None = None) -> Bus:
    """Open the bus that ``url`` names (see the module docstring for the forms); ``aging_s`` and
    ``max_deliveries`` as in ``BusOpener`` (the settings' ``aging_s`` and ``max_deliveries``)."""
    if "://" not in url and url:
        return _open_sqlite(url, None, aging_s, max_deliveries)
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    opener = BACKENDS.get(scheme)
    if opener is None:
        raise BusError(
            f"unknown bus URL {url!r}",
            hint=f"supported schemes: {', '.join(f'{s}://' for s in sorted(BACKENDS))} (or a directory path)",
        )
    return opener(url, aging_s=aging_s, max_deliveries=max_deliveries)


def _open_memory(url: str, *, aging_s: float, max_deliveries: int | None) -> Bus:
    """A named bus keeps the ``aging_s`` and ``max_deliveries`` it was first opened with."""
    name = url.partition("://")[2]
    limit = max_deliveries or 0
    if not name:
        return MemoryBus(url, aging_s=aging_s, max_deliveries=limit)
    with _named_lock:
        bus = _named.get(name)
        if bus is None:
            bus = _named[name] = MemoryBus(url, aging_s=aging_s, max_deliveries=limit)
        return bus


def _open_sqlite_url(url: str, *, aging_s: float, max_deliveries: int | None) -> Bus:
    path = url.partition("://")[2]
    if not path.startswith("/") or path == "/":
        raise BusError(
            f"bus URL {url!r} names no file",
            hint="write sqlite:///relative/path/bus.db or sqlite:////absolute/path/bus.db",
        )
    return _open_sqlite(path[1:], url, aging_s, max_deliveries)


def _open_redis(url: str, *, aging_s: float, max_deliveries: int | None) -> Bus:
    try:
        from skyweave.bus.redis import RedisBus
    except ImportError as exc:
        raise BusError(
            f"cannot open {url!r}: the Redis bus needs the redis package ({exc})",
            hint="pip install 'skyweave[redis]'",
        ) from exc
    return RedisBus(url, aging_s=aging_s, max_deliveries=max_deliveries)


register_backend("memory", _open_memory)
register_backend("sqlite", _open_sqlite_url)
register_backend("redis", _open_redis)
register_backend("rediss", _open_redis)


def _open_sqlite(path_text: str, url: str | None, aging_s: float, max_deliveries: int | None) -> SQLiteBus:
    """A file path as is; a directory (existing, ending in ``/``, or without a .db suffix) → bus.db."""
    path = Path(path_text)
    is_dir = path.is_dir() or path_text.endswith("/") or (url is None and path.suffix not in _DB_SUFFIXES)
    target = path / BUS_FILE if is_dir else path
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BusError(f"cannot create the bus directory {str(target.parent)!r}: {exc.strerror or exc}",
                       hint="point the store or --bus at a directory you can write") from exc
    return SQLiteBus(target, url=url, aging_s=aging_s, max_deliveries=max_deliveries or 0)
