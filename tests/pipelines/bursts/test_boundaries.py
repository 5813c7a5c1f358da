"""Bursts crossing chunk boundaries: at 20-80 MHz a dispersed burst sweeps for seconds, so it can
straddle two 10 s chunks.  The detector searches each chunk together with the previous one and keeps the
bursts that reach 40 MHz inside it (``features.owns``): each burst must be reported exactly once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from nenufar_bursts import conventions as cv
from nenufar_bursts.detect import detect_baseline, detect_model, score_chunk
from nenufar_bursts.features import with_previous
from nenufar_bursts.followup import cutout
from nenufar_bursts.simulate import write_chunk
from skyweave import ActivityContext, Product

from .conftest import owner_chunk, quiet_stream_with_bursts

# 80 MHz arrival time (s from the stream start) and DM; it reaches 40 MHz 1.94 s x DM later, 20 MHz
# 9.69 s x DM later.  Chunk boundaries every 10 s; hand-off 0.5 s before each (``owner_chunk``).
BURSTS = [
    {"time_s": 9.2, "dm": 0.6, "snr": 20.0},    # starts in chunk 0, 40 MHz at 10.4 s: chunk 1's
    {"time_s": 18.5, "dm": 0.5, "snr": 20.0},   # 40 MHz at 19.47 s, 0.03 s before the hand-off: chunk 1's;
                                                # sweeps on to 23.3 s
    {"time_s": 29.6, "dm": 0.3, "snr": 20.0},   # 40 MHz 0.18 s after the boundary: chunk 3's; chunk 2 sees
                                                # its 80-46 MHz part (the case the guard is for)
    {"time_s": 39.0, "dm": 0.7, "snr": 20.0},   # starts in chunk 3, 40 MHz at 40.4 s, 20 MHz at 45.8 s
    {"time_s": 49.7, "dm": 0.12, "snr": 20.0},  # 40 MHz at 49.93 s, after the hand-off: chunk 5's
    {"time_s": 55.0, "dm": 0.15, "snr": 20.0},  # inside chunk 5 (control)
]
N_CHUNKS = 7


def _on(detections: list[dict[str, Any]], b: dict[str, float]) -> list[dict[str, Any]]:
    """Detections of burst ``b`` (|dt| <= 0.6 s, |dDM| <= 0.05 + 0.2 DM, as ``features.match``)."""
    return [d for d in detections if abs(d["time_s"] - b["time_s"]) <= 0.6
            and abs(d["dm"] - b["dm"]) <= 0.05 + 0.2 * b["dm"]]


def _chunk(t: float) -> int:
    return int(t // cv.CHUNK_S)


def test_each_burst_across_a_boundary_is_detected_exactly_once(trained: dict[str, Any]) -> None:
    def owner(b: dict[str, float]) -> int:
        return owner_chunk(b["time_s"], b["dm"])

    straddling = [b for b in BURSTS if _chunk(b["time_s"]) != _chunk(b["time_s"] + float(cv.delay_s(b["dm"], 20.0)))]
    started_before = [b for b in BURSTS if _chunk(b["time_s"]) < owner(b)]
    assert len(straddling) == 5 and len(started_before) == 4
    chunks = quiet_stream_with_bursts(BURSTS, N_CHUNKS)
    assert [len(m["truth"]) for _, m in chunks] == [0, 2, 0, 1, 1, 2, 0]
    model, base, alone = [], [], []
    for data, meta, previous in with_previous(chunks):
        assert (previous is None) == (meta["index"] == 0)
        found, res = detect_model(data, trained["artifact"], t0=meta["t0"], previous=previous)
        model += [{**d, "chunk": meta["index"]} for d in found]
        base += [{**d, "chunk": meta["index"]} for d in detect_baseline(data, meta["t0"], analysis=res)]
        alone += detect_model(data, trained["artifact"], t0=meta["t0"])[0]
    print(json.dumps({"model": [(d["chunk"], d["time_s"], d["dm"], d["snr"], d["probability"]) for d in model],
                      "baseline_per_burst": [sorted({d["chunk"] for d in _on(base, b)}) for b in BURSTS],
                      "alone_per_burst": [len(_on(alone, b)) for b in BURSTS]}))
    # the model (the pipeline's detector): every burst once, by its owner chunk, and nothing else
    for b in BURSTS:
        assert [d["chunk"] for d in _on(model, b)] == [owner(b)], (b, model)
    assert len(model) == len(BURSTS), model
    # a burst that started in the previous chunk is reported with a negative time in its own chunk
    assert sorted(d["time_in_chunk_s"] < 0 for d in model) == [False] * 2 + [True] * 4
    # the shared front-end (baseline, S/N >= 7) finds each burst in exactly one chunk as well (it may
    # still report a bright burst twice at two DMs within that chunk: its own weakness, not the boundary's)
    assert [sorted({d["chunk"] for d in _on(base, b)}) for b in BURSTS] == [[owner(b)] for b in BURSTS]
    # searched chunk by chunk without the previous one, the bursts that started earlier are lost
    lost = [b for b in started_before if not _on(alone, b)]
    assert len(lost) >= 3, lost


def test_detector_task_and_cutout_use_the_previous_chunk(tmp_path: Path, trained: dict[str, Any],
                                                         activity: ActivityContext) -> None:
    """Through the tasks: chunk 1 scored with chunk 0 as ``previous`` reports the burst that started in
    chunk 0 (at 9.2 s), records which chunk it used, and the cut-out spans both chunks."""
    products = []
    for data, meta in quiet_stream_with_bursts(BURSTS[:1], 2, obs_id="nenu-edge"):
        path = write_chunk(tmp_path / f"c{meta['index']}.npz", data, meta)
        products.append(Product(path, type=cv.CHUNK, obs_id="nenu-edge", id=f"prd-c{meta['index']}",
                                uri=f"file://{path}", attributes={"index": meta["index"], "t0": meta["t0"]}))
    alone = json.loads(score_chunk(products[1], trained["model"]).local_path.read_text())
    det = score_chunk(products[1], trained["model"], previous=products[0])
    d = json.loads(det.local_path.read_text())
    assert alone["detections"] == [] and alone["previous"] is None
    assert d["previous"] == "prd-c0" and det.attributes["previous"] == "prd-c0"
    (hit,) = d["detections"]
    assert abs(hit["time_s"] - 9.2) <= 0.3 and hit["time_in_chunk_s"] < 0, hit
    cut = cutout(det, products[1], previous=products[0])
    assert abs(cut.attributes["dm"] - 0.6) <= 0.07 and abs(cut.attributes["time_s"] - 9.2) <= 0.3, cut.attributes
    with np.load(cut.local_path) as z:
        meta = json.loads(str(z["meta"]))
        assert meta["start_sample"] < 0  # the cut-out starts in the previous chunk
        assert z["dedispersed"].shape[0] > 60  # the whole 5.8 s sweep and its margins
