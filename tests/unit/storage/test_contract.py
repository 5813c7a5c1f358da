"""The Storage contract: every implementation of the port passes these tests.

A backend joins by adding one parameter to the ``backend`` fixture: a ``Backend`` with the storage
under test, and (if the backend has a way to point outside itself, like a filesystem's symlinks)
a function that plants such an escape at a key.
"""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from skyweave.errors import NotFoundError, SkyweaveError
from skyweave.storage import (
    BLOCK_SIZE,
    LocalStorage,
    ObjectMissingError,
    Storage,
    UnsafeKeyError,
    locate,
    open_storage,
    verify,
)
from tests.s3 import new_bucket


@dataclass
class Backend:
    storage: Storage
    escape: Callable[[str, Path], None] | None
    """Make ``key`` lead to the local path given (outside the storage), if the backend can."""
    holds_objects_in_memory: bool = False
    part_size: int = 0
    """Bytes the backend holds by design while it streams an object (one part of a multipart
    upload); the memory bound of the large-object test allows for two of them."""


def _local(tmp_path: Path) -> Backend:
    storage = LocalStorage(tmp_path / "root")

    def escape(key: str, outside: Path) -> None:
        link = storage.root / key
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(outside)

    return Backend(storage, escape)


def _memory(_tmp_path: Path) -> Backend:
    return Backend(open_storage(f"memory://{uuid.uuid4().hex}/"), None, holds_objects_in_memory=True)


