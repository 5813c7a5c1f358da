"""Exporting products' files into a folder: names, collisions, links, and nothing overwritten."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from skyweave.model.records import ProductRecord
from skyweave.storage.export import ExportError, export_products
from skyweave.storage.local import checksum_file, file_uri


def _product(path: Path, pid: str, text: str, *, state: str = "available") -> ProductRecord:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return ProductRecord(id=pid, uri=file_uri(path), checksum=checksum_file(path), size=len(text), state=state)


@pytest.fixture
def stored(tmp_path: Path) -> list[ProductRecord]:
    """Three products, two of them with the same file name (as a fan-out makes them)."""
    root = tmp_path / "store" / "run-1"
    return [_product(root / "act-a" / "image.fits", "prd-a", "image a"),
            _product(root / "act-b" / "image.fits", "prd-b", "image b"),
            _product(root / "act-c" / "catalog.csv", "prd-c", "ra,dec\n")]


def test_files_keep_their_names_and_colliding_names_go_under_their_product_id(
        tmp_path: Path, stored: list[ProductRecord]) -> None:
    out = tmp_path / "results"
    done, skipped = export_products(stored, out)
    assert skipped == []
    assert {e.product.id: (e.path.relative_to(out).as_posix(), e.action) for e in done} == {
        "prd-a": ("prd-a/image.fits", "copied"), "prd-b": ("prd-b/image.fits", "copied"),
        "prd-c": ("catalog.csv", "copied")}
    assert (out / "prd-b" / "image.fits").read_text() == "image b"
    assert not (out / "prd-a" / "image.fits").is_symlink()
    assert sorted(p.name for p in out.iterdir()) == ["catalog.csv", "prd-a", "prd-b"]   # no leftovers
    again, _ = export_products(stored, out)                        # exporting again changes nothing
    assert {e.action for e in again} == {"present"}


def test_link_makes_symbolic_links_to_the_stored_files(tmp_path: Path, stored: list[ProductRecord]) -> None:
    out = tmp_path / "results"
    done, _ = export_products(stored[2:], out, link=True)
    (e,) = done
    assert e.action == "linked" and e.path.is_symlink()
    assert e.path.resolve() == Path(stored[2].uri.removeprefix("file://")).resolve()
    assert export_products(stored[2:], out, link=True)[0][0].action == "present"


def test_a_name_taken_by_another_file_is_refused_and_nothing_is_written(
        tmp_path: Path, stored: list[ProductRecord]) -> None:
    out = tmp_path / "results"
    out.mkdir()
    (out / "catalog.csv").write_text("my own notes")
    with pytest.raises(ExportError) as info:
        export_products(stored, out)
    assert "names already taken" in info.value.message and "catalog.csv (for prd-c)" in info.value.message
    assert info.value.hint is not None and "nothing was written" in info.value.hint
    assert (out / "catalog.csv").read_text() == "my own notes"
    assert sorted(p.name for p in out.iterdir()) == ["catalog.csv"]
    with pytest.raises(ExportError):                               # nor replaced by a link
        export_products(stored[2:], out, link=True)
    assert not (out / "catalog.csv").is_symlink()


def test_a_missing_file_is_refused_before_anything_is_copied(
        tmp_path: Path, stored: list[ProductRecord]) -> None:
    os.remove(stored[1].uri.removeprefix("file://"))
    out = tmp_path / "results"
    with pytest.raises(ExportError, match=r"prd-b: its file .* is missing"):
        export_products(stored, out)
    assert not out.exists()


def test_a_deleted_product_is_skipped_and_said_so(tmp_path: Path, stored: list[ProductRecord]) -> None:
    gone = ProductRecord(id="prd-gone", uri=file_uri(tmp_path / "nowhere" / "x.fits"), state="deleted")
    done, skipped = export_products([*stored[2:], gone], tmp_path / "results")
    assert [e.product.id for e in done] == ["prd-c"]
    assert [(s.product.id, s.reason) for s in skipped] == [
        ("prd-gone", "its file was deleted by cleanup (the record stays)")]


def test_a_stored_file_changed_since_it_was_recorded_is_not_exported(
        tmp_path: Path, stored: list[ProductRecord]) -> None:
    Path(stored[2].uri.removeprefix("file://")).write_text("ra,dec\nedited by hand\n")
    out = tmp_path / "results"
    with pytest.raises(ExportError, match="has changed since it was recorded"):
        export_products(stored[2:], out)
    assert list(out.iterdir()) == []                                  # the bad copy is removed
