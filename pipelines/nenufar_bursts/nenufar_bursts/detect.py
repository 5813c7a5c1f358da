"""Score one chunk: the trained model, and the classical baseline it must beat.

Both share cleaning, dedispersion over ``conventions.dm_grid()`` and the candidate search of
``features`` (threshold ``CANDIDATE_SNR`` = 5.5 sigma).  Then

* **baseline** (classical, e.g. Heimdall/PRESTO single-pulse style): a candidate is a detection when
  ``S/N >= BASELINE_SNR`` (7) and its best DM is >= ``MIN_DM`` (0.06 pc cm^-3; lower is called
  terrestrial broadband RFI);
* **model**: a candidate is a detection when the random forest gives ``P(burst) >= threshold``, its
  DM is >= ``MIN_DM`` too (terrestrial signals are undispersed; same rule as the baseline) and its
  S/N is >= ``train.ALERT_MIN_SNR`` (7, the measured noise floor of the search; ``train.decide``).  The
  threshold is the model's own (``artifact["threshold"]``), derived at training time on a separate
  validation stream by the rule in ``train.choose_threshold``; the test streams never tune it.

Chunk boundaries: a dispersed burst sweeps for up to 8.7 s (DM 0.9, 80 -> 20 MHz) and can straddle two
chunks.  The detector is given the previous chunk (``previous``, when it directly precedes this one)
and searches the window previous + chunk, keeping only the bursts this chunk owns (those reaching
``OWNER_MHZ`` = 40 MHz inside it, ``features.owns``): a burst is scored once, from its start, by the
chunk that sees at least its 80-40 MHz part.  Without a usable previous chunk (first chunk, after a
gap) the chunk is searched alone.

Bad input never stops the stream: the task always writes a detections product whose ``status`` is
``ok``, ``flagged`` (NaNs or dropped samples masked, a time gap before the chunk, many channels
flagged) or ``rejected`` (wrong shape, unreadable, > 30 % of samples bad; no detections), with the
reasons in ``flags``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from nenufar_bursts import conventions as cv
from nenufar_bursts.features import analyse, contiguous
from nenufar_bursts.simulate import read_chunk
from nenufar_bursts.train import CANDIDATE_SNR, decide, load
from skyweave import InsufficientInput, Product, SkyweaveError, context, task
from skyweave.authoring.task import Task
from skyweave.model.specs import TaskSpec

BASELINE_SNR = 7.0
MAX_BAD_FRACTION = 0.3
GAP_TOLERANCE_S = 0.5 * cv.DT_S

_MODELS: dict[str, dict[str, Any]] = {}


def _model(path: Path, checksum: str | None) -> dict[str, Any]:
    key = checksum or str(path)
    if key not in _MODELS:
        _MODELS[key] = load(path)
    return _MODELS[key]


def check_chunk(
    data: np.ndarray, meta: dict[str, Any], expected_t0: float | None = None
) -> tuple[str, list[str]]:
    """Status (``ok``/``flagged``/``rejected``) and reasons for a chunk's data and metadata."""
    flags: list[str] = []
    if data.ndim != 2 or data.shape != (cv.N_T, cv.N_CHAN):
        return "rejected", [f"shape {tuple(data.shape)} is not (N_T, N_CHAN) = {(cv.N_T, cv.N_CHAN)}"]
    n_nan = int(np.count_nonzero(~np.isfinite(data)))
    n_zero = int(np.count_nonzero(data == 0.0))
    bad = (n_nan + n_zero) / data.size
    if bad > MAX_BAD_FRACTION:
        return "rejected", [f"{bad:.0%} of samples are NaN or dropped (> {MAX_BAD_FRACTION:.0%})"]
    if n_nan:
        flags.append(f"{n_nan} NaN samples masked")
    if n_zero:
        flags.append(f"{n_zero} dropped (zero) samples masked")
    if expected_t0 is not None and abs(float(meta.get("t0", expected_t0)) - expected_t0) > GAP_TOLERANCE_S:
        flags.append(
            f"gap: chunk starts at t0={meta.get('t0')} s, expected {expected_t0} s "
            f"({float(meta['t0']) - expected_t0:+.1f} s of data missing before it)"
        )
    return ("flagged" if flags else "ok"), flags


def _as_detection(c: dict[str, Any], t0: float, p: float | None) -> dict[str, Any]:
    return {
        "time_s": round(t0 + c["time_s"], 3),
        "time_in_chunk_s": c["time_s"],
        "time_in_window_s": c["time_in_window_s"],
        "dm": c["dm"],
        "width_s": round(c["width_s"], 3),
        "snr": round(float(c["snr"]), 2),
        "probability": None if p is None else round(p, 4),
    }


