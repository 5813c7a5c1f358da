"""Fixtures for tests that use a real server started by ``scripts/services.sh`` (see ``services.py``).

PostgreSQL: one database per test session (``skyweave_test_<random>``, dropped at the end, whatever
connections are left), and in it one schema per test that asks for ``postgres_store_url`` (dropped
after the test), so every test starts from an empty store and none sees another's rows.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from tests.services import service_url


def _admin(url: str) -> Any:
    import psycopg  # the [postgres] extra, in [dev]

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    return psycopg.connect(conninfo, autocommit=True)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh database on the test server for this session; its URL (no schema chosen)."""
    server = service_url("postgres")
    name = f"skyweave_test_{secrets.token_hex(4)}"
    with _admin(server) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with _admin(server) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_store_url(postgres_database: str) -> Iterator[str]:
    """A store URL naming a new, empty schema of the session's database (dropped after the test)."""
    schema = f"t_{secrets.token_hex(6)}"
    with _admin(postgres_database) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield (make_url(postgres_database).update_query_dict({"options": f"-csearch_path={schema}"})
               .render_as_string(hide_password=False))
    finally:
        with _admin(postgres_database) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