def _s3(_tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    from skyweave.storage.s3 import S3Storage

    part = 5 << 20  # S3's smallest part: the 32 MiB object of the memory test is 7 parts
    return Backend(S3Storage(new_bucket(monkeypatch), "deployment/one", part_size=part), None, part_size=part)


def _memory_within(_tmp_path: Path) -> Backend:
    return Backend(open_storage(f"memory://{uuid.uuid4().hex}/").within("products"), None,
                   holds_objects_in_memory=True)


@pytest.fixture(params=[_local, _memory, _memory_within, pytest.param(_s3, marks=pytest.mark.integration)],
                ids=["local", "memory", "within", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    if request.param is _s3:
        return _s3(tmp_path, monkeypatch)
    return request.param(tmp_path)  # type: ignore[no-any-return]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Source(io.RawIOBase):
    """``size`` pseudo-random bytes made on demand, recording the largest read asked for."""

    def __init__(self, size: int, fail_at: int | None = None) -> None:
        self.left = size
        self.fail_at = fail_at
        self.given = 0
        self.largest = 0
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self.left)
        self.largest = max(self.largest, len(buffer))
        if self.fail_at is not None and self.given + n > self.fail_at:
            raise OSError("the source broke")
        chunk = (self.given.to_bytes(8, "big") * (n // 8 + 1))[:n]
        buffer[:n] = chunk
        self.digest.update(chunk)
        self.left -= n
        self.given += n
        return n


def test_put_get_round_trip_with_hashlib_checksums(backend: Backend, tmp_path: Path) -> None:
    storage = backend.storage
    data = os.urandom(BLOCK_SIZE + 17)
    stored = storage.put("run-1/act-1/image.fits", io.BytesIO(data))
    assert stored.checksum == sha256(data)
    assert stored.size == len(data)
    assert stored.uri == storage.uri("run-1/act-1/image.fits")
    assert storage.key(stored.uri) == "run-1/act-1/image.fits"
    assert storage.checksum("run-1/act-1/image.fits") == sha256(data)
    assert storage.stat("run-1/act-1/image.fits").size == len(data)
    assert storage.exists("run-1/act-1/image.fits")
    got = storage.get("run-1/act-1/image.fits", tmp_path / "out" / "copy.fits")
    assert got.checksum == sha256(data) and got.size == len(data)
    assert (tmp_path / "out" / "copy.fits").read_bytes() == data
    with storage.open("run-1/act-1/image.fits") as reader:
        assert reader.read() == data


def test_put_replaces_and_names_round_trip(backend: Backend) -> None:
    storage = backend.storage
    key = "run-1/act-1/lc/light curve ñ #1.csv"
    storage.put(key, io.BytesIO(b"first"))
    stored = storage.put(key, io.BytesIO(b"second"))
    assert storage.key(stored.uri) == key
    with storage.open(key) as reader:
        assert reader.read() == b"second"


def test_put_file_copies_or_moves(backend: Backend, tmp_path: Path) -> None:
    storage = backend.storage
    source = tmp_path / "spectrum.pha"
    source.write_bytes(b"pha" * 1000)
    copied = storage.put_file(source, "r/a/copy.pha")
    assert source.exists() and copied.checksum == sha256(b"pha" * 1000)
    moved = storage.store_file(source, "r", "a")
    assert not source.exists()
    assert storage.key(moved.uri) == "r/a/spectrum.pha" and moved.size == 3000


def test_a_failed_put_leaves_the_old_object_and_no_partial(backend: Backend) -> None:
    storage = backend.storage
    storage.put("r/a/x", io.BytesIO(b"old"))
    with pytest.raises(OSError, match="broke"):
        storage.put("r/a/x", io.BufferedReader(Source(3 * BLOCK_SIZE, fail_at=2 * BLOCK_SIZE)))
    assert list(storage.list()) == ["r/a/x"]
    with storage.open("r/a/x") as reader:
        assert reader.read() == b"old"


def test_list_and_delete(backend: Backend) -> None:
    storage = backend.storage
    for key in ("r1/a/b.txt", "r1/a/a.txt", "r2/c/d.txt", "r10/e.txt"):
        storage.put(key, io.BytesIO(key.encode()))
    assert list(storage.list()) == ["r1/a/a.txt", "r1/a/b.txt", "r10/e.txt", "r2/c/d.txt"]
    assert list(storage.list("r1/")) == ["r1/a/a.txt", "r1/a/b.txt"]
    assert list(storage.list("r1")) == ["r1/a/a.txt", "r1/a/b.txt"]
    assert list(storage.list("nothing/")) == []
    storage.delete("r1/a/a.txt")
    assert not storage.exists("r1/a/a.txt")
    assert list(storage.list("r1/")) == ["r1/a/b.txt"]


@pytest.mark.parametrize("operation", ["get", "open", "stat", "checksum", "delete"])
def test_a_missing_object_is_a_clear_error(backend: Backend, tmp_path: Path, operation: str) -> None:
    storage = backend.storage
    calls: dict[str, Callable[[], object]] = {
        "get": lambda: storage.get("r/a/none.fits", tmp_path / "x"),
        "open": lambda: storage.open("r/a/none.fits"),
        "stat": lambda: storage.stat("r/a/none.fits"),
        "checksum": lambda: storage.checksum("r/a/none.fits"),
        "delete": lambda: storage.delete("r/a/none.fits"),
    }
    with pytest.raises(ObjectMissingError, match=r"none\.fits") as info:
        calls[operation]()
    assert isinstance(info.value, NotFoundError)
    assert not (tmp_path / "x").exists()
    assert not storage.exists("r/a/none.fits")


def test_large_objects_stream_through_without_being_held_in_memory(backend: Backend, tmp_path: Path) -> None:
    storage = backend.storage
    size = 32 * BLOCK_SIZE + 5
    source = Source(size)
    tracemalloc.start()
    try:
        stored = storage.put("r/a/big.ms", io.BufferedReader(source, buffer_size=BLOCK_SIZE))
        assert storage.checksum("r/a/big.ms") == stored.checksum
        got = storage.get("r/a/big.ms", tmp_path / "big.ms")
        with storage.open("r/a/big.ms") as reader:
            while reader.read(BLOCK_SIZE):
                pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert stored.checksum == got.checksum == "sha256:" + source.digest.hexdigest()
    assert stored.size == got.size == size
    assert source.largest <= 8 * BLOCK_SIZE
    if not backend.holds_objects_in_memory:
        assert peak < size // 4 + 2 * backend.part_size, f"{peak} bytes held at once for a {size}-byte object"


UNSAFE = ["../x", "r/../../x", "/etc/passwd", "r/a/\x00x", "", "r//x", "./x", "r\\..\\x", "C:/x"]


def _every_operation(storage: Storage, key: str, out: Path) -> list[Callable[[], object]]:
    return [lambda: storage.put(key, io.BytesIO(b"x")), lambda: storage.open(key),
            lambda: storage.stat(key), lambda: storage.checksum(key), lambda: storage.delete(key),
            lambda: storage.get(key, out)]


@pytest.mark.parametrize("key", UNSAFE)
def test_a_key_never_escapes_the_root(backend: Backend, tmp_path: Path, key: str) -> None:
    storage = backend.storage
    for call in [*_every_operation(storage, key, tmp_path / "out"), lambda: storage.uri(key)]:
        with pytest.raises(UnsafeKeyError):
            call()
    assert not (tmp_path / "x").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("key", ["r/a/file", "r/dir/new"])
def test_a_key_through_a_link_never_escapes_the_root(backend: Backend, tmp_path: Path, key: str) -> None:
    if backend.escape is None:
        pytest.skip("this backend has no links")
    storage = backend.storage
    secret = tmp_path / "secret"
    secret.write_bytes(b"do not read")
    (tmp_path / "elsewhere").mkdir()
    backend.escape("r/a/file", secret)
    backend.escape("r/dir", tmp_path / "elsewhere")
    for call in _every_operation(storage, key, tmp_path / "out"):
        with pytest.raises(UnsafeKeyError, match="outside"):
            call()
    assert secret.read_bytes() == b"do not read"
    assert list((tmp_path / "elsewhere").iterdir()) == []
    assert "r/a/file" not in list(storage.list())


def test_uris_outside_the_storage_have_no_key(backend: Backend) -> None:
    storage = backend.storage
    outside = storage.uri("r/a/x").replace("/r/a/x", "/../elsewhere/x")
    with pytest.raises(UnsafeKeyError):
        storage.key(outside)


def test_locate_and_verify_find_the_object_through_the_registry(backend: Backend) -> None:
    storage = backend.storage
    stored = storage.put("r/a/x.fits", io.BytesIO(b"data"))
    where, key = locate(stored.uri)
    assert where.checksum(key) == stored.checksum
    assert verify(stored.uri, stored.checksum) == ""
    assert verify(stored.uri, sha256(b"other")) == "changed"
    storage.delete("r/a/x.fits")
    assert verify(stored.uri, stored.checksum) == "gone"


# -- the registry ------------------------------------------------------------------------------------
def test_open_storage_by_path_or_url(tmp_path: Path) -> None:
    assert isinstance(open_storage(tmp_path), LocalStorage)
    by_url = open_storage((tmp_path / "s").as_uri())
    assert isinstance(by_url, LocalStorage) and by_url.root == tmp_path / "s"


def test_an_unknown_scheme_says_which_are_known() -> None:
    with pytest.raises(SkyweaveError, match=r"(?s)unknown storage URL scheme 'gopher'.*known schemes: file"):
        open_storage("gopher://host/x")
    assert verify("gopher://host/x", None).startswith("unreadable")


