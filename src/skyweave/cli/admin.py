"""Looking after the store itself: ``skyweave init`` (make a store, or replace a file that is not
one) and ``skyweave tasks remove`` (take a task version out of the registry).

Plain functions; ``cli/main.py`` registers them (this module must not import ``main``).
"""

from __future__ import annotations

from typing import Annotated

import typer

from skyweave.cli import output
from skyweave.cli.common import JsonOpt, StoreOpt, friendly
from skyweave.config.settings import load_settings
from skyweave.errors import ParameterError
from skyweave.store import init_store, open_store


@friendly
def init(
    store: StoreOpt = None,
    force: Annotated[bool, typer.Option(
        "--force", help="If a file that is not a skyweave store (empty, not a database, another "
                        "program's database) is in the way, move it aside and start a new store.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create the store (other commands also create one where there is none). An existing store
    is left as it is; a file that is not a store is refused unless --force moves it aside."""
    settings = load_settings(store=store)
    done = init_store(settings.store, force=force, pool_size=settings.store_pool_size)
    try:
        url = done.store.url
    finally:
        done.store.close()
    if as_json:
        output.print_json({"store": url, "created": done.created, "moved_aside": done.moved_aside})
        return
    for source, target in done.moved_aside.items():
        output.console.print(f"moved {source} aside to {target} (nothing deleted)", highlight=False)
    if done.created:
        output.console.print(f"created a new store at {url}", highlight=False)
    else:
        output.console.print(f"{url} is already a skyweave store; nothing changed", highlight=False)


@friendly
def tasks_remove(
    key: Annotated[str, typer.Argument(metavar="NAME@VERSION", help="The task version to remove.")],
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Take a task version out of the registry (e.g. one whose definition cannot be read). A
    version that activities ran is kept for their provenance, unless its definition is unreadable."""
    name, _, version = key.rpartition("@")
    if not name or not version:
        raise ParameterError(f"{key!r} is not NAME@VERSION",
                             hint="e.g. `skyweave tasks remove calibrate@1.2`; `skyweave tasks list` "
                                  "shows the registered versions")
    settings = load_settings(store=store)
    opened = open_store(settings.store, pool_size=settings.store_pool_size,
                        retry_s=settings.store_retry_s)
    try:
        removed = opened.remove_task(name, version)
    finally:
        opened.close()
    if as_json:
        output.print_json(removed)
        return
    routed = (f"{name} now runs version {removed.current}" if removed.current
              else f"{name} has no registered version left")
    output.console.print(f"removed {name}@{version}; {routed}", highlight=False)
    if removed.activities:
        output.console.print(
            f"{removed.activities} activities ran it: their records and products stay; its stored "
            f"definition, which could not be read, was:\n{removed.spec}", highlight=False)

