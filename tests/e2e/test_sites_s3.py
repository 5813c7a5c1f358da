"""Two sites on one machine, one of them an S3 bucket (the moto server of
``scripts/services.sh``): east keeps its products in ``s3://BUCKET/east`` (threads executor),
west in a folder (local process pool).  Inputs cross in both directions through the Storage port
— the raw data from the bucket to the folder, the calibration from the folder to the bucket — and
each move is a ``sw:Transfer`` in the run's provenance with its sites and bytes."""

from __future__ import annotations

import json

import pytest

from skyweave.client import Client
from skyweave.provenance.export import export
from skyweave.storage import open_storage
from tests.e2e.helpers import CLI, poll, stop
from tests.e2e.test_sites import SITES, _number, _start, _tails, _worker_id
from tests.s3 import new_bucket, s3_environment

pytestmark = pytest.mark.integration


def test_inputs_held_in_a_bucket_move_to_a_folder_site_and_back_recorded_in_provenance(
        cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = new_bucket(monkeypatch)
    aws = s3_environment(monkeypatch)
    east, west = f"s3://{bucket}/east", cli.cwd / "west"
    bus = f"sqlite:///{cli.cwd / 'bus.db'}"
    roots = json.dumps({"east": east, "west": str(west)})
    logs = {name: cli.cwd / f"{name}.log" for name in ("controller", "east", "west")}
    procs = [
        _start(cli, "controller", "--bus", bus, log=logs["controller"], SKYWEAVE_SITES=roots,
               SKYWEAVE_SITE="east", **aws),
        _start(cli, "worker", "--bus", bus, "--site", "east", "--storage", east, "--executor", "threads",
               "--slots", "1", log=logs["east"], SKYWEAVE_SITES=roots, **aws),
        _start(cli, "worker", "--bus", bus, "--site", "west", "--storage", str(west), "--executor", "local",
               "--slots", "1", log=logs["west"], SKYWEAVE_SITES=roots, **aws),
    ]
    try:
        workers = {site: poll(lambda s=site: _worker_id(logs[s]), deadline=60, what=f"the {site} worker")
                   for site in ("east", "west")}
        with Client(str(cli.store), engine=False, bus=bus) as client:
            run_id = client.submit(f"{SITES}:two_sites", {"obs_id": "o3", "size": 5000}).id
            record = client.wait(run_id, timeout=90)
            assert record.state == "succeeded", _tails(logs)
            ran_by, usage, results = {}, {}, {}
            for activity in client.store.list_activities(run_id=run_id):
                results[activity.task_name] = activity.result
                [attempt] = client.store.list_attempts(activity.id)
                ran_by[activity.task_name] = attempt.worker
                usage[activity.task_name] = attempt.usage or {}
            document = json.loads(export(client.store, fmt="provjson", run_id=run_id))
        assert ran_by == {"observe": workers["east"], "calibration": workers["west"],
                          "combine": workers["east"], "archive": workers["west"]}, (ran_by, workers)
        assert (results["combine"], results["archive"]) == (5100, 5000), "each read its inputs whole"
        # the raw data (in the bucket) was streamed into west's folder for archive; the calibration
        # (in west's folder) uploaded into the bucket for combine
        [moved_raw] = list(west.rglob("transfers/*/*/o3_raw.dat"))
        assert moved_raw.stat().st_size == 5000
        keys = list(open_storage(east).list("products/transfers"))
        assert [k.rpartition("/")[2] for k in keys] == ["o3_cal.dat"], keys
        moves = {name: json.loads(str(u["transfers"])) for name, u in usage.items() if "transfers" in u}
        assert {name: [(x["from"], x["to"], x["bytes"]) for x in ms] for name, ms in moves.items()} == {
            "archive": [("east", "west", 5000)], "combine": [("west", "east", 100)]}
        assert moves["archive"][0]["source"].startswith(f"s3://{bucket}/east/products/")
        assert moves["combine"][0]["destination"] == f"s3://{bucket}/east/{keys[0]}"
        transfers = sorted(
            (a["sw:fromSite"], a["sw:toSite"], int(str(_number(a["sw:bytes"]))), str(_number(a["sw:source"])))
            for a in document["activity"].values() if _number(a.get("prov:type")) == "sw:Transfer")
        assert [t[:3] for t in transfers] == [("east", "west", 5000), ("west", "east", 100)], transfers
        assert transfers[0][3].startswith(f"s3://{bucket}/east/"), "the object it moved, by its URI"
    finally:
        for proc in procs:
            stop(proc)
