"""The dashboard's pages in process (issue 16, points 5, 6, 8): behind the same tokens as the API
(a login page, an HttpOnly cookie), every page renders from the store, actions need the write
scope and the dashboard's header, and nothing is loaded from outside the package."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
from fastapi.testclient import TestClient

from skyweave.model.records import Changeset
from skyweave.server.state import COOKIE
from skyweave.triggers import TriggerState, on_files
from skyweave.web import STATIC

from .conftest import Served

TEMPLATES = STATIC.parent / "templates"


def logged_in(served: Served, headers: dict[str, str]) -> TestClient:
    token = headers["Authorization"].removeprefix("Bearer ")
    res = served.http.post("/ui/login", data={"token": token, "next": "/ui/runs"}, follow_redirects=False)
    assert res.status_code == 303 and res.headers["location"] == "/ui/runs"
    cookie = res.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    served.http.cookies.set(COOKIE, token)
    return served.http


def test_pages_send_a_browser_without_a_token_to_the_login_page(served: Served) -> None:
    res = served.http.get(f"/ui/runs/{served.run_id}", follow_redirects=False)
    assert res.status_code == 303 and res.headers["location"].startswith("/ui/login?next=")
    bad = served.http.post("/ui/login", data={"token": "sw_nope_nope"}, follow_redirects=False)
    assert bad.status_code == 303 and "unknown+or+revoked" in bad.headers["location"]
    evil = served.http.post("/ui/login", data={"token": served.write["Authorization"][7:],
                                               "next": "https://evil.example/x"}, follow_redirects=False)
    assert evil.headers["location"] == "/ui/runs"  # never sent to another site after logging in


def test_every_page_renders_from_the_store(served: Served) -> None:
    http = logged_in(served, served.read)
    act = served.client.store.list_activities(run_id=served.run_id)[0]
    served.client.store.save_trigger(on_files("arrivals", folder=served.root / "in", workflow="w.py:w"),
                                      replace=True)
    pages = {
        "/ui/runs": [served.run_id, "imaging"],
        f"/ui/runs/{served.run_id}": ["Graph", "Timeline", act.id],
        f"/ui/activities/{act.id}": [act.task_name, "Attempts", "Logs"],
        f"/ui/products/{served.product_id}": ["What made it", "IVOA ProvDM", "format=provn"],
        "/ui/tasks": [act.task_name],
        "/ui/queue": ["Queue"],
        "/ui/triggers": ["arrivals"],
        "/ui/triggers/arrivals": ["no events yet"],
        "/ui/dead-letters": ["no dead letters"],
        "/ui/runs?status=failed": ["0 matching"],
    }
    for path, expected in pages.items():
        res = http.get(path)
        assert res.status_code == 200, (path, res.text[:300])
        for text in expected:
            assert text in res.text, (path, text)
    graph = http.get(f"/ui/runs/{served.run_id}/graph").json()
    assert graph["status"] == "succeeded" and graph["total"] == sum(graph["counts"].values())
    nodes = [e for e in graph["elements"] if "source" not in e["data"]]
    bands = [n for n in nodes if n["data"]["total"] > 1]
    assert bands and all("\N{MULTIPLICATION SIGN}" in n["data"]["label"] for n in bands)  # a fan-out: one counted node
    assert http.get("/ui/runs/run-nope").status_code == 404


def test_the_activity_page_shows_the_image_digest_each_attempt_ran_in(served: Served) -> None:
    http = logged_in(served, served.read)
    store = served.client.store
    act = store.list_activities(run_id=served.run_id)[0]
    assert "digest" not in http.get(f"/ui/activities/{act.id}").text
    digest = "sha256:" + "5f0c" * 16
    (attempt, *_) = store.list_attempts(act.id)
    store.apply(Changeset(activities=[msgspec.structs.replace(act, image_digest=digest)],
                          attempts=[msgspec.structs.replace(attempt, image_digest=digest)]))
    page = http.get(f"/ui/activities/{act.id}").text
    assert f'image <code class="digest">{digest}</code>' in page
    assert f'<code title="{digest}">{digest[:19]}</code>' in page


def test_a_read_token_sees_no_buttons_and_cannot_act(served: Served) -> None:
    http = logged_in(served, served.read)
    page = http.get(f"/ui/runs/{served.run_id}").text
    assert "Cancel" not in page and "read only" in page
    res = http.post(f"/api/v1/runs/{served.run_id}/cancel", headers={"X-Skyweave-UI": "1"})
    assert res.status_code == 403 and "may only read" in res.json()["error"]


def test_a_write_cookie_acts_only_with_the_dashboards_header(served: Served) -> None:
    http = logged_in(served, served.write)
    assert "Cancel" in http.get(f"/ui/runs/{served.run_id}").text
    served.client.store.save_trigger(on_files("to-pause", folder=served.root / "in", workflow="w.py:w"),
                                      replace=True)
    served.client.store.set_trigger_state("to-pause", TriggerState.ACTIVE)
    forged = http.post("/ui/triggers/to-pause/pause")  # what a form on another site could send
    assert forged.status_code == 403 and "X-Skyweave-UI" in forged.json()["error"]
    assert served.client.store.get_trigger("to-pause").state is TriggerState.ACTIVE
    ok = http.post("/ui/triggers/to-pause/pause", headers={"X-Skyweave-UI": "1"})
    assert ok.status_code == 200 and served.client.store.get_trigger("to-pause").state is TriggerState.PAUSED


def test_everything_the_pages_load_is_shipped_in_the_package(served: Served) -> None:
    http = logged_in(served, served.read)
    html = http.get(f"/ui/runs/{served.run_id}").text + http.get(f"/ui/products/{served.product_id}").text
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and not [s for s in sources if s.startswith(("http:", "https:", "//"))]
    for src in {s for s in sources if s.startswith("/ui/static/")}:
        assert http.get(src).status_code == 200, src
    for vendored in ("htmx.min.js", "cytoscape.min.js", "dagre.min.js", "cytoscape-dagre.js"):
        assert (STATIC / "vendor" / vendored).is_file()
    licences = {p.name for p in (STATIC / "vendor").glob("LICENSE.*")}
    assert licences == {"LICENSE.htmx", "LICENSE.cytoscape", "LICENSE.dagre", "LICENSE.cytoscape-dagre"}
    for template in Path(TEMPLATES).glob("*.html"):
        assert "://" not in template.read_text(), template
