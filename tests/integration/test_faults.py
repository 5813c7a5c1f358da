"""The fault test of issue 13, on the real servers: 10,000 activities on a PostgreSQL store and a
Redis bus, four worker processes, the active controller killed (``kill -9``) three times with a
standby taking over each time, a busy worker killed five times, Redis and PostgreSQL each killed
and restarted once (``scripts/services.sh restart --hard``) while the run goes on.

Counted, not sampled: every activity writes a line to a ledger file before and after its work (the
independent witness, ``tests/e2e/chaos.py``), and makes one small file product.  At the end every
activity succeeded exactly once in the store, every execution in the ledger has its own attempt
row, nothing that finished ran again (a second execution is only ever of what a killed worker was
running), one product per activity with its checksum intact and its content its own, and each
product's lineage reaches the activity that made it.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from skyweave.storage import verify
from skyweave.store import open_store
from tests.e2e.chaos import Chaos
from tests.e2e.helpers import CLI, poll
from tests.e2e.test_run_once import _assert_once
from tests.services import service_url

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVICES_SH = Path(__file__).resolve().parents[2] / "scripts" / "services.sh"
N = 10_000
WORKERS = 4
LEASE = {"SKYWEAVE_CONTROLLER_LEASE_S": "6", "SKYWEAVE_CONTROLLER_RENEW_S": "0.5"}
SCHEDULE = ["worker", "controller", "worker", "redis", "controller", "worker", "postgres", "worker",
            "controller", "worker"]
"""What happens, in order, at evenly spaced points of the run (by executions started)."""


def _restart(service: str, *, hard: bool) -> float:
    """Restart a server of scripts/services.sh on its port and data; the seconds it took."""
    began = time.monotonic()
    proc = subprocess.run([str(SERVICES_SH), "restart", *(["--hard"] if hard else []), service],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, (f"scripts/services.sh restart {service} failed (this test restarts the "
                                  f"servers that script started):\n{proc.stderr}")
    return time.monotonic() - began


def test_10000_activities_survive_killed_controllers_and_workers_and_restarted_servers(
        tmp_path: Path, postgres_store_url: str) -> None:
    began = time.monotonic()
    bus = f"{service_url('redis')}?prefix=fault-{secrets.token_hex(4)}"
    storage = tmp_path / "files"
    chaos = Chaos(CLI(tmp_path, tmp_path / "unused"), heartbeat_s=0.3, worker_timeout_s=3.0, slots=2,
                  store=postgres_store_url, workflow="many_products",
                  env={"SKYWEAVE_BUS": bus, "SKYWEAVE_STORAGE": str(storage), **LEASE})
    takeovers: list[float] = []
    restarts: dict[str, float] = {}
    try:
        chaos.start_controller()
        assert chaos.controller is not None
        first = chaos.controller
        poll(lambda: chaos.lease_holder_pid() == first.pid, deadline=60, what="the first controller's lease")
        standby = chaos._start("controller")
        for _ in range(WORKERS):
            chaos.start_worker()
        run_id = chaos.submit(N, 0.0)
        for step, what in enumerate(SCHEDULE, start=1):
            chaos.wait_for_starts(N * step // (len(SCHEDULE) + 1), deadline=300)
            if what == "worker":
                chaos.kill_busy_worker()
                chaos.start_worker()
            elif what == "controller":
                chaos.kill_controller()
                killed_at = time.monotonic()
                chaos.controller = standby
                poll(lambda pid=standby.pid: chaos.lease_holder_pid() == pid, deadline=60, interval=0.02,
                     what="the standby to take the lease")
                takeovers.append(time.monotonic() - killed_at)
                standby = chaos._start("controller")  # the next standby
            else:
                restarts[what] = _restart(what, hard=True)
        state = chaos.wait_for_end(run_id, deadline=600)
        chaos.workers.append(standby)  # stopped by close() with the rest
        verdict = chaos.verdict(run_id, state)
    finally:
        chaos.close()
    took = time.monotonic() - began
    text = (f"{verdict.summary()}; standby took over in {', '.join(f'{t:.2f}' for t in takeovers)} s; "
            f"restarts {', '.join(f'{k} {v:.1f} s' for k, v in restarts.items())}; {took:.0f} s in all")
    print(text)
    _assert_once(chaos, text, N, verdict)
    assert sum(k.what == "controller" for k in verdict.kills) == 3
    assert sum(k.what == "worker" for k in verdict.kills) == 5
    assert len(takeovers) == 3 and set(restarts) == {"redis", "postgres"}

    store = open_store(postgres_store_url)
    try:
        acts = {a.id: a for a in store.list_activities(run_id=run_id, limit=N + 10)
                if a.task_name == "counted_product"}
        products = store.find_products(run_id=run_id, state=None)
        per_activity = Counter(p.activity_id for p in products)
        assert len(products) == N and set(per_activity) == set(acts), text
        assert max(per_activity.values()) == 1, "one product per activity, none duplicated"
        broken = {p.id: why for p in products if (why := verify(p.uri, p.checksum))}
        assert broken == {}, "every product's file is there with its checksum"
        for p in products:
            item = acts[p.activity_id].arguments["i"]
            assert p.local_path.read_text() == f"item {item}\n", p
        for p in products[:: N // 50]:
            lineage = store.lineage(p.id)
            assert [a.id for a in lineage.activities] == [p.activity_id]
    finally:
        store.close()
