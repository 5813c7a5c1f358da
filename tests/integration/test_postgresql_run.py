"""The engine end to end on a PostgreSQL store (the server of ``scripts/services.sh``): ``skyweave
run`` as a user types it, products and logs in the ``storage`` directory, nothing in the working
directory, and a second run reusing every result through the store's cache lookups; ``skyweave
controller`` and ``skyweave worker`` as separate processes on the same store."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from skyweave.store import open_store
from tests.e2e.helpers import WORKFLOWS, cli_argv, cli_env, poll, stop

pytestmark = pytest.mark.integration


def env_with(storage: Path | None) -> dict[str, str]:
    env = cli_env()
    if storage is not None:
        env["SKYWEAVE_STORAGE"] = str(storage)
    return env


def skyweave(cwd: Path, *args: str, storage: Path | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_argv(*args), cwd=cwd, env=env_with(storage), capture_output=True, text=True,
                          timeout=120, check=False)


def test_skyweave_run_on_a_postgresql_store(tmp_path: Path, postgres_store_url: str) -> None:
    cwd, files = tmp_path / "cwd", tmp_path / "files"
    cwd.mkdir()
    target = f"{WORKFLOWS / 'basic.py'}:simple"
    first = skyweave(cwd, "run", target, "--store", postgres_store_url, "--workers", "2", "--json",
                     storage=files)
    assert first.returncode == 0, first.stderr
    assert list(cwd.iterdir()) == []  # nothing in the working directory: no ./.skyweave fallback

    store = open_store(postgres_store_url)
    try:
        [run] = store.list_runs()
        assert run.state == "succeeded"
        assert store.count_activities(run.id) == {"succeeded": 9}
        made = store.find_products(run_id=run.id)
        assert sorted(p.name for p in made) == ["item0.txt", "item1.txt", "item2.txt"]
        for product in made:
            assert product.uri.startswith(f"file://{files / 'products'}")
            assert Path(product.uri.removeprefix("file://")).read_text().startswith("item ")
        lineage = store.lineage(made[0].id)
        assert [a.task_name for a in lineage.activities] == ["write_product"]
        assert any((files / "logs").iterdir())  # shout prints: its log is a file under storage

        again = skyweave(cwd, "run", target, "--store", postgres_store_url, "--workers", "2", storage=files)
        assert again.returncode == 0, again.stderr
        latest = store.list_runs()[0]
        assert latest.id != run.id and latest.state == "succeeded"
        reused = store.list_activities(run_id=latest.id)
        assert reused and all(a.detours and a.detours[-1].kind == "reused" for a in reused)
    finally:
        store.close()


def test_a_postgresql_store_without_storage_says_where_files_must_go(tmp_path: Path,
                                                                     postgres_store_url: str) -> None:
    result = skyweave(tmp_path, "run", f"{WORKFLOWS / 'basic.py'}:simple", "--store", postgres_store_url,
                      storage=None)
    assert result.returncode != 0
    message = " ".join(result.stderr.split())
    assert "keeps no files" in message and "SKYWEAVE_STORAGE" in message, result.stderr
    assert list(tmp_path.iterdir()) == []  # and made no ./.skyweave meanwhile


@pytest.mark.slow
def test_controller_and_worker_processes_on_a_postgresql_store(tmp_path: Path, postgres_store_url: str) -> None:
    files = tmp_path / "files"
    logs: list[Path] = []
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, args in (("controller", ()), ("worker", ("--slots", "2"))):
            logs.append(tmp_path / f"{name}.log")
            with logs[-1].open("wb") as log:
                procs.append(subprocess.Popen(cli_argv(name, "--store", postgres_store_url, *args),
                                              cwd=tmp_path, env=env_with(files), stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True))
        submitted = skyweave(tmp_path, "submit", f"{WORKFLOWS / 'basic.py'}:simple", "--param", "n=4",
                             "--store", postgres_store_url, "--json", storage=files)
        assert submitted.returncode == 0, submitted.stderr
        run_id = json.loads(submitted.stdout)["run_id"]

        def finished() -> dict[str, Any] | None:
            shown = skyweave(tmp_path, "status", run_id, "--store", postgres_store_url, "--json", storage=files)
            status: dict[str, Any] = json.loads(shown.stdout)
            return status if status["status"] in {"succeeded", "failed", "cancelled"} else None

        try:
            final = poll(finished, deadline=90, what=f"run {run_id} to finish")
        except AssertionError:
            raise AssertionError("\n".join(p.read_text(errors="replace")[-3000:] for p in logs)) from None
        assert (final["status"], final["activities"], final["products"]) == ("succeeded", 11, 4)
    finally:
        for proc in procs:
            stop(proc)
    assert [p.returncode for p in procs] == [0, 0]  # SIGTERM: a clean stop for both
