"""``skyweave run --executor slurm://…`` on the real one-node cluster (``scripts/services.sh start
slurm``): a workflow with a fan-out runs to success, every activity a Slurm job, its logs and
products where the other executors put them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.services import service_url

from .helpers import CLI, WORKFLOWS

pytestmark = pytest.mark.integration

BASIC = WORKFLOWS / "basic.py"


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
