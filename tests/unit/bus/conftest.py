"""Bus factories for the contract suite: each opens handles on one shared bus.

A *handle* is what one process (or one thread) would hold.  For ``memory://`` every handle is the
same object; for ``sqlite:///`` each handle is its own connection to one file, like separate
processes.  A new backend joins the suite by appending one ``pytest.param`` to ``BUS_FACTORIES``
(e.g. ``pytest.param(redis_factory, id="redis", marks=pytest.mark.integration)``).  A factory
takes the bus's ``aging_s`` and a ``clock`` (seconds; what the bus reads for enqueue times and
leases), so the aging contract is checked without waiting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pytest

from skyweave.bus import Bus, MemoryBus, SQLiteBus

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


BUS_FACTORIES = [
    pytest.param(memory_factory, id="memory"),
    pytest.param(sqlite_factory, id="sqlite"),
]


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
