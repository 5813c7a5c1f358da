"""Science checks: the trained model against the classical baseline on held-out streams, bad input,
and the follow-up products (cut-out, PNG, VOEvent 2.0)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import voeventparse as vp

from nenufar_bursts import conventions as cv
from nenufar_bursts import train
from nenufar_bursts.detect import detect_baseline, detect_model, score_chunk
from nenufar_bursts.features import analyse, match, with_previous
from nenufar_bursts.followup import cutout, make_voevent, plot_burst
from nenufar_bursts.simulate import StreamConfig, chunk_arrays, simulate_chunk, write_chunk
from skyweave import ActivityContext, Product

from .conftest import TRAIN_SEED


def _score(chunks: list[tuple[np.ndarray, dict[str, Any]]], artifact: dict[str, Any],
           budget_snr: float | None) -> dict[str, Any]:
    counts = {"model": [0, 0, 0], "baseline": [0, 0, 0], "baseline_at_budget": [0, 0, 0]}
    for data, meta, previous in with_previous(chunks):
        found, res = detect_model(data, artifact, t0=meta["t0"], previous=previous)
        base = detect_baseline(data, meta["t0"], analysis=res)
        at_budget = [] if budget_snr is None else detect_baseline(data, meta["t0"], budget_snr, analysis=res)
        for name, dets in (("model", found), ("baseline", base), ("baseline_at_budget", at_budget)):
            tp, fp, fn, _ = match(dets, meta["truth"])
            counts[name] = [c + d for c, d in zip(counts[name], (tp, fp, fn), strict=True)]
    out = {}
    for name, (tp, fp, fn) in counts.items():
        p, r = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
        out[name] = {"tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r, "f1": 2 * p * r / max(p + r, 1e-9)}
    return out


HELD_OUT_SEED = 4242
RFI_SEED = 777


def test_threshold_is_derived_on_its_own_validation_stream(trained: dict[str, Any]) -> None:
    """The model's threshold comes from the rule in ``train.choose_threshold`` applied to a validation
    stream whose seed is none of the training, held-out and RFI-only seeds: the tests below are then
    independent checks of that threshold."""
    thr = trained["card"]["threshold"]
    assert thr["validation_seed"] == train.VALIDATION_SEED
    assert train.VALIDATION_SEED not in {TRAIN_SEED, HELD_OUT_SEED, RFI_SEED}
    assert trained["artifact"]["threshold"] == thr["value"] and thr["rule_met"], thr["at_threshold"]
    # the rule: the lowest threshold on the grid within the false-alarm budget
    budget = train.MAX_FALSE_ALARMS_PER_HOUR
    table = {r["threshold"]: r for r in thr["table"]}
    assert table[thr["value"]]["false_alarms_per_hour"] <= budget
    assert all(r["false_alarms_per_hour"] > budget for t, r in table.items() if t < thr["value"])
    assert table[thr["value"]]["fp"] == round(table[thr["value"]]["false_alarms_per_hour"] * thr["validation_hours"])
    with pytest.raises(ValueError, match="validation seed"):
        train.fit(train.VALIDATION_SEED, 10)


def _baseline_snr_at_budget() -> float | None:
    """The baseline's S/N threshold by the model's own rule: the lowest S/N (7..40, step 0.5) with at most
    ``MAX_FALSE_ALARMS_PER_HOUR`` false alarms on the same validation stream; None if none is low enough."""
    stream = chunk_arrays(train.VALIDATION_SEED, train.VALIDATION_CHUNKS, train.VALIDATION_CONFIG)
    rows = [(analyse(data, train.CANDIDATE_SNR, previous), meta) for data, meta, previous in with_previous(stream)]
    hours = train.VALIDATION_CHUNKS * cv.CHUNK_S / 3600.0
    for snr in np.arange(7.0, 40.01, 0.5):
        fp = sum(match(detect_baseline(data=None, t0=m["t0"], snr=float(snr), analysis=r), m["truth"])[1]
                 for r, m in rows)
        if fp / hours <= train.MAX_FALSE_ALARMS_PER_HOUR:
            return float(snr)
    return None


def test_model_beats_the_classical_baseline_on_a_held_out_stream(trained: dict[str, Any]) -> None:
    """Held-out seed 4242 (training used seed 1): 150 chunks, ~63 bursts, type III and RFI, scored at
    the model's validation-derived threshold (see the test above).

    The classical baseline (S/N >= 7 at DM >= 0.06) is fooled by solar type III bursts (they drift like
    a DM ~0.3-0.8 burst) and by duplicate peaks of bright bursts: the model must have a precision
    higher by > 0.1 and a higher F1.  Recall is compared at the same false-alarm budget: the S/N-7
    baseline buys its recall with hundreds of false alerts per hour, so the baseline's S/N threshold is
    also derived by the model's rule on the validation stream, and the model's recall must beat that
    baseline's (type III bursts reach S/N > 40: at the budget the baseline then detects nothing).
    """
    chunks = chunk_arrays(HELD_OUT_SEED, 150, StreamConfig(burst_rate=0.5, type3_rate=0.4, impulse_rate=0.6))
    n_bursts = sum(1 for _, m in chunks for t in m["truth"] if t["kind"] == "burst")
    budget_snr = _baseline_snr_at_budget()
    scores = _score(chunks, trained["artifact"], budget_snr)
    hours = len(chunks) * cv.CHUNK_S / 3600.0
    print(json.dumps({"bursts": n_bursts, "threshold": trained["artifact"]["threshold"],
                      "baseline_snr_at_budget": budget_snr,
                      "false_alarms_per_hour": {k: round(v["fp"] / hours, 1) for k, v in scores.items()},
                      **scores}, indent=1))
    model, base, at_budget = scores["model"], scores["baseline"], scores["baseline_at_budget"]
    assert n_bursts > 50
    assert model["precision"] > base["precision"] + 0.1, scores
    assert model["f1"] > base["f1"], scores
    assert model["recall"] > at_budget["recall"], scores
    assert model["fp"] / hours <= 2 * train.MAX_FALSE_ALARMS_PER_HOUR, scores  # the budget holds out of sample
    # absolute floors: injected ideal S/N is 6..30 and the search loses ~30 % of it (boxcar, DM step,
    # masked impulses), so bursts below ideal S/N ~8 are mostly missed by both detectors
    assert model["precision"] >= 0.8 and model["recall"] >= 0.55, scores


def test_no_alert_on_an_rfi_only_stream(trained: dict[str, Any]) -> None:
    """Noise, narrow-band persistent RFI and strong broadband impulses only: no model detection at the
    model's own threshold (derived on the validation stream, never on this one)."""
    chunks = chunk_arrays(RFI_SEED, 60, StreamConfig(burst_rate=0.0, type3_rate=0.0, impulse_rate=2.0))
    found = [d for data, meta, previous in with_previous(chunks)
             for d in detect_model(data, trained["artifact"], t0=meta["t0"], previous=previous)[0]]
    assert found == []


