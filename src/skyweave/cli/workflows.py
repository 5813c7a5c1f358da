"""``skyweave workflows register|list|show``: the workflow registry (``skyweave/workflows.py``).
A registered workflow is submitted by name: ``skyweave submit NAME@VERSION`` (or ``NAME
--version V``; ``NAME`` alone runs the version registered last)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from skyweave.cli import output
from skyweave.cli.common import JsonOpt, StoreOpt, friendly
from skyweave.client import Client
from skyweave.errors import ParameterError
from skyweave.model.records import WorkflowRecord
from skyweave.workflows import parse, register

workflows_app = typer.Typer(no_args_is_help=True, help="The workflow registry: register workflow "
                                                       "versions, submit them by NAME@VERSION.")


def _json(record: WorkflowRecord, *, source: bool = False) -> dict[str, Any]:
    fields = {"name": record.name, "version": record.version, "kind": record.kind,
              "code_hash": record.code_hash, "filename": record.filename, "entry": record.entry,
              "origin": record.origin, "registered_at": record.registered_at}
    return {**fields, "source": record.source} if source else fields


@workflows_app.command("register")
@friendly
def workflows_register(
    target: Annotated[str, typer.Argument(help="PATH.py:WORKFLOW, FILE.yaml or module:WORKFLOW")],
    version: Annotated[str | None, typer.Option(help="Version label (default: from the code).")] = None,
    name: Annotated[str | None, typer.Option(help="Register under this name (default: the "
                                                    "workflow's own).")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a workflow version with a snapshot of its code; submit it later by name
    (`skyweave submit NAME@VERSION`). The same code again changes nothing; other code under a
    registered version is refused."""
    with Client(store, engine=False) as client:
        record, new = register(client.store, target, client.settings.store_dir / "workflows",
                               version=version, name=name)
    if as_json:
        output.print_json({**_json(record), "new": new})
        return
    said = "registered" if new else "already registered (same code)"
    output.console.print(f"{said} {record.name}@{record.version} ({record.code_hash[:19]}); "
                         f"submit it with `skyweave submit {record.name}@{record.version}`", highlight=False)


@workflows_app.command("list")
@friendly
def workflows_list(
    name: Annotated[str | None, typer.Argument(help="Only the versions of this workflow.")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Registered workflow versions, oldest first; * marks the one a bare NAME submits (the latest)."""
    with Client(store, engine=False) as client:
        rows = client.workflows(name)
    if as_json:
        output.print_json([_json(r) for r in rows])
        return
    latest = {r.name: r.version for r in rows}
    output.table("workflows", ["name", "version", "", "kind", "code hash", "registered", "from"],
                 [(r.name, r.version, "*" if latest[r.name] == r.version else "", r.kind, r.code_hash[:19],
                   output.when(r.registered_at), r.origin) for r in rows])


@workflows_app.command("show")
@friendly
def workflows_show(
    target: Annotated[str, typer.Argument(metavar="NAME[@VERSION]", help="A registered workflow.")],
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A registered workflow version and its code snapshot (default: the latest version)."""
    chosen = parse(target)
    if chosen is None:
        raise ParameterError(f"{target[:80]!r} is not NAME or NAME@VERSION",
                             hint="`skyweave workflows list` shows the registered workflows")
    with Client(store, engine=False) as client:
        record = client.store.get_workflow(chosen.name, chosen.version)
    if as_json:
        output.print_json(_json(record, source=True))
        return
    output.console.print(f"{record.name}@{record.version} {record.kind} {record.code_hash} "
                         f"from {record.origin}, registered {output.when(record.registered_at)} UTC",
                         highlight=False)
    output.console.print(record.source, highlight=False, markup=False)
