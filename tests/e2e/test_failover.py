"""Controller failover: a second ``skyweave controller`` on the same store stands by and takes over
when the active one dies, re-executing nothing that had finished (executions counted by the task
itself in a ledger file, as in test_run_once.py); an active controller that lost its lease while
paused stops without writing anything (fencing).  Both on the embedded store and bus (SQLite) and on
PostgreSQL + Redis (the servers of ``scripts/services.sh``)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from typing import Any

import pytest

from tests.e2e.chaos import Chaos, Kill
from tests.e2e.helpers import CLI, poll
from tests.e2e.test_run_once import _assert_once
from tests.services import service_url

LEASE = {"SKYWEAVE_CONTROLLER_LEASE_S": "2", "SKYWEAVE_CONTROLLER_RENEW_S": "0.2"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql+redis", marks=pytest.mark.integration)])
def deployment(request: pytest.FixtureRequest, cli: CLI) -> dict[str, Any]:
    """``Chaos`` arguments: the default store and bus, or a PostgreSQL store (a schema of its own),
    a Redis bus (a key prefix of its own) and a storage directory, as on several hosts."""
    if request.param == "sqlite":
        return {}
    store = request.getfixturevalue("postgres_store_url")
    bus = f"{service_url('redis')}?prefix=failover-{secrets.token_hex(4)}"
    return {"store": store, "env": {"SKYWEAVE_BUS": bus, "SKYWEAVE_STORAGE": str(cli.cwd / "files")}}


def _active_and_standby(chaos: Chaos) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    chaos.env.update(LEASE)
    chaos.start_controller()
    assert chaos.controller is not None
    active = chaos.controller
    poll(lambda: chaos.lease_holder_pid() == active.pid, deadline=60, what="the first controller's lease")
    standby = chaos._start("controller")
    poll(lambda: "standby" in chaos.log_of[standby.pid].read_text(errors="replace"), deadline=60,
         what="the second controller to stand by", interval=0.05)
    return active, standby


@pytest.mark.slow  # ~15 s: three services, 120 activities
def test_a_standby_controller_takes_over_from_a_killed_one_and_reexecutes_nothing(
        cli: CLI, deployment: dict[str, Any]) -> None:
    n = 120
    chaos = Chaos(cli, heartbeat_s=0.2, worker_timeout_s=1.0, **deployment)
    try:
        active, standby = _active_and_standby(chaos)
        text = chaos.log_of[standby.pid].read_text(errors="replace")
        assert f"-{active.pid}-" in text and "waits to take over" in text, text
        assert standby.poll() is None, "a second controller waits, it does not exit"
        chaos.start_worker()
        run_id = chaos.submit(n, 0.05)
        chaos.wait_for_starts(n // 4)
        chaos.kill_controller()
        killed_at = time.monotonic()
        chaos.controller = standby
        poll(lambda: chaos.lease_holder_pid() == standby.pid, deadline=30, what="the standby to take the lease",
             interval=0.02)
        took = time.monotonic() - killed_at
        verdict = chaos.verdict(run_id, chaos.wait_for_end(run_id))
    finally:
        chaos.close()
    summary = f"{verdict.summary()}; standby took over {took:.2f} s after the kill"
    print(summary)
    _assert_once(chaos, summary, n, verdict)
    assert not verdict.repeated, "nothing finished ran again"
    assert took < 2 + 5, "within the lease (2 s) and a few polls"


@pytest.mark.slow  # ~15 s
def test_a_paused_controller_that_lost_its_lease_stops_and_writes_nothing(
        cli: CLI, deployment: dict[str, Any]) -> None:
    """SIGSTOP stands for a controller cut off or frozen longer than its lease: the standby takes
    over when the lease expires (its pid is alive, so not at once), and the old one, woken up,
    finds it has lost the lease and exits instead of acting beside the new one."""
    n = 60
    chaos = Chaos(cli, heartbeat_s=0.2, worker_timeout_s=1.0, **deployment)
    try:
        active, standby = _active_and_standby(chaos)
        chaos.start_worker()
        run_id = chaos.submit(n, 0.05)
        chaos.wait_for_starts(n // 4)
        os.killpg(active.pid, signal.SIGSTOP)
        chaos.kills.append(Kill("controller", time.time(), active.pid))
        stopped_at = time.time()
        expires = chaos.lease_expiry()  # renewed no more: the last renewal's expiry
        poll(lambda: chaos.lease_holder_pid() == standby.pid, deadline=30, what="the standby to take the lease",
             interval=0.02)
        taken_at = time.time()
        took = taken_at - stopped_at
        os.killpg(active.pid, signal.SIGCONT)
        code = active.wait(30)
        chaos.controller = standby
        verdict = chaos.verdict(run_id, chaos.wait_for_end(run_id))
    finally:
        chaos.close()
    summary = f"{verdict.summary()}; standby took over {took:.2f} s after the pause"
    print(summary)
    old_log = chaos.log_of[active.pid].read_text(errors="replace")
    assert code != 0 and "lost the store's controller lease" in old_log, old_log[-3000:]
    _assert_once(chaos, summary, n, verdict)
    assert not verdict.repeated, "nothing finished ran again"
    # waited out, not taken at once as a dead local controller's is (on a loaded machine the paused
    # controller may have renewed late, so its lease may expire soon after the pause)
    assert expires is not None and taken_at >= expires - 0.05, "a live controller's lease is waited out"
