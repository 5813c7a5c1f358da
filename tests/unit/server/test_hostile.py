"""Hostile requests: each gets the 4xx it deserves with a JSON message (never a 500, never a
traceback), and afterwards nothing changed — the store's runs, products, tokens and tasks, and
every file under the test's root (the store's files, the workflow folder, a file outside)."""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

import pytest

from skyweave.server.tokens import create_token
from tests.unit.server.conftest import LIMITS, Served

BIG = LIMITS.body_bytes + 1
BIG_UPLOAD = LIMITS.upload_bytes + 1
R = "/api/v1"


def raw_upload(headers: dict[str, str], filename: bytes, data: bytes = b"x=1\n") -> dict[str, Any]:
    """A multipart body with ``filename`` as sent (an HTTP library would escape a NUL)."""
    body = (b"--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + filename +
            b"\"\r\nContent-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--b0undary--\r\n")
    return {"headers": {**headers, "Content-Type": "multipart/form-data; boundary=b0undary"}, "content": body}


def snapshot(served: Served) -> dict[str, Any]:
    store = served.client.store
    files = {}
    for path in sorted(served.root.rglob("*")):
        if path.is_file() and not path.name.startswith(("bus.db", "skyweave.db")):
            files[str(path.relative_to(served.root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"runs": [(r.id, r.state, r.priority) for r in store.list_runs(graph=False)],
            "activities": store.count_activities(served.run_id),
            "products": sorted((p.id, p.state, p.checksum) for p in store.find_products(state=None)),
            "tokens": [(t.id, t.revoked_at) for t in store.list_tokens()],
            "tasks": sorted((s.name, s.version, cur) for s, cur in store.list_tasks()),
            "workflows": [(w.name, w.version, w.code_hash) for w in store.list_workflows()],
            "files": files}


def cases(s: Served, revoked: str, outside_product: str, act: str, store_file: str) -> list[tuple[str, str, dict[str, Any], set[int]]]:
    w, r = s.write, s.read
    run = s.run_id
    prod = s.product_id
    ok_file = {"file": ("wf.py", b"x = 1\n")}
    return [
        # -- authentication and scopes
        ("GET", f"{R}/runs", {}, {401}),
        ("GET", f"{R}/products/{prod}/content", {}, {401}),
        ("POST", f"{R}/runs", {"json": {"workflow": "skyweave.examples.mini_xray:backlog"}}, {401}),
        ("GET", f"{R}/openapi.json", {}, {401}),
        ("GET", f"{R}/runs/{run}/events", {}, {401}),
        ("GET", f"{R}/runs", {"headers": {"Authorization": "Bearer "}}, {401}),
        ("GET", f"{R}/runs", {"headers": {"Authorization": "Basic dXNlcjpwYXNz"}}, {401}),
        ("GET", f"{R}/runs", {"headers": {"Authorization": "Bearer sw_tok-x_guess"}}, {401}),
        ("GET", f"{R}/runs", {"headers": {"Authorization": "Bearer " + "sw_" + "A" * 5000}}, {401}),
        ("GET", f"{R}/runs", {"headers": {"Authorization": w["Authorization"][:-1]}}, {401}),
        ("GET", f"{R}/runs", {"headers": {"Authorization": f"Bearer {revoked}"}}, {401}),
        ("POST", f"{R}/runs", {"headers": r, "json": {"workflow": "skyweave.examples.mini_xray:backlog"}}, {403}),
        ("POST", f"{R}/runs/{run}/cancel", {"headers": r}, {403}),
        ("POST", f"{R}/products", {"headers": r, "files": {"file": ("a.txt", b"a")}}, {403}),
        ("PUT", f"{R}/runs/{run}/priority", {"headers": r, "json": {"priority": 9}}, {403}),
        ("POST", f"{R}/reprocess", {"headers": r, "json": {"run": run}}, {403}),
        # -- workflow paths and modules
        ("POST", f"{R}/runs", {"headers": w, "json": {"workflow": "../../etc/passwd.py:x"}}, {403}),
        ("POST", f"{R}/runs", {"headers": w, "json": {"workflow": "/etc/passwd.py:x"}}, {403}),
        ("POST", f"{R}/runs", {"headers": w, "json": {"workflow": "sub/../../outside/evil.py:wf"}}, {403}),
        ("POST", f"{R}/runs", {"headers": w, "json": {"workflow": "link.py:imaging"}}, {403}),
        ("POST", f"{R}/runs", {"headers": w, "json": {"workflow": "linkdir/remote.py:imaging"}}, {403}),
        ("POST", f"{R}/runs", {"headers": w, "json": {"workflow": "wf\u0000.py:x"}}, {403}),
        ("POST", f"{R}/runs", {"headers": w, "json": {"workflow": "..\\..\\evil.py:x"}}, {403}),
        ("POST", f"{R}/runs", {"headers": w, "json": {"workflow": "~/evil.py:x"}}, {403}),
        ("POST", f"{R}/runs", {"headers": w, "json": {"workflow": "os:system"}}, {403}),
        ("POST", f"{R}/runs", {"headers": w, "json": {"workflow": "antigravity:x"}}, {403}),
        ("POST", f"{R}/runs", {"headers": w, "json": {"workflow": "__import__('os'):x"}}, {400}),
        ("POST", f"{R}/runs", {"headers": w, "json": {"workflow": "skyweave.examples.mini_xray:nope"}}, {422}),
        ("POST", f"{R}/runs", {"headers": w, "json": {"workflow": "skyweave.examples.mini_xray:observation",
                                                      "params": {"no_such": 1}}}, {400, 422}),
        # -- uploaded workflow files
        ("POST", f"{R}/runs/upload", {"headers": w, "files": {"file": ("../evil.py", b"x=1")}}, {403}),
        ("POST", f"{R}/runs/upload", {"headers": w, "files": {"file": ("/tmp/evil.py", b"x=1")}}, {403}),
        ("POST", f"{R}/runs/upload", {"headers": w, "files": {"file": (".evil.py", b"x=1")}}, {403}),
        ("POST", f"{R}/runs/upload", raw_upload(w, b"ev\x00il.py"), {403}),
        ("POST", f"{R}/runs/upload", raw_upload(w, b"../../outside/evil.py"), {403}),
        ("POST", f"{R}/runs/upload", {"headers": w, "files": {"file": ("nothing.py", b"x = 1\n")}}, {422}),
        ("POST", f"{R}/runs/upload", {"headers": w, "files": {"file": ("evil.sh", b"rm -rf /")}}, {400}),
        ("POST", f"{R}/runs/upload", {"headers": w, "files": ok_file, "data": {"params": "{"}}, {400}),
        ("POST", f"{R}/runs/upload", {"headers": w, "files": ok_file, "data": {"params": "[1]"}}, {400}),
        ("POST", f"{R}/runs/upload", {"headers": w, "files": ok_file, "data": {"workflow": "x; rm -rf"}}, {400}),
        ("POST", f"{R}/runs/upload", {"headers": w, "files": {"file": ("big.py", b"#" * BIG_UPLOAD)}}, {413}),
        ("POST", f"{R}/runs/upload", {"headers": w, "data": {"workflow": "x"}}, {422}),
        # -- the workflow registry: registering, and submitting by name and version
        ("POST", f"{R}/workflows", {"headers": r, "data": {"target": "skyweave.examples.mini_xray:backlog"}}, {403}),
        ("POST", f"{R}/workflows", {"headers": w, "files": {"file": ("../evil.py", b"x=1")},
                                    "data": {"workflow": "x"}}, {403}),
        ("POST", f"{R}/workflows", raw_upload(w, b"ev\x00il.yaml"), {403}),
        ("POST", f"{R}/workflows", {"headers": w, "files": {"file": ("evil.sh", b"rm -rf /")}}, {400}),
        ("POST", f"{R}/workflows", {"headers": w, "files": {"file": ("nothing.py", b"x = 1\n")},
                                    "data": {"workflow": "imaging"}}, {422}),
        ("POST", f"{R}/workflows", {"headers": w, "files": {"file": ("wf.py", b"x = 1\n")}}, {400}),
        *[("POST", f"{R}/workflows", {"headers": w, "data": {"target": "skyweave.examples.mini_xray:backlog",
                                                            "name": bad}}, {400})
          for bad in ["../x", "a b", "-x", "x/y", "x\u0000y", "caf\u00e9"]],
        *[("POST", f"{R}/workflows", {"headers": w, "data": {"target": "skyweave.examples.mini_xray:backlog",
                                                            "version": bad}}, {400})
          for bad in ["../1", "1/2", ".hidden", "1 2"]],
        ("POST", f"{R}/workflows", {"headers": w, "data": {"target": "x", "version": "v" * 300}}, {422}),
        ("POST", f"{R}/workflows", {"headers": w, "data": {"target": "../../etc/passwd.py:x"}}, {403}),
        ("POST", f"{R}/workflows", {"headers": w, "data": {"target": "os:system"}}, {403}),
        ("POST", f"{R}/workflows", {"headers": w, "data": {"name": "x"}}, {400}),
        ("POST", f"{R}/workflows", {"headers": w, "files": ok_file, "data": {"target": "os:system"}}, {400}),
        ("POST", f"{R}/runs", {"headers": w, "json": {"workflow": "no_such_workflow"}}, {404}),
        ("POST", f"{R}/runs", {"headers": w, "json": {"workflow": "no_such_workflow@1"}}, {404}),
        ("POST", f"{R}/runs", {"headers": w, "json": {"workflow": "bad name"}}, {400}),
        ("POST", f"{R}/runs", {"headers": w, "json": {"workflow": "x@"}}, {400}),
        ("POST", f"{R}/runs", {"headers": w, "json": {"workflow": "x@../../1"}}, {400, 403}),
        ("POST", f"{R}/runs", {"headers": w, "json": {"workflow": "x", "version": "../2"}}, {400}),
        ("POST", f"{R}/runs", {"headers": w, "json": {"workflow": "x:y", "version": "1"}}, {400}),
        ("POST", f"{R}/runs", {"headers": w, "json": {"workflow": "x", "version": ""}}, {422}),
        ("GET", f"{R}/workflows", {"headers": r, "params": {"name": "a b"}}, {400}),
        ("GET", f"{R}/workflows/..%2F..%2Fetc", {"headers": r}, {400, 404}),
        ("GET", f"{R}/workflows/x", {"headers": r, "params": {"version": "@@"}}, {400}),
        ("GET", f"{R}/workflows/no_such_workflow", {"headers": r}, {404}),
        # -- product uploads
        *[("POST", f"{R}/products", {"headers": w, "files": {"file": (name, b"data")}}, {403})
          for name in ["../../escape.txt", "/etc/passwd", "..", "a/b.txt", "a\\b.txt", ".bashrc", "x" * 300]],
        ("POST", f"{R}/products", raw_upload(w, b"x\x00y.txt"), {403}),
        ("POST", f"{R}/products", raw_upload(w, b"../../../outside/secret.txt"), {403}),
        ("POST", f"{R}/products", {"headers": w, "files": {"file": ("ok.txt", b"a")},
                                   "data": {"attributes": "not json"}}, {400}),
        ("POST", f"{R}/products", {"headers": w, "files": {"file": ("ok.txt", b"a")},
                                   "data": {"attributes": "[1, 2]"}}, {400}),
        ("POST", f"{R}/products", {"headers": w, "files": {"file": ("ok.txt", b"a")},
                                   "data": {"type": "t" * 300}}, {422}),
        ("POST", f"{R}/products", {"headers": w, "files": {"file": ("big.bin", b"0" * BIG_UPLOAD)}}, {413}),
        ("POST", f"{R}/products", {"headers": w, "data": {"type": "x"}}, {422}),
        # -- product downloads
        ("GET", f"{R}/products/..%2F..%2Fetc%2Fpasswd/content", {"headers": r}, {404}),
        ("GET", f"{R}/products/%00/content", {"headers": r}, {404}),
        ("GET", f"{R}/products/{outside_product}/content", {"headers": r}, {403}),
        ("GET", f"{R}/products/{store_file}/content", {"headers": r}, {403}),
        ("GET", f"{R}/products/{store_file}/content", {"headers": {**r, "Range": "bytes=0-99"}}, {403}),
        ("GET", f"{R}/activities/..%2F..%2Fetc/logs", {"headers": r}, {404}),
        # -- malformed JSON bodies
        ("POST", f"{R}/runs", {"headers": {**w, "Content-Type": "application/json"}, "content": b"{nope"}, {422}),
        ("POST", f"{R}/runs", {"headers": {**w, "Content-Type": "application/json"}, "content": b"\xff\xfe"}, {400, 422}),
        ("POST", f"{R}/runs", {"headers": {**w, "Content-Type": "application/json"},
                               "content": b"[" * 50_000}, {400, 422}),
        ("POST", f"{R}/runs", {"headers": w, "json": ["workflow"]}, {422}),
        ("POST", f"{R}/runs", {"headers": w, "json": {}}, {422}),
        ("POST", f"{R}/runs", {"headers": w, "json": {"workflow": ""}}, {422}),
        ("POST", f"{R}/runs", {"headers": w, "json": {"workflow": "x:y", "evil": 1}}, {422}),
        ("POST", f"{R}/runs", {"headers": w, "json": {"workflow": "x:y", "priority": "high"}}, {422}),
        ("POST", f"{R}/runs", {"headers": w, "json": {"workflow": "x:y", "priority": 10**30}}, {422}),
        ("POST", f"{R}/runs", {"headers": w, "json": {"workflow": "x:y", "params": "n=3"}}, {422}),
        ("POST", f"{R}/runs", {"headers": w, "json": {"workflow": "x" * BIG}}, {413}),
        ("POST", f"{R}/runs", {"headers": {**w, "Content-Length": "abc"}, "content": b"{}"}, {400}),
        ("PUT", f"{R}/runs/{run}/priority", {"headers": w, "json": {}}, {422}),
        ("PUT", f"{R}/activities/{act}/priority", {"headers": w, "json": {"priority": None}}, {422}),
        ("POST", f"{R}/reprocess", {"headers": w, "json": {}}, {400}),
        # -- query parameters
        ("GET", f"{R}/runs", {"headers": r, "params": {"limit": -1}}, {422}),
        ("GET", f"{R}/runs", {"headers": r, "params": {"limit": "lots"}}, {422}),
        ("GET", f"{R}/runs", {"headers": r, "params": {"limit": 10**12}}, {422}),
        ("GET", f"{R}/products", {"headers": r, "params": {"status": "everything"}}, {422}),
        ("GET", f"{R}/products", {"headers": r, "params": {"since": "yesterday-ish"}}, {400}),
        ("GET", f"{R}/products/{prod}/lineage", {"headers": r, "params": {"depth": -1}}, {422}),
        ("GET", f"{R}/products/{prod}/lineage", {"headers": r, "params": {"direction": "sideways"}}, {422}),
        ("GET", f"{R}/provenance", {"headers": r}, {400}),
        ("GET", f"{R}/provenance", {"headers": r, "params": {"run": run, "format": "../../x"}}, {400, 422}),
        ("GET", f"{R}/impact", {"headers": r}, {422}),
        ("GET", f"{R}/impact", {"headers": r, "params": {"task": "no_such_task"}}, {422}),
        # -- unknown things, wrong states, wrong methods
        ("GET", f"{R}/runs/run-nope", {"headers": r}, {404}),
        ("GET", f"{R}/runs/run-nope/events", {"headers": r}, {404}),
        ("GET", f"{R}/runs/run-nope/results", {"headers": r}, {404}),
        ("POST", f"{R}/runs/run-nope/cancel", {"headers": w}, {404}),
        ("POST", f"{R}/runs/{run}/explode", {"headers": w}, {404}),
        ("POST", f"{R}/runs/{run}/cancel", {"headers": w}, {409}),
        ("POST", f"{R}/runs/{run}/pause", {"headers": w}, {409}),
        ("POST", f"{R}/activities/{act}/retry", {"headers": w}, {409}),
        ("POST", f"{R}/activities/act-nope/retry", {"headers": w}, {404}),
        ("DELETE", f"{R}/runs", {"headers": w}, {405}),
        ("GET", "/etc/passwd", {"headers": r}, {404}),
        ("GET", f"{R}/../../etc/passwd", {"headers": r}, {404}),
    ]


@pytest.fixture
def hostile_world(served: Served) -> tuple[str, str, str, str]:
    """A revoked token, products named in place outside the product storage (a file elsewhere,
    the store's database), an activity id; a workflow folder with a symlink out of it."""
    outside = served.root / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.txt").write_text("secret\n")
    (outside / "evil.py").write_text("import os\n")
    wf = served.root / "workflows"
    for name, target in (("link.py", outside / "evil.py"), ("linkdir", outside)):
        if not (wf / name).is_symlink():
            os.symlink(target, wf / name)
    revoked, record = create_token(served.client.store, "gone", ["write"])
    served.client.store.revoke_token(record.id, time.time())
    product = served.client.add_product(outside / "secret.txt", copy=False)
    database = next(served.client.settings.store_dir.glob("*.db"))  # the store's own: token hashes
    in_store = served.client.add_product(database, copy=False)
    act = served.client.store.list_activities(run_id=served.run_id, limit=1)[0].id
    return revoked, product.id, act, in_store.id


def test_hostile_requests_are_refused_and_change_nothing(served: Served,
                                                         hostile_world: tuple[str, str, str, str]) -> None:
    requests = cases(served, *hostile_world)
    assert len(requests) >= 50
    before = snapshot(served)
    wrong = []
    for method, path, kwargs, expected in requests:
        reply = served.http.request(method, path, **kwargs)
        body = reply.json() if reply.headers.get("content-type", "").startswith("application/json") else {}
        message = str(body.get("error") or body.get("detail") or "")
        if reply.status_code not in expected or not message or "Traceback" in reply.text:
            wrong.append(f"{method} {path[:70]} {str(kwargs)[:100]} -> {reply.status_code} {reply.text[:200]}")
    assert not wrong, "\n".join(wrong)
    assert snapshot(served) == before
