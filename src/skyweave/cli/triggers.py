"""``skyweave triggers``: declare, watch and run the triggers that start runs by themselves.

skyweave triggers add triggers.yaml          # or a .py file declaring on_files(...) etc.
skyweave triggers run                        # the trigger process (kill it any time)
skyweave triggers list | history NAME | pause NAME | resume NAME | remove NAME
skyweave triggers fire NAME KEY              # run an event again, on purpose
skyweave triggers post voevent packet.xml    # a message (or VOEvent packet) on the bus
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

from skyweave.cli import output
from skyweave.cli.common import JsonOpt, StoreOpt, friendly
from skyweave.client import Client
from skyweave.errors import ParameterError
from skyweave.model.ids import new_id
from skyweave.model.triggers import FiringState, TriggerKind, TriggerRecord, TriggerState
from skyweave.triggers.declare import load_triggers
from skyweave.triggers.messages import group_of, post_message
from skyweave.triggers.registered import declare
from skyweave.triggers.service import TriggerService

triggers_app = typer.Typer(
    help="Runs that start themselves: file or object arrival, bus messages and "
    "VOEvents, schedules (one run per event).",
    no_args_is_help=True,
)

BusOpt = Annotated[str | None, typer.Option(help="Bus URL (default <store>/bus.db).")]


def _client(store: str | None, bus: str | None) -> Client:
    return Client(store, bus=bus, engine=False)


def _row(rec: TriggerRecord, counts: dict[str, int]) -> dict[str, object]:
    spec = rec.spec
    return {
        "name": spec.name,
        "kind": spec.kind.value,
        "state": rec.state.value,
        "workflow": spec.workflow,
        "source": spec.source,
        "params": spec.params,
        "priority": spec.priority,
        "concurrency": spec.concurrency,
        "on_pause": spec.on_pause.value,
        "cursor": rec.cursor,
        "skipped": rec.skipped,
        "events": counts,
    }


@triggers_app.command("add")
@friendly
def add(
    file: Annotated[Path, typer.Argument(help="A YAML file (triggers: ...) or a Python file.")],
    replace: Annotated[
        bool,
        typer.Option("--replace", help="Redefine triggers that exist (their ledger and state are kept)."),
    ] = False,
    store: StoreOpt = None,
    bus: BusOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add the triggers a file declares."""
    specs = load_triggers(file)
    with _client(store, bus) as client:
        specs = [declare(client.store, s) for s in specs]  # all checked before any is saved
        for spec in specs:
            client.store.save_trigger(spec, replace=replace)
            if spec.kind in (TriggerKind.MESSAGES, TriggerKind.VOEVENTS):
                client.bus.read(group_of(spec.name), 1)  # messages from now on are kept for it
    if as_json:
        output.print_json([s.name for s in specs])
        return
    for spec in specs:
        output.console.print(f"added trigger {spec.name} ({spec.kind.value} -> {spec.workflow})")
    output.console.print("start them with `skyweave triggers run`")


