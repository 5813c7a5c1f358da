"""Train the burst classifier on simulated chunks and store it as a versioned artifact.

Algorithm: candidates (S/N >= ``CANDIDATE_SNR`` on the dedispersed S/N map, see ``features``) of
``n_chunks`` simulated chunks are labelled 1 when they match an injected dispersed burst
(``features.match``) and 0 otherwise (type III bursts, RFI residue, noise, duplicate peaks of one
burst at wrong DMs).  A random forest (scikit-learn, ``N_TREES`` trees, depth <= 10, balanced class
weights) learns ``P(burst | 12 features)``; 25 % of the chunks are held out to measure precision and
recall at ``P >= 0.5`` (recorded on the card, not used to tune anything).

Artifact: ``model.joblib`` (a dict with the estimator, the feature names and the version) and
``card.json`` (version, training seed, chunk count, scikit-learn version, class counts, held-out
metrics, feature importances).  The version is ``f"{TRAINER_VERSION}+s{seed}n{n_chunks}"``; it becomes
the detector task's version (``detect.score_chunk``), so every detection records which model made it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.ensemble import RandomForestClassifier

from nenufar_bursts import conventions as cv
from nenufar_bursts.features import FEATURE_NAMES, analyse, match
from nenufar_bursts.simulate import StreamConfig, chunk_arrays
from skyweave import Product, context, task, workflow

TRAINER_VERSION = "rf1"
CANDIDATE_SNR = 5.5
N_TREES = 150


def model_version(seed: int, n_chunks: int) -> str:
    """The version string of a model trained with ``seed`` on ``n_chunks`` chunks."""
    return f"{TRAINER_VERSION}+s{seed}n{n_chunks}"


def dataset(
    seed: int, n_chunks: int, config: StreamConfig | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features ``X``, labels ``y`` and the chunk index of each candidate, from a simulated stream."""
    config = config or StreamConfig(burst_rate=0.8, type3_rate=0.5, impulse_rate=0.8)
    xs, ys, idx = [], [], []
    for data, meta in chunk_arrays(seed, n_chunks, config):
        res = analyse(data, CANDIDATE_SNR)
        if not res["candidates"]:
            continue
        _, _, _, flags = match(res["candidates"], meta["truth"], meta["t0"])
        xs.append(res["X"])
        ys.extend(int(f) for f in flags)
        idx.extend([meta["index"]] * len(flags))
    return np.vstack(xs), np.array(ys), np.array(idx)


def fit(seed: int, n_chunks: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train; return ``(artifact, card)`` (see the module docstring)."""
    t_start = time.perf_counter()
    x, y, idx = dataset(seed, n_chunks)
    held = idx >= int(0.75 * n_chunks)
    clf = RandomForestClassifier(
        n_estimators=N_TREES, max_depth=10, class_weight="balanced", random_state=seed, n_jobs=1
    )
    clf.fit(x[~held], y[~held])
    pred = clf.predict_proba(x[held])[:, 1] >= 0.5 if held.any() else np.zeros(0, bool)
    tp = int(np.sum(pred & (y[held] == 1)))
    fp = int(np.sum(pred & (y[held] == 0)))
    fn = int(np.sum(~pred & (y[held] == 1)))
    clf.fit(x, y)  # the shipped model uses every chunk
    version = model_version(seed, n_chunks)
    card = {
        "version": version,
        "trainer": TRAINER_VERSION,
        "training_seed": seed,
        "n_chunks": n_chunks,
        "algorithm": f"RandomForestClassifier(n_estimators={N_TREES}, max_depth=10, class_weight=balanced)",
        "sklearn": sklearn.__version__,
        "features": list(FEATURE_NAMES),
        "candidate_snr": CANDIDATE_SNR,
        "n_candidates": int(y.size),
        "n_positive": int(y.sum()),
        "heldout": {
            "precision": tp / max(tp + fp, 1),
            "recall": tp / max(tp + fn, 1),
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "note": "candidate-level, last 25 % of chunks, model fitted on the rest",
        },
        "importances": dict(
            zip(FEATURE_NAMES, (round(float(v), 4) for v in clf.feature_importances_), strict=True)
        ),
        "train_seconds": round(time.perf_counter() - t_start, 2),
        "chunk": {"n_chan": cv.N_CHAN, "dt_s": cv.DT_S, "f_lo_mhz": cv.F_LO_MHZ, "f_hi_mhz": cv.F_HI_MHZ},
    }
    return {"estimator": clf, "features": list(FEATURE_NAMES), "version": version}, card


def save(artifact: dict[str, Any], card: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write ``model.joblib`` and ``card.json`` under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path, card_path = (
        out_dir / f"model-{card['version']}.joblib",
        out_dir / f"card-{card['version']}.json",
    )
    joblib.dump(artifact, model_path, compress=3)
    card_path.write_text(json.dumps(card, indent=2))
    return model_path, card_path


def load(path: str | Path) -> dict[str, Any]:
    """The artifact dict written by ``save`` (``estimator``, ``features``, ``version``)."""
    artifact: dict[str, Any] = joblib.load(path)
    if artifact.get("features") != list(FEATURE_NAMES):
        raise ValueError(
            f"model {path} was trained on features {artifact.get('features')}, "
            f"this code computes {list(FEATURE_NAMES)}"
        )
    return artifact


@task(version="1.0", cache=False)
def train_model(seed: int = 1, n_chunks: int = 400) -> dict[str, Product]:
    """Train the classifier and register it: ``{"model": nenufar.bursts.model, "card": ...model_card}``.

    Both products carry ``version`` = the model version, which the detector task version must equal.
    """
    artifact, card = fit(seed, n_chunks)
    workdir = context().output("model").parent
    model_path, card_path = save(artifact, card, workdir)
    attrs = {
        "training_seed": seed,
        "n_chunks": n_chunks,
        "heldout": card["heldout"],
        "sklearn": card["sklearn"],
    }
    return {
        "model": Product(model_path, type=cv.MODEL, version=card["version"], attributes=attrs),
        "card": Product(card_path, type=cv.MODEL_CARD, version=card["version"], attributes=attrs),
    }


@workflow
def train(seed: int = 1, n_chunks: int = 400) -> Any:
    """Train and register a model (a run of its own, so the model has provenance)."""
    return train_model(seed=seed, n_chunks=n_chunks)
