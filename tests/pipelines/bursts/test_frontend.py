"""The shared front-end (cleaning, dedispersion, S/N, candidate search) on constructed chunks: the
causes of the bright bursts both detectors used to miss (see the README, "Missed bursts")."""

from __future__ import annotations

import numpy as np
import pytest

from nenufar_bursts import conventions as cv
from nenufar_bursts import features as F
from nenufar_bursts.simulate import NOISE_SIGMA, StreamConfig, dispersed_burst, simulate_chunk, type3_burst

BURST = {"t0": 3.4, "dm": 0.12, "width_s": 0.35, "snr": 17.0}


def _quiet_chunk(seed: int = 21, **rates: float) -> np.ndarray:
    config = StreamConfig(**{"burst_rate": 0.0, "type3_rate": 0.0, "impulse_rate": 0.0, "narrowband_rfi": False,
                             **rates})
    data, _ = simulate_chunk(np.random.default_rng(seed), 0, config)
    return data


def _with_signals(type3: bool) -> np.ndarray:
    """Noise + a DM 0.12 burst at 3.4 s, optionally with a bright (ideal S/N 75) type III starting at
    3.0 s at 68 MHz, which at the burst's time is brighter than it at every DM."""
    data = _quiet_chunk()
    f, t = cv.freqs_mhz(), (np.arange(cv.N_T) + 0.5) * cv.DT_S
    a = dispersed_burst(t, f, t0=BURST["t0"], dm=BURST["dm"], width_s=BURST["width_s"], snr=BURST["snr"],
                        alpha=0.0, band=(cv.F_LO_MHZ, cv.F_HI_MHZ))
    if type3:
        a = a + type3_burst(np.random.default_rng(5), t, f, t0=3.0, f_start=68.0, snr=75.0)
    return data + (np.median(data, axis=0) * NOISE_SIGMA)[None, :] * a.astype(np.float32)


def _burst_candidates(data: np.ndarray) -> list[dict]:
    res = F.analyse(data, 5.5)
    return [c for c in res["candidates"] if abs(c["time_s"] - BURST["t0"]) <= 0.6
            and abs(c["dm"] - BURST["dm"]) <= 0.05 + 0.2 * BURST["dm"]]


def test_band_edge_channels_are_not_flagged_as_carriers() -> None:
    """The carrier test compares each channel's median with a running mean of the medians; zero-padding
    that mean at the band edge flagged the 4 lowest channels (20-22 MHz, where the dispersion lever arm
    is longest) in every chunk.  A chunk without RFI must keep every channel; real carriers still go."""
    _, report = F.clean(_quiet_chunk())
    assert report["flagged_channels"] == 0, report
    rng = np.random.default_rng(8)
    data, meta = simulate_chunk(rng, 0, StreamConfig(burst_rate=0.0, type3_rate=0.0, impulse_rate=0.0))
    z, _ = F.clean(data)
    flagged = set(np.flatnonzero(~np.any(z != 0, axis=1)).tolist())
    (rfi,) = [t for t in meta["truth"] if t["kind"] == "narrowband"]
    assert set(rfi["channels"]) <= flagged and len(flagged) <= len(rfi["channels"]) + 1, (flagged, rfi)


def test_a_burst_next_to_a_brighter_type3_is_still_a_candidate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cause of the bright low-DM bursts missed by both detectors on the held-out stream: a brighter
    solar type III within 1 s.  The first candidate search suppressed +-1 s around each peak in *every*
    DM trial, so the type III peak (DM ~0.85) removed the burst (DM 0.12); now suppression is limited to
    +-NMS_DM around the peak's DM.  Part of the burst's S/N is still lost where the two overlap in the
    dynamic spectrum (a physical confusion, not a search flaw)."""
    alone = _burst_candidates(_with_signals(type3=False))
    assert len(alone) == 1 and alone[0]["snr"] > 11, alone
    found = _burst_candidates(_with_signals(type3=True))
    assert len(found) == 1 and found[0]["snr"] >= 0.6 * alone[0]["snr"], (found, alone)
    # the old suppression (every DM trial) hides it: the cause, reproduced
    monkeypatch.setattr(F, "NMS_DM", np.inf)
    assert _burst_candidates(_with_signals(type3=True)) == []
