"""A file a task returns but did not make is registered where it is: never moved, copied, modified
or deleted (issue 11, point 4: raw data vanished from ``raw/`` into the store)."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skyweave import Product, context, task, workflow
from skyweave.client import Client
from skyweave.config.settings import RetentionRule
from skyweave.executors.products import made_by_activity
from skyweave.model.records import ActivityRecord
from skyweave.storage.cleanup import apply_cleanup, plan_cleanup
from skyweave.storage.local import LocalStorage, file_uri

# These tasks take a plain path on purpose (the subject is a returned Product outside the work
# directory; its checksum catches an edit), so the submission warning about untracked paths is noise.
pytestmark = pytest.mark.filterwarnings("ignore::skyweave.authoring.external.UntrackedPathWarning")


@task(version="1")
def register_raw(path: str) -> Product:
    return Product(path, type="test.raw", obs_id="o1")


@task(version="1")
def measure(raw: Product) -> int:
    return len(raw.local_path.read_bytes())


@task(version="1")
def raw_and_made(path: str) -> list[Product]:
    made = context().output("made.txt")
    made.write_text("made here\n")
    return [Product(path, type="test.raw"), Product(made, type="test.made")]


@workflow
def ingest(path: str) -> Any:
    raw = register_raw(path=path)
    return {"raw": raw, "size": measure(raw=raw)}


@workflow
def mixed(path: str) -> Any:
    return raw_and_made(path=path)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def raw(tmp_path: Path) -> Iterator[Path]:
    """``raw/scan02.fits`` in a read-only folder, itself read-only."""
    folder = tmp_path / "raw"
    folder.mkdir()
    path = folder / "scan02.fits"
    path.write_bytes(b"SIMPLE = T raw photons " * 100)
    path.chmod(0o444)
    folder.chmod(0o555)
    yield path
    folder.chmod(0o755)


def edit(path: Path, data: bytes) -> None:
    path.parent.chmod(0o755)
    path.chmod(0o644)
    path.write_bytes(data)
    path.chmod(0o444)
    path.parent.chmod(0o555)


def of_task(acts: list[ActivityRecord], name: str) -> ActivityRecord:
    (found,) = [a for a in acts if a.task_name == name]
    return found


def test_a_returned_raw_file_stays_where_it_is_and_is_tracked(tmp_path: Path, raw: Path) -> None:
    content, mode = raw.read_bytes(), stat.S_IMODE(raw.stat().st_mode)
    with Client(str(tmp_path / "st"), executor="threads", workers=1) as client:
        first = client.run(ingest, {"path": str(raw)}, timeout=60)
        assert first.status == "succeeded", first.activities()
        assert raw.read_bytes() == content and stat.S_IMODE(raw.stat().st_mode) == mode
        assert sorted(p.name for p in raw.parent.iterdir()) == ["scan02.fits"]

        (product,) = client.store.find_products(run_id=first.id)
        registering = of_task(first.activities(), "register_raw")
        assert product.uri == file_uri(raw) and LocalStorage.local_path(product.uri) == raw
        assert product.checksum == sha256(content) and product.size == len(content)
        assert product.activity_id == registering.id and product.type == "test.raw"
        assert first.results()["size"] == len(content)  # the next task read it where it is
        up = client.store.lineage(product.id, direction="up")
        assert [a.id for a in up.activities] == [registering.id]
        stored = client.settings.store_dir / "products"
        assert not stored.exists() or not any(p.is_file() for p in stored.rglob("*"))

        # unchanged: the second run reuses it, the integrity check reading the file in place
        second = client.run(ingest, {"path": str(raw)}, timeout=60)
        reused = of_task(second.activities(), "register_raw")
        assert [d.kind for d in reused.detours] == ["reused"], reused.detours
        assert second.results()["raw"] == first.results()["raw"]

        # edited in place: the integrity check sees it and the task runs again
        edit(raw, b"SIMPLE = T new photons " * 50)
        third = client.run(ingest, {"path": str(raw)}, timeout=60)
        again = of_task(third.activities(), "register_raw")
        assert [d.kind for d in again.detours] == ["cache-miss"], again.detours
        assert "modified" in again.detours[0].reason
        (new,) = client.store.find_products(run_id=third.id)
        assert new.uri == product.uri and new.checksum == sha256(raw.read_bytes()) != product.checksum
        assert third.results()["size"] == len(raw.read_bytes())


def test_a_raw_file_is_not_stamped_and_never_deleted_by_cleanup(tmp_path: Path) -> None:
    fits = pytest.importorskip("astropy.io.fits")
    numpy = pytest.importorskip("numpy")
    raw = tmp_path / "raw" / "scan03.fits"
    raw.parent.mkdir()
    fits.PrimaryHDU(numpy.zeros((4, 4), dtype="float32")).writeto(raw)
    content, mtime = raw.read_bytes(), raw.stat().st_mtime_ns
    aspect = "skyweave.provenance.fits:FitsProvenanceAspect"
    with Client(str(tmp_path / "st"), executor="threads", workers=1, aspects=[aspect]) as client:
        run = client.run(mixed, {"path": str(raw)}, timeout=60)
        assert run.status == "succeeded"
        assert raw.read_bytes() == content and raw.stat().st_mtime_ns == mtime  # no provenance keywords
        products = {p.type: p for p in client.store.find_products(run_id=run.id)}
        made = LocalStorage.local_path(products["test.made"].uri)
        storage = client.settings.store_dir / "products"
        assert made.is_relative_to(storage) and made.read_text() == "made here\n"  # moved in, as before
        assert products["test.raw"].uri == file_uri(raw)

        rules = [RetentionRule(type="test.*", older_than_days=0, include_external=True)]
        plan = plan_cleanup(client.store, rules, time.time() + 1, storage)
        assert [d.product.id for d in plan.delete] == [products["test.made"].id]
        (kept,) = plan.kept
        assert kept.product.id == products["test.raw"].id and "registered in place" in kept.reason
        result = apply_cleanup(client.store, plan)
        assert result.deleted == [products["test.made"].id]
        assert raw.read_bytes() == content and not made.exists()


def test_a_file_reached_through_dot_dot_is_not_taken_for_the_work_directory(tmp_path: Path) -> None:
    work = tmp_path / "work" / "act-1"
    work.mkdir(parents=True)
    (tmp_path / "raw").mkdir()
    outside = tmp_path / "raw" / "x.fits"
    outside.write_bytes(b"x")
    assert not made_by_activity(work / ".." / ".." / "raw" / "x.fits", work)
    link = work / "linked"
    os.symlink(tmp_path / "raw", link)
    assert not made_by_activity(link / "x.fits", work)
    assert made_by_activity(work / "sub" / ".." / "out.txt", work)
    assert made_by_activity(work / "out.txt", work)
