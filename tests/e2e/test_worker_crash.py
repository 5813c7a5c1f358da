"""A worker killed with -9 in the middle of a run loses nothing: another worker takes the work
(handed back when the bus delivers it again after the short lease here; found dead by its
heartbeats otherwise), and each product is registered once."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from skyweave.store import open_store
from tests.e2e.helpers import CLI, WORKFLOWS, cli_argv, cli_env, poll, stop

BASIC = WORKFLOWS / "basic.py"


def _start(cli: CLI, *args: str, log: Path, lease: str = "2") -> subprocess.Popen[bytes]:
    env = {**cli_env(), "SKYWEAVE_LEASE_S": lease, "SKYWEAVE_HEARTBEAT_S": "0.5"}
    with log.open("wb") as fh:
        return subprocess.Popen(cli_argv(*args, "--store", str(cli.store)), cwd=cli.cwd, env=env,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.slow
def test_kill_9_worker_then_another_worker_finishes(cli: CLI) -> None:
    n = 8
    controller = _start(cli, "controller", log=cli.cwd / "controller.log")
    first = _start(cli, "worker", "--slots", "2", log=cli.cwd / "worker1.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        run_id = cli.json("submit", f"{BASIC}:crashy", "--param", f"n={n}", "--param", "seconds=1.0")["run_id"]

        store = open_store(str(cli.store))  # read in this process: a `status` call takes seconds on a
        try:                                # loaded machine, and the run lasts only four
            poll(lambda: any(a.state == "running" and a.task_name == "busy"
                             for a in store.list_activities(run_id=run_id)),
                 deadline=60, what="a busy activity to run", interval=0.02)
        finally:
            store.close()
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        second = _start(cli, "worker", "--slots", "2", log=cli.cwd / "worker2.log")

        def finished() -> dict[str, object] | None:
            st = cli.status(run_id)
            return st if st["status"] in ("succeeded", "failed") else None

        final = poll(finished, deadline=90, what="the run to finish on the second worker")
        assert final["status"] == "succeeded", (cli.cwd / "controller.log").read_text()[-3000:]
        busy = [a for a in final["activities_detail"] if a["task"] == "busy"]  # type: ignore[union-attr]
        assert len(busy) == n
        products = cli.json("products", "list", "--run", run_id)
        assert len(products) == n
        assert len({p["activity_id"] for p in products}) == n, "one product per activity, none twice"
    finally:
        for proc in (controller, first, second):
            if proc is not None:
                stop(proc)
