"""Conventions shared by every stage of the NenuFAR-like burst pipeline (the "interface control document").

Nothing here computes anything heavy: names, units, layouts and the two physical laws every stage uses.

Instrument (what is simulated, and what the real one does)
    NenuFAR's beamformer feeds the UnDySPuTeD receiver with "beamlets": 195.3125 kHz sub-bands
    (195312.5 complex X/Y pairs per second each).  In its dynamic-spectrum (TF, "DynSpec") mode each
    sub-band is split into ``fftlen`` = 16..2048 channels (12..0.1 kHz) and ``nfft2int`` = 4..1024
    spectra are integrated, so the time resolution is ``fftlen x nfft2int / 195312.5 s`` = 0.3..83.9 ms
    (nenupy documentation, "UnDySPuTeD Time-Frequency Data", docs/source/io/tf_reading.rst,
    https://nenupy.readthedocs.io/en/latest/io/tf_reading.html; the backend itself: Bondonneau et al.
    2021, A&A 652, A34, "Pulsars with NenuFAR: backend and pipelines").  Each ``*.spectra`` file is one
    receiver lane; one lane carries 192 beamlets (37.5 MHz).
    The pipeline works on Stokes-I spectra *downsampled* to ``N_CHAN`` = 128 channels over
    ``F_LO_MHZ``..``F_HI_MHZ`` = 20-80 MHz (468.75 kHz, 2.4 beamlets) and ``DT_S`` = 0.1 s: at these
    frequencies a dispersed burst sweeps for seconds, so 0.1 s loses nothing for bursts wider than
    ~0.1 s (the intra-channel dispersion smearing at 20 MHz and DM 0.9 is 8.3e6 * 0.9 * 0.469 / 20^3
    ms = 0.44 s at the bottom of the band anyway).

Reference data rate of one beam (for ``bench/bursts_bench.py``) -- cited, not assumed
    The nenupy documentation above shows ``Spectra.info()`` of a real NenuFAR DynSpec file (one lane,
    beam 0): ``dt: 20.97152 ms``, ``df: 3.0517578125 kHz``, ``frequency_min: 19.921875 MHz``,
    ``frequency_max: 57.421875 MHz`` (nenupy git ea46d661, docs/source/io/tf_reading.rst lines 67-75).
    Derivation: 37.5 MHz / 3.0517578125 kHz = 12288 channels (192 beamlets x fftlen 64) and
    1 / 20.97152 ms = 47.684 spectra/s (nfft2int = 20.97152 ms x 195312.5 / 64 = 64), so
    ``BEAM_SAMPLES_PER_S`` = 12288 x 47.684 = 585,937.5 time-frequency samples/s.  The file stores, per
    sample, two ``float32`` pairs (``fft0``, ``fft1``: XX*, YY*, Re and Im XY*; nenupy/io/tf.py,
    ``Spectra._lazy_load_data``), i.e. 16 bytes: ``BEAM_BYTES_PER_S`` = 9.375e6 B/s (Stokes I alone as
    float32: 2.34e6 B/s).  Everything in this figure is read from that documented file; what is *not*
    cited is that this set-up is "the" beam: other (fftlen, nfft2int) choices and beams spread over
    more lanes change the rate (``BEAM_SAMPLES_PER_S_20_80`` scales it to this pipeline's 60 MHz band,
    an extrapolation at the same resolution).

Dispersion
    ``delay(DM, f) = K_DM * DM * (f^-2 - F_REF^-2)`` s with f in MHz, DM in pc cm^-3,
    ``K_DM`` = 4148.808 s MHz^2 pc^-1 cm^3; times of bursts are quoted at ``F_REF_MHZ`` = 80 MHz
    (the top of the band).  DM 1 sweeps 9.7 s from 80 to 20 MHz.

Solar type III bursts (the natural confuser)
    Drift rate ``df/dt = -0.01 f^1.84`` MHz/s (Alvarez & Haddock 1973), so a type III starting at f_s
    is at ``f(t) = (f_s^-0.84 + 0.0084 t)^(-1/0.84)``: 80 -> 20 MHz in ~6.6 s, like a DM ~0.7 burst,
    but with the wrong curvature, an exponential decay that lengthens toward low frequency and
    patchy spectra.

Chunks (``nenufar.bursts.chunk``): ``.npz`` files with
    ``data``: float32 ``(N_T, N_CHAN)`` = time x frequency, power in arbitrary linear units
    (Stokes I); ``freqs_mhz``: float64 ``(N_CHAN,)`` channel centres, ascending;
    ``meta``: a JSON string with ``obs_id``, ``index`` (chunk number), ``t0`` (s since the start
    of the stream, of the first sample), ``dt`` (s), ``beam``, ``format`` (``CHUNK_FORMAT``) and
    ``truth`` (list of injected events, see ``simulate``).
    Chunks last ``CHUNK_S`` = 10 s and follow each other without overlap.  A dispersed burst sweeps for
    up to 8.7 s (DM 0.9) and may straddle two chunks; it **belongs** to the chunk in which it reaches
    ``OWNER_MHZ`` = 40 MHz, with the hand-off ``OWNER_GUARD_S`` = 0.5 s before each chunk's end (chunk
    k owns 40 MHz times in ``[t0 - 0.5 s, t0 + 9.5 s)``; its truth entry is there, and that chunk's
    detector reports it).  The
    detector searches each chunk together with the previous one, so an owned burst is seen at least
    from 80 down to 40 MHz (2/3 of the channels) and, having started at most 1.9 s x DM before the
    chunk, whole at its start.  40 MHz rather than the bottom of the band: the arrival time there moves
    by only 1.9 s per unit of DM error (9.7 s at 20 MHz), so two windows that see a burst cut differently
    (and fit slightly different DMs) still agree on which chunk it belongs to.  The guard: a window
    that sees a burst cut by its end fits a lower DM, hence an earlier 40 MHz time (by ~0.2-0.3 s for
    the cuts that matter), so the hand-off is moved 0.5 s earlier, toward the window that sees it uncut.

Detections (``nenufar.bursts.detections``): JSON ``{"chunk": ..., "previous": chunk id or null (the
    preceding chunk searched with this one), "obs_id", "index", "t0", "model_version", "threshold",
    "flags": [...], "status": "ok"|"flagged"|"rejected", "detections": [{"time_s", "time_in_chunk_s"
    (negative: the burst started in the previous chunk), "dm", "width_s", "snr", "probability"}, ...],
    "baseline": [...], "candidates": n}``.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

# -- product types ---------------------------------------------------------------------------------
CHUNK: Final = "nenufar.bursts.chunk"
MODEL: Final = "nenufar.bursts.model"
MODEL_CARD: Final = "nenufar.bursts.model_card"
DETECTIONS: Final = "nenufar.bursts.detections"
CUTOUT: Final = "nenufar.bursts.cutout"
PLOT: Final = "nenufar.bursts.plot"
VOEVENT: Final = "nenufar.bursts.voevent"

CHUNK_FORMAT: Final = "nenufar-bursts-chunk/1"
DETECTOR_TASK: Final = "score_chunk"
"""The detector task's name; its version is the model version."""

