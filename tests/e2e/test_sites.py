"""Two sites on one machine (docs/operations.md, "Several sites"): a controller and two workers as
separate processes, each worker with its own site label, storage root and executor (east: the local
process pool, west: threads).  Placement is checked from which worker ran each activity: pinned
tasks at their site, the unpinned ``combine`` where most of its input bytes are."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from skyweave.cli.runview import activity_json, waiting
from skyweave.client import Client
from skyweave.provenance.export import export
from tests.e2e.helpers import CLI, WORKFLOWS, cli_argv, cli_env, poll, stop

SITES = WORKFLOWS / "sites.py"
STEADY = {"SKYWEAVE_WORKER_TIMEOUT_S": "120", "SKYWEAVE_CONTROLLER_LEASE_S": "120"}


def _start(cli: CLI, *args: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:
        return subprocess.Popen(cli_argv(*args, "--store", str(cli.store)), cwd=cli.cwd,
                                env={**cli_env(), **STEADY, **env}, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _worker_id(log: Path) -> str | None:
    found = re.search(r"worker (\S+) with \d+ slots at site", log.read_text()) if log.is_file() else None
    return found[1] if found else None


def _tails(logs: dict[str, Path]) -> str:
    return "\n".join(f"--- {name}\n{path.read_text(errors='replace')[-3000:]}"
                     for name, path in logs.items() if path.is_file())


def _number(value: object) -> object:
    """A PROV-JSON literal's value (typed literals are ``{"$": value, "type": …}``)."""
    return value["$"] if isinstance(value, dict) else value


def test_activities_run_at_the_site_of_their_data_or_their_pin(cli: CLI) -> None:
    east, west = cli.cwd / "east", cli.cwd / "west"
    bus = f"sqlite:///{cli.cwd / 'bus.db'}"
    roots = json.dumps({"east": str(east), "west": str(west)})
    logs = {name: cli.cwd / f"{name}.log" for name in ("controller", "east", "west")}
    procs = [
        _start(cli, "controller", "--bus", bus, log=logs["controller"], SKYWEAVE_SITES=roots,
               SKYWEAVE_SITE="east"),
        _start(cli, "worker", "--bus", bus, "--site", "east", "--storage", str(east), "--executor", "local",
               "--slots", "1", log=logs["east"], SKYWEAVE_SITES=roots),
        _start(cli, "worker", "--bus", bus, "--site", "west", "--storage", str(west), "--executor", "threads",
               "--slots", "1", log=logs["west"], SKYWEAVE_SITES=roots),
    ]
    try:
        workers = {site: poll(lambda s=site: _worker_id(logs[s]), deadline=60, what=f"the {site} worker")
                   for site in ("east", "west")}
        with Client(str(cli.store), engine=False, bus=bus) as client:
            run_id = client.submit(f"{SITES}:two_sites", {"obs_id": "o1", "size": 5000}).id
            record = client.wait(run_id, timeout=90)
            assert record.state == "succeeded", _tails(logs)
            ran_by = {}
            for activity in client.store.list_activities(run_id=run_id):
                [attempt] = client.store.list_attempts(activity.id)
                ran_by[activity.task_name] = attempt.worker
        assert ran_by == {"observe": workers["east"], "calibration": workers["west"],
                          "combine": workers["east"], "archive": workers["west"]}, (ran_by, workers)
        assert list(east.rglob("o1_raw.dat")) and list(west.rglob("o1_cal.dat")), \
            "each site's products are written to its own storage root"
        # each input away from where its activity ran was brought there first, and recorded: the
        # raw data (east) for archive (pinned to west), the calibration (west) for combine (east)
        [moved_raw] = list(west.rglob("transfers/*/*/o1_raw.dat"))
        [moved_cal] = list(east.rglob("transfers/*/*/o1_cal.dat"))
        assert (moved_raw.stat().st_size, moved_cal.stat().st_size) == (5000, 100)
        with Client(str(cli.store), engine=False, bus=bus) as client:
            usage = {}
            for activity in client.store.list_activities(run_id=run_id):
                [attempt] = client.store.list_attempts(activity.id)
                usage[activity.task_name] = attempt.usage or {}
            document = json.loads(export(client.store, fmt="provjson", run_id=run_id))
        assert {name: u.get("transfer_bytes") for name, u in usage.items()} == {
            "observe": None, "calibration": None, "combine": 100, "archive": 5000}
        transfers = sorted(
            ((a["sw:fromSite"], a["sw:toSite"], int(str(_number(a["sw:bytes"])))) for a in document["activity"].values()
             if _number(a.get("prov:type")) == "sw:Transfer"), key=str)
        assert transfers == [("east", "west", 5000), ("west", "east", 100)], document["activity"]
        for a in document["activity"].values():
            if _number(a.get("prov:type")) == "sw:Transfer":
                assert "prov:startTime" in a and "prov:endTime" in a and float(str(_number(a["sw:seconds"]))) >= 0
        moves = {k for k, a in document["activity"].items() if _number(a.get("prov:type")) == "sw:Transfer"}
        used = [u for u in document["used"].values() if u["prov:activity"] in moves]
        assert len(used) == 2, "each transfer used the product it moved"
    finally:
        for proc in procs:
            stop(proc)


