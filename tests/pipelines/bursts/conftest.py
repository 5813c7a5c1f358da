"""Fixtures for the burst pipeline tests: a model trained once per session and an activity context
for calling task functions directly (outside a workflow, ``skyweave.context()`` needs one)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skyweave import ActivityContext, Product
from skyweave.testing import activity_context

pytest.importorskip("nenufar_bursts", reason="install the pipeline: pip install -e pipelines/nenufar_bursts")

from nenufar_bursts import conventions as cv
from nenufar_bursts import train

TRAIN_SEED = 1
TRAIN_CHUNKS = 300


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``{"artifact", "card", "model": Product}`` trained on 300 simulated chunks (seed 1)."""
    artifact, card = train.fit(TRAIN_SEED, TRAIN_CHUNKS)
    model_path, _card = train.save(artifact, card, tmp_path_factory.mktemp("model"))
    return {"artifact": artifact, "card": card,
            "model": Product(model_path, type=cv.MODEL, version=card["version"], id="prd-model", uri="file:x")}


@pytest.fixture
def activity(tmp_path: Path, trained: dict[str, Any]) -> Iterator[ActivityContext]:
    """An activity context (task version = the trained model's version); outputs go to ``tmp_path/work``."""
    with activity_context(tmp_path / "work", task=cv.DETECTOR_TASK,
                          version=trained["card"]["version"]) as ctx:
        yield ctx


def quiet_stream_with_bursts(bursts: list[dict[str, float]], n_chunks: int, seed: int = 9,
                             obs_id: str = "nenu-sim") -> list[tuple[Any, dict[str, Any]]]:
    """``n_chunks`` contiguous chunks of noise (no RFI, no type III) with dispersed ``bursts``
    (``time_s`` at 80 MHz from the stream start, ``dm``, ``snr``; width 0.3 s, flat spectrum) injected on
    the continuous time line, so a burst may straddle chunks; each burst's truth entry goes to the chunk
    that owns it (``owner_chunk``)."""
    import numpy as np

    from nenufar_bursts.simulate import NOISE_SIGMA, StreamConfig, chunk_arrays, dispersed_burst

    quiet = StreamConfig(burst_rate=0.0, type3_rate=0.0, impulse_rate=0.0, narrowband_rfi=False)
    chunks = chunk_arrays(seed, n_chunks, quiet)
    f, t = cv.freqs_mhz(), (np.arange(n_chunks * cv.N_T) + 0.5) * cv.DT_S
    signal = sum(dispersed_burst(t, f, t0=b["time_s"], dm=b["dm"], width_s=0.3, snr=b["snr"], alpha=0.0,
                                 band=(cv.F_LO_MHZ, cv.F_HI_MHZ)) for b in bursts)
    out = []
    for k, (noise, meta0) in enumerate(chunks):
        part = np.asarray(signal)[k * cv.N_T : (k + 1) * cv.N_T]
        data = noise + (np.median(noise, axis=0) * NOISE_SIGMA)[None, :] * part.astype(np.float32)
        owned = [b for b in bursts if owner_chunk(b["time_s"], b["dm"]) == k]
        meta = {**meta0, "obs_id": obs_id,
                "truth": [{"kind": "burst", "time_s": b["time_s"], "dm": b["dm"], "snr": b["snr"]} for b in owned]}
        out.append((data, meta))
    return out


def owner_chunk(time_s: float, dm: float) -> int:
    """The chunk a burst belongs to (``conventions``, "Chunks"): where it reaches 40 MHz, hand-off
    ``OWNER_GUARD_S`` before each chunk's end."""
    return int((time_s + float(cv.delay_s(dm, cv.OWNER_MHZ)) + cv.OWNER_GUARD_S) // cv.CHUNK_S)