# -- instrument -------------------------------------------------------------------------------------
F_LO_MHZ: Final = 20.0
F_HI_MHZ: Final = 80.0
F_REF_MHZ: Final = F_HI_MHZ
OWNER_MHZ: Final = 40.0
"""A burst belongs to the chunk in which it reaches this frequency (see "Chunks" above)."""
OWNER_GUARD_S: Final = 0.5
"""... counted from ``OWNER_GUARD_S`` before the chunk's start to as long before its end."""
N_CHAN: Final = 128
DT_S: Final = 0.1
CHUNK_S: Final = 10.0
N_T: Final = round(CHUNK_S / DT_S)
BEAMLET_KHZ: Final = 195.3125
BEAM_DT_S: Final = 20.97152e-3
BEAM_DF_KHZ: Final = 3.0517578125
BEAM_BAND_MHZ: Final = (19.921875, 57.421875)
"""The cited DynSpec file (nenupy docs, tf_reading.rst): time and frequency resolution, band of one lane."""
BEAM_CHANNELS: Final = round((BEAM_BAND_MHZ[1] - BEAM_BAND_MHZ[0]) * 1e3 / BEAM_DF_KHZ)
BEAM_SAMPLES_PER_S: Final = BEAM_CHANNELS / BEAM_DT_S
"""Time-frequency samples per second of that beam: 12288 channels / 20.97152 ms = 585,937.5."""
BEAM_BYTES_PER_S: Final = BEAM_SAMPLES_PER_S * 4 * 4
"""Bytes per second in the ``.spectra`` file: 4 float32 (XX*, YY*, Re XY*, Im XY*) per sample."""
BEAM_SAMPLES_PER_S_20_80: Final = (
    BEAM_SAMPLES_PER_S * (F_HI_MHZ - F_LO_MHZ) / (BEAM_BAND_MHZ[1] - BEAM_BAND_MHZ[0])
)
"""The same resolution over this pipeline's 20-80 MHz (1.6 lanes): an extrapolation, not a cited figure."""

# -- dispersion -------------------------------------------------------------------------------------
K_DM: Final = 4148.808
"""Dispersion constant, s MHz^2 pc^-1 cm^3."""
DM_MAX: Final = 0.9
DM_STEP: Final = 0.015
"""Half a step of DM error smears by 0.0075 x 9.7 s = 0.07 s < DT_S across the band."""
MIN_DM: Final = 0.06
"""Bursts peaking below this DM are called broadband RFI by the classical baseline."""


def freqs_mhz() -> np.ndarray:
    """Channel centre frequencies (MHz), ascending."""
    width = (F_HI_MHZ - F_LO_MHZ) / N_CHAN
    return F_LO_MHZ + width * (np.arange(N_CHAN) + 0.5)


def dm_grid() -> np.ndarray:
    """The DM trials (pc cm^-3): 0 .. DM_MAX in steps of DM_STEP."""
    return np.round(np.arange(0.0, DM_MAX + DM_STEP / 2, DM_STEP), 6)


def delay_s(dm: float | np.ndarray, f_mhz: float | np.ndarray) -> np.ndarray:
    """Cold-plasma dispersion delay (s) at ``f_mhz`` relative to ``F_REF_MHZ``."""
    return K_DM * np.asarray(dm) * (np.asarray(f_mhz, dtype=float) ** -2 - F_REF_MHZ**-2)


def type3_time_s(f_mhz: float | np.ndarray, f_start_mhz: float) -> np.ndarray:
    """Time (s) after its start at which a type III burst starting at ``f_start_mhz`` reaches ``f_mhz``."""
    return np.asarray((np.asarray(f_mhz, dtype=float) ** -0.84 - f_start_mhz**-0.84) / 0.0084)


def detector_id(meta: dict[str, Any]) -> str | None:
    """The product ``detector`` of a chunk's products: its beam (``beam0``), when the chunk says."""
    beam = meta.get("beam")
    return None if beam is None else f"beam{int(beam)}"
