"""Alembic environment for the skyweave store.

Normally run in-process: ``SQLiteStore`` (and any other SQL backend) builds an Alembic ``Config``
in code, opens a transaction and passes its connection as ``config.attributes["connection"]``, so
no ``alembic.ini`` is needed and the upgrade commits or rolls back with that transaction.  For
maintenance from the command line, ``alembic -x url=sqlite:////path/skyweave.db upgrade head``
(with ``script_location`` pointing at this directory) works too, as does offline ``--sql`` mode.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from skyweave.store.migrations import include_object
from skyweave.store.schema import VERSION_TABLE, metadata

config = context.config


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("give the store URL: alembic -x url=sqlite:////path/skyweave.db upgrade head")
    return url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
        include_object=include_object(connection.dialect.name),
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=metadata, version_table=VERSION_TABLE,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
elif (given := config.attributes.get("connection")) is not None:
    _run(given)
else:
    engine = create_engine(_url())
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()
