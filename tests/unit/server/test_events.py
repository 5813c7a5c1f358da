"""One bus reader feeds every subscriber: a run's subscribers get its announcements in order,
with the final counts (``progress``) before the event that ends the run; other runs' events and
the workers' reports (not announcements) reach nobody; history from before the hub started is
skipped."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from skyweave.bus import open_bus
from skyweave.bus.base import Bus
from skyweave.model import messages as m
from skyweave.model.records import ActivityRecord, Changeset, RunRecord
from skyweave.server.events import EventHub
from skyweave.store import open_store


def _publish(bus: Bus, *bodies: m.Message) -> None:
    bus.publish([m.encode_message(f"evt-{i}-{time.time_ns()}", b) for i, b in enumerate(bodies)])


def test_a_run_stream_gets_its_events_in_order(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'st.db'}")
    bus = open_bus("memory://")
    store.apply(Changeset(runs=[RunRecord(id="run-1", workflow="w", state="succeeded")],
                          activities=[ActivityRecord(id="act-1", run_id="run-1", node="n", task_name="t",
                                                     task_version="1", state="succeeded")]))
    _publish(bus, m.RunStateChanged(run_id="run-0", state="running"))  # before the hub: skipped
    hub = EventHub(bus, store, progress_s=0.0).start()

    async def follow() -> list[tuple[str, dict[str, object]]]:
        mine, everyone = hub.subscribe("run-1"), hub.subscribe(None)
        _publish(bus,
                 m.ActivityStarted(activity_id="act-1", attempt=1, worker="w1"),  # a report: not for clients
                 m.ActivityStateChanged(activity_id="act-9", run_id="run-2", task="t", state="failed"),
                 m.ActivityStateChanged(activity_id="act-1", run_id="run-1", task="t", state="succeeded"),
                 m.RunStateChanged(run_id="run-1", state="succeeded"))
        got = []
        while not got or got[-1][0] != "run":
            got.append(await asyncio.wait_for(mine.queue.get(), 30))
        seen_all = [await asyncio.wait_for(everyone.queue.get(), 30) for _ in range(3)]
        assert [(n, d.get("run_id")) for n, d in seen_all] == [("activity", "run-2"), ("activity", "run-1"),
                                                                ("run", "run-1")]
        hub.unsubscribe(mine)
        hub.unsubscribe(everyone)
        return got

    try:
        got = asyncio.run(follow())
    finally:
        hub.stop()
        bus.close()
        store.close()
    names = [n for n, _ in got]
    assert names[0] == "activity" and names[-2:] == ["progress", "run"]
    assert got[-2][1] == {"run_id": "run-1", "status": "succeeded", "by_state": {"succeeded": 1},
                          "total": 1, "done": 1}
    assert all(d.get("run_id") == "run-1" for _, d in got)
