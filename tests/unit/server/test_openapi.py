"""The API's OpenAPI schema is served (to token holders) and equals the committed snapshot
``openapi.json``: a change of the API shows in review.  After a deliberate change, write the new
snapshot with ``SKYWEAVE_UPDATE_OPENAPI=1 pytest tests/unit/server/test_openapi.py``.  Every
route in it refuses a request without a token."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from tests.unit.server.conftest import Served

SNAPSHOT = Path(__file__).with_name("openapi.json")


def test_the_schema_is_served_and_matches_the_snapshot(served: Served) -> None:
    reply = served.http.get("/api/v1/openapi.json", headers=served.read)
    assert reply.status_code == 200
    schema = reply.json()
    if os.environ.get("SKYWEAVE_UPDATE_OPENAPI") == "1":
        SNAPSHOT.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
    assert schema == json.loads(SNAPSHOT.read_text()), (
        "the API changed: review it, then SKYWEAVE_UPDATE_OPENAPI=1 pytest tests/unit/server/test_openapi.py")


def test_every_route_needs_a_token(served: Served) -> None:
    schema = json.loads(SNAPSHOT.read_text())
    assert len(schema["paths"]) >= 20
    for path, methods in schema["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        for method in methods:
            reply = served.http.request(method.upper(), concrete)
            assert reply.status_code == 401, f"{method} {path}: {reply.status_code}"
