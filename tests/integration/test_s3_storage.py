"""What the S3 storage does beyond the storage contract (tests/unit/storage/test_contract.py runs
that on the moto server too): multipart uploads, aborted ones leave nothing, no credentials in URLs."""

from __future__ import annotations

import io

import pytest

from skyweave.errors import SkyweaveError
from skyweave.storage import open_storage
from skyweave.storage.s3 import S3Storage, filesystem
from tests.s3 import new_bucket

pytestmark = pytest.mark.integration

PART = 5 << 20


def test_a_large_object_goes_up_in_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    storage = S3Storage(new_bucket(monkeypatch), "p", part_size=PART)
    data = bytes(range(256)) * ((2 * PART + 100) // 256 + 1)
    stored = storage.put("r/a/big.ms", io.BytesIO(data))
    info = filesystem().info(f"{storage.bucket}/p/r/a/big.ms")
    assert info["ETag"].strip('"').endswith("-3"), "a multipart object's ETag counts its parts"
    assert stored.size == len(data) and storage.checksum("r/a/big.ms") == stored.checksum
    small = storage.put("r/a/small.txt", io.BytesIO(b"x" * 10))
    assert "-" not in filesystem().info(f"{storage.bucket}/p/r/a/small.txt")["ETag"] and small.size == 10


class Broken(io.RawIOBase):
    def __init__(self, good: int) -> None:
        self.good = good

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.good <= 0:
            raise OSError("the source broke")
        n = min(len(buffer), self.good)
        buffer[:n] = b"y" * n
        self.good -= n
        return n


def test_a_failed_multipart_upload_is_aborted(monkeypatch: pytest.MonkeyPatch) -> None:
    storage = S3Storage(new_bucket(monkeypatch), "", part_size=PART)
    with pytest.raises(OSError, match="broke"):
        storage.put("r/a/x", io.BufferedReader(Broken(2 * PART + 1)))
    uploads = filesystem().call_s3("list_multipart_uploads", Bucket=storage.bucket)
    assert not uploads.get("Uploads"), "the parts sent before the failure are not left behind"
    assert list(storage.list()) == []


@pytest.mark.parametrize("url", ["s3://key:secret@bucket/p", "s3:///p", "s3://bad:bucket/p"])
def test_credentials_or_nonsense_in_a_storage_url_are_refused(url: str) -> None:
    with pytest.raises(SkyweaveError, match=r"AWS_ACCESS_KEY_ID|not an S3 bucket"):
        open_storage(url)
