"""The users of product storage go through the Storage port: the cache integrity check, reprocess
and cleanup work on a product in any storage the registry knows, not only on ``file://`` ones
(before, every product elsewhere was a cache miss and could never be cleaned up)."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from skyweave.config.settings import RetentionRule
from skyweave.controller.reuse import intact
from skyweave.model.records import ActivityRecord, Changeset, ProductRecord, RunRecord
from skyweave.reprocess import _file_problem
from skyweave.storage import LocalStorage, Storage, open_storage
from skyweave.storage.cleanup import apply_cleanup, plan_cleanup
from skyweave.store import Store, open_store

OLD = 1_000.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(str(tmp_path / "store"))
    opened.apply(Changeset(
        runs=[RunRecord(id="run-1", workflow="w", state="succeeded")],
        activities=[ActivityRecord(id="act-1", run_id="run-1", node="t", task_name="t", task_version="1",
                                   state="succeeded", arguments={})]))
    yield opened
    opened.close()


@pytest.fixture
def remote() -> Storage:
    return open_storage(f"memory://{uuid.uuid4().hex}/")


def register(store: Store, storage: Storage, key: str, data: bytes, pid: str = "prd-1") -> str:
    stored = storage.put(key, io.BytesIO(data))
    store.apply(Changeset(products=[ProductRecord(
        id=pid, uri=stored.uri, type="ep.l1.events", name=key.rsplit("/", 1)[-1], checksum=stored.checksum,
        size=stored.size, activity_id="act-1", run_id="run-1", created_at=OLD)]))
    return stored.uri


def test_the_integrity_check_verifies_a_product_in_another_storage(store: Store, remote: Storage) -> None:
    register(store, remote, "run-1/act-1/events.fits", b"events")
    problem, ref = intact(store, "prd-1", "act-1")
    assert problem == "" and ref is not None and ref.uri.startswith("memory://")
    assert _file_problem(store, "prd-1") == ""


def test_a_changed_or_gone_product_in_another_storage_is_a_miss(store: Store, remote: Storage) -> None:
    uri = register(store, remote, "run-1/act-1/events.fits", b"events")
    remote.put("run-1/act-1/events.fits", io.BytesIO(b"tampered"))
    assert "modified behind skyweave's back" in intact(store, "prd-1", "act-1")[0]
    assert "changed" in _file_problem(store, "prd-1")
    remote.delete("run-1/act-1/events.fits")
    assert intact(store, "prd-1", "act-1")[0] == f"output prd-1 of act-1 is gone from {uri}"
    assert "is gone from" in _file_problem(store, "prd-1")


def test_a_product_of_an_unknown_scheme_says_why_it_is_not_reused(store: Store) -> None:
    store.apply(Changeset(products=[ProductRecord(id="prd-x", uri="gopher://host/x", type="t", checksum="sha256:0",
                                                  created_at=OLD)]))
    assert "unknown storage URL scheme 'gopher'" in intact(store, "prd-x", "act-1")[0]


def test_cleanup_deletes_through_the_storage_it_was_given(store: Store, remote: Storage) -> None:
    register(store, remote, "run-1/act-1/events.fits", b"events")
    plan = plan_cleanup(store, [RetentionRule(type="ep.*", older_than_days=1)], OLD + 10 * 86_400, remote)
    assert [d.product.id for d in plan.delete] == ["prd-1"]
    result = apply_cleanup(store, plan)
    assert result.deleted == ["prd-1"] and result.bytes_freed == 6
    assert list(remote.list()) == []
    assert store.get_product("prd-1").state == "deleted"


def test_cleanup_never_follows_a_link_out_of_the_product_storage(store: Store, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "products")
    user = tmp_path / "user-data"
    user.mkdir()
    (user / "events.fits").write_bytes(b"precious")
    (storage.root / "run-1").mkdir(parents=True)
    os.symlink(user, storage.root / "run-1" / "act-1")
    uri = (storage.root / "run-1" / "act-1" / "events.fits").as_uri()
    store.apply(Changeset(products=[ProductRecord(id="prd-1", uri=uri, type="ep.l1.events", size=8,
                                                  activity_id="act-1", run_id="run-1", created_at=OLD)]))
    plan = plan_cleanup(store, [RetentionRule(type="ep.*", older_than_days=1)], OLD + 10 * 86_400, storage)
    assert plan.delete == [] and "outside the store" in plan.kept[0].reason
    apply_cleanup(store, plan)
    assert (user / "events.fits").read_bytes() == b"precious"
