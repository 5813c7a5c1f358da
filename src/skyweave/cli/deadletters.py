"""``skyweave dead-letters``: the messages the bus put aside (malformed ones, and on Redis dispatches
claimed ``max_deliveries`` times without finishing), each with the reason.  They are never applied."""

from __future__ import annotations

from typing import Annotated

import typer

from skyweave.bus import open_bus
from skyweave.cli import output
from skyweave.cli.common import JsonOpt, StoreOpt, friendly
from skyweave.config.settings import load_settings

SHOWN = 200
"""Characters of a message body shown in the table (``--json`` has all of it)."""


@friendly
def dead_letters(
    store: StoreOpt = None,
    bus: Annotated[str | None, typer.Option(help="Bus URL (default <store>/bus.db).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the bus's dead letters: messages put aside, never applied, with the reason."""
    settings = load_settings(store=store, bus=bus)
    opened = open_bus(settings.bus_url(shared=True), aging_s=settings.aging_s)
    try:
        letters = opened.dead_letters()
    finally:
        opened.close()
    bodies = [data.decode("utf-8", errors="replace") for data, _ in letters]
    if as_json:
        output.print_json([{"error": error, "data": body} for body, (_, error) in zip(bodies, letters,
                                                                                       strict=True)])
        return
    if not letters:
        output.console.print("no dead letters")
        return
    output.table(f"{len(letters)} dead letter(s)", ["reason", "message"],
                 [(error, body if len(body) <= SHOWN else body[:SHOWN] + "…")
                  for body, (_, error) in zip(bodies, letters, strict=True)])
