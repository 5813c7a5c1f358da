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
from skyweave.store import init_store


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
