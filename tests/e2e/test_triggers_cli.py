"""``skyweave triggers`` as a user drives it, and the trigger process killed with SIGKILL while
files, messages and objects (S3) keep arriving: counted afterwards, every event started exactly one run
(issue 16, points 2-3)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from voeventparse.fixtures import datapaths

from skyweave import Client
from skyweave.triggers.messages import post_message

from .helpers import CLI, flat, poll, stop

FLOW = Path(__file__).resolve().parents[1] / "integration" / "triggers_flow.py"

TRIGGERS = f"""
triggers:
  arrivals:
    files: {{folder: inbox, glob: "*.evt", pattern: '^ep(?P<obs_id>\\d+)', settle_s: 0}}
    workflow: {FLOW}:ingest
    params: {{path: "{{path}}", obs_id: "{{obs_id}}"}}
    priority: 2
  grb:
    voevents: {{streams: ["ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos"]}}
    workflow: {FLOW}:follow_up
    params: {{ra: "{{ra}}", dec: "{{dec}}", time: "{{time}}", stream: "{{stream}}"}}
  notes:
    messages: {{topic: notes}}
    workflow: {FLOW}:nightly
    params: {{at: "{{at}}"}}
"""


def land(folder: Path, name: str) -> None:
    """A file written beside and renamed into place, as a careful sender does."""
    part = folder / f".{name}.part"
    part.write_text(name)
    part.rename(folder / name)


def by_trigger(store: Path, name: str) -> list[str]:
    """The keys of the runs each trigger started (duplicates kept, to be counted)."""
    with Client(str(store), engine=False) as c:
        return [r.labels["trigger.key"] for r in c.store.list_runs(graph=False, limit=100_000)
                if r.labels.get("trigger") == name]


def test_add_list_pause_resume_history_fire_and_remove(cli: CLI) -> None:
    (cli.cwd / "inbox").mkdir()
    (cli.cwd / "t.yaml").write_text(TRIGGERS)
    assert "added trigger arrivals" in cli("triggers", "add", "t.yaml").ok().out
    again = cli("triggers", "add", "t.yaml")
    assert again.code != 0 and "exists already" in flat(again.err) and "--replace" in flat(again.err)
    cli("triggers", "add", "t.yaml", "--replace").ok()
    land(cli.cwd / "inbox", "ep0042_x.evt")
    cli("triggers", "pause", "arrivals").ok()
    cli("triggers", "run", "--once").ok()
    (held,) = cli.json("triggers", "history", "arrivals")
    assert held["state"] == "held" and held["reason"] == "trigger paused"
    cli("triggers", "resume", "arrivals").ok()
    assert "1 run(s) started" in cli("triggers", "run", "--once").ok().out
    (fired,) = cli.json("triggers", "history", "arrivals")
    assert fired["state"] == "fired" and fired["fields"]["obs_id"] == "0042"
    listed = {t["name"]: t for t in cli.json("triggers", "list")}
    assert listed["arrivals"]["events"] == {"fired": 1} and listed["arrivals"]["priority"] == 2
    refired = cli("triggers", "fire", "arrivals", fired["key"]).ok()
    assert "re-fired" in refired.out
    assert len(by_trigger(cli.store, "arrivals")) == 2
    (row,) = cli.json("triggers", "history", "arrivals")
    assert "re-fired on purpose" in row["reason"]

    cli("triggers", "post", "voevent", datapaths.swift_bat_grb_pos_v2).ok()
    cli("triggers", "post", "voevent", datapaths.swift_xrt_pos_v1).ok()
    cli("triggers", "run", "--once").ok()
    rows = {r["state"]: r for r in cli.json("triggers", "history", "grb")}
    assert rows["fired"]["fields"]["ra"] == pytest.approx(74.7412)
    assert "only version 2.0 is accepted" in rows["rejected"]["reason"]

    assert "removed trigger notes" in cli("triggers", "remove", "notes").ok().out
    gone = cli("triggers", "history", "notes")
    assert gone.code == 3 and "no trigger named 'notes'" in gone.err


def test_bad_trigger_files_get_a_clear_error(cli: CLI) -> None:
    cases = {
        "triggers: {t: {files: {folder: x}, schedule: {cron: '* * * * *'}, workflow: w.py:w}}": "several kinds",
        "triggers: {t: {schedule: {cron: 'every day'}, workflow: w.py:w}}": "is not a cron expression",
        "triggers: {t: {schedule: {cron: '0 3 * * *', timezone: Mars/Olympus}, workflow: w.py:w}}": "unknown time zone",
        "triggers: {t: {files: {folder: x, pattern: '(('}, workflow: w.py:w}}": "is not a regular expression",
        "triggers: {t: {files: {folder: x}}}": "no workflow",
        "triggers: {t: {files: {folder: x}, workflow: w.py:w, on_pause: drop}}": "use keep or coalesce",
        "triggers: {t: {files: {dir: x}, workflow: w.py:w}}": "files has no setting 'dir'",
        "nothing: here": "no triggers",
    }
    for text, expected in cases.items():
        (cli.cwd / "bad.yaml").write_text(text)
        res = cli("triggers", "add", "bad.yaml")
        assert res.code != 0 and "Traceback" not in res.err, res.err
        assert expected in flat(res.err), (text, res.err)
    assert cli.json("triggers", "list") == []


@pytest.mark.slow
def test_a_trigger_process_killed_again_and_again_starts_each_event_exactly_once(cli: CLI) -> None:
    inbox = cli.cwd / "inbox"
    inbox.mkdir()
    (cli.cwd / "t.yaml").write_text(TRIGGERS)
    cli("triggers", "add", "t.yaml").ok()
    files, messages, kills = 240, 120, 4
    proc = cli.popen("triggers", "run", log=cli.cwd / "triggers-0.log")
    try:
        for k in range(kills + 1):
            for i in range(k * files // (kills + 1), (k + 1) * files // (kills + 1)):
                land(inbox, f"ep{i:05d}.evt")
            with Client(str(cli.store), engine=False) as sender:  # another process posts (as `triggers post`)
                for i in range(k * messages // (kills + 1), (k + 1) * messages // (kills + 1)):
                    post_message(sender.bus, "notes", f'{{"at": "m{i}"}}', message_id=f"note-{i}", at=time.time())
            if k == kills:
                break
            seen = len(by_trigger(cli.store, "arrivals"))
            poll(lambda s=seen: len(by_trigger(cli.store, "arrivals")) > s, deadline=60,
                 what="the trigger process to start some runs")
            os.killpg(proc.pid, signal.SIGKILL)  # mid-stream: a batch may be half done
            proc.wait(10)
            proc = cli.popen("triggers", "run", log=cli.cwd / f"triggers-{k + 1}.log")
        poll(lambda: len(by_trigger(cli.store, "arrivals")) >= files and len(by_trigger(cli.store, "notes")) >= messages,
             deadline=120, what="every event to have its run")
    finally:
        stop(proc)
    arrivals, notes = by_trigger(cli.store, "arrivals"), by_trigger(cli.store, "notes")
    assert len(arrivals) == len(set(arrivals)) == files, "a file started no run, or two"
    assert len(notes) == len(set(notes)) == messages, "a message started no run, or two"
    assert sorted(notes) == sorted(f"note-{i}" for i in range(messages))


@pytest.mark.slow
def test_an_object_trigger_process_killed_again_and_again_starts_each_object_exactly_once(
        cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same count for objects landing in a bucket (moto's S3): the cursor moves with the
    firings in one transaction, so a process killed between a listing and its records neither
    loses an object nor starts one twice when the next process lists again."""
    from skyweave.storage.s3 import filesystem
    from tests.s3 import new_bucket

    bucket = new_bucket(monkeypatch)  # endpoint and credentials in the environment the CLI inherits
    fs = filesystem()
    (cli.cwd / "o.yaml").write_text(
        "triggers:\n  landing:\n"
        f"    objects: {{url: 's3://{bucket}/incoming/', pattern: '^ep(?P<obs_id>\\d+)', overlap_s: 1}}\n"
        f"    workflow: {FLOW}:nightly\n    params: {{at: '{{url}}'}}\n")
    cli("triggers", "add", "o.yaml").ok()
    objects, kills = 150, 3
    proc = cli.popen("triggers", "run", log=cli.cwd / "objects-0.log")
    try:
        for k in range(kills + 1):
            for i in range(k * objects // (kills + 1), (k + 1) * objects // (kills + 1)):
                fs.pipe(f"{bucket}/incoming/ep{i:05d}.fits", f"object {i}".encode())
            if k == kills:
                break
            seen = len(by_trigger(cli.store, "landing"))
            poll(lambda s=seen: len(by_trigger(cli.store, "landing")) > s, deadline=60,
                 what="the trigger process to start some runs")
            os.killpg(proc.pid, signal.SIGKILL)  # mid-stream: a batch may be half done
            proc.wait(10)
            proc = cli.popen("triggers", "run", log=cli.cwd / f"objects-{k + 1}.log")
        poll(lambda: len(by_trigger(cli.store, "landing")) >= objects, deadline=120,
             what="every object to have its run")
    finally:
        stop(proc)
    landing = by_trigger(cli.store, "landing")
    assert len(landing) == len(set(landing)) == objects, "an object started no run, or two"
    assert sorted(key.partition("@")[0] for key in landing) == [
        f"{bucket}/incoming/ep{i:05d}.fits" for i in range(objects)]
