"""``skyweave run --executor slurm://…`` on the real one-node cluster (``scripts/services.sh start
slurm``): a workflow with a fan-out runs to success, every activity a Slurm job, its logs and
products where the other executors put them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from skyweave.client import Client
from tests.services import service_url

from .helpers import CLI, WORKFLOWS, poll, stop

pytestmark = pytest.mark.integration

BASIC = WORKFLOWS / "basic.py"
NODE = WORKFLOWS / "slurm_node.py"


def test_a_workflow_runs_with_every_activity_a_slurm_job(cli: CLI) -> None:
    executor = service_url("slurm") + "&poll_s=0.5"
    summary = cli("run", f"{BASIC}:simple", "--param", "n=3", "--executor", executor, "--json",
                  timeout=180).ok().json()
    assert (summary["status"], summary["activities"], summary["products"]) == ("succeeded", 9, 3)
    detail = cli.status(summary["run_id"])["activities_detail"]
    shout1 = next(a for a in detail if a["task"] == "shout" and a["key"] == "1")
    assert "hello from shout 1" in cli("logs", shout1["id"]).ok().out
    job_dirs = [p for p in Path(cli.store).rglob(".slurm") if p.is_dir()]
    assert len(job_dirs) == 1
    assert [list(d.iterdir()) for d in job_dirs[0].iterdir()] == [[]]  # every job's files removed


def test_a_bad_slurm_option_is_a_clear_error(cli: CLI) -> None:
    res = cli("run", f"{BASIC}:simple", "--executor", "slurm://?partiton=debug")
    assert res.code != 0 and "Traceback" not in res.err
    assert "unknown Slurm option 'partiton'" in res.err and "partition" in res.err


@pytest.mark.slow
def test_a_job_lost_with_its_node_is_retried_by_the_tasks_policy(cli: CLI, tmp_path: Path) -> None:
    """(~25 s: two jobs and the CLI's start-up.) ``skyweave run`` on Slurm; the node goes DOWN under the first attempt: that attempt ends
    ``skyweave.SlurmNodeFailure`` with Slurm's reason, and the task's retry runs it again."""
    executor = service_url("slurm") + "&poll_s=0.5"
    scontrol = {**os.environ, "SLURM_CONF": parse_qs(executor.partition("?")[2])["conf"][0]}
    marker = tmp_path / "marker"
    proc = cli.popen("run", f"{NODE}:survive", "--param", f"marker={marker}", "--executor", executor,
                     "--json", log=tmp_path / "run.log")
    try:
        poll(marker.exists, deadline=120, what="the first attempt to start")
        subprocess.run(["scontrol", "update", "NodeName=sw1", "State=DOWN", "Reason=skyweave-e2e"],
                       env=scontrol, check=True, capture_output=True)
        poll(lambda: "NODE_FAIL" in subprocess.run(
            ["squeue", "--noheader", "--states=all", "--format=%T"], env=scontrol, capture_output=True,
            text=True, check=False).stdout, deadline=60, what="Slurm to end the job NODE_FAIL")
        _resume(scontrol)  # the retry needs the node back (else Slurm returns it after ~100 s)
        assert proc.wait(timeout=120) == 0, (tmp_path / "run.log").read_text()
    finally:
        stop(proc)
        _resume(scontrol)
    client = Client(str(cli.store))
    try:
        run = client.store.list_runs(limit=1)[0]
        (act,) = client.store.list_activities(run_id=run.id)
        attempts = client.store.list_attempts(act.id) or []
    finally:
        client.close()
    assert (run.state, act.state) == ("succeeded", "succeeded")
    assert [a.state for a in attempts] == ["failed", "succeeded"]
    error = attempts[0].error or {}
    assert error.get("type") == "skyweave.SlurmNodeFailure"
    assert "was lost with its node (state NODE_FAIL, reason NodeDown)" in str(error.get("message"))


def _resume(env: dict[str, str]) -> None:
    subprocess.run(["scontrol", "update", "NodeName=sw1", "State=RESUME"], env=env, check=False,
                   capture_output=True)  # refused when it has returned to service by itself
