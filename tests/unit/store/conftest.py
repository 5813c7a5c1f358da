"""Store factories for the contract suite: each names one fresh, empty store by URL.

A *handle* is what one process holds: ``open_store(url)`` again on the same URL, like the
controller, a worker and the CLI each opening the store.  A new backend joins the suite by
appending one ``pytest.param`` to ``STORE_FACTORIES``, e.g.
``pytest.param(postgresql_factory, id="postgresql", marks=pytest.mark.integration)`` where the
factory creates a fresh database and returns its ``postgresql://`` URL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from skyweave.store import Store, open_store

OpenHandle = Callable[[], Store]
"""Opens one more handle on the store under test."""
StoreFactory = Callable[[Path], str]
"""Makes a fresh store location and returns its URL."""


def sqlite_factory(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store' / 'skyweave.db'}"


STORE_FACTORIES = [
    pytest.param(sqlite_factory, id="sqlite"),
]


@pytest.fixture(params=STORE_FACTORIES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    factory: StoreFactory = request.param
    return factory(tmp_path)


@pytest.fixture
def open_handle(store_url: str) -> Iterator[OpenHandle]:
    """Open handles on one fresh store; every handle is closed after the test."""
    opened: list[Store] = []

    def open_one() -> Store:
        store = open_store(store_url)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(open_handle: OpenHandle) -> Store:
    return open_handle()
