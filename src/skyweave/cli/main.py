"""``skyweave`` command line."""

from __future__ import annotations

import json
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any

import typer

from skyweave.cli import output
from skyweave.cli.admin import init, tasks_remove
from skyweave.cli.argo import export_app
from skyweave.cli.catalogue import (
    cleanup,
    list_filters,
    pinned_among,
    product_json,
    products_pin,
    products_show,
    products_unpin,
)
from skyweave.cli.common import EXECUTOR_HELP, JsonOpt, StoreOpt, friendly
from skyweave.cli.deadletters import dead_letters_app
from skyweave.cli.dryrun import show_plan
from skyweave.cli.export import products_export
from skyweave.cli.lineage import impact, lineage
from skyweave.cli.listen import listen
from skyweave.cli.prov import prov_app
from skyweave.cli.prune import prune_command
from skyweave.cli.reprocess import products_recompute, reprocess
from skyweave.cli.runview import logs, print_summary, runs, status
from skyweave.cli.server import server, tokens_app
from skyweave.cli.services import controller, resume, worker
from skyweave.cli.triggers import triggers_app
from skyweave.cli.workflows import workflows_app
from skyweave.client import Client
from skyweave.demo import run_demo
from skyweave.errors import ParameterError

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="skyweave: dynamic, provenance-first workflows for astronomy pipelines.")
tasks_app = typer.Typer(no_args_is_help=True, help="The task registry.")
products_app = typer.Typer(no_args_is_help=True, help="The product catalogue.")
app.add_typer(tasks_app, name="tasks")
app.add_typer(products_app, name="products")


TARGET_HELP = ("PATH.py:WORKFLOW, FILE.yaml, module:WORKFLOW, or a registered workflow: NAME[@VERSION] "
               "(`skyweave workflows list`)")
VersionOpt = Annotated[str | None, typer.Option("--version", help="Version of the registered workflow "
                                                "TARGET names (default: the latest).")]


