"""``skyweave products export (--run RUN | PRODUCT...) --to DIR [--link]``: results out of the store.

The copying rules (names, collisions, nothing overwritten, checksums) are in ``storage/export.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from skyweave.cli import output
from skyweave.cli.common import JsonOpt, StoreOpt, friendly
from skyweave.client import Client
from skyweave.errors import ParameterError
from skyweave.model.records import ProductRecord
from skyweave.storage.export import export_products


@friendly
def products_export(
    ids: Annotated[list[str] | None, typer.Argument(metavar="[PRODUCT]...", help="Product ids.")] = None,
    run: Annotated[str | None, typer.Option("--run", help="Every product of this run.")] = None,
    type: Annotated[str | None, typer.Option("--type", help="With --run: only this product type.")] = None,
    to: Annotated[Path | None, typer.Option("--to", help="The folder (created if needed).")] = None,
    link: Annotated[bool, typer.Option("--link", help="Symbolic links, not copies.")] = False,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy (or link) products' files into a folder, by id or every product of a run."""
    if to is None:
        raise ParameterError("say where to put the files", hint="add --to DIR")
    if bool(ids) == (run is not None):
        raise ParameterError("export either products by id or the products of one run",
                             hint="skyweave products export PRODUCT... --to DIR, or --run RUN --to DIR")
    if type is not None and run is None:
        raise ParameterError("--type selects among the products of a run", hint="add --run RUN")
    with Client(store, engine=False) as client:
        chosen: list[ProductRecord]
        if run is not None:
            client.store.get_run_head(run)  # a clear error for an unknown run
            chosen = client.store.find_products(run_id=run, type=type, state=None)
        else:
            chosen = [client.store.get_product(pid) for pid in ids or []]
        done, skipped = export_products(chosen, to.absolute(), link=link)
    if as_json:
        output.print_json({
            "folder": str(to.absolute()),
            "exported": [{"product": e.product.id, "path": str(e.path), "action": e.action,
                          "type": e.product.type, "uri": e.product.uri} for e in done],
            "skipped": [{"product": s.product.id, "reason": s.reason} for s in skipped]})
        return
    for e in done:
        output.console.print(f"{e.action:8} {e.product.id} -> {e.path}", highlight=False, soft_wrap=True)
    for s in skipped:
        output.err_console.print(f"skipped  {s.product.id}: {s.reason}", highlight=False, soft_wrap=True)
    verb = "linked" if link else "copied"
    output.console.print(f"{len(done)} product(s) in {to.absolute()} "
                         f"({sum(e.action != 'present' for e in done)} {verb} now)", highlight=False)
    if run is not None and not done and not skipped:
        output.console.print(f"run {run} has no products" + (f" of type {type}" if type else ""))
