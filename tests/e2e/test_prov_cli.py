"""``skyweave prov export`` end to end: a real run through the CLI, every format read back by ``prov``."""

from __future__ import annotations

from prov.model import ProvDocument, ProvEntity, ProvGeneration

from .helpers import CLI, WORKFLOWS, flat

BASIC = WORKFLOWS / "basic.py"


def test_prov_export_formats_and_errors(cli: CLI) -> None:
    run_id = cli("run", f"{BASIC}:simple", "--param", "n=2", "--json").ok().json()["run_id"]
    docs = {}
    for fmt, prov_fmt in (("provjson", "json"), ("provn", "provn"), ("provxml", "xml"), ("provdm", "json")):
        res = cli("prov", "export", run_id, "--format", fmt).ok()
        docs[fmt] = ProvDocument.deserialize(content=res.out, format=prov_fmt)
    assert docs["provjson"] == docs["provn"] == docs["provxml"]
    products = [e for e in docs["provjson"].get_records(ProvEntity) if str(e.identifier).startswith("swprd:")]
    assert len(products) == 2 and len(list(docs["provjson"].get_records(ProvGeneration))) == 2
    assert "voprov" in {ns.prefix for ns in docs["provdm"].namespaces}
    assert "ivo://skyweave.local/activity?" in res.out

    out = cli.cwd / "lineage.provn"
    product = str(products[0].identifier).removeprefix("swprd:")
    cli("prov", "export", "--product", product, "--format", "provn", "--out", str(out)).ok()
    assert ProvDocument.deserialize(str(out), format="provn").get_record(f"swprd:{product}")

    bad = cli("prov", "export", run_id, "--format", "rdf")
    assert bad.code == 2 and "Traceback" not in bad.err
    assert "unknown export format 'rdf'" in flat(bad.err)
    assert all(f in flat(bad.err) for f in ("provjson", "provn", "provxml", "provdm"))
    missing = cli("prov", "export", "run-doesnotexist", "--format", "provn")
    assert missing.code == 3 and "run-doesnotexist" in flat(missing.err) and "Traceback" not in missing.err
    missing = cli("prov", "export", "--product", "prd-nope")
    assert missing.code == 3 and "prd-nope" in flat(missing.err)
    neither = cli("prov", "export")
    assert neither.code != 0 and "Traceback" not in neither.err
