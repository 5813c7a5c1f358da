"""Store factories for the contract suite: each names one fresh, empty store by URL.

A *handle* is what one process holds: ``open_store(url)`` again on the same URL, like the
controller, a worker and the CLI each opening the store.  A backend joins the suite by appending
one ``pytest.param`` to ``STORE_FACTORIES``: the name of a fixture that yields the URL of a fresh
store (and removes it afterwards).  PostgreSQL's (``tests/conftest.py``) is a new schema of the
test session's database on the server that ``scripts/services.sh`` started; without that server
its tests skip, or fail under ``make test``/CI (``tests/services.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from skyweave.store import Store, open_store

OpenHandle = Callable[[], Store]
"""Opens one more handle on the store under test."""


@pytest.fixture
def sqlite_store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store' / 'skyweave.db'}"


STORE_FACTORIES = [
    pytest.param("sqlite_store_url", id="sqlite"),
    pytest.param("postgres_store_url", id="postgresql", marks=pytest.mark.integration),
]


@pytest.fixture(params=STORE_FACTORIES)
def store_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(request.param)
    return url


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
