"""The notebook client against a real server: ``skyweave server --controller`` on 127.0.0.1 and a
``skyweave worker`` in processes of their own; ``skyweave.Client(URL, token=...)`` submits an
uploaded workflow file, follows it with a progress bar fed by the event stream, and gets the
merged product back (opened, downloaded, its lineage); a run goes on when its client goes away,
and ``attach`` picks it up."""

from __future__ import annotations

import hashlib
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

import skyweave
from skyweave.errors import NotFoundError
from skyweave.remote.client import RemoteClient
from skyweave.remote.http import AuthError
from skyweave.remote.product import RemoteProduct
from skyweave.server.tokens import create_token
from skyweave.store import open_store

from .helpers import CLI, WORKFLOWS, poll, stop

FLOW = str(WORKFLOWS / "remote.py")
pytestmark = pytest.mark.slow  # two service processes and three CLI calls: ~10 s on a quiet machine


@dataclass
class Server:
    url: str
    write: str
    read: str
    read_id: str
    cli: CLI


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _up(url: str, token: str) -> bool:
    try:
        return httpx2.get(f"{url}/api/v1/health", headers={"Authorization": f"Bearer {token}"},
                          timeout=2).status_code == 200
    except httpx2.TransportError:
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("remote")
    cli = CLI(root, root / "store")
    write = cli.json("tokens", "create", "--name", "notebook", "--scope", "write")["token"]
    store = open_store(str(root / "store"))
    read, record = create_token(store, "viewer", ["read"])  # the CLI made the other one
    store.close()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(cli.popen("server", "--port", str(port), "--controller", log=root / "server.log"))
        procs.append(cli.popen("worker", "--slots", "2", log=root / "worker.log"))
        poll(lambda: _up(url, write), deadline=60, what="the server to answer")
        yield Server(url, write, read, record.id, cli)
    finally:
        for p in procs:
            stop(p)


def test_a_notebook_runs_a_workflow_remotely_and_gets_its_product(server: Server, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with skyweave.Client(server.url, token=server.write) as client:
        assert isinstance(client, RemoteClient)
        run = client.run(f"{FLOW}:imaging", {"n": 3}, progress=True)
        assert run.status == "succeeded"
        bar = capsys.readouterr().err
        assert "5/5" in bar and "succeeded=5" in bar  # bands, 3 images, merge: fed by the stream
        results = run.results()
        merged = results["merged"]
        assert isinstance(merged, RemoteProduct) and results["bands"] == 3
        expected = "".join(f"image of band {b}\n" for b in range(3))
        with merged.open("r") as fh:
            assert fh.read() == expected
        saved = merged.download(tmp_path)
        assert saved.read_text() == expected
        assert merged.checksum == "sha256:" + hashlib.sha256(expected.encode()).hexdigest()
        graph = client.lineage(merged.id)
        assert sorted(a.task_name for a in graph.activities) == ["image", "image", "image", "merge"]
        assert {p.type for p in client.products(run=run.id)} == {"test.image", "test.merged"}
        assert "wasGeneratedBy" in client.provenance(run=run.id, format="provn")


def test_a_run_goes_on_without_its_client_and_attach_picks_it_up(server: Server) -> None:
    first = skyweave.Client(server.url, token=server.write)
    run_id = first.submit(f"{FLOW}:imaging", {"n": 4, "seconds": 0.3}).id
    with first.http.stream("GET", f"/api/v1/runs/{run_id}/events") as stream:  # a notebook watching...
        assert next(stream.iter_lines()).startswith("event: progress")
    first.close()  # ...and going away mid-run
    with skyweave.Client(server.url, token=server.write) as again:
        handle = again.attach(run_id)
        summary = again.wait(handle.id, timeout=120)
        assert summary["status"] == "succeeded" and summary["activities"] == 6
        assert all(a.attempt == 1 for a in handle.activities())  # nothing ran twice


def test_products_uploaded_and_errors_said(server: Server, tmp_path: Path) -> None:
    data = tmp_path / "vis.dat"
    data.write_bytes(b"visibilities\n")
    with skyweave.Client(server.url, token=server.write) as client:
        product = client.add_product(data, type="radio.vis", obs_id="nenu1")
        with product.open() as fh:
            assert product.name == "vis.dat" and fh.read() == b"visibilities\n"
        assert [p.id for p in client.products(type="radio.vis")] == [product.id]
        with pytest.raises(NotFoundError):
            client.summary("run-nope")
    with skyweave.Client(server.url, token=server.read) as viewer:
        with pytest.raises(AuthError, match="write scope"):
            viewer.submit(f"{FLOW}:imaging")
        assert viewer.runs()  # reading is allowed
        server.cli("tokens", "revoke", server.read_id).ok()
        with pytest.raises(AuthError, match="unknown or revoked"):
            viewer.runs()
    listed = {t["name"]: t for t in server.cli.json("tokens", "list")}
    assert listed["viewer"]["revoked_at"] is not None and listed["notebook"]["revoked_at"] is None
    assert not any("sw_" in str(v) for t in listed.values() for v in t.values())  # never the secret


def test_a_registered_workflow_is_submitted_by_name_and_version(server: Server) -> None:
    with skyweave.Client(server.url, token=server.write) as client:
        record = client.register_workflow(f"{FLOW}:imaging", version="1", name="remote_imaging")
        assert (record.name, record.version, record.kind) == ("remote_imaging", "1", "python")
        assert [(w.name, w.version) for w in client.workflows("remote_imaging")] == [("remote_imaging", "1")]
        run = client.run("remote_imaging", {"n": 2}, version="1", timeout=120)
        assert run.status == "succeeded" and run.results()["bands"] == 2
        assert (run.summary()["workflow_ref"], run.summary()["workflow_hash"]) == ("remote_imaging@1",
                                                                                   record.code_hash)
        with pytest.raises(NotFoundError, match="remote_imaging@2"):
            client.submit("remote_imaging", version="2")
    store = open_store(str(server.cli.store))
    try:
        ran = store.get_run_head(run.id)
    finally:
        store.close()
    assert (ran.workflow_ref, ran.workflow_hash) == ("remote_imaging@1", record.code_hash)


def test_the_progress_bar_is_a_widget_in_jupyter_fed_by_the_event_stream(server: Server, tmp_path: Path) -> None:
    """The same ``run(..., progress=True)`` in a real Jupyter kernel (nbclient): the bar is an
    ipywidgets view (``tqdm.auto``), and its last state shows every activity done; in a terminal
    it is text (the first test of this file)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipywidgets")
    cell = (f"import skyweave\nclient = skyweave.Client({server.url!r}, token={server.write!r})\n"
            f"run = client.run({FLOW + ':imaging'!r}, {{'n': 2}}, progress=True)\nprint(run.status)")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = notebook.cells[0]["outputs"]
    views = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(views) == 1, outputs
    assert "succeeded" in "".join(o.get("text", "") for o in outputs)
    state = notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    texts = [str(w["state"].get("value")).replace("\u2007", " ").strip() for w in state.values()
             if w["model_name"] == "HTMLModel"]
    bars = [w["state"] for w in state.values() if w["model_name"] == "FloatProgressModel"]
    assert any(t.startswith("4/4") and "succeeded=4" in t for t in texts), texts  # bands, 2 images, merge
    assert [(b["value"], b["max"]) for b in bars] == [(4, 4)]
