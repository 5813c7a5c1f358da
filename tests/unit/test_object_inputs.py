"""A workflow input named by URL (``File("s3://bucket/key")``, here ``memory://``, a storage that is
not the local disk): fingerprinted through the Storage port at submission (its sha256 recorded,
its URL the product's URI and its provenance entity's), copied to the activity's work directory
by the worker (checksummed), reused while unchanged, run again once changed; a missing object and
a URL carrying credentials are refused at submission, and no secret reaches the store."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from skyweave import File, task, workflow
from skyweave.authoring.external import IN_PLACE
from skyweave.client import Client
from skyweave.errors import DefinitionError, NotFoundError, SkyweaveError
from skyweave.provenance.export import export
from skyweave.storage import open_storage

DATA = b"visibilities of obs1\n"


@task
def measure(raw: File) -> dict[str, object]:
    text = Path(raw).read_bytes()
    return {"size": len(text), "local": Path(raw).is_file(), "name": raw.name}


@workflow
def from_bucket(url: str) -> dict[str, object]:
    return measure(raw=File(url, type="radio.uvfits", hash="sha256"))


def reused(run: object) -> bool:
    (act,) = run.activities()  # type: ignore[attr-defined]
    return bool(act.detours and act.detours[-1].kind == "reused")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    with Client(str(tmp_path / "store"), workers=1, executor="threads") as c:
        yield c


@pytest.fixture
def bucket(tmp_path: Path) -> str:
    root = f"memory://bucket-{tmp_path.name}/"
    open_storage(root).put("obs/obs1.uvfits", io.BytesIO(DATA))
    return root


def test_an_object_url_is_an_input_read_through_the_storage_port(client: Client, bucket: str) -> None:
    url = f"{bucket}obs/obs1.uvfits"
    run = client.run(from_bucket, {"url": url}, timeout=60)
    assert run.results() == {"size": len(DATA), "local": True, "name": "obs1.uvfits"}
    (product,) = client.products(type="radio.uvfits")
    assert (product.uri, product.name, product.size) == (url, "obs1.uvfits", len(DATA))
    assert product.checksum == "sha256:" + hashlib.sha256(DATA).hexdigest()
    assert product.attributes[IN_PLACE]["stat"].startswith(f"object:{len(DATA)}:")
    (usage,) = client.store.list_usages(activity_id=run.activities()[0].id)
    assert usage.product_id == product.id
    assert url in export(client.store, fmt="provn", run_id=run.id)

    again = client.run(from_bucket, {"url": url}, timeout=60)  # unchanged: the same product, reused
    assert client.store.list_usages(activity_id=again.activities()[0].id)[0].product_id == product.id
    assert reused(again)

    open_storage(bucket).put("obs/obs1.uvfits", io.BytesIO(DATA + b"more\n"))
    changed = client.run(from_bucket, {"url": url}, timeout=60)
    assert changed.results()["size"] == len(DATA) + 5 and not reused(changed)


def test_a_missing_object_or_a_url_with_credentials_is_refused_at_submission(client: Client, bucket: str) -> None:
    with pytest.raises(NotFoundError, match="no object at"):
        client.submit(from_bucket, {"url": f"{bucket}obs/none.uvfits"})
    pytest.importorskip("s3fs")
    with pytest.raises(SkyweaveError, match="must not carry credentials") as info:
        client.submit(from_bucket, {"url": "s3://AKIAKEY:topsecret@bucket/obs1.uvfits"})
    assert "topsecret" not in str(info.value)
    assert client.store.list_runs() == [] and client.products() == []


def test_a_folder_of_object_storage_is_refused_with_what_to_do() -> None:
    from skyweave import Folder

    with pytest.raises(DefinitionError, match="a folder of object storage is not supported"):
        Folder("s3://bucket/obs/")