def detect_model(
    data: np.ndarray,
    artifact: dict[str, Any],
    threshold: float | None = None,
    t0: float = 0.0,
    previous: np.ndarray | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Model detections of one chunk (times from the stream start when ``t0`` is given) and the analysis.

    ``threshold`` None: the model's own (validation-derived) threshold.  ``previous``: the preceding
    chunk's data if contiguous (see the module docstring, "Chunk boundaries").
    """
    res = analyse(data, CANDIDATE_SNR, previous)
    if not res["candidates"]:
        return [], res
    thr = float(artifact["threshold"]) if threshold is None else threshold
    prob = artifact["estimator"].predict_proba(res["X"])[:, 1]
    cands = res["candidates"]
    return [_as_detection(cands[i], t0, float(prob[i])) for i in decide(cands, prob, thr)], res


def detect_baseline(
    data: np.ndarray | None,
    t0: float = 0.0,
    snr: float = BASELINE_SNR,
    analysis: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Classical detections: dedispersed S/N >= ``snr`` at DM >= ``MIN_DM`` (see the docstring)."""
    if analysis is None and data is None:
        raise ValueError("detect_baseline needs the data or its analysis")
    res = analysis if analysis is not None else analyse(np.asarray(data), CANDIDATE_SNR)
    return [_as_detection(c, t0, None) for c in res["candidates"] if c["snr"] >= snr and c["dm"] >= cv.MIN_DM]


def _task_version() -> str | None:
    try:
        return context().task.version
    except SkyweaveError:
        return None


def _previous_data(previous: Product | None, meta: dict[str, Any]) -> tuple[np.ndarray | None, str | None]:
    """The previous chunk's data if it can extend this chunk's window, else None and why not."""
    if previous is None:
        return None, None
    try:
        prev, _, prev_meta = read_chunk(previous.local_path)
    except Exception as exc:  # never fatal: the chunk is then searched alone
        return None, f"previous chunk unreadable ({type(exc).__name__})"
    if prev.shape != (cv.N_T, cv.N_CHAN):
        return None, f"previous chunk has shape {prev.shape}"
    if not contiguous(prev_meta, meta):
        return None, f"previous chunk (t0={prev_meta.get('t0')}) does not precede t0={meta.get('t0')}"
    return prev, None


@task(name=cv.DETECTOR_TASK, version="rf5+s1n400", cache=False)
def score_chunk(
    chunk: Product,
    model: Product,
    threshold: float = -1.0,
    expected_t0: float = -1.0,
    previous: Product | None = None,
) -> Product:
    """Score one chunk with the model whose version is this task's version; write the detections.

    ``threshold`` < 0 (the default): the model's own validation-derived threshold.  ``previous``: the
    preceding chunk, searched together with this one (module docstring, "Chunk boundaries").

    If the ``model`` passed in has another version (the detector was re-registered with a new model
    while this chunk waited), the task asks the controller for the right one (``InsufficientInput``
    matching ``version``), so the model used always equals the task version in the provenance.
    """
    version = _task_version()
    if version and model.version and model.version != version:
        raise InsufficientInput(
            "model",
            cv.MODEL,
            match={"version": version},
            reason=f"detector {version} got model {model.version}",
        )
    try:
        data, _, meta = read_chunk(chunk.local_path)
    except Exception as exc:  # unreadable file: reported, never fatal for the stream
        data, meta = (
            np.zeros((0, 0)),
            {
                "obs_id": chunk.obs_id,
                "index": chunk.attributes.get("index"),
                "t0": chunk.attributes.get("t0", 0.0),
            },
        )
        status, flags = "rejected", [f"unreadable chunk: {type(exc).__name__}: {exc}"]
    else:
        status, flags = check_chunk(data, meta, expected_t0 if expected_t0 >= 0 else None)
    detections: list[dict[str, Any]] = []
    baseline: list[dict[str, Any]] = []
    report: dict[str, Any] = {}
    n_cand = 0
    used_threshold: float | None = None
    prev_data: np.ndarray | None = None
    if status != "rejected":
        prev_data, why_not = _previous_data(previous, meta)
        if why_not:
            flags.append(f"searched alone: {why_not}")
        artifact = _model(model.local_path, model.checksum)
        used_threshold = float(artifact["threshold"]) if threshold < 0 else threshold
        detections, res = detect_model(data, artifact, used_threshold, float(meta["t0"]), prev_data)
        baseline = detect_baseline(data, float(meta["t0"]), analysis=res)
        report, n_cand = res["report"], len(res["candidates"])
        if report["flagged_channels"] > cv.N_CHAN // 4:
            status = "flagged"
            flags.append(f"{report['flagged_channels']} channels flagged as RFI")
    model_version = model.version or version or "unknown"
    out = {
        "chunk": chunk.id,
        "obs_id": meta.get("obs_id"),
        "index": meta.get("index"),
        "t0": meta.get("t0"),
        "model_version": model_version,
        "task_version": version,
        "status": status,
        "flags": flags,
        "candidates": n_cand,
        "threshold": used_threshold,
        "previous": previous.id if prev_data is not None and previous is not None else None,
        "clean": report,
        "detections": detections,
        "baseline": baseline,
    }
    path = context().output(f"{meta.get('obs_id', 'chunk')}_{int(meta.get('index') or 0):05d}_det.json")
    path.write_text(json.dumps(out, indent=1))
    best = max(detections, key=lambda d: d["snr"]) if detections else None
    if status != "ok":
        context().log.warning("chunk %s %s: %s", meta.get("index"), status, "; ".join(flags))
    return Product(
        path,
        type=cv.DETECTIONS,
        obs_id=meta.get("obs_id"),
        detector=cv.detector_id(meta),
        version=model_version,
        attributes={
            "n_detections": len(detections),
            "status": status,
            "chunk": chunk.id,
            "previous": previous.id if prev_data is not None and previous is not None else None,
            "index": meta.get("index"),
            "best": best,
            "model_version": model_version,
            "arrival": chunk.attributes.get("arrival"),
        },
    )


def detector_task(version: str) -> Task:
    """``score_chunk`` declared with another version (the version of a retrained model)."""
    spec = TaskSpec(
        **{
            **{f: getattr(score_chunk.spec, f) for f in score_chunk.spec.__struct_fields__},
            "version": version,
        }
    )
    return Task(spec, score_chunk.fn)