def _chunk_product(tmp_path: Path, index: int, fault: str | None, seed: int = 5) -> Product:
    rng = np.random.default_rng(seed)
    data, meta = simulate_chunk(rng, index, StreamConfig(burst_rate=1.0, faults={index: fault} if fault else {}),
                                "nenu-bad")
    path = write_chunk(tmp_path / f"c{index}.npz", data, meta)
    return Product(path, type=cv.CHUNK, obs_id="nenu-bad", id=f"prd-c{index}", uri=f"file://{path}",
                   attributes={"index": index, "t0": meta["t0"], "arrival": 0.0})


def _detections(product: Product) -> dict[str, Any]:
    return dict(json.loads(product.local_path.read_text()))


def test_bad_chunks_are_flagged_or_rejected_never_fatal(tmp_path: Path, trained: dict[str, Any],
                                                         activity: ActivityContext) -> None:
    model = trained["model"]
    ok = _detections(score_chunk(_chunk_product(tmp_path, 0, None), model, expected_t0=0.0))
    assert ok["status"] == "ok" and ok["model_version"] == trained["card"]["version"]
    shape = _detections(score_chunk(_chunk_product(tmp_path, 1, "shape"), model))
    assert shape["status"] == "rejected" and "shape" in shape["flags"][0] and shape["detections"] == []
    nan = _detections(score_chunk(_chunk_product(tmp_path, 2, "nan"), model))
    assert nan["status"] == "flagged" and "NaN" in nan["flags"][0]
    drop = _detections(score_chunk(_chunk_product(tmp_path, 3, "dropout"), model))
    assert drop["status"] == "flagged" and "dropped" in drop["flags"][0]
    gap = _detections(score_chunk(_chunk_product(tmp_path, 4, "gap"), model, expected_t0=40.0))
    assert gap["status"] == "flagged" and gap["flags"][0].startswith("gap")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a chunk")
    bad = _detections(score_chunk(Product(junk, type=cv.CHUNK, id="prd-junk", uri="file:x",
                                          attributes={"index": 9, "t0": 90.0}), model))
    assert bad["status"] == "rejected" and "unreadable" in bad["flags"][0]


