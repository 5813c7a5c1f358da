"""A worker whose product storage is not the controller's disk (``ExecutionEnv.storage``): inputs
are copied in from the storage, outputs written through it, checksums kept end to end."""

from __future__ import annotations

import dataclasses
import io
import uuid
from pathlib import Path

from skyweave.executors.base import ExecutionEnv
from skyweave.executors.boundary import execute
from skyweave.model.messages import ActivityFailed, ActivityFinished, ProductRef
from skyweave.storage import Storage, open_storage

from .helpers import by_path, dispatch, sha256


def remote_env(env: ExecutionEnv) -> tuple[ExecutionEnv, Storage]:
    """An env whose storage is in memory, and the storage's ``products/`` part."""
    url = f"memory://{uuid.uuid4().hex}/"
    return dataclasses.replace(env, storage=url), open_storage(url).within("products")


def test_outputs_are_written_through_the_storage(env: ExecutionEnv, tmp_path: Path) -> None:
    remote, storage = remote_env(env)
    d = dispatch(by_path("make_products"), {"n": 2})
    outcome = execute(d, remote)
    assert isinstance(outcome, ActivityFinished), outcome
    assert len(outcome.products) == 3
    for product in outcome.products:
        assert storage.key(product.uri).startswith(f"{d.run_id}/{d.activity_id}/")
        assert storage.checksum(storage.key(product.uri)) == product.checksum
    assert sorted(storage.list()) == sorted(storage.key(p.uri) for p in outcome.products)
    assert not (tmp_path / "storage").exists(), "nothing written to the local product folder"


def test_inputs_in_the_storage_are_copied_in_and_validated(env: ExecutionEnv) -> None:
    remote, storage = remote_env(env)
    stored = storage.put("run-0/act-0/events.txt", io.BytesIO(b"events\n"))
    ref = ProductRef(id="prd-in", uri=stored.uri, type="ep.l1.events", checksum=stored.checksum,
                     size=stored.size)
    marker = {"$product": "prd-in"}
    d = dispatch(by_path("read_inputs"), {"items": [marker], "single": marker}, products={"prd-in": ref})
    outcome = execute(d, remote)
    assert isinstance(outcome, ActivityFinished), outcome
    assert outcome.result["single"] == {"text": "events\n", "id": "prd-in", "type": "ep.l1.events"}

    changed = ProductRef(id="prd-in", uri=stored.uri, type="ep.l1.events", checksum=sha256(b"other"),
                         size=stored.size)
    bad = execute(dispatch(by_path("read_inputs"), {"items": [], "single": marker},
                           products={"prd-in": changed}), remote)
    assert isinstance(bad, ActivityFailed) and "prd-in" in bad.message


def test_a_missing_input_in_the_storage_is_reported_like_a_missing_file(env: ExecutionEnv) -> None:
    remote, storage = remote_env(env)
    ref = ProductRef(id="prd-gone", uri=storage.uri("run-0/act-0/gone.txt"), type="t", checksum=sha256(b""))
    marker = {"$product": "prd-gone"}
    outcome = execute(dispatch(by_path("read_inputs"), {"items": [], "single": marker},
                               products={"prd-gone": ref}), remote)
    assert not isinstance(outcome, ActivityFinished)
    assert "prd-gone" in str(outcome)


def test_the_captured_log_is_copied_to_the_storage(env: ExecutionEnv) -> None:
    remote, _products = remote_env(env)
    d = dispatch(by_path("chatty"))
    outcome = execute(d, remote)
    assert isinstance(outcome, ActivityFinished), outcome
    logs = open_storage(remote.storage).within("logs")
    assert logs.key(outcome.log_uri) == f"{d.activity_id}.{d.attempt}.log"
    with logs.open(logs.key(outcome.log_uri)) as reader:
        assert "hello from print" in reader.read().decode()
