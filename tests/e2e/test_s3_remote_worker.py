"""A controller and a worker that share no filesystem: only a Redis bus and an S3 bucket (the
moto server of ``scripts/services.sh``).  Each runs in its own directory with its own local
folder; the task file and the input file exist only on the submitting side and are deleted
before the worker starts, so the worker can only have them from the bucket (code snapshot,
stored input).  Products and logs land in the bucket, nothing in either directory, and the
secret key given to every process is nowhere in the store, the bucket or the provenance."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from skyweave import Client
from skyweave.bus.redis import RedisBus
from skyweave.provenance.export import export
from skyweave.storage import locate, open_storage
from tests.e2e.helpers import cli_argv, cli_env, stop
from tests.s3 import SECRET, new_bucket, s3_environment
from tests.services import service_url

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLOW = '''
from skyweave import Product, context, task, workflow


@task(version="1")
def split(raw: Product, parts: int) -> list[Product]:
    text = raw.local_path.read_text()
    made = []
    for i in range(parts):
        path = context().output(f"part{i}.txt")
        path.write_text(text[i::parts])
        made.append(Product(path, type="e2e.part"))
    return made


@task(version="1")
def shout(part: Product) -> Product:
    print("shouting", part.local_path.name)
    path = context().output(part.local_path.name.replace("part", "loud"))
    path.write_text(part.local_path.read_text().upper())
    return Product(path, type="e2e.loud")


@task(version="1")
def join(parts: list[Product]) -> Product:
    path = context().output("joined.txt")
    path.write_text("|".join(p.local_path.read_text() for p in parts))
    return Product(path, type="e2e.joined")


@workflow
def flow(raw_id: str, parts: int = 3):
    return join(parts=shout.map(part=split(raw=Product("", id=raw_id), parts=parts)))
'''


def test_a_worker_without_the_controllers_disk_reads_and_writes_the_bucket(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = new_bucket(monkeypatch)
    url = f"s3://{bucket}/deployment"
    bus_url = f"{service_url('redis')}?prefix=test-{uuid.uuid4().hex[:12]}"
    controller_dir, worker_dir, source = (tmp_path / "controller", tmp_path / "worker", tmp_path / "src")
    for folder in (controller_dir, worker_dir, source):
        folder.mkdir()
    (source / "flow.py").write_text(FLOW)
    (source / "raw.txt").write_text("abcdefghijklmnopqrstuvwxyz")
    common = cli_env() | s3_environment(monkeypatch) | {"SKYWEAVE_STORAGE": url, "SKYWEAVE_BUS": bus_url}
    store = str(controller_dir / "store")
    procs: list[subprocess.Popen[bytes]] = []
    logs = [tmp_path / "controller.log", tmp_path / "worker.log"]
    bus = RedisBus(bus_url, retry_s=10)
    try:
        with logs[0].open("wb") as log:
            procs.append(subprocess.Popen(cli_argv("controller"), cwd=controller_dir, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True,
                                          env=common | {"SKYWEAVE_STORE": store}))
        with Client(store, engine=False, bus=bus_url, storage=url) as client:
            raw = client.add_product(source / "raw.txt", type="e2e.raw")
            run = client.submit(f"{source / 'flow.py'}:flow", {"raw_id": raw.id})
            shutil.rmtree(source)  # the worker can only get the code and the input from the bucket
            with logs[1].open("wb") as log:
                procs.append(subprocess.Popen(
                    cli_argv("worker", "--slots", "2"), cwd=worker_dir, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True, env=common | {"SKYWEAVE_STORE": str(worker_dir / "scratch")}))
            try:
                client.wait(run.id, timeout=90)
            except Exception:
                raise AssertionError("\n".join(p.read_text(errors="replace")[-3000:] for p in logs)) from None
            assert run.status == "succeeded", (run.summary()["failures"],
                                               [p.read_text(errors="replace")[-3000:] for p in logs])
            (joined,) = [p for p in run.products() if p.type == "e2e.joined"]
            assert all(p.uri.startswith(f"{url}/products/") for p in run.products())
            where, key = locate(joined.uri)
            with where.open(key) as reader:
                assert reader.read().decode() == "ADGJMPSVY|BEHKNQTWZ|CFILORUX"
            assert where.checksum(key) == joined.checksum
            shouts = [a for a in run.activities() if a.task_name == "shout"]
            assert shouts and all(a.log_uri and a.log_uri.startswith(f"{url}/logs/") for a in shouts)
            provenance = export(client.store, fmt="provjson", run_id=run.id)
        for proc in procs:
            stop(proc)
        assert [p.returncode for p in procs] == [0, 0]
        stored = open_storage(url)
        assert any(k.startswith("code/") and k.endswith("/flow.py") for k in stored.list())
        assert not list(controller_dir.rglob("joined.txt")) and not list(worker_dir.rglob("*.txt")), \
            "no product stays in either local folder"
        # the credentials every process had are in none of what skyweave wrote
        written = [p.read_bytes() for p in controller_dir.rglob("*") if p.is_file()]
        written += [p.read_bytes() for p in worker_dir.rglob("*") if p.is_file()]
        for k in stored.list():
            with stored.open(k) as reader:
                written.append(reader.read())
        written.append(provenance.encode())
        assert written and not any(SECRET.encode() in blob for blob in written)
    finally:
        for proc in procs:
            stop(proc)
        bus.purge()
        bus.close()