def test_followup_makes_a_dedispersed_cutout_a_png_and_a_valid_voevent(
        tmp_path: Path, trained: dict[str, Any], activity: ActivityContext) -> None:
    rng = np.random.default_rng(3)
    data, meta = simulate_chunk(rng, 0, StreamConfig(burst_rate=0.0, type3_rate=0.0, impulse_rate=0.0), "nenu-fu")
    from nenufar_bursts.simulate import dispersed_burst

    f, t = cv.freqs_mhz(), (np.arange(cv.N_T) + 0.5) * cv.DT_S
    bp = np.median(data, axis=0)
    data = data + bp[None, :] * 0.05 * dispersed_burst(t, f, t0=1.5, dm=0.42, width_s=0.3, snr=25.0, alpha=0.0,
                                                       band=(20.0, 80.0)).astype(np.float32)
    meta["truth"] = [{"kind": "burst", "time_s": 1.5, "dm": 0.42, "snr": 25.0}]
    path = write_chunk(tmp_path / "fu.npz", data, meta)
    chunk = Product(path, type=cv.CHUNK, obs_id="nenu-fu", id="prd-fu", uri=f"file://{path}",
                    attributes={"index": 0, "t0": 0.0, "arrival": 0.0})
    det = score_chunk(chunk, trained["model"])
    d = _detections(det)
    assert d["detections"], d
    cut = cutout(det, chunk)
    # DM resolution at 0.1 s sampling: a 0.3 s pulse mis-dedispersed by dDM is smeared by 9.7 s x dDM at
    # 20 MHz, so the S/N-vs-DM peak is ~0.05 wide; the refined DM is held to 0.07
    assert abs(cut.attributes["dm"] - 0.42) <= 0.07 and abs(cut.attributes["time_s"] - 1.5) <= 0.4
    with np.load(cut.local_path) as z:
        ded = z["dedispersed"]
    prof = ded.sum(axis=1)
    assert prof.max() > 5 * np.std(np.sort(prof)[: prof.size // 2] - np.median(prof)) + np.median(prof)
    png = plot_burst(cut)
    assert png.local_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    alert = make_voevent(cut, png)
    with alert.local_path.open("rb") as fh:
        v = vp.load(fh)
    assert vp.valid_as_v2_0(v)
    params = vp.get_grouped_params(v)["burst"]
    assert params["model_version"]["value"] == trained["card"]["version"]
    assert abs(float(params["dm"]["value"]) - 0.42) <= 0.07
