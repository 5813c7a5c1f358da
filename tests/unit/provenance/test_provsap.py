"""ProvSAP (``provenance/provsap.py``) on a real run: parameters as the IVOA draft and OPUS write
them, the walk by relations in each direction, every response format read back."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from prov.model import ProvActivity, ProvDocument, ProvEntity

from skyweave.client import Client
from skyweave.errors import NotFoundError
from skyweave.provenance import ids
from skyweave.provenance.provsap import ProvSapError, parse_query, provsap


def _locals(doc: ProvDocument, kind: type) -> set[str]:
    return {str(r.identifier.localpart) for r in doc.get_records(kind)}


def _final(client: Client, run_id: str) -> tuple[str, str]:
    """A calibrated event list of the run and the activity that made it (from events and attitude)."""
    products = client.store.find_products(run_id=run_id, state=None)
    final = sorted((p for p in products if p.type == "demo.l2.events"), key=lambda p: p.id)[0]
    assert final.activity_id
    return final.id, final.activity_id


def test_parameters_as_the_draft_and_opus_write_them() -> None:
    query = parse_query([("id", "prd-1"), ("ID", "act-2"), ("depth", "2"), ("Direction", "forward"),
                         ("MODEL", "w3c"), ("responseformat", "prov-n"), ("STEPS", "true")])
    assert (query.ids, query.depth, query.direction, query.model, query.response_format) == (
        ("prd-1", "act-2"), 2, "FORTH", "W3C", "PROV-N")
    default = parse_query({"ID": "prd-1"})
    assert (default.depth, default.direction, default.model, default.response_format) == (
        None, "BACK", "IVOA", "PROV-JSON")


@pytest.mark.parametrize(("params", "message"), [
    ({}, "at least one ID"),
    ({"ID": ""}, "at least one ID"),
    ({"ID": "x", "DEPTH": "-1"}, "DEPTH"),
    ({"ID": "x", "DEPTH": "two"}, "DEPTH"),
    ({"ID": "x", "DIRECTION": "SIDEWAYS"}, "BACK, FORTH, FORWARD"),
    ({"ID": "x", "MODEL": "DM"}, "IVOA, W3C"),
    ({"ID": "x", "RESPONSEFORMAT": "PROV-PDF"}, "PROV-SVG"),
    ({"ID": "x", "DEPHT": "1"}, "unknown ProvSAP parameter 'DEPHT'"),
])
def test_a_bad_request_says_what_is_allowed(params: dict[str, str], message: str) -> None:
    with pytest.raises(ProvSapError) as info:
        parse_query(params)
    assert message in f"{info.value.message} {info.value.hint}"
    with pytest.raises(ProvSapError, match="given 2 times"):
        parse_query([("ID", "x"), ("DEPTH", "1"), ("DEPTH", "2")])


def test_depth_counts_relations_back_from_a_product(xray: tuple[Client, str]) -> None:
    client, run_id = xray
    product, maker = _final(client, run_id)
    alone = ProvDocument.deserialize(content=provsap(client.store, {"ID": product, "DEPTH": "0",
                                                                    "MODEL": "W3C"}).body, format="json")
    assert product in _locals(alone, ProvEntity) and maker not in _locals(alone, ProvActivity)
    one = ProvDocument.deserialize(content=provsap(client.store, {"ID": product, "DEPTH": "1",
                                                                  "MODEL": "W3C"}).body, format="json")
    assert maker in _locals(one, ProvActivity)
    inputs = {u.product_id for u in client.store.list_usages(activity_id=maker)}
    assert inputs and not inputs & _locals(one, ProvEntity), "DEPTH=1 stops at the generating activity"
    two = ProvDocument.deserialize(content=provsap(client.store, {"ID": product, "DEPTH": "2",
                                                                  "MODEL": "W3C"}).body, format="json")
    assert inputs <= _locals(two, ProvEntity)
    everything = ProvDocument.deserialize(content=provsap(client.store, {"ID": product, "MODEL": "W3C"}).body,
                                          format="json")
    run_acts = {a.id for a in client.store.list_activities(run_id=run_id)}
    assert maker in _locals(everything, ProvActivity) and len(_locals(everything, ProvActivity) & run_acts) > 2


def test_forth_follows_what_was_made_from_an_input(xray: tuple[Client, str]) -> None:
    client, run_id = xray
    product, maker = _final(client, run_id)
    first_input = sorted(u.product_id for u in client.store.list_usages(activity_id=maker))[0]
    ivo = ids.product_id(first_input)
    doc = ProvDocument.deserialize(content=provsap(client.store, [("ID", ivo), ("DIRECTION", "FORTH"),
                                                                  ("MODEL", "W3C")],
                                                   authority="skyweave.local").body, format="json")
    assert maker in _locals(doc, ProvActivity) and product in _locals(doc, ProvEntity)
    back = ProvDocument.deserialize(content=provsap(client.store, [("ID", ivo), ("DIRECTION", "BACK"),
                                                                   ("MODEL", "W3C")]).body, format="json")
    assert maker not in _locals(back, ProvActivity)


@pytest.mark.parametrize(("fmt", "media"), [("PROV-JSON", "application/json"),
                                            ("PROV-N", "text/provenance-notation"),
                                            ("PROV-XML", "application/provenance+xml"),
                                            ("PROV-SVG", "image/svg+xml")])
@pytest.mark.parametrize("model", ["IVOA", "W3C"])
def test_every_format_and_model_reads_back(xray: tuple[Client, str], fmt: str, media: str, model: str) -> None:
    client, run_id = xray
    product, maker = _final(client, run_id)
    response = provsap(client.store, {"ID": product, "DEPTH": "2", "MODEL": model, "RESPONSEFORMAT": fmt})
    assert response.media_type == media
    if fmt == "PROV-SVG":
        svg = ET.fromstring(response.body)
        texts = "".join(svg.itertext())
        assert product[:12] in texts and maker[:12] in texts
        assert svg.find("{http://www.w3.org/2000/svg}g[@class='activity']") is not None
        return
    if (model, fmt) == ("IVOA", "PROV-JSON"):  # voprov's dialect (read by voprov: test_voprov.py)
        records = json.loads(response.body)
        assert f"swprd:{product}" in records["datasetEntity"] and f"swact:{maker}" in records["activity"]
        assert records["activityDescription"] and records["isDescribedBy"]
        return
    doc = ProvDocument.deserialize(content=response.body, format={"PROV-JSON": "json", "PROV-N": "provn",
                                                                   "PROV-XML": "xml"}[fmt])
    assert product in _locals(doc, ProvEntity) and maker in _locals(doc, ProvActivity)
    if model == "IVOA":
        assert "voprov" in {ns.prefix for ns in doc.namespaces}


def test_a_run_id_stands_for_its_activities_and_unknown_ids_are_not_found(xray: tuple[Client, str]) -> None:
    client, run_id = xray
    doc = ProvDocument.deserialize(content=provsap(client.store, {"ID": run_id, "DEPTH": "0", "MODEL": "W3C"}).body,
                                   format="json")
    assert {a.id for a in client.store.list_activities(run_id=run_id)} <= _locals(doc, ProvActivity)
    with pytest.raises(NotFoundError, match="prd-nothing"):
        provsap(client.store, {"ID": "prd-nothing"})
    with pytest.raises(NotFoundError, match="not a product, activity or run of this service"):
        provsap(client.store, {"ID": "ivo://elsewhere.org/product?prd-1"})


def test_a_walk_over_the_bound_is_marked_truncated(xray: tuple[Client, str]) -> None:
    client, run_id = xray
    product, _maker = _final(client, run_id)
    assert provsap(client.store, {"ID": product}, max_nodes=3).truncated
    assert not provsap(client.store, {"ID": product}).truncated
