"""The API does what the CLI does, through the same Client and store code."""

from __future__ import annotations

import fsspec
import msgspec
import pytest

from skyweave.client import Client
from skyweave.errors import ParameterError
from skyweave.remote.client import RemoteClient
from skyweave.remote.fs import SkyweaveFileSystem
from tests.unit.server.conftest import Served


def test_runs_status_activities_results(served: Served) -> None:
    h = served.http
    runs = h.get("/api/v1/runs", headers=served.read).json()
    assert [r["run_id"] for r in runs] == [served.run_id]
    status = h.get(f"/api/v1/runs/{served.run_id}", headers=served.read).json()
    assert status["status"] == "succeeded" and status["activities"] == status["by_state"]["succeeded"]
    acts = h.get(f"/api/v1/runs/{served.run_id}/activities", headers=served.read).json()
    assert len(acts) == status["activities"]
    results = h.get(f"/api/v1/runs/{served.run_id}/results", headers=served.read).json()
    assert served.client.results(served.run_id) is not None
    assert '"$product"' in str(results).replace("'", '"')


def test_products_download_and_lineage(served: Served) -> None:
    h = served.http
    listed = h.get("/api/v1/products", params={"run": served.run_id}, headers=served.read).json()
    assert served.product_id in [p["id"] for p in listed]
    shown = h.get(f"/api/v1/products/{served.product_id}", headers=served.read).json()
    record = served.client.store.get_product(served.product_id)
    assert shown["product"]["checksum"] == record.checksum
    body = h.get(f"/api/v1/products/{served.product_id}/content", headers=served.read)
    assert body.status_code == 200 and body.content == record.local_path.read_bytes()
    graph = h.get(f"/api/v1/products/{served.product_id}/lineage", headers=served.read).json()
    assert graph["roots"] == [served.product_id] and graph["activities"]
    prov = h.get("/api/v1/provenance", params={"run": served.run_id, "format": "provn"},
                 headers=served.read)
    assert prov.status_code == 200 and prov.text.startswith("document")
    plan = h.get("/api/v1/reprocess", params={"run": served.run_id}, headers=served.read).json()
    assert plan["rerun"] == 0 and plan["runs"] == [served.run_id]


def test_upload_a_product(served: Served) -> None:
    reply = served.http.post("/api/v1/products", headers=served.write,
                             files={"file": ("cal.txt", b"calibrator\n")},
                             data={"type": "radio.cal", "attributes": '{"band": "L"}'})
    assert reply.status_code == 201, reply.text
    record = served.client.store.get_product(reply.json()["id"])
    assert record.name == "cal.txt" and record.attributes == {"band": "L"}
    assert record.local_path.read_bytes() == b"calibrator\n"
    assert record.local_path.is_relative_to(served.client.settings.store_dir)


def test_a_read_token_cannot_write(served: Served) -> None:
    reply = served.http.post(f"/api/v1/runs/{served.run_id}/cancel", headers=served.read)
    assert reply.status_code == 403 and "write scope" in reply.json()["error"]


def test_the_embedded_client_answers_like_the_api(served: Served) -> None:
    c = served.client
    assert c.attach(served.run_id).id == served.run_id
    assert {p.id for p in c.products(run=served.run_id)} == {
        p["id"] for p in served.http.get("/api/v1/products", params={"run": served.run_id},
                                         headers=served.read).json()}
    graph = served.http.get(f"/api/v1/products/{served.product_id}/lineage", headers=served.read).json()
    assert msgspec.to_builtins(c.lineage(served.product_id)) == graph
    impact = served.http.get("/api/v1/impact", params={"task": "merge"}, headers=served.read).json()
    assert msgspec.to_builtins(c.impact("merge")) == impact


SHARED = ("submit", "run", "wait", "results", "status", "summary", "get", "attach", "cancel", "pause",
          "resume", "retry", "set_priority", "products", "add_product", "lineage", "impact", "close")


def test_a_url_gives_the_remote_client_with_the_same_methods() -> None:
    remote = Client("http://127.0.0.1:9", token="sw_tok-x_y")  # no request is made here
    try:
        assert isinstance(remote, RemoteClient) and not isinstance(remote, Client)
        assert remote.url == "http://127.0.0.1:9"
    finally:
        remote.close()
    missing = [n for n in SHARED if not callable(getattr(Client, n, None))
               or not callable(getattr(RemoteClient, n, None))]
    assert not missing
    with pytest.raises(ParameterError, match="needs a token"):
        Client("https://example.org")


def test_products_are_read_in_ranges_through_fsspec(served: Served) -> None:
    data = served.client.store.get_product(served.product_id).local_path.read_bytes()
    url = f"/api/v1/products/{served.product_id}/content"
    part = served.http.get(url, headers={**served.read, "Range": "bytes=3-9"})
    assert part.status_code == 206 and part.content == data[3:10]
    assert part.headers["content-range"] == f"bytes 3-9/{len(data)}"
    assert served.http.get(url, headers={**served.read, "Range": "bytes=5-"}).content == data[5:]
    for bad in ("bytes=9-3", f"bytes={len(data)}-", "lines=1-2", "bytes=0-1,4-5", "bytes=-5"):
        assert served.http.get(url, headers={**served.read, "Range": bad}).status_code == 416, bad
    served.http.headers.update(served.read)
    fs = SkyweaveFileSystem(http=served.http, skip_instance_cache=True)
    assert fs.info(served.product_id)["size"] == len(data)
    with fs.open(served.product_id, "rb", block_size=4) as fh:
        assert fh.read(2) == data[:2]
        fh.seek(len(data) - 3)
        assert fh.read() == data[-3:]
    with fsspec.open(f"skyweave://{served.product_id}", http=served.http, skip_instance_cache=True) as fh:
        assert fh.read() == data
