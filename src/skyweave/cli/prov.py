"""``skyweave prov export (RUN_ID | --product ID) --format provjson|provn|provxml|provdm|voprov``
``[--out FILE]``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from skyweave.cli import output
from skyweave.cli.common import friendly
from skyweave.config.settings import load_settings
from skyweave.errors import SkyweaveError
from skyweave.provenance.export import FORMATS, export
from skyweave.store import open_store

prov_app = typer.Typer(no_args_is_help=True, help="Provenance exports (W3C PROV, IVOA ProvDM).")

@prov_app.command("export")
@friendly
def export_cmd(
    run_id: Annotated[str | None, typer.Argument(help="The run to export.")] = None,
    product: Annotated[str | None, typer.Option("--product", help="Export the upstream provenance "
                                                "of this product instead of a run.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f",
                                     help="One of " + ", ".join(FORMATS) + ".")] = "provjson",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here instead of stdout.")] = None,
    depth: Annotated[int | None, typer.Option("--depth",
                                              help="With --product: most activity steps up.")] = None,
    store: Annotated[str | None, typer.Option("--store", help="Store directory or URL.")] = None,
) -> None:
    """Write a run (or a product's upstream lineage) as W3C PROV-JSON, PROV-N, PROV-XML or IVOA ProvDM."""
    if (run_id is None) == (product is None):
        raise SkyweaveError("give a RUN_ID or --product PRODUCT_ID (one of them)",
                            hint="skyweave prov export run-01… --format provn")
    settings = load_settings(store=store)
    st = open_store(settings.store)
    try:
        text = export(st, fmt=fmt, run_id=run_id, product_id=product, authority=settings.authority,
                      max_depth=depth)
    finally:
        st.close()
    if out is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        out.write_text(text, encoding="utf-8")
        output.err_console.print(f"wrote {out} ({len(text)} characters, {fmt})", highlight=False)
