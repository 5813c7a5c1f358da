"""Triggers start one run per event (issue 16, points 1-3): files arriving, VOEvent packets on the bus,
schedules; paused triggers keep or coalesce what arrives, by policy; a concurrency limit holds the
rest; a trigger process started again starts nothing twice."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from voeventparse.fixtures import datapaths

from skyweave import Client
from skyweave.model.triggers import FiringState, TriggerState
from skyweave.triggers import on_files, on_objects, on_schedule, on_voevents
from skyweave.triggers.messages import post_message
from skyweave.triggers.service import TriggerService

FLOW = str(Path(__file__).with_name("triggers_flow.py"))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    with Client(str(tmp_path / "store"), executor="threads", workers=2) as c:
        yield c


def land(folder: Path, name: str, text: str = "data", *, age_s: float = 10.0) -> Path:
    """A file that arrived ``age_s`` ago (settled)."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def trigger_runs(client: Client, name: str) -> list[Any]:
    return [r for r in client.store.list_runs(graph=False, limit=10_000) if r.labels.get("trigger") == name]


def test_each_arriving_file_starts_one_run_with_fields_from_its_name(client: Client, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    client.store.save_trigger(on_files("arrivals", folder=inbox, glob="**/*.evt", pattern=r"^ep(?P<obs_id>\d+)_",
                                       workflow=f"{FLOW}:ingest", params={"path": "{path}", "obs_id": "{obs_id}"}))
    land(inbox, "ep0001_a.evt", "12345")
    land(inbox, "night2/ep0002_b.evt", "1234567")
    land(inbox, "notes.txt")  # not the glob
    land(inbox, "other_c.evt")  # not the pattern
    service = TriggerService(client)
    service.step()
    service.step()  # a rescan sees the same files: nothing new
    runs = trigger_runs(client, "arrivals")
    assert sorted(r.params["obs_id"] for r in runs) == ["0001", "0002"]
    for r in runs:
        assert client.wait(r.id, timeout=60).state == "succeeded"
    assert sorted(client.results(r.id)["bytes"] for r in runs) == [5, 7]

    land(inbox, "ep0003_c.evt")
    TriggerService(client).step()  # a new trigger process: the two old files are skipped, counted
    assert len(trigger_runs(client, "arrivals")) == 3
    assert client.store.get_trigger("arrivals").skipped == 2
    assert client.store.trigger_counts("arrivals") == {"fired": 3}


def test_a_file_still_being_written_waits_until_it_settles(client: Client, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    client.store.save_trigger(on_files("arrivals", folder=inbox, settle_s=30, workflow=f"{FLOW}:ingest",
                                       params={"path": "{path}"}))
    land(inbox, "fresh.dat", age_s=0)
    now = time.time()
    service = TriggerService(client, clock=lambda: now)
    assert service.step() == pytest.approx((inbox / "fresh.dat").stat().st_mtime + 30)
    assert trigger_runs(client, "arrivals") == []
    service.clock = lambda: now + 31
    service.step()
    assert len(trigger_runs(client, "arrivals")) == 1


@pytest.mark.parametrize(("policy", "expected_runs"), [("keep", 3), ("coalesce", 1)])
def test_events_while_paused_are_kept_or_coalesced_and_recorded(client: Client, tmp_path: Path, policy: str,
                                                                  expected_runs: int) -> None:
    inbox = tmp_path / "inbox"
    client.store.save_trigger(on_files("arrivals", folder=inbox, workflow=f"{FLOW}:ingest",
                                       params={"path": "{path}"}, on_pause=policy))
    client.store.set_trigger_state("arrivals", TriggerState.PAUSED)
    for i in range(3):
        land(inbox, f"f{i}.dat", age_s=10 - i)
    service = TriggerService(client)
    service.step()
    assert trigger_runs(client, "arrivals") == []
    assert client.store.trigger_counts("arrivals") == {"held": 3}
    client.store.set_trigger_state("arrivals", TriggerState.ACTIVE)
    service.step()
    runs = trigger_runs(client, "arrivals")
    assert len(runs) == expected_runs
    history = {f.key.split("|")[0]: f for f in client.store.trigger_history("arrivals")}
    if policy == "coalesce":
        assert runs[0].params["path"].endswith("f2.dat")  # the newest
        for old in ("f0.dat", "f1.dat"):
            assert history[old].state is FiringState.COALESCED
            assert "coalesced into f2.dat" in history[old].reason
    else:
        assert all(f.state is FiringState.FIRED and "was held: trigger paused" in f.reason for f in history.values())


def test_the_concurrency_limit_holds_events_until_runs_finish(client: Client, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    client.store.save_trigger(on_files("arrivals", folder=inbox, workflow=f"{FLOW}:ingest",
                                       params={"path": "{path}"}, concurrency=1))
    for i in range(3):
        land(inbox, f"f{i}.dat", age_s=10 - i)
    service = TriggerService(client)
    fired = []
    for _ in range(3):
        service.step()
        runs = trigger_runs(client, "arrivals")
        assert len(runs) == len(fired) + 1  # one at a time
        (new,) = [r for r in runs if r.id not in fired]
        client.wait(new.id, timeout=60)
        fired.append(new.id)
    assert client.store.trigger_counts("arrivals") == {"fired": 3}


def test_a_parameter_that_cannot_be_filled_rejects_the_event_with_the_reason(client: Client, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    client.store.save_trigger(on_files("arrivals", folder=inbox, workflow=f"{FLOW}:ingest",
                                       params={"path": "{path}", "obs_id": "{obs_id}"}))  # no pattern: no obs_id
    land(inbox, "f.dat")
    TriggerService(client).step()
    (row,) = client.store.trigger_history("arrivals")
    assert row.state is FiringState.REJECTED
    assert "needs the field 'obs_id'" in row.reason
    assert trigger_runs(client, "arrivals") == []


PACKETS = {
    "swift": (datapaths.swift_bat_grb_pos_v2, "ivo://nasa.gsfc.gcn/SWIFT#BAT_GRB_Pos", (74.7412, -9.3137)),
    "gaia": (datapaths.gaia_alert_16aac_direct, "ivo://gaia.cam.uk/alerts", (73.29423, 7.35212)),
    "asassn": (datapaths.asassn_scraped_example, "ivo://voevent.4pisky.org/ASASSN", (345.0172083, 17.8481111)),
    "moa": (datapaths.moa_lensing_event_path, "ivo://nasa.gsfc.gcn/MOA", (268.686, -29.7073)),
}


def test_real_voevent_packets_start_the_right_follow_up_and_bad_ones_are_rejected(client: Client) -> None:
    for name, (_, stream, _) in PACKETS.items():
        client.store.save_trigger(on_voevents(name, streams=[stream], workflow=f"{FLOW}:follow_up",
                                              params={"ra": "{ra}", "dec": "{dec}", "time": "{time}",
                                                      "stream": "{stream}"}))
    service = TriggerService(client)
    service.step()  # every trigger's consumer group known before packets arrive
    for path, _, _ in PACKETS.values():
        post_message(client.bus, "voevent", Path(path).read_text(), message_id=f"m-{path}", at=time.time())
    for bad in (datapaths.swift_xrt_pos_v1, datapaths.no_namespace_test_packet):
        post_message(client.bus, "voevent", Path(bad).read_text(), message_id=f"m-{bad}", at=time.time())
    post_message(client.bus, "voevent", "<VOEvent broken", message_id="m-broken", at=time.time())
    service.step()
    service.step()
    for name, (_, _, (ra, dec)) in PACKETS.items():
        (run,) = trigger_runs(client, name)
        assert client.wait(run.id, timeout=60).state == "succeeded"
        result = client.results(run.id)
        assert result["ra"] == pytest.approx(ra) and result["dec"] == pytest.approx(dec)
        reasons = [f.reason for f in client.store.trigger_history(name, states=[FiringState.REJECTED])]
        assert sorted(reasons, key=len) and len(reasons) == 3
        assert any("only version 2.0 is accepted" in r for r in reasons)
        assert any("not valid against the VOEvent 2.0 schema" in r for r in reasons)
        assert any("not an XML document" in r for r in reasons)
        assert client.store.trigger_counts(name)["ignored"] == 3  # the other three streams' packets
    swift = client.results(trigger_runs(client, "swift")[0].id)
    assert swift["time"] == "2012-09-07T00:24:23.080000+00:00"
    # the same packet again (a second broker): its IVORN is its key, no second run
    post_message(client.bus, "voevent", Path(PACKETS["swift"][0]).read_text(), message_id="m-again", at=time.time())
    service.step()
    assert len(trigger_runs(client, "swift")) == 1


@pytest.mark.parametrize(("catchup", "runs", "coalesced"), [("all", 3, 0), ("latest", 1, 2)])
def test_a_schedule_fires_its_ticks_in_its_time_zone(client: Client, catchup: str, runs: int, coalesced: int
                                                     ) -> None:
    rec = client.store.save_trigger(on_schedule("nightly", cron="0 3 * * *", timezone="Asia/Shanghai",
                                                catchup=catchup, workflow=f"{FLOW}:nightly",
                                                params={"at": "{tick}"}))
    later = rec.created_at + 3 * 86400 + 1
    TriggerService(client, clock=lambda: later).step()
    ticks = sorted(r.params["at"] for r in trigger_runs(client, "nightly"))
    assert len(ticks) == runs
    assert all(t.endswith("T03:00:00+08:00") for t in ticks)
    assert client.store.trigger_counts("nightly").get("coalesced", 0) == coalesced
    cursor = client.store.get_trigger("nightly").cursor
    assert cursor is not None and cursor == max(f.key for f in client.store.trigger_history("nightly"))
    TriggerService(client, clock=lambda: later + 60).step()  # restarted: no tick twice
    assert len(trigger_runs(client, "nightly")) == runs


def test_objects_arriving_under_a_prefix_start_one_run_each(client: Client) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    client.store.save_trigger(on_objects("landing", url="memory://ep-l0/incoming", pattern=r"^ep(?P<obs_id>\d+)",
                                         workflow=f"{FLOW}:nightly", params={"at": "{url}"}))
    fs.pipe("memory://ep-l0/incoming/ep0007.fits", b"one")
    fs.pipe("memory://ep-l0/incoming/readme.txt", b"not an observation")
    fs.pipe("memory://ep-l0/elsewhere/ep0008.fits", b"outside the prefix")
    service = TriggerService(client)
    service.step()
    service.step()
    (run,) = trigger_runs(client, "landing")
    assert run.params["at"] == fs.unstrip_protocol("/ep-l0/incoming/ep0007.fits")  # memory:///ep-l0/...
    (row,) = client.store.trigger_history("landing")
    assert row.fields["obs_id"] == "0007" and row.fields["bucket"] == "ep-l0"


def test_between_steps_the_trigger_process_sleeps_instead_of_spinning(client: Client) -> None:
    """Without a bus trigger the wait looped on its event's flag until the deadline: a full core
    (seen beside moto in the 60,000-object bench)."""
    import threading

    client.store.save_trigger(on_schedule("hourly", cron="0 * * * *", workflow=f"{FLOW}:nightly",
                                          params={"at": "{tick}"}))
    service = TriggerService(client)
    service.step()

    class Counting(threading.Event):
        checks = 0

        def is_set(self) -> bool:
            self.checks += 1
            return super().is_set()

    service.wake = Counting()
    service._wait(threading.Event(), retry_at=time.time() + 0.2)
    assert service.wake.checks <= 3, f"the flag was looked at {service.wake.checks} times in one wait"
