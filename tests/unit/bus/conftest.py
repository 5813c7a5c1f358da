"""Bus factories for the contract suite: each opens handles on one shared bus.

A *handle* is what one process (or one thread) would hold.  For ``memory://`` every handle is the
same object; for ``sqlite:///`` each handle is its own connection to one file, like separate
processes.  A new backend joins the suite by appending one ``pytest.param`` to ``BUS_FACTORIES``
(``redis`` is one: it runs against the real server of ``scripts/services.sh``, each bus under a key
prefix of its own, deleted after the test module by ``purge_all``).  A factory takes the bus's
``aging_s`` and a ``clock`` (seconds; what the bus reads for enqueue times and, except on Redis
whose leases run on the server's clock, leases), so the aging contract is checked without waiting.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pytest

from skyweave.bus import Bus, MemoryBus, SQLiteBus
from tests.services import service_url

OpenHandle = Callable[[], Bus]
"""Opens one more handle on the bus under test."""
Clock = Callable[[], float]


class BusFactory(Protocol):
    def __call__(self, tmp_path: Path, *, aging_s: float = 60.0, clock: Clock | None = None) -> OpenHandle: ...


def memory_factory(tmp_path: Path, *, aging_s: float = 60.0, clock: Clock | None = None) -> OpenHandle:
    bus = MemoryBus(aging_s=aging_s) if clock is None else MemoryBus(aging_s=aging_s, clock=clock)
    return lambda: bus


def sqlite_factory(tmp_path: Path, *, aging_s: float = 60.0, clock: Clock | None = None) -> OpenHandle:
    path = tmp_path / "bus.db"
    if clock is None:
        return lambda: SQLiteBus(path, aging_s=aging_s)
    return lambda: SQLiteBus(path, aging_s=aging_s, clock=clock)


_redis_prefixes: list[tuple[str, str]] = []
"""(url, prefix) of every Redis bus a test opened, for ``purge_all``."""


def redis_factory(tmp_path: Path, *, aging_s: float = 60.0, clock: Clock | None = None) -> OpenHandle:
    from skyweave.bus.redis import RedisBus

    url = service_url("redis")
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    _redis_prefixes.append((url, prefix))
    if clock is None:
        return lambda: RedisBus(url, prefix=prefix, retry_s=5.0, aging_s=aging_s)
    return lambda: RedisBus(url, prefix=prefix, retry_s=5.0, aging_s=aging_s, clock=clock)


def purge_all() -> None:
    """Delete the keys of every Redis bus opened since the last call."""
    from skyweave.bus.redis import RedisBus

    while _redis_prefixes:
        url, prefix = _redis_prefixes.pop()
        bus = RedisBus(url, prefix=prefix, retry_s=5.0)
        try:
            bus.purge()
        finally:
            bus.close()


BUS_FACTORIES = [
    pytest.param(memory_factory, id="memory"),
    pytest.param(sqlite_factory, id="sqlite"),
    pytest.param(redis_factory, id="redis", marks=pytest.mark.integration),
]


@pytest.fixture(autouse=True, scope="module")
def _purge_redis_buses() -> Iterator[None]:
    yield
    purge_all()


@pytest.fixture(params=BUS_FACTORIES)
def open_handle(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenHandle]:
    """Open handles on one fresh bus; every handle is closed after the test."""
    factory: BusFactory = request.param
    opener = factory(tmp_path)
    opened: list[Bus] = []

    def open_one() -> Bus:
        bus = opener()
        opened.append(bus)
        return bus

    yield open_one
    for bus in opened:
        bus.close()


@pytest.fixture(params=BUS_FACTORIES)
def bus_factory(request: pytest.FixtureRequest) -> BusFactory:
    """The factory itself, for tests that choose ``aging_s`` and the clock (close what you open)."""
    factory: BusFactory = request.param
    return factory


@pytest.fixture
def bus(open_handle: OpenHandle) -> Bus:
    return open_handle()