def test_a_site_without_live_workers_loses_its_unpinned_work_and_pinned_work_says_it_waits(cli: CLI) -> None:
    """Only west has a worker: ``note`` (placed at the controller's home, east) runs at west once
    ``site_grace_s`` is over; ``observe`` (pinned to east) waits, and ``skyweave status`` says so,
    until an east worker starts."""
    east, west = cli.cwd / "east", cli.cwd / "west"
    bus = f"sqlite:///{cli.cwd / 'bus.db'}"
    roots = json.dumps({"east": str(east), "west": str(west)})
    logs = {name: cli.cwd / f"{name}.log" for name in ("controller", "east", "west")}
    procs = [
        _start(cli, "controller", "--bus", bus, log=logs["controller"], SKYWEAVE_SITES=roots,
               SKYWEAVE_SITE="east", SKYWEAVE_SITE_GRACE_S="1"),
        _start(cli, "worker", "--bus", bus, "--site", "west", "--storage", str(west), "--executor", "threads",
               "--slots", "1", log=logs["west"], SKYWEAVE_SITES=roots),
    ]
    try:
        west_worker = poll(lambda: _worker_id(logs["west"]), deadline=60, what="the west worker")
        with Client(str(cli.store), engine=False, bus=bus) as client:
            run_id = client.submit(f"{SITES}:fallback", {"obs_id": "o2"}).id

            def settled() -> bool:
                acts = {a.task_name: a for a in client.store.list_activities(run_id=run_id)}
                return "note" in acts and acts["note"].state == "succeeded" and "observe" in acts \
                    and waiting(acts["observe"]) is not None

            poll(settled, deadline=60, what="note to run elsewhere and observe to say it waits")
            acts = {a.task_name: activity_json(a) for a in client.store.list_activities(run_id=run_id)}
            assert "waits for a worker of site east" in str(acts["observe"]["waiting"]), acts
            assert "pinned to site east" in str(acts["observe"]["waiting"])
            text = cli("status", run_id).ok().out
            assert "waits for a worker of site east" in text, text
            note = next(a for a in client.store.list_activities(run_id=run_id) if a.task_name == "note")
            [attempt] = client.store.list_attempts(note.id)
            assert attempt.worker == west_worker, "moved to the site that had a live worker"
            assert [d.kind for d in note.detours] == ["site-moved"] and "site east" in note.detours[0].reason
            assert list(west.rglob("o2_note.txt")), "written to the storage of the site it ran at"
            assert "work waits for a worker of site east" in logs["controller"].read_text()
            procs.append(_start(cli, "worker", "--bus", bus, "--site", "east", "--storage", str(east),
                                "--executor", "threads", "--slots", "1", log=logs["east"],
                                SKYWEAVE_SITES=roots))
            record = client.wait(run_id, timeout=60)
            assert record.state == "succeeded", _tails(logs)
            observe = next(a for a in client.store.list_activities(run_id=run_id) if a.task_name == "observe")
            [wait] = observe.detours
            assert wait.kind == "site-wait" and wait.ended_at is not None, "the wait ended when it started"
    finally:
        for proc in procs:
            stop(proc)