def _params(values: list[str] | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ParameterError(f"--param {item!r} is not KEY=VALUE", hint="write --param n=10")
        params[key.strip()] = value
    return params


def _client(store: str | None, *, engine: bool, **overrides: Any) -> Client:
    return Client(store, engine=engine, **overrides)


# ---------------------------------------------------------------------------------------------
@app.command()
@friendly
def run(
    target: Annotated[str, typer.Argument(help=TARGET_HELP)],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE (repeatable).")] = None,
    priority: Annotated[int, typer.Option(help="Run priority (higher runs first).")] = 0,
    version: VersionOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
    workers: Annotated[int | None, typer.Option(help="Parallel activities (default: CPU cores).")] = None,
    executor: Annotated[str | None, typer.Option(help=EXECUTOR_HELP)] = None,
    timeout: Annotated[float | None, typer.Option(help="Give up waiting after this many seconds.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Say what would be reused and what "
                                          "would run, and why; run nothing.")] = False,
) -> None:
    """Run a workflow to the end on the embedded engine, with a live progress bar."""
    if dry_run:
        with _client(store, engine=False) as client:
            show_plan(client.plan(target, _params(param), priority=priority, version=version), as_json)
        return
    with _client(store, engine=True, workers=workers, executor=executor) as client:
        handle = client.submit(target, _params(param), priority=priority, version=version)
        try:
            record = client.wait(handle.id, timeout=timeout, progress=not as_json and sys.stderr.isatty())
        except KeyboardInterrupt:
            output.error(f"interrupted: run {handle.id} is kept in the store, unfinished",
                         "run `skyweave resume` to finish it (`skyweave status` shows where it stopped)")
            raise typer.Exit(130) from None
        _report_ended(client, handle.id, record.state, as_json=as_json)


def _report_ended(client: Client, run_id: str, state: str, *, as_json: bool) -> None:
    """Print an ended run's summary (and its first failures); exit 1 unless it succeeded."""
    summary = client.summary(run_id)
    if as_json:
        output.print_json(summary)
    else:
        print_summary(summary)
    if state != "succeeded":
        if not as_json:
            _print_failures(client, run_id)
        raise typer.Exit(1)


def _print_failures(client: Client, run_id: str) -> None:
    for act in client.store.list_activities(run_id=run_id, states=["failed"], limit=5):
        err = act.error or {}
        output.error(f"activity {act.id} ({act.task_name}) failed: {err.get('message', '')}",
                     err.get("hint") or f"see `skyweave logs {act.id}`; to run it again: "
                                        f"`skyweave retry {act.id}`, then `skyweave resume`")


def _unless_a_controller_runs(client: Client, request: str) -> None:
    """Say how a control request gets applied when no controller is running on the store."""
    holder = client.store.controller_lease_holder()
    if holder is None or holder[1] < time.time():
        output.err_console.print(f"note: no controller is running on this store: the {request} waits "
                                 "for one; run `skyweave resume` to apply it now (or start "
                                 "`skyweave controller`)", highlight=False)


@app.command()
@friendly
def submit(
    target: Annotated[str, typer.Argument(help=TARGET_HELP)],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE (repeatable).")] = None,
    priority: Annotated[int, typer.Option(help="Run priority.")] = 0,
    version: VersionOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
    wait: Annotated[float | None, typer.Option(
        help="Wait up to this many seconds for the run to end, then print its summary; exit 1 "
             "unless it succeeded.")] = None,
) -> None:
    """Submit a run to a running `skyweave controller` and return at once with its id (or, with
    --wait, once it has ended)."""
    with _client(store, engine=False) as client:
        handle = client.submit(target, _params(param), priority=priority, version=version)
        holder = client.store.controller_lease_holder()
        if as_json and wait is None:
            output.print_json({"run_id": handle.id, "status": "submitted"})
        elif not as_json:
            output.console.print(handle.id)
        if holder is None or holder[1] < time.time():
            output.err_console.print("note: no controller is running on this store; start one with "
                                     "`skyweave controller --workers 2` (or use `skyweave run`)")
        if wait is None:
            return
        record = client.wait(handle.id, timeout=wait)
        _report_ended(client, handle.id, record.state, as_json=as_json)


app.command()(status)
app.command()(runs)
app.command()(logs)


@app.command()
@friendly
def cancel(run_id: str, store: StoreOpt = None) -> None:
    """Cancel a run: queued work is dropped and running activities are stopped (killed)."""
    with _client(store, engine=False) as client:
        client.cancel(run_id)
        output.console.print(f"cancel requested for {run_id}")
        _unless_a_controller_runs(client, "cancel")


@app.command()
@friendly
def pause(run_id: str, store: StoreOpt = None) -> None:
    """Pause a run: once this returns, no activity of it starts until `skyweave resume RUN`;
    running activities finish."""
    with _client(store, engine=False) as client:
        state = client.pause(run_id)
    if state == "paused":
        output.console.print(f"paused {run_id}: no activity of it starts until `skyweave resume {run_id}`")
    elif state == "requested":
        output.console.print(f"pause requested for {run_id}; no controller is running: it applies when "
                             "`skyweave controller` starts (workers may start what is already on the bus)")
    else:
        output.console.print(f"{run_id} had nothing left to pause: it is {state}")


app.command()(resume)


@app.command()
@friendly
def retry(activity_id: str, store: StoreOpt = None) -> None:
    """Run a failed activity again (its run reopens); needs a running controller or `resume`."""
    with _client(store, engine=False) as client:
        client.retry(activity_id)
        output.console.print(f"retry requested for {activity_id}")
        _unless_a_controller_runs(client, "retry")


@app.command()
@friendly
def priority(
    value: int,
    run: Annotated[str | None, typer.Option("--run", help="Change a run and its queued work.")] = None,
    activity: Annotated[str | None, typer.Option("--activity", help="Change one queued activity.")] = None,
    store: StoreOpt = None,
) -> None:
    """Change the priority of a queued activity or of a whole run, while it runs."""
    if not run and not activity:
        raise ParameterError("say what to change", hint="--run RUN_ID or --activity ACTIVITY_ID")
    with _client(store, engine=False) as client:
        client.set_priority(value, run_id=run, activity_id=activity)
        output.console.print("priority change requested")
        _unless_a_controller_runs(client, "priority change")


# -- tasks and products ----------------------------------------------------------------------------
@tasks_app.command("list")
@friendly
def tasks_list(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Every registered task version; * marks the one new activations use."""
    with _client(store, engine=False) as client:
        rows = client.store.list_tasks()
        if as_json:
            output.print_json([{"name": s.name, "version": s.version, "kind": s.kind, "current": cur,
                                "code_hash": s.code_hash, "ref": s.ref, "image": s.image,
                                "image_digest": s.image_digest} for s, cur in rows])
            return
        output.table("tasks", ["name", "version", "", "kind", "code hash", "ref"],
                     [(s.name, s.version, "*" if cur else "", s.kind, s.code_hash[:19], s.ref)
                      for s, cur in rows])


@tasks_app.command("register")
@friendly
def tasks_register(
    target: Annotated[str, typer.Argument(help="PATH.py:TASK, or with --image the NAME of a registered "
                                                 "task")],
    version: Annotated[str | None, typer.Option(help="Version label (default: from the code).")] = None,
    current: Annotated[bool, typer.Option(help="Route new activations to this version.")] = True,
    image: Annotated[str | None, typer.Option(help="Run the new version in this container image "
                                                     "(pinned to its digest now; needs --version).")] = None,
    store: StoreOpt = None,
) -> None:
    """Register a task version, even while runs are in progress."""
    with _client(store, engine=False) as client:
        spec = client.register_task(target, version=version, make_current=current, image=image)
        pinned = f" in {spec.image} ({spec.image_digest})" if spec.image_digest else ""
        output.console.print(f"registered {spec.name}@{spec.version}{pinned}"
                             f"{' (current)' if current else ''}")


@products_app.command("list")
@friendly
def products_list(
    store: StoreOpt = None, as_json: JsonOpt = False,
    type: Annotated[str | None, typer.Option("--type")] = None,
    obs_id: Annotated[str | None, typer.Option("--obs-id")] = None,
    detector: Annotated[str | None, typer.Option("--detector")] = None,
    run: Annotated[str | None, typer.Option("--run")] = None,
    limit: int = 200,
    version: Annotated[str | None, typer.Option("--version")] = None,
    since: Annotated[str | None, typer.Option(help="Created at or after: ISO date or age (7d, 24h).")] = None,
    until: Annotated[str | None, typer.Option(help="Created before: ISO date or age (7d, 24h).")] = None,
    pinned: Annotated[bool | None, typer.Option("--pinned/--unpinned", help="Only (un)pinned.")] = None,
    state: Annotated[str, typer.Option(help="available, deleted or all.")] = "all",
) -> None:
    """Products, newest first, filtered by type, observation, detector, version, time, run, state."""
    match = {k: v for k, v in {"obs_id": obs_id, "detector": detector}.items() if v is not None}
    with _client(store, engine=False) as client:
        found = client.store.find_products(type=type, match=match or None, run_id=run, limit=limit,
                                           version=version, pinned=pinned,
                                           **list_filters(state, since, until))
        pins = pinned_among(client.store, found)
        if as_json:
            output.print_json([product_json(p, p.id in pins) for p in found])
            return
        output.table("products", ["id", "type", "obs_id", "detector", "version", "size", "state", "uri"],
                     [(p.id, p.type, p.obs_id, p.detector, p.version, p.size,
                       p.state + (" pinned" if p.id in pins else ""), p.uri) for p in found])


@products_app.command("add")
@friendly
def products_add(
    path: Path,
    type: Annotated[str, typer.Option("--type", help="Product type, e.g. ep.aux.attitude.")] = "file",
    obs_id: Annotated[str | None, typer.Option("--obs-id")] = None,
    detector: Annotated[str | None, typer.Option("--detector")] = None,
    version: Annotated[str | None, typer.Option("--version")] = None,
    attr: Annotated[list[str] | None, typer.Option("--attr", help="KEY=VALUE (JSON values).")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a file from outside; activities parked waiting for it wake up."""
    attributes: dict[str, Any] = {}
    for item in attr or []:
        key, _, value = item.partition("=")
        try:
            attributes[key] = json.loads(value)
        except json.JSONDecodeError:
            attributes[key] = value
    with _client(store, engine=False) as client:
        rec = client.add_product(path, type=type, obs_id=obs_id, detector=detector, version=version,
                                 attributes=attributes)
        if as_json:
            output.print_json(rec)
        else:
            output.console.print(f"{rec.id} {rec.type} {rec.uri}")


@app.command()
@friendly
def demo(
    name: Annotated[str | None, typer.Argument(help="Which demo: mini, or one a pipeline package "
                                              "provides (xray, radio, bursts...); default: the "
                                              "X-ray pipeline when installed, else mini.")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a demonstration end to end on the embedded engine and say where to look."""
    demos = {ep.name: ep for ep in entry_points(group="skyweave.demos")}
    chosen = name or ("xray" if "xray" in demos else "mini")
    if chosen == "mini":
        run_demo(store=store, as_json=as_json)
        return
    if chosen not in demos:
        raise ParameterError(f"no demo named {chosen!r}",
                             hint=f"available: {', '.join(['mini', *sorted(demos)])}")
    demos[chosen].load()(store=store, as_json=as_json)


app.command()(init)
tasks_app.command("remove")(tasks_remove)
app.command("cleanup")(friendly(cleanup))
app.command("prune")(friendly(prune_command))
products_app.command("pin")(friendly(products_pin))
products_app.command("unpin")(friendly(products_unpin))
products_app.command("show")(friendly(products_show))
products_app.command("export")(products_export)

app.add_typer(prov_app, name="prov")
app.add_typer(export_app, name="export")

app.command()(controller)
app.command()(server)
app.add_typer(tokens_app, name="tokens")
app.command()(worker)
app.command()(listen)
app.add_typer(dead_letters_app, name="dead-letters")
app.add_typer(triggers_app, name="triggers")
app.add_typer(workflows_app, name="workflows")
app.command()(lineage)
app.command()(impact)
app.command()(reprocess)
products_app.command("recompute")(products_recompute)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
