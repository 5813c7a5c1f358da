"""``skyweave prune`` on a deployment of real servers: a PostgreSQL store, a ``redis://`` bus (the
servers of ``scripts/services.sh``; a key prefix of this test's own, deleted after) and a storage
folder.  A server that died ten days ago left its consumer group holding every event since; the
ledger of a schedule trigger and the logs grew.  The dry run shows it all and changes nothing; the
prune removes it and keeps what is still needed (issue 13, point 3)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from skyweave.bus import CONTROLLER_GROUP
from skyweave.bus.redis import RedisBus
from skyweave.model.records import ActivityRecord, Changeset, ProductRecord, RunRecord
from skyweave.model.triggers import Firing, FiringState, TriggerKind, TriggerSpec
from skyweave.store import open_store
from tests.e2e.helpers import cli_argv, cli_env
from tests.services import service_url

pytestmark = pytest.mark.integration
DAY = 86_400.0
GONE = "server:gone-host:8080"


def prune(tmp_path: Path, env: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run(cli_argv("prune", "--json", *args), cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_prune_removes_what_a_dead_server_and_old_runs_left_and_keeps_the_rest(
        tmp_path: Path, postgres_store_url: str) -> None:
    server, prefix = service_url("redis"), f"test-{uuid.uuid4().hex[:12]}"
    storage = tmp_path / "files"
    env = cli_env() | {"SKYWEAVE_STORE": postgres_store_url, "SKYWEAVE_BUS": f"{server}?prefix={prefix}",
                       "SKYWEAVE_STORAGE": str(storage)}
    now, old = time.time(), time.time() - 200 * DAY
    bus = RedisBus(server, prefix=prefix, retry_s=10)
    store = open_store(postgres_store_url)
    try:
        bus.publish([b"before"])
        bus.commit(GONE, bus.read(GONE, 1)[0].offset)  # the server read one event, then died
        bus.publish([f"e{i}".encode() for i in range(50)])
        bus.commit(CONTROLLER_GROUP, bus.read(CONTROLLER_GROUP, 100)[-1].offset)
        bus.commit("alerts", bus.read("alerts", 10)[-1].offset)  # a live listener, 41 events behind
        bus._client.hset(f"{{{prefix}}}:seen", GONE, int((now - 10 * DAY) * 1000))  # last seen 10 days ago

        store.save_trigger(TriggerSpec(name="nightly", kind=TriggerKind.SCHEDULE, workflow="w.py:w"))
        store.record_firings("nightly", [Firing(trigger="nightly", key=f"t{i}", state=FiringState.FIRED, at=old,
                                                recorded_at=old) for i in range(30)]
                             + [Firing(trigger="nightly", key="today", state=FiringState.FIRED, at=now,
                                       recorded_at=now)])
        store.apply(Changeset(
            runs=[RunRecord(id="run-1", workflow="w", state="succeeded")],
            activities=[ActivityRecord(id=a, run_id="run-1", node=a, task_name=a, task_version="1",
                                       state="succeeded", ended_at=old) for a in ("kept", "spent")],
            products=[ProductRecord(id="p-kept", uri=(storage / "products" / "p").as_uri(), type="t",
                                    created_at=old, activity_id="kept", run_id="run-1")]))
        (storage / "logs").mkdir(parents=True)
        for name in ("kept", "spent"):
            log = storage / "logs" / f"{name}.1.log"
            log.write_text("captured output\n")
            os.utime(log, (old, old))

        planned = prune(tmp_path, env, "--dry-run")
        assert planned["bus"][0]["groups"] == [GONE] and planned["bus"][0]["events"] == 10
        assert planned["trigger_firings"] == {"nightly": 30}
        assert planned["logs"]["deleted"] == ["spent.1.log"]
        assert int(bus._client.xlen(f"{{{prefix}}}:events")) == 50  # nothing removed by the dry run

        done = prune(tmp_path, env)
        assert done["bus"][0]["groups"] == [GONE] and done["failed"] == []
        groups = {g["name"].decode() for g in bus._client.xinfo_groups(f"{{{prefix}}}:events")}
        assert groups == {CONTROLLER_GROUP, "alerts"}
        assert [d.data for d in bus.read("alerts", 100)] == [f"e{i}".encode() for i in range(10, 50)]
        assert int(bus._client.xlen(f"{{{prefix}}}:events")) == 40  # what the live listener has not read
        assert {f.key for f in store.trigger_history("nightly")} == {"today"}
        assert sorted(p.name for p in (storage / "logs").iterdir()) == ["kept.1.log"]
        assert store.get_activity("spent").state == "succeeded"  # provenance stays
    finally:
        store.close()
        bus.purge()
        bus.close()
