"""Two sites on one machine with two executors (issue 14, point 8): east runs activities in the
local process pool, west submits each one to the real one-node Slurm cluster of
``scripts/services.sh start slurm``; each site has its own storage root.  The run's steps run at
both sites, inputs move between them, and the provenance export shows each move as a
``sw:Transfer`` with its sites and bytes."""

from __future__ import annotations

import json

import pytest

from skyweave.client import Client
from skyweave.provenance.export import export
from tests.e2e.helpers import CLI, poll, stop
from tests.e2e.test_sites import SITES, _number, _start, _tails, _worker_id
from tests.services import service_url

pytestmark = pytest.mark.integration


def test_a_run_over_a_local_site_and_a_slurm_site_records_its_transfers(cli: CLI) -> None:
    slurm = service_url("slurm") + "&poll_s=0.3"
    east, west = cli.cwd / "east", cli.cwd / "west"
    bus = f"sqlite:///{cli.cwd / 'bus.db'}"
    roots = json.dumps({"east": str(east), "west": str(west)})
    logs = {name: cli.cwd / f"{name}.log" for name in ("controller", "east", "west")}
    procs = [
        _start(cli, "controller", "--bus", bus, log=logs["controller"], SKYWEAVE_SITES=roots,
               SKYWEAVE_SITE="east"),
        _start(cli, "worker", "--bus", bus, "--site", "east", "--storage", str(east), "--executor", "local",
               "--slots", "1", log=logs["east"], SKYWEAVE_SITES=roots),
        _start(cli, "worker", "--bus", bus, "--site", "west", "--storage", str(west), "--executor", slurm,
               "--slots", "2", log=logs["west"], SKYWEAVE_SITES=roots),
    ]
    try:
        workers = {site: poll(lambda s=site: _worker_id(logs[s]), deadline=60, what=f"the {site} worker")
                   for site in ("east", "west")}
        with Client(str(cli.store), engine=False, bus=bus) as client:
            run_id = client.submit(f"{SITES}:two_sites", {"obs_id": "o4", "size": 20000}).id
            record = client.wait(run_id, timeout=120)
            assert record.state == "succeeded", _tails(logs)
            ran_by, results = {}, {}
            for activity in client.store.list_activities(run_id=run_id):
                [attempt] = client.store.list_attempts(activity.id)
                ran_by[activity.task_name] = attempt.worker
                results[activity.task_name] = activity.result
            document = json.loads(export(client.store, fmt="provjson", run_id=run_id))
        assert ran_by == {"observe": workers["east"], "calibration": workers["west"],
                          "combine": workers["east"], "archive": workers["west"]}, (ran_by, workers)
        assert (results["combine"], results["archive"]) == (20100, 20000)
        assert list(west.rglob(".slurm")), "west's activities ran as Slurm jobs"
        assert list(west.rglob("o4_cal.dat")) and list(east.rglob("o4_raw.dat"))
        transfers = sorted(
            (a["sw:fromSite"], a["sw:toSite"], int(str(_number(a["sw:bytes"]))))
            for a in document["activity"].values() if _number(a.get("prov:type")) == "sw:Transfer")
        assert transfers == [("east", "west", 20000), ("west", "east", 100)], transfers
    finally:
        for proc in procs:
            stop(proc)
