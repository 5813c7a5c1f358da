"""Looking at runs: ``skyweave runs``, ``skyweave status [RUN]`` and ``skyweave logs [ID]``.

``status`` and ``logs`` without an id look at the newest run of the store (what was just run, the
usual question); ``logs`` takes an activity id (its attempts' output) or a run id (the output of
each of its activities that has any).  Activities show when they started and ended.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from skyweave.cli import output
from skyweave.cli.common import JsonOpt, StoreOpt, friendly
from skyweave.client import Client
from skyweave.errors import NotFoundError
from skyweave.logs import log_parts
from skyweave.model.ids import RUN
from skyweave.model.records import ActivityRecord

SHOWN = 200
"""Activities listed in a table or shown by ``logs RUN`` (``--json`` has them all)."""


def latest_run(client: Client) -> str:
    """The id of the newest run of the store: what ``status`` and ``logs`` show by default."""
    newest = client.store.list_runs(limit=1, graph=False)
    if not newest:
        raise NotFoundError(f"store {client.settings.store_dir} has no runs yet",
                            hint="start one with `skyweave run PATH.py:WORKFLOW`")
    return newest[0].id


def print_summary(summary: dict[str, Any]) -> None:
    colour = {"succeeded": "green", "failed": "red"}.get(summary["status"], "yellow")
    output.console.print(output.styled(
        f"run [bold]{{}}[/] ({{}}) [{colour}]{{}}[/]: {{}} activities {{}}, {{}} products; store {{}}",
        summary["run_id"], summary["workflow"], summary["status"], summary["activities"],
        summary["by_state"], summary["products"], summary["store"]))


def activity_json(a: ActivityRecord, digests: dict[tuple[str, str], str] | None = None) -> dict[str, Any]:
    """An activity as JSON; ``image_digest`` is the image its last attempt ran in, else (not run in
    a container yet, or recorded before skyweave kept it) its version's pinned one (``digests``)."""
    return {"id": a.id, "task": a.task_name, "version": a.task_version, "node": a.node, "key": a.key,
            "state": a.state, "priority": a.priority, "attempt": a.attempt, "detours": len(a.detours),
            "started_at": a.started_at, "ended_at": a.ended_at,
            "error": (a.error or {}).get("message"), "exit_code": a.exit_code, "command": a.command,
            "image_digest": a.image_digest or (digests or {}).get((a.task_name, a.task_version)),
            "waiting": waiting(a)}


def waiting(a: ActivityRecord) -> str | None:
    """Why a dispatched activity has not started, if the controller said (a ``site-wait`` detour:
    docs/operations.md, "Several sites")."""
    if a.state != "dispatched":
        return None
    return next((d.reason for d in reversed(a.detours) if d.kind == "site-wait" and d.ended_at is None), None)


def image_digests(client: Client) -> dict[tuple[str, str], str]:
    """The pinned image digest of every registered task version that runs in a container."""
    return {(s.name, s.version): s.image_digest for s, _ in client.store.list_tasks() if s.image_digest}


@friendly
def status(
    run_id: Annotated[str | None, typer.Argument(help="The run (default: the newest one).")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A run's state, activity counts and products, and when each activity started and ended."""
    with Client(store, engine=False) as client:
        run_id = run_id or latest_run(client)
        summary = client.summary(run_id)
        acts = client.store.list_activities(run_id=run_id)
        if as_json:
            digests = image_digests(client)
            summary["activities_detail"] = [activity_json(a, digests) for a in acts]
            output.print_json(summary)
            return
        print_summary(summary)
        output.table(f"activities of {run_id}",
                     ["id", "task", "version", "key", "state", "prio", "attempt", "detours", "started",
                      "ended"],
                     [(a.id, a.task_name, a.task_version, a.key, a.state, a.priority, a.attempt,
                       len(a.detours), output.when(a.started_at), output.when(a.ended_at))
                      for a in acts[:SHOWN]])
        if len(acts) > SHOWN:
            output.console.print(f"… and {len(acts) - SHOWN} more (use --json)")
        for a in acts:
            if reason := waiting(a):
                output.console.print(f"{a.id} ({a.task_name}) {reason}", markup=False, highlight=False)


@friendly
def runs(store: StoreOpt = None, as_json: JsonOpt = False,
         state: Annotated[str | None, typer.Option(help="Only runs in this state.")] = None,
         limit: int = 50) -> None:
    """Recent runs, newest first."""
    with Client(store, engine=False) as client:
        records = client.store.list_runs(states=[state] if state else None, limit=limit, graph=False)
        if as_json:
            output.print_json([{"run_id": r.id, "workflow": r.workflow, "status": r.state,
                                "priority": r.priority, "created_at": r.created_at,
                                "ended_at": r.ended_at} for r in records])
            return
        output.table("runs", ["id", "workflow", "status", "prio", "created", "ended"],
                     [(r.id, r.workflow, r.state, r.priority, output.when(r.created_at),
                       output.when(r.ended_at)) for r in records])


@friendly
def logs(
    target: Annotated[str | None, typer.Argument(
        metavar="[ACTIVITY_OR_RUN]",
        help="An activity, or a run (each of its activities); default: the newest run.")] = None,
    store: StoreOpt = None,
) -> None:
    """An activity's output and error (a command's line and exit code first); a run's, per activity."""
    with Client(store, engine=False) as client:
        if target is not None and not target.startswith(f"{RUN}-"):
            if not _show_activity(client, client.store.get_activity(target), heading=False):
                output.console.print(f"activity {target} has no captured output")
            return
        run_id = target or latest_run(client)
        acts = client.store.list_activities(run_id=run_id)
        shown = sum(_show_activity(client, act, heading=True) for act in acts[:SHOWN])
        if len(acts) > SHOWN:
            output.console.print(f"… and {len(acts) - SHOWN} more activities: "
                                 f"`skyweave logs ACTIVITY` (ids from `skyweave status {run_id} --json`)")
        if not shown:
            output.console.print(f"no activity of run {run_id} has captured output")


def _show_activity(client: Client, act: ActivityRecord, *, heading: bool) -> bool:
    """Print what ``act`` left (``logs.log_parts``); False if there is nothing."""
    parts = log_parts(client.store, client.settings.store_dir, act)
    if not parts:
        return False
    if heading:
        key = f"[{act.key}]" if act.key else ""
        output.console.rule(f"{act.id} {act.task_name}{key} ({act.state})", style="bold")
    for rule, text in parts:
        if rule is not None:
            output.console.rule(rule)
        sys.stdout.write(text)
    return True
