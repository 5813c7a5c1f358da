"""``export(store, run_id=… | product_id=…, fmt=…)``: one call from store records to standard text."""

from __future__ import annotations

from skyweave.errors import SkyweaveError
from skyweave.provenance import provdm, w3c
from skyweave.provenance.collect import Bundle, collect_product, collect_run
from skyweave.provenance.ids import DEFAULT_AUTHORITY
from skyweave.provenance.voprov_json import to_voprov_json
from skyweave.store.base import Store

FORMATS: dict[str, str] = {
    "provjson": "W3C PROV-JSON",
    "provn": "W3C PROV-N",
    "provxml": "W3C PROV-XML",
    "provdm": "IVOA ProvDM vocabulary in plain W3C PROV-JSON (prov reads it)",
    "voprov": "IVOA ProvDM as voprov reads it: PROV-JSON with ProvDM record types",
}


class UnknownFormatError(SkyweaveError):
    exit_code = 2


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise UnknownFormatError(
            f"unknown export format {fmt!r}",
            hint="the formats are " + ", ".join(f"{k} ({v})" for k, v in FORMATS.items()),
        )
    return fmt


def render(bundle: Bundle, fmt: str) -> str:
    """The text of ``bundle`` in export format ``fmt`` (one of ``FORMATS``)."""
    check_format(fmt)
    if fmt == "provdm":
        return provdm.serialize(provdm.to_provdm(bundle), "json")
    if fmt == "voprov":
        return to_voprov_json(provdm.to_provdm(bundle))
    return w3c.serialize(w3c.to_prov(bundle), {"provjson": "json", "provn": "provn", "provxml": "xml"}[fmt])


def export(store: Store, *, fmt: str, run_id: str | None = None, product_id: str | None = None,
           authority: str = DEFAULT_AUTHORITY, max_depth: int | None = None) -> str:
    """Export one run, or the upstream provenance of one product (exactly one of them)."""
    check_format(fmt)
    if (run_id is None) == (product_id is None):
        raise SkyweaveError("export needs a run id or a product id (not both)",
                            hint="skyweave prov export RUN_ID --format F, or --product PRODUCT_ID")
    if run_id is not None:
        bundle = collect_run(store, run_id, authority=authority)
    else:
        assert product_id is not None
        bundle = collect_product(store, product_id, authority=authority, max_depth=max_depth)
    return render(bundle, fmt)
