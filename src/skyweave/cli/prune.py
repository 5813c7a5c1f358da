"""``skyweave prune``: remove what grows with every run and is not provenance — bus events kept
only for listener groups idle past the limit, old dead letters, old trigger ledger rows, old
activity logs — by the ``[prune]`` settings (``controller/prune.py`` says what is never pruned).
``skyweave cleanup`` is its sibling for product files (``[[retention]]`` rules)."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from skyweave.bus import open_bus
from skyweave.cli import output
from skyweave.cli.common import JsonOpt, StoreOpt
from skyweave.config.settings import load_settings
from skyweave.controller.prune import PruneReport, prune
from skyweave.errors import SkyweaveError
from skyweave.storage import Storage, open_storage
from skyweave.store import open_store

BusOpt = Annotated[str | None, typer.Option("--bus", help="Bus URL (default <store>/bus.db).")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show what would go; remove nothing.")]


def prune_command(store: StoreOpt = None, bus: BusOpt = None, dry_run: DryRunOpt = False,
                  as_json: JsonOpt = False) -> None:
    """Remove bus events kept only for listener groups idle past the limit, old dead letters, old
    trigger ledger rows and old activity logs, by the \\[prune] settings (provenance is kept)."""
    settings = load_settings(store=store, bus=bus)
    opened = open_store(settings.store, pool_size=settings.store_pool_size, retry_s=settings.store_retry_s)
    try:
        the_bus = open_bus(settings.bus_url(shared=True), aging_s=settings.aging_s,
                           max_deliveries=settings.max_deliveries)
        try:
            logs: Storage | None = open_storage(settings.storage_location).within("logs")
        except SkyweaveError as exc:
            output.err_console.print(f"logs are not pruned: {exc.message}", highlight=False)
            logs = None
        try:
            report = prune(opened, [the_bus], logs, settings.prune, time.time(), dry_run=dry_run)
        finally:
            the_bus.close()
    finally:
        opened.close()
    if as_json:
        output.print_json(report.to_json())
    else:
        _print(report)
    if not report.ok:
        raise typer.Exit(1)


def _print(report: PruneReport) -> None:
    title = "prune plan (dry run: nothing removed)" if report.dry_run else "pruned"
    rows: list[tuple[str, str, object]] = []
    for url, pruned in report.bus:
        rows += [("listener group", f"{group} (on {url})", "idle") for group in pruned.groups]
        rows += [("bus events", url, pruned.events), ("dead letters", url, pruned.dead_letters)]
    rows += [("trigger ledger", name, n) for name, n in sorted(report.trigger_firings.items())]
    rows.append(("log files", f"{report.log_bytes} bytes", len(report.logs)))
    rows += [("log files kept", why, n) for why, n in sorted(report.logs_kept.items())]
    output.table(title, ["kind", "where / what", "count"], rows)
    output.console.print(report.summary(), highlight=False)
    for what, error in report.failed:
        output.error(f"could not prune {what}: {error}", "the rest was pruned; fix the cause and run "
                                                          "`skyweave prune` again")
