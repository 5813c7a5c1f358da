"""Fingerprints of data named in place: what changes them, what does not, and the check that a
registered File/Folder is still what it was."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from skyweave.authoring.external import File, Folder
from skyweave.errors import DefinitionError, NotFoundError
from skyweave.model.records import ProductRecord
from skyweave.storage import inplace


def bump(path: Path, text: str | None = None) -> None:
    if text is not None:
        path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 3_000_000_000))


def rec(item: File | Folder) -> ProductRecord:
    return inplace.record(item.spec())


def test_a_file_is_keyed_on_its_stat_and_an_edit_changes_it(tmp_path: Path) -> None:
    f = tmp_path / "a.fits"
    f.write_text("x")
    first = rec(File(f))
    assert first.uri == f.as_uri() and first.checksum and first.checksum.startswith("stat:")
    assert rec(File(f)).id == first.id, "same file, same state: same product"
    assert inplace.change(first.uri, first.checksum, first.attributes) == ""
    bump(f, "y")
    assert rec(File(f)).checksum != first.checksum
    assert "changed since it was registered" in inplace.change(first.uri, first.checksum, first.attributes)
    f.unlink()
    assert "is gone" in inplace.change(first.uri, first.checksum, first.attributes)


def test_a_content_hash_ignores_a_touch_and_reuses_an_earlier_hash(tmp_path: Path) -> None:
    f = tmp_path / "big.ms"
    f.write_text("visibilities")
    first = rec(File(f, hash="sha256"))
    assert first.checksum == "sha256:" + __import__("hashlib").sha256(b"visibilities").hexdigest()
    looked: list[str] = []

    def lookup(pid: str) -> ProductRecord | None:
        looked.append(pid)
        return first if pid == first.id else None

    assert inplace.record(File(f, hash="sha256").spec(), lookup=lookup) is first  # no re-read
    bump(f)
    touched = rec(File(f, hash="sha256"))
    assert touched.checksum == first.checksum and touched.id != first.id
    assert inplace.change(first.uri, first.checksum, first.attributes) == ""


def test_a_folder_is_keyed_on_its_listing(tmp_path: Path) -> None:
    d = tmp_path / "raw"
    d.mkdir()
    (d / "exp00.txt").write_text("1")
    base = rec(Folder(d, glob="*.txt"))
    (d / "notes.log").write_text("ignored by the glob")
    assert rec(Folder(d, glob="*.txt")).checksum == base.checksum
    assert rec(Folder(d)).checksum != base.checksum, "the default glob takes every file"
    (d / "exp01.txt").write_text("2")
    added = rec(Folder(d, glob="*.txt"))
    assert added.checksum != base.checksum
    assert "files were added, removed or modified" in inplace.change(base.uri, base.checksum, base.attributes)
    bump(d / "exp00.txt", "3")
    assert rec(Folder(d, glob="*.txt")).checksum != added.checksum
    assert [p.name for p in Folder(d, glob="*.txt").files()] == ["exp00.txt", "exp01.txt"]


def test_missing_data_and_a_bad_hash_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no file"):
        rec(File(tmp_path / "nope"))
    with pytest.raises(NotFoundError, match="no folder"):
        rec(Folder(tmp_path / "nope"))
    with pytest.raises(DefinitionError, match="hash='md5'"):
        File(tmp_path, hash="md5")


def test_resolve_graph_replaces_in_place_arguments_by_products(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("x")
    spec = File(f).spec()
    graph = {"nodes": {"n": {"args": {"one": {"in_place": spec},
                                      "many": {"list": [{"lit": 1}, {"in_place": spec}]},
                                      "lit": {"lit": {"in_place": "a user's own value"}}}}}}
    resolved, records = inplace.resolve_graph(graph)
    (record,) = records
    args = resolved["nodes"]["n"]["args"]
    assert args["one"] == {"product": record.id}
    assert args["many"] == {"list": [{"lit": 1}, {"product": record.id}]}
    assert args["lit"] == {"lit": {"in_place": "a user's own value"}}
