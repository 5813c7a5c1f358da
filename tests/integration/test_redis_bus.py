"""``skyweave controller`` and ``skyweave worker`` as separate processes that share nothing but a
store and a ``redis://`` bus (the server of ``scripts/services.sh``, under a key prefix of this
test's own, deleted after): a workflow runs to success, and again after Redis restarted under
them (the services reconnect; the consumer groups and queues come back from the append-only file)."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from skyweave.bus import CONTROLLER_GROUP
from skyweave.bus.redis import RedisBus
from tests.e2e.helpers import WORKFLOWS, cli_argv, cli_env, poll, stop
from tests.services import service_url

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SERVICES = Path(__file__).resolve().parents[2] / "scripts" / "services.sh"


def _run_to_the_end(tmp_path: Path, env: dict[str, str], logs: list[Path], obs_id: str) -> dict[str, Any]:
    submitted = subprocess.run(cli_argv("submit", f"{WORKFLOWS / 'basic.py'}:simple", "--param", "n=4",
                                        "--param", f"obs_id={obs_id}", "--json"), cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=120, check=False)
    assert submitted.returncode == 0, submitted.stderr
    run_id = json.loads(submitted.stdout)["run_id"]

    def finished() -> dict[str, Any] | None:
        shown = subprocess.run(cli_argv("status", run_id, "--json"), cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=120, check=False)
        status: dict[str, Any] = json.loads(shown.stdout)
        return status if status["status"] in {"succeeded", "failed", "cancelled"} else None

    try:
        return poll(finished, deadline=90, what=f"run {run_id} to finish")
    except AssertionError:
        raise AssertionError("\n".join(p.read_text(errors="replace")[-3000:] for p in logs)) from None


def test_controller_and_worker_processes_on_a_redis_bus_survive_a_redis_restart(tmp_path: Path) -> None:
    server = service_url("redis")
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    env = cli_env() | {"SKYWEAVE_BUS": f"{server}?prefix={prefix}", "SKYWEAVE_STORE": str(tmp_path / "store")}
    logs: list[Path] = []
    procs: list[subprocess.Popen[bytes]] = []
    bus = RedisBus(server, prefix=prefix, retry_s=30)
    try:
        for name, args in (("controller", ()), ("worker", ("--slots", "2"))):
            logs.append(tmp_path / f"{name}.log")
            with logs[-1].open("wb") as log:
                procs.append(subprocess.Popen(cli_argv(name, *args), cwd=tmp_path, env=env, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True))
        final = _run_to_the_end(tmp_path, env, logs, "obs-before")
        assert (final["status"], final["activities"], final["products"]) == ("succeeded", 11, 4)
        assert "redis://" in logs[0].read_text(), "the controller names its bus"

        restarted = subprocess.run([str(SERVICES), "restart", "redis"], capture_output=True, text=True,
                                   timeout=60, check=False)
        if restarted.returncode != 0:
            pytest.skip(f"this Redis was not started by scripts/services.sh: {restarted.stderr.strip()}")
        info = bus._call(lambda: bus._client.xinfo_groups(bus._key("events")))  # retried while Redis loads
        groups = {g["name"].decode() for g in info}
        assert CONTROLLER_GROUP in groups, "the consumer group came back from the append-only file"

        again = _run_to_the_end(tmp_path, env, logs, "obs-after")  # a new obs_id: nothing reused
        assert (again["status"], again["activities"], again["products"]) == ("succeeded", 11, 4)
        assert bus.queued() == 0
    finally:
        for proc in procs:
            stop(proc)
        bus.purge()
        bus.close()
    assert [p.returncode for p in procs] == [0, 0]  # SIGTERM: a clean stop for both
