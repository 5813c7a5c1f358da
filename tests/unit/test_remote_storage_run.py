"""A deployment whose storage is not this host's disk (``Settings.storage`` a URL): products,
captured logs and code snapshots go there, nothing of them to the local folder, and the cache
integrity check reads the remote products (a remote product is reused, a changed one is not)."""

from __future__ import annotations

import io
import threading
import uuid
from pathlib import Path

import pytest

from skyweave import Client
from skyweave.config.settings import Settings
from skyweave.errors import SkyweaveError
from skyweave.examples import mini_xray
from skyweave.executors.resolve import fetch_code, resolve_ref
from skyweave.storage import Storage, locate, open_storage

PARAMS = {"obs_id": "remote1", "seed": 5}


def test_settings_separate_the_store_from_the_storage(tmp_path: Path) -> None:
    remote = Settings(store=str(tmp_path / "st"), storage="s3://bucket/deploy")
    assert remote.remote_storage and remote.storage_location == "s3://bucket/deploy"
    assert remote.store_dir == tmp_path / "st", "work directories stay on this host"
    on_server = Settings(store="postgresql://db.example/sw", storage="s3://bucket/deploy")
    assert on_server.store_dir == Path(".skyweave").resolve()
    local = Settings(store=str(tmp_path / "st"), storage=(tmp_path / "files").as_uri())
    assert not local.remote_storage and local.store_dir == tmp_path / "files"
    assert local.storage_location == str(tmp_path / "files")
    with pytest.raises(SkyweaveError, match="keeps no files"):
        _ = Settings(store="postgresql://db.example/sw").store_dir


def test_a_run_with_remote_storage_keeps_nothing_local_and_reuses_remote_products(tmp_path: Path) -> None:
    url = f"memory://{uuid.uuid4().hex}/"
    with Client(str(tmp_path / "st"), storage=url, executor="threads", workers=2) as client:
        first = client.run(mini_xray.observation, PARAMS, timeout=60)
        assert first.status == "succeeded"
        made = first.products()
        assert made and all(p.uri.startswith(f"{url}products/") for p in made)
        for product in made:
            where, key = locate(product.uri)
            assert where.checksum(key) == product.checksum
        assert not (tmp_path / "st" / "products").exists()

        second = client.run(mini_xray.observation, PARAMS, timeout=60)
        assert second.status == "succeeded"
        assert all(a.detours and a.detours[-1].kind == "reused" for a in second.activities()), \
            "a product in a remote storage is checked there, not taken for a cache miss"

        events = next(p for p in made if p.type == "demo.l1.events")
        where, key = locate(events.uri)
        where.put(key, io.BytesIO(b"changed behind skyweave's back"))
        third = client.run(mini_xray.observation, PARAMS, timeout=60)
        assert third.status == "succeeded"
        misses = [d.reason for a in third.activities() for d in a.detours if d.kind == "cache-miss"]
        assert len(misses) == 1 and events.id in misses[0]


def test_a_task_file_is_snapshotted_into_the_remote_storage(tmp_path: Path) -> None:
    tasks = tmp_path / "mytasks.py"
    tasks.write_text("from skyweave import task\n\n@task(version='1')\ndef double(x: int) -> int:\n"
                     "    return 2 * x\n")
    url = f"memory://{uuid.uuid4().hex}/"
    with Client(str(tmp_path / "st"), storage=url, executor="threads", workers=1) as client:
        spec = client.register_task(f"{tasks}:double")
        assert spec.ref.startswith(f"{url}code/") and spec.ref.endswith("/mytasks.py:double")
        assert not (tmp_path / "st" / "code").exists()
        where, key = locate(spec.ref.rpartition(":")[0])
        with where.open(key) as reader:
            assert b"return 2 * x" in reader.read()
        assert resolve_ref(spec.ref)(x=4) == 8, "a worker fetches the snapshot from the storage"


def test_processes_of_one_host_fetch_a_task_file_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers of one host resolving the same snapshot at once each download under a name of
    their own, then rename it into place (they once shared one temporary name, and all but one
    failed with 'task file … cannot be fetched')."""
    url = f"memory://{uuid.uuid4().hex}/"
    storage = open_storage(url).within("code")
    ref = storage.put(f"{uuid.uuid4().hex}/tasks.py", io.BytesIO(b"def f():\n    return 7\n")).uri
    barrier = threading.Barrier(4)
    written: list[Path] = []
    backend = type(locate(ref)[0])  # what fetch_code will use
    real_get = backend.get

    def racing_get(self: Storage, key: str, dest: Path | str) -> object:
        written.append(Path(dest))
        barrier.wait(timeout=30)  # every fetch is under way before any finishes
        return real_get(self, key, dest)

    monkeypatch.setattr(backend, "get", racing_get)
    results: list[object] = []

    def fetch() -> None:
        try:
            results.append(fetch_code(ref).read_text())
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["def f():\n    return 7\n"] * 4
    assert len(set(written)) == 4, "each fetch writes under its own name"
