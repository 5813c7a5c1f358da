"""``skyweave dead-letters``: the messages the bus put aside (malformed ones, and dispatches claimed
more than ``max_deliveries`` times without finishing), each with its id and the reason; they are
never applied.  ``skyweave dead-letters redrive ID... | --all`` puts poisoned dispatches back on the
queue, claimable again with their deliveries counted from zero."""

from __future__ import annotations

from typing import Annotated

import typer

from skyweave.bus import Bus, open_bus
from skyweave.cli import output
from skyweave.cli.common import JsonOpt, StoreOpt, friendly
from skyweave.config.settings import load_settings
from skyweave.errors import ParameterError

SHOWN = 200
"""Characters of a message body shown in the table (``--json`` has all of it)."""

BusOpt = Annotated[str | None, typer.Option(help="Bus URL (default <store>/bus.db).")]

dead_letters_app = typer.Typer(
    invoke_without_command=True,
    help="List the bus's dead letters: messages put aside, never applied, with the reason "
         "(`redrive` puts poisoned dispatches back on the queue).",
)


def _open(store: str | None, bus: str | None) -> Bus:
    settings = load_settings(store=store, bus=bus)
    return open_bus(settings.bus_url(shared=True), aging_s=settings.aging_s,
                    max_deliveries=settings.max_deliveries)


@dead_letters_app.callback()
@friendly
def dead_letters(ctx: typer.Context, store: StoreOpt = None, bus: BusOpt = None,
                 as_json: JsonOpt = False) -> None:
    """List the bus's dead letters: messages put aside, never applied, with the reason."""
    ctx.obj = (store, bus)
    if ctx.invoked_subcommand is not None:
        return
    opened = _open(store, bus)
    try:
        letters = opened.dead_letters()
    finally:
        opened.close()
    bodies = [letter.data.decode("utf-8", errors="replace") for letter in letters]
    if as_json:
        output.print_json([{"id": letter.id, "dispatch": letter.dispatch, "error": letter.error, "data": body}
                           for body, letter in zip(bodies, letters, strict=True)])
        return
    if not letters:
        output.console.print("no dead letters")
        return
    output.table(f"{len(letters)} dead letter(s)", ["id", "dispatch", "reason", "message"],
                 [(letter.id, letter.dispatch or "-", letter.error,
                   body if len(body) <= SHOWN else body[:SHOWN] + "…")
                  for body, letter in zip(bodies, letters, strict=True)])


@dead_letters_app.command("redrive")
@friendly
def redrive(
    ctx: typer.Context,
    ids: Annotated[list[str] | None, typer.Argument(help="Dead letter ids (as listed).",
                                                    show_default=False)] = None,
    every: Annotated[bool, typer.Option("--all", help="Every poisoned dispatch.")] = False,
    store: StoreOpt = None,
    bus: BusOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Put poisoned dispatches back on the queue, claimable again with their deliveries at zero."""
    parent_store, parent_bus = ctx.obj or (None, None)
    if bool(ids) == every:
        raise ParameterError("name the dead letters to re-drive, or give --all (not both)",
                             hint="`skyweave dead-letters` lists them with their ids")
    opened = _open(store or parent_store, bus or parent_bus)
    try:
        letters = opened.dead_letters()
        chosen = list(ids or []) if not every else [x.id for x in letters if x.dispatch is not None]
        enqueued = opened.redrive(chosen)
    finally:
        opened.close()
    dispatches = {x.id: x.dispatch for x in letters}
    if as_json:
        output.print_json({"redriven": [{"id": i, "dispatch": dispatches[i]} for i in dict.fromkeys(chosen)],
                           "enqueued": enqueued})
        return
    if not chosen:
        output.console.print("no poisoned dispatches to re-drive")
        return
    already = len(dict.fromkeys(chosen)) - enqueued
    output.console.print(f"re-drove {enqueued} dispatch(es)"
                         + (f"; {already} already back on the bus (letter dropped)" if already else ""))
