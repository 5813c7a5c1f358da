"""``GET /api/v1/provsap``: the ProvSAP function behind the server's token check and error mapping."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from prov.model import ProvDocument

from tests.unit.server.conftest import Served


def test_provsap_answers_each_format_and_refuses_bad_requests(served: Served) -> None:
    url = "/api/v1/provsap"
    reply = served.http.get(url, params=[("id", served.product_id), ("model", "W3C"), ("depth", "2")],
                            headers=served.read)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("application/json")
    doc = ProvDocument.deserialize(content=reply.text, format="json")
    assert any(str(e.identifier).endswith(served.product_id) for e in doc.get_records())
    svg = served.http.get(url, params={"ID": served.product_id, "RESPONSEFORMAT": "PROV-SVG"}, headers=served.read)
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert ET.fromstring(svg.text).tag == "{http://www.w3.org/2000/svg}svg"
    ivoa = served.http.get(url, params={"ID": served.product_id}, headers=served.read)
    assert ivoa.status_code == 200 and "activityDescription" in ivoa.json()

    bad = served.http.get(url, params={"ID": served.product_id, "DIRECTION": "SIDEWAYS"}, headers=served.read)
    assert bad.status_code == 400 and "BACK, FORTH, FORWARD" in bad.json()["hint"]
    missing = served.http.get(url, params={"ID": "prd-nothing"}, headers=served.read)
    assert missing.status_code == 404 and "prd-nothing" in missing.json()["error"]
    assert served.http.get(url, params={"ID": served.product_id}).status_code == 401
