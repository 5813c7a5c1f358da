"""The burst pipeline through the engine: a model retrained and registered mid-stream, the switch-over
in the provenance, the alert's lineage, and urgent follow-ups overtaking queued chunk work.

Everything is read back from the store (activities, products, lineage), not from the stream's own
bookkeeping, so the test checks what an operator would see afterwards."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from nenufar_bursts import conventions as cv
from nenufar_bursts.followup import URGENT, on_detection
from nenufar_bursts.simulate import StreamConfig, simulate_stream
from nenufar_bursts.stream import LOW, BurstStream, alerts
from skyweave import Client

OBS = "nenu-engine"
N_BEFORE, N_AFTER = 8, 40
"""Chunks fed before and after the retrained model is registered.  The 40 are fed at once, so a
backlog of low-priority chunk activities (~25 ms each on 2 workers) is queued when the first
follow-up is triggered."""
TRAIN_CHUNKS = 80
"""Small training sets: this test is about the engine, not about the model's quality."""
FOLLOWUP_TASKS = {"cutout", "plot_burst", "make_voevent"}


def _wait_for_followups(client: Client, n_expected: int, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        runs = {a.run_id for a in client.store.list_activities() if a.task_name in FOLLOWUP_TASKS}
        done = [a for a in client.store.list_activities() if a.task_name == "make_voevent"
                and a.state in ("succeeded", "failed")]
        if len(runs) >= n_expected and len(done) >= n_expected:
            return
        time.sleep(0.1)
    raise AssertionError(f"{n_expected} follow-up runs did not end within {timeout} s")


def test_retrained_model_mid_stream_lineage_and_urgent_followup(tmp_path: Path) -> None:
    # bright bursts only (no type III, no impulses): every chunk with a burst should raise an alert
    config = StreamConfig(burst_rate=0.7, type3_rate=0.0, impulse_rate=0.0, snr_range=(20.0, 30.0))
    chunks = simulate_stream(tmp_path / "data", OBS, 11, N_BEFORE + N_AFTER, config)
    with Client(str(tmp_path / "st"), workers=2, listeners=[on_detection]) as client:
        stream = BurstStream(client, OBS)
        v1 = stream.install_model(seed=1, n_chunks=TRAIN_CHUNKS)
        early = [stream.feed(c["path"]) for c in chunks[:N_BEFORE]]
        v2 = stream.install_model(seed=2, n_chunks=TRAIN_CHUNKS)  # while the early chunks are queued
        late = [stream.feed(c["path"]) for c in chunks[N_BEFORE:]]
        stream.wait(timeout=120)
        with_detections = [p for p in client.store.find_products(type=cv.DETECTIONS)
                           if p.attributes.get("n_detections")]
        _wait_for_followups(client, len(with_detections))

        assert v1 != v2
        acts = client.store.list_activities()
        by_run: dict[str, list[Any]] = {}
        for a in acts:
            by_run.setdefault(a.run_id, []).append(a)

        # -- switch-over: chunk runs submitted before the registration keep v1, later ones use v2 ------
        for recs, version in ((early, v1), (late, v2)):
            for rec in recs:
                assert rec.run is not None
                det_acts = [a for a in by_run[rec.run.id] if a.task_name == cv.DETECTOR_TASK]
                assert [a.task_version for a in det_acts] == [version], (rec.index, det_acts)
                assert det_acts[0].state == "succeeded"

        # -- every detections product carries the model version of the activity that made it -----------
        detections = client.store.find_products(type=cv.DETECTIONS, match={"obs_id": OBS})
        assert len(detections) == N_BEFORE + N_AFTER
        act_by_id = {a.id: a for a in acts}
        for p in detections:
            made_by = act_by_id[p.activity_id]
            assert p.version == p.attributes["model_version"] == made_by.task_version, p
            assert p.obs_id == OBS and p.detector == "beam0", p       # observation and beam
        assert {p.version for p in detections} == {v1, v2}

        # -- alerts: one per chunk with a detection, lineage back to the chunk and the model -----------
        found = alerts(client, OBS)
        assert len(found) == len(with_detections) >= 10
        assert {a["model_version"] for a in found} == {v1, v2}
        models = {p.version: p.id for p in client.store.find_products(type=cv.MODEL)}
        chunk_of = {p.id: p.attributes["chunk"] for p in detections}
        for alert in found:
            voevent = client.store.get_product(alert["product"])
            graph = client.store.lineage(alert["product"], direction="up")
            ids = {n.id for n in graph.products}
            det_ids = {n.id for n in graph.products if n.type == cv.DETECTIONS}
            assert len(det_ids) == 1, graph
            (det_id,) = det_ids
            assert chunk_of[det_id] in ids, "alert lineage misses the raw chunk"
            assert models[alert["model_version"]] in ids, "alert lineage misses the model artifact"
            assert {n.type for n in graph.products} >= {cv.VOEVENT, cv.PLOT, cv.CUTOUT, cv.DETECTIONS,
                                                        cv.CHUNK, cv.MODEL}
            assert voevent.attributes["model_version"] == alert["model_version"]
            assert all(n.detector == "beam0" for n in graph.products if n.type != cv.MODEL), graph

        # -- urgency: follow-up activities at priority 10 overtake chunk activities queued earlier ------
        chunk_acts = [a for a in acts if a.task_name == cv.DETECTOR_TASK]
        fu_acts = [a for a in acts if a.task_name in FOLLOWUP_TASKS]
        assert {a.priority for a in chunk_acts} == {LOW}
        assert {a.priority for a in fu_acts} == {URGENT}
        assert all(a.state == "succeeded" for a in fu_acts)
        # for each follow-up activity: the chunk activities queued before it and still waiting when it
        # was queued; FIFO would start it after all of them
        def waiting_and_overtaken(f: Any) -> tuple[int, int]:
            waiting = [c for c in chunk_acts if c.queued_at < f.queued_at and c.started_at > f.queued_at]
            return len(waiting), sum(c.started_at > f.started_at for c in waiting)

        counts = [waiting_and_overtaken(f) for f in fu_acts]
        n_waiting, n_overtaken = max(counts)  # the follow-up that met the longest backlog
        print("follow-up activities: (chunk activities waiting, overtaken)", counts)
        assert n_waiting >= 10, (counts, "no backlog: the priority check would be vacuous")
        # a worker may already hold one or two of them (taken between the follow-up's queueing and its
        # publication on the bus), so most, not all, are overtaken
        assert n_overtaken >= n_waiting // 2, counts
        assert sum(o for _, o in counts) >= sum(w for w, _ in counts) // 2, counts
        # each follow-up run ran its three activities at priority 10, in order
        for run_id in {a.run_id for a in fu_acts}:
            steps = sorted(by_run[run_id], key=lambda a: a.started_at)
            assert [a.task_name for a in steps] == ["cutout", "plot_burst", "make_voevent"]
            assert all(a.priority == URGENT for a in steps)