@triggers_app.command("list")
@friendly
def list_(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Every trigger with its state and how many events it fired, held, rejected, skipped."""
    with _client(store, None) as client:
        rows = [_row(r, client.store.trigger_counts(r.spec.name)) for r in client.store.list_triggers()]
    if as_json:
        output.print_json(rows)
        return
    if not rows:
        output.console.print("no triggers (add some with `skyweave triggers add FILE`)")
        return
    output.table(
        f"{len(rows)} trigger(s)",
        ["name", "kind", "state", "workflow", "fired", "held", "other", "skipped"],
        [
            (
                r["name"],
                r["kind"],
                r["state"],
                r["workflow"],
                _n(r, "fired"),
                _n(r, "held"),
                _n(r, None),
                r["skipped"],
            )
            for r in rows
        ],
    )


def _n(row: dict[str, object], state: str | None) -> int:
    """How many of the trigger's events are in ``state`` (``None``: in neither fired nor held)."""
    counts = row["events"]
    assert isinstance(counts, dict)
    if state is None:
        return sum(int(v) for k, v in counts.items() if k not in ("fired", "held"))
    return int(counts.get(state, 0))


def _set_state(name: str, state: TriggerState, store: str | None) -> None:
    with _client(store, None) as client:
        client.store.set_trigger_state(name, state)
    word = (
        "paused: events are held (on_pause decides what resume does with them)"
        if state is TriggerState.PAUSED
        else "resumed"
    )
    output.console.print(f"trigger {name} {word}")


@triggers_app.command("pause")
@friendly
def pause(name: str, store: StoreOpt = None) -> None:
    """Hold the events of a trigger until it is resumed (nothing is lost)."""
    _set_state(name, TriggerState.PAUSED, store)


@triggers_app.command("resume")
@friendly
def resume(name: str, store: StoreOpt = None) -> None:
    """Start runs again; held events run (or are coalesced, by the trigger's on_pause)."""
    _set_state(name, TriggerState.ACTIVE, store)


@triggers_app.command("remove")
@friendly
def remove(
    name: str,
    forget: Annotated[
        bool,
        typer.Option(
            "--forget", help="Also delete its ledger: re-added, it would fire for events already fired."
        ),
    ] = False,
    store: StoreOpt = None,
) -> None:
    """Take a trigger out (its runs stay; its ledger stays unless --forget)."""
    with _client(store, None) as client:
        gone = client.store.remove_trigger(name, forget=forget)
    output.console.print(f"removed trigger {name}" + (f" and its {gone} ledger row(s)" if forget else ""))


@triggers_app.command("history")
@friendly
def history(
    name: str,
    limit: Annotated[int, typer.Option(help="Newest events shown.")] = 50,
    state: Annotated[list[FiringState] | None, typer.Option(help="Only these states.")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A trigger's events, newest first: key, what happened (fired, held, coalesced, rejected,
    ignored), the run it started and why."""
    with _client(store, None) as client:
        rec = client.store.get_trigger(name)
        rows = client.store.trigger_history(name, states=state, limit=limit)
    if as_json:
        output.print_json(
            [
                {
                    "key": f.key,
                    "state": f.state.value,
                    "run": f.run_id,
                    "at": f.at,
                    "recorded_at": f.recorded_at,
                    "reason": f.reason,
                    "fields": f.fields,
                }
                for f in rows
            ]
        )
        return
    output.table(
        f"trigger {name} ({rec.state.value}; {rec.skipped} event(s) seen again and skipped)",
        ["recorded", "key", "state", "run", "reason"],
        [(output.when(f.recorded_at), f.key, f.state.value, f.run_id or "-", f.reason or "-") for f in rows],
    )


@triggers_app.command("fire")
@friendly
def fire(
    name: str,
    key: Annotated[str, typer.Argument(help="The event's key (see `triggers history`).")],
    store: StoreOpt = None,
    bus: BusOpt = None,
) -> None:
    """Run an event of the ledger again, on purpose (the ledger says so)."""
    with _client(store, bus) as client:
        run_id = TriggerService(client, [name]).refire(name, key)
    output.console.print(f"re-fired {key}: run {run_id}")


@triggers_app.command("post")
@friendly
def post(
    topic: str,
    file: Annotated[
        str,
        typer.Argument(help="The message: a file, or - for stdin (JSON object, or a VOEvent packet's XML)."),
    ],
    message_id: Annotated[
        str | None,
        typer.Option("--id", help="The message's id: its key for message triggers (default: a new one)."),
    ] = None,
    store: StoreOpt = None,
    bus: BusOpt = None,
) -> None:
    """Put a message (or a VOEvent packet) on the bus for the triggers of TOPIC."""
    payload = sys.stdin.read() if file == "-" else _read(file)
    with _client(store, bus) as client:
        post_message(client.bus, topic, payload, message_id=message_id or new_id("msg"), at=time.time())
    output.console.print(f"posted to {topic}")


def _read(file: str) -> str:
    path = Path(file)
    if not path.is_file():
        raise ParameterError(f"no file {file!r}", hint="give the message's file, or - to read stdin")
    return path.read_text(errors="replace")


@triggers_app.command("run")
@friendly
def run(
    names: Annotated[
        list[str] | None, typer.Argument(help="Only these triggers (default all).", show_default=False)
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
    store: StoreOpt = None,
    bus: BusOpt = None,
) -> None:
    """The trigger process: turns events into runs until stopped (Ctrl-C or SIGTERM).  Safe to
    kill at any moment: started again, it misses nothing and starts nothing twice."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with _client(store, bus) as client:
        service = TriggerService(client, names)
        if not once:
            output.console.print(f"triggers running on {client.store.url} (Ctrl-C stops)")
        with contextlib.suppress(KeyboardInterrupt):
            service.run(stop, once=once)
    output.console.print(f"{service.fired} run(s) started")
