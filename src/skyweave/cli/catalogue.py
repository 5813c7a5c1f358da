"""``skyweave cleanup``, ``products pin|unpin|show`` and the catalogue filters of ``products list``.

The commands are plain functions; ``cli/main.py`` registers them wrapped in its ``friendly``
decorator (this module must not import ``main``: ``python -m skyweave.cli.main`` would load it twice).
"""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from skyweave.cli import output
from skyweave.cli.common import JsonOpt, StoreOpt
from skyweave.config.settings import Settings, load_settings
from skyweave.errors import NotFoundError, ParameterError
from skyweave.model.records import ActivityRecord, ProductRecord
from skyweave.storage import open_storage
from skyweave.storage.cleanup import CleanupPlan, CleanupResult, apply_cleanup, plan_cleanup
from skyweave.store import Store, open_store

IdsArg = Annotated[list[str], typer.Argument(help="Product ids.")]

STATES = {"available": "available", "deleted": "deleted", "all": None}
"""``products list --state`` values -> the ``find_products`` state filter."""

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, "w": 604_800.0}


def parse_when(text: str, now: float, option: str) -> float:
    """Epoch seconds for ``--since``/``--until``: an ISO date or date-time (UTC unless it has an
    offset), or an age such as ``7d``, ``24h``, ``30m``, ``2w`` (that long before ``now``)."""
    relative = _RELATIVE.match(text)
    if relative:
        return now - float(relative.group(1)) * _UNIT_S[relative.group(2)]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ParameterError(f"{option} {text!r} is neither an ISO date nor an age",
                             hint=f"write e.g. {option} 2025-06-01, {option} 2025-06-01T12:00 or "
                                  f"{option} 7d (also s, m, h, w)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def list_filters(state: str, since: str | None, until: str | None) -> dict[str, Any]:
    """``find_products`` keyword arguments for ``products list --state/--since/--until``."""
    if state not in STATES:
        raise ParameterError(f"--state {state!r} is not one of {', '.join(STATES)}",
                             hint="use --state available, --state deleted or --state all")
    now = time.time()
    return {"state": STATES[state],
            "created_after": None if since is None else parse_when(since, now, "--since"),
            "created_before": None if until is None else parse_when(until, now, "--until")}


def pinned_among(store: Store, found: list[ProductRecord]) -> set[str]:
    """The ids of ``found`` that are pinned (one query for all pinned products)."""
    if not found:
        return set()
    ids = {p.id for p in found}
    return {p.id for p in store.find_products(pinned=True, state=None) if p.id in ids}


def product_json(product: ProductRecord, pinned: bool) -> dict[str, Any]:
    data: dict[str, Any] = output.to_jsonable(product)
    data["pinned"] = pinned
    return data


@contextmanager
def _open(store: str | None) -> Iterator[tuple[Store, Settings]]:
    settings = load_settings(store=store)
    opened = open_store(settings.store)
    try:
        yield opened, settings
    finally:
        opened.close()


# -- cleanup -------------------------------------------------------------------------------------
def cleanup(
    store: StoreOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan; delete nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Apply the retention rules (\\[\\[retention]] in skyweave.toml): delete old products' files,
    keeping pinned products and what they were made from; rows and provenance are kept."""
    with _open(store) as (opened, settings):
        rules = list(settings.retention)
        if not rules:
            output.err_console.print(
                "no retention rules: nothing to clean up. Add one to skyweave.toml, e.g.\n"
                '  [[retention]]\n  type = "ep.l1.*"\n  older_than_days = 30', highlight=False)
        products = open_storage(settings.storage_location).within("products")
        plan = plan_cleanup(opened, rules, time.time(), products)
        result = None if dry_run else apply_cleanup(opened, plan)
    if as_json:
        output.print_json({"dry_run": dry_run, "plan": plan.to_json(),
                           "result": None if result is None else result.to_json()})
    else:
        _print_plan(plan, dry_run)
        if result is not None:
            _print_result(result)
    if result is not None and not result.ok:
        raise typer.Exit(1)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


def _print_plan(plan: CleanupPlan, dry_run: bool) -> None:
    title = "cleanup plan (dry run: nothing deleted)" if dry_run else "cleanup"
    output.table(title, ["id", "type", "created", "size", "rule", "why"],
                 [(d.product.id, d.product.type, output.when(d.product.created_at), d.product.size,
                   d.rule_index, d.reason) for d in plan.delete])
    if plan.kept:
        output.table("kept", ["id", "type", "rule", "why"],
                     [(k.product.id, k.product.type, k.rule_index, k.reason) for k in plan.kept])
    verb = "would free" if dry_run else "to free"
    output.console.print(f"{plan.files} file(s) {verb} {_size(plan.bytes)} ({plan.bytes} bytes); "
                         f"{len(plan.kept)} kept", highlight=False)


def _print_result(result: CleanupResult) -> None:
    output.console.print(
        f"deleted {len(result.deleted)} file(s), freed {_size(result.bytes_freed)} "
        f"({result.bytes_freed} bytes); {len(result.already_gone)} already gone (marked deleted)",
        highlight=False)
    for pid, why in result.skipped:
        output.err_console.print(f"skipped {pid}: {why}", highlight=False)
    for pid, err in result.failed:
        output.error(f"could not delete {pid}: {err}",
                     "the product stays available; fix the cause and run `skyweave cleanup` again")


# -- pin / unpin ---------------------------------------------------------------------------------
def products_pin(ids: IdsArg, store: StoreOpt = None) -> None:
    """Pin products: cleanup keeps them and every product they were made from."""
    with _open(store) as (opened, _):
        opened.pin_products(ids, True)
    output.console.print(f"pinned {len(set(ids))} product(s)")


def products_unpin(ids: IdsArg, store: StoreOpt = None) -> None:
    """Unpin products: retention rules apply to them again."""
    with _open(store) as (opened, _):
        opened.pin_products(ids, False)
    output.console.print(f"unpinned {len(set(ids))} product(s)")


# -- show ----------------------------------------------------------------------------------------
def products_show(product_id: str, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """A product's record and state, the activity that made it (task@version, parameters, inputs)
    and, for a deleted product, the command that makes it again."""
    with _open(store) as (opened, _):
        info = describe(opened, product_id)
    if as_json:
        output.print_json(info)
        return
    _print_show(info)


def describe(store: Store, product_id: str) -> dict[str, Any]:
    """Everything ``products show`` prints, as JSON-ready data."""
    product = store.get_product(product_id)
    info: dict[str, Any] = {"product": product_json(product, bool(pinned_among(store, [product]))),
                            "activity": None, "recipe": None}
    if product.activity_id is None:
        info["recipe"] = {"command": None, "note": (
            "registered from outside (no generating activity): it cannot be recomputed; add the file "
            f"again with `skyweave products add FILE --type {product.type}`")}
        return info
    try:
        act = store.get_activity(product.activity_id)
    except NotFoundError:
        info["recipe"] = {"command": None, "note": f"its generating activity {product.activity_id} "
                                                   "is missing from the store (corrupted provenance)"}
        return info
    info["activity"] = _activity_json(store, act)
    info["recipe"] = _recipe(store, product, act)
    return info


def _activity_json(store: Store, act: ActivityRecord) -> dict[str, Any]:
    inputs = []
    for usage in store.list_usages(activity_id=act.id):
        try:
            state = store.get_product(usage.product_id).state
        except NotFoundError:
            state = "missing"
        inputs.append({"role": usage.role, "product_id": usage.product_id, "state": state})
    try:
        spec = store.get_task(act.task_name, act.task_version)
        image, digest = spec.image, spec.image_digest or None
    except NotFoundError:
        image = digest = None
    digest = act.image_digest or digest  # what ran, else what its version pins
    return {"id": act.id, "image": image, "image_digest": digest,
            "task": f"{act.task_name}@{act.task_version}", "task_name": act.task_name,
            "task_version": act.task_version, "code_hash": act.code_hash, "state": act.state,
            "run_id": act.run_id, "node": act.node, "key": act.key, "started_at": act.started_at,
            "ended_at": act.ended_at, "parameters": act.arguments, "inputs": inputs}


def _recipe(store: Store, product: ProductRecord, act: ActivityRecord) -> dict[str, Any]:
    try:
        run = store.get_run_head(act.run_id)
    except NotFoundError:
        return {"command": None, "note": f"its run {act.run_id} is missing from the store"}
    argv = ["skyweave", "run", run.workflow_ref]
    for key, value in run.params.items():
        argv += ["--param", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    try:
        ref = store.get_task(act.task_name, act.task_version).ref
    except NotFoundError:
        ref = ""
    note = (f"re-running run {run.id} ({run.workflow}) with its parameters makes it again as a new "
            f"product (steps whose outputs are intact are reused); the step was "
            f"{act.task_name}@{act.task_version} (code {act.code_hash[:19]}"
            + (f", kept at {ref}" if ref else "") + ")")
    if not run.workflow_ref.startswith("/") and ".py:" in run.workflow_ref:
        note += "; run it from the directory the run was submitted from"
    return {"command": shlex.join(argv), "argv": argv, "run_id": run.id, "workflow": run.workflow,
            "task": act.task_name, "version": act.task_version, "code_ref": ref, "note": note,
            "needed": product.state == "deleted"}


def _print_show(info: dict[str, Any]) -> None:
    p = info["product"]
    colour = "red" if p["state"] == "deleted" else "green"
    output.console.print(output.styled(f"[bold]{{}}[/] {{}} [{colour}]{{}}[/]{{}}", p["id"], p["type"],
                                       p["state"], " pinned" if p["pinned"] else ""))
    for key in ("name", "uri", "obs_id", "detector", "version", "checksum", "size", "run_id"):
        if p.get(key) is not None:
            output.console.print(f"  {key}: {p[key]}", highlight=False, markup=False)
    output.console.print(f"  created: {output.when(p['created_at'])} UTC", highlight=False)
    if p.get("attributes"):
        output.console.print(f"  attributes: {json.dumps(p['attributes'])}", highlight=False, markup=False)
    act = info["activity"]
    if act is not None:
        output.console.print(output.styled("made by [bold]{}[/] activity {} ({}) in run {}", act["task"],
                                           act["id"], act["state"], act["run_id"]), highlight=False)
        output.console.print(f"  parameters: {json.dumps(act['parameters'])}", highlight=False,
                             markup=False)
        for used in act["inputs"]:
            output.console.print(f"  input {used['role']}: {used['product_id']} ({used['state']})",
                                 highlight=False, markup=False)
    recipe = info["recipe"]
    if recipe is None:
        return
    if p["state"] == "deleted" or recipe["command"] is None:
        output.console.print("to make it again:" if recipe["command"] else "cannot be made again:")
        if recipe["command"]:
            output.console.print(f"  {recipe['command']}", highlight=False, markup=False)
        output.console.print(f"  {recipe['note']}", highlight=False, markup=False)
