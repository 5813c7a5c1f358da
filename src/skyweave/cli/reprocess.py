"""``skyweave reprocess``: what would run again after a change, and why; then run it."""

from __future__ import annotations

from typing import Annotated

import typer

from skyweave import reprocess as rp
from skyweave.cli import output
from skyweave.cli.common import JsonOpt, StoreOpt, friendly
from skyweave.client import Client
from skyweave.errors import ControlError, ParameterError


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
        output.print_json({"plan": plan_json(plan), "runs": summaries})
        return
    _show(plan, False, False)
    for s in summaries:
        output.console.print(f"new run {s['run_id']}: {s['status']}; {s['ran']} activities ran, "
                             f"{s['reused']} reused")


def plan_json(plan: rp.Plan) -> dict[str, object]:
    return {"runs": plan.runs, "rerun": len(plan.rerun), "reuse": len(plan.activities) - len(plan.rerun),
            "activities": [{"activity_id": a.activity_id, "run_id": a.run_id, "task": a.task,
                            "version": a.version, "key": a.key, "action": a.action, "reasons": a.reasons}
                           for a in plan.activities]}


def _show(plan: rp.Plan, as_json: bool, dry_run: bool) -> None:
    if as_json:
        output.print_json(plan_json(plan))
        return
    rows = [(a.run_id, a.activity_id, f"{a.task}@{a.version}", a.key, a.action, "; ".join(a.reasons))
            for a in plan.activities if a.action == "rerun"]
    title = "would re-run" if dry_run else "re-runs"
    output.table(title, ["run", "activity", "task", "key", "", "why"], rows)
    output.console.print(f"{len(plan.rerun)} to re-run, {len(plan.activities) - len(plan.rerun)} to reuse, "
                         f"in {len(plan.runs)} run(s)")


@friendly
def products_recompute(
    product_id: Annotated[str, typer.Argument(help="A product (typically one cleanup deleted).")],
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make a product again from its provenance: its run is submitted again, everything still
    intact is reused, and the activity that made it (and only what it needs) runs."""
    try:
        client = Client(store)
    except ControlError:
        client = Client(store, engine=False)
    with client:
        old = client.store.get_product(product_id)
        if old.activity_id is None:
            raise ParameterError(f"product {product_id} came from outside skyweave; it cannot be recomputed",
                                 hint="add the file again with `skyweave products add`")
        maker = client.store.get_activity(old.activity_id)
        record = rp.resubmit(client.store, maker.run_id)
        client.bus.publish([rp.announce(record)])
        if client.engine is None:
            output.console.print(f"submitted {record.id}; the running controller will make it")
            return
        final = client.wait(record.id)
        again = [a for a in client.store.list_activities(run_id=record.id)
                 if a.node == maker.node and a.key == maker.key]
        made = [p for a in again for p in client.store.find_products(activity_id=a.id)
                if p.name == old.name and p.type == old.type]
    if as_json:
        output.print_json({"run_id": record.id, "status": final.state, "old": product_id,
                           "new": [p.id for p in made]})
        return
    if not made:
        output.console.print(f"run {record.id} {final.state}, but made no new copy of {product_id}")
        raise typer.Exit(1)
    output.console.print(f"{product_id} made again as {made[0].id} ({made[0].uri}) by run {record.id}")
