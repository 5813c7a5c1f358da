"""LocalStorage: files moved in (renamed or copied across filesystems), checksummed, addressed by URI."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from skyweave.errors import SkyweaveError
from skyweave.storage import local as storage_module
from skyweave.storage.local import BLOCK_SIZE, LocalStorage, checksum_file, file_uri


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_store_moves_the_file_and_reports_uri_checksum_size(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    source = tmp_path / "work" / "image.fits"
    source.parent.mkdir()
    source.write_bytes(b"SIMPLE  = T")
    uri, checksum, size = storage.store_file(source, "run-1", "act-1", "image.fits")
    target = tmp_path / "store" / "run-1" / "act-1" / "image.fits"
    assert uri == target.as_uri()
    assert checksum == sha256(b"SIMPLE  = T")
    assert size == 11
    assert target.read_bytes() == b"SIMPLE  = T"
    assert not source.exists()
    assert storage.local_path(uri) == target


def test_the_process_remembers_what_it_hashed_until_the_file_changes(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    source = tmp_path / "vis.npz"
    source.write_bytes(b"v" * 100)
    stored = storage.store_file(source, "run-1", "act-1")
    target = storage.local_path(stored.uri)
    assert storage_module.known_checksum(target, target.stat()) == stored.checksum == sha256(b"v" * 100)
    target.write_bytes(b"w" * 100)  # same size, new content: another modification time
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 1))
    assert storage_module.known_checksum(target, target.stat()) is None


def test_names_with_spaces_unicode_and_subfolders_round_trip(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    source = tmp_path / "light curve ñ #1.csv"
    source.write_text("t,flux\n")
    stored = storage.store_file(source, "run-1", "act-1", "lc/light curve ñ #1.csv")
    assert "%20" in stored.uri
    assert storage.local_path(stored.uri).read_text() == "t,flux\n"
    assert storage.local_path(stored.uri).parent.name == "lc"


def test_default_name_is_the_file_name(tmp_path: Path) -> None:
    source = tmp_path / "spectrum.pha"
    source.write_bytes(b"pha")
    stored = LocalStorage(tmp_path / "store").store_file(source, "run-1", "act-1")
    assert stored.uri.endswith("/run-1/act-1/spectrum.pha")


def test_a_later_attempt_replaces_an_earlier_file(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    for content in (b"first", b"second"):
        source = tmp_path / "out.dat"
        source.write_bytes(content)
        stored = storage.store_file(source, "run-1", "act-1")
    assert storage.local_path(stored.uri).read_bytes() == b"second"


def test_copy_across_filesystems_hashes_in_one_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Force the cross-device path (EXDEV) and check the streamed copy."""
    real_replace = os.replace

    def replace(src: os.PathLike[str] | str, dst: os.PathLike[str] | str) -> None:
        if not str(src).endswith(".partial"):
            raise OSError(18, "Invalid cross-device link")  # errno.EXDEV
        real_replace(src, dst)

    monkeypatch.setattr(storage_module.os, "replace", replace)
    data = os.urandom(2 * BLOCK_SIZE + 12345)
    source = tmp_path / "big.evt"
    source.write_bytes(data)
    stored = LocalStorage(tmp_path / "store").store_file(source, "run-1", "act-1")
    assert stored.checksum == sha256(data)
    assert stored.size == len(data)
    assert LocalStorage.local_path(stored.uri).read_bytes() == data
    assert not source.exists()
    assert not list((tmp_path / "store").rglob("*.partial"))


def test_checksum_streams_in_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(3 * BLOCK_SIZE + 7)
    path = tmp_path / "vis.ms"
    path.write_bytes(data)
    reads: list[int] = []
    real_open = open

    class Spy:
        def __init__(self, handle: object) -> None:
            self.handle = handle

        def __enter__(self) -> Spy:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()  # type: ignore[attr-defined]

        def readinto(self, buffer: bytearray) -> int:
            reads.append(len(buffer))
            return self.handle.readinto(buffer)  # type: ignore[attr-defined,no-any-return]

    monkeypatch.setattr(storage_module, "open", lambda *a, **k: Spy(real_open(*a, **k)), raising=False)
    assert checksum_file(path) == sha256(data)
    assert set(reads) == {BLOCK_SIZE}  # never more than one block in memory
    assert len(reads) == 5


def test_missing_source_and_bad_names_are_refused(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    with pytest.raises(SkyweaveError, match="no such file"):
        storage.store_file(tmp_path / "absent.fits", "run-1", "act-1")
    source = tmp_path / "x.fits"
    source.write_bytes(b"x")
    for name in ("/etc/passwd", "../escape.fits", "a/../../b"):
        with pytest.raises(SkyweaveError, match="not a relative file name"):
            storage.store_file(source, "run-1", "act-1", name)
    assert source.exists()


def test_local_path_accepts_file_uris_and_plain_paths_only(tmp_path: Path) -> None:
    assert LocalStorage.local_path(file_uri(tmp_path / "a b")) == tmp_path / "a b"
    assert LocalStorage.local_path(str(tmp_path / "plain")) == tmp_path / "plain"
    assert LocalStorage.local_path("file://localhost/data/x.fits") == Path("/data/x.fits")
    with pytest.raises(SkyweaveError, match="scheme 's3'"):
        LocalStorage.local_path("s3://bucket/x.fits")
    with pytest.raises(SkyweaveError, match="names host 'archive'"):
        LocalStorage.local_path("file://archive/data/x.fits")
