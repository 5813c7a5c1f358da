"""``skyweave reprocess``: what would run again after a change, and why; then run it."""

from __future__ import annotations

from typing import Annotated

import typer

from skyweave import reprocess as rp
from skyweave.cli import output
from skyweave.cli.common import JsonOpt, StoreOpt, friendly
from skyweave.client import Client
from skyweave.errors import ControlError


@friendly
def reprocess(
    run: Annotated[str | None, typer.Option("--run", help="Reprocess this run.")] = None,
    product: Annotated[str | None, typer.Option("--product", help="Reprocess the runs that used it.")] = None,
    task: Annotated[str | None, typer.Option("--task", help="Reprocess runs where this task ran.")] = None,
    version: Annotated[str | None, typer.Option("--version", help="Only where --task ran at this version.")
                       ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would re-run and why.")] = False,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Say what would re-run and why (--dry-run), or submit the affected runs again: unchanged
    activities are reused, changed ones and everything downstream of them run."""
    with Client(store, engine=False) as client:
        plan = rp.plan(client.store, run_id=run, product_id=product, task=task, version=version)
    if dry_run or not plan.rerun:
        _show(plan, as_json, dry_run)
        return
    try:
        client = Client(store)
    except ControlError:  # a controller runs on this store: hand it the work
        client = Client(store, engine=False)
    with client:
        new = []
        for run_id in plan.runs:
            record = rp.resubmit(client.store, run_id)
            client.bus.publish([rp.announce(record)])
            new.append(record.id)
        if client.engine is not None:
            for run_id in new:
                client.wait(run_id)
        summaries = [client.summary(r) for r in new]
        for summary in summaries:
            acts = client.store.list_activities(run_id=summary["run_id"])
            summary["reused"] = sum(1 for a in acts if a.detours and a.detours[-1].kind == "reused")
            summary["ran"] = len(acts) - summary["reused"]
    if as_json:
        output.print_json({"plan": _plan_json(plan), "runs": summaries})
        return
    _show(plan, False, False)
    for s in summaries:
        output.console.print(f"new run {s['run_id']}: {s['status']}; {s['ran']} activities ran, "
                             f"{s['reused']} reused")


def _plan_json(plan: rp.Plan) -> dict[str, object]:
    return {"runs": plan.runs, "rerun": len(plan.rerun), "reuse": len(plan.activities) - len(plan.rerun),
            "activities": [{"activity_id": a.activity_id, "run_id": a.run_id, "task": a.task,
                            "version": a.version, "key": a.key, "action": a.action, "reasons": a.reasons}
                           for a in plan.activities]}


def _show(plan: rp.Plan, as_json: bool, dry_run: bool) -> None:
    if as_json:
        output.print_json(_plan_json(plan))
        return
    rows = [(a.run_id, a.activity_id, f"{a.task}@{a.version}", a.key, a.action, "; ".join(a.reasons))
            for a in plan.activities if a.action == "rerun"]
    title = "would re-run" if dry_run else "re-runs"
    output.table(title, ["run", "activity", "task", "key", "", "why"], rows)
    output.console.print(f"{len(plan.rerun)} to re-run, {len(plan.activities) - len(plan.rerun)} to reuse, "
                         f"in {len(plan.runs)} run(s)")
