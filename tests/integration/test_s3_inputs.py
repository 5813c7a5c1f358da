"""A workflow input named by its s3:// URL on a real S3 server (moto's): fingerprinted at
submission through the S3 storage (sha256 streamed; size, LastModified and ETag as the cheap
fingerprint), read by the worker from the bucket, run again only once the object changed, and no
credential in the store."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from skyweave import File, task, workflow
from skyweave.client import Client
from skyweave.storage.s3 import S3Storage
from tests.s3 import SECRET, new_bucket

pytestmark = pytest.mark.integration


@task
def read(raw: File) -> str:
    return Path(raw).read_text()


@workflow
def text_of(url: str) -> str:
    return read(raw=File(url, type="text", hash="sha256"))


def test_an_s3_object_is_an_input(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bucket = new_bucket(monkeypatch)
    storage = S3Storage(bucket, "obs")
    storage.put("night1.txt", io.BytesIO(b"a\nb\n"))
    url = f"s3://{bucket}/obs/night1.txt"
    with Client(str(tmp_path / "store"), workers=1, executor="threads") as client:
        first = client.run(text_of, {"url": url}, timeout=60)
        assert first.results() == "a\nb\n"
        (product,) = client.products(type="text")
        assert product.uri == url and product.checksum == "sha256:" + hashlib.sha256(b"a\nb\n").hexdigest()
        again = client.run(text_of, {"url": url}, timeout=60)
        assert again.activities()[0].detours[-1].kind == "reused"
        # rewritten with the same size (S3's LastModified has whole seconds; its ETag tells too)
        storage.put("night1.txt", io.BytesIO(b"x\ny\n"))
        assert client.run(text_of, {"url": url}, timeout=60).results() == "x\ny\n"
    for path in (tmp_path / "store").rglob("*"):
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path
