"""The workflow registry over HTTP: register an uploaded file (or a module the server may load),
list the versions, read one with its snapshot, and submit a run by name and version; conflicts,
unknown names and versions, and bad names get a 4xx that says what exists or what is allowed."""

from __future__ import annotations

from tests.unit.server.conftest import FLOW, Served

R = "/api/v1"
SOURCE = FLOW.read_bytes()


def register(s: Served, name: str, version: str, data: bytes = SOURCE) -> dict:
    """(The store is shared by the tests of a session: each registers under a name of its own.)"""
    reply = s.http.post(f"{R}/workflows", headers=s.write, files={"file": ("remote.py", data)},
                        data={"workflow": "imaging", "version": version, "name": name})
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


def test_a_registered_upload_is_listed_shown_and_submitted_by_name_and_version(served: Served) -> None:
    one = register(served, "imaging_a", "1")
    assert (one["name"], one["version"], one["kind"], one["new"]) == ("imaging_a", "1", "python", True)
    assert register(served, "imaging_a", "1")["new"] is False
    changed = SOURCE.replace(b'"bands": n}', b'"bands": n, "edition": 2}')
    assert changed != SOURCE
    two = register(served, "imaging_a", "2", changed)
    listed = served.http.get(f"{R}/workflows", headers=served.read, params={"name": "imaging_a"}).json()
    assert [(w["version"], w["code_hash"]) for w in listed] == [("1", one["code_hash"]), ("2", two["code_hash"])]
    shown = served.http.get(f"{R}/workflows/imaging_a", headers=served.read, params={"version": "1"}).json()
    assert shown["source"] == SOURCE.decode() and "source" not in listed[0]

    for body, expected in (({"workflow": "imaging_a", "version": "1"}, one), ({"workflow": "imaging_a@2"}, two),
                           ({"workflow": "imaging_a"}, two)):
        reply = served.http.post(f"{R}/runs", headers=served.write, json={**body, "params": {"n": 1}})
        assert reply.status_code == 201, reply.text
        run = served.client.store.get_run_head(reply.json()["run_id"])
        assert (run.workflow_ref, run.workflow_hash) == (f"imaging_a@{expected['version']}", expected["code_hash"])


def test_a_module_the_server_may_load_registers_by_target(served: Served) -> None:
    reply = served.http.post(f"{R}/workflows", headers=served.write,
                             data={"target": "skyweave.examples.mini_xray:backlog", "version": "3"})
    assert reply.status_code == 201, reply.text
    assert (reply.json()["name"], reply.json()["origin"]) == ("backlog", "skyweave.examples.mini_xray:backlog")
    refused = served.http.post(f"{R}/workflows", headers=served.write, data={"target": "os:system"})
    assert refused.status_code == 403


def test_conflicts_and_unknown_names_say_what_exists(served: Served) -> None:
    register(served, "imaging_c", "1")
    changed = SOURCE + b"\nEXTRA = 1\n"
    conflict = served.http.post(f"{R}/workflows", headers=served.write, files={"file": ("remote.py", changed)},
                                data={"workflow": "imaging", "version": "1", "name": "imaging_c"})
    assert conflict.status_code == 409
    assert "already registered with different code" in conflict.json()["error"]
    unknown = served.http.post(f"{R}/runs", headers=served.write, json={"workflow": "imaging_c", "version": "9"})
    assert unknown.status_code == 404
    assert unknown.json()["hint"] == "registered versions of 'imaging_c': imaging_c@1"
    other = served.http.get(f"{R}/workflows/nothing", headers=served.read)
    assert other.status_code == 404 and "imaging_c" in other.json()["hint"]
    assert served.http.post(f"{R}/workflows", headers=served.read, data={"target": "x:y"}).status_code == 403
