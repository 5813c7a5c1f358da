"""A seeded simulator of NenuFAR-like beamformed dynamic spectra, chunk by chunk, with the truth.

Physics of each component (units: the per-pixel radiometer noise is 1 after normalisation)

* Sky + bandpass: ``B(f) = (f / 50 MHz)^-2.55`` (the Galactic synchrotron spectrum) times a smooth
  ripple; the radiometer noise is multiplicative, ``P = B(f) (1 + sigma n)`` with ``n ~ N(0, 1)``
  and ``sigma = 1 / sqrt(dnu dt)`` scaled down to keep floats tidy.  Signals are added as
  ``B(f) sigma a(f, t)``, so ``a`` is in units of the per-pixel noise.
* Dispersed burst (pulsar single pulse / FRB-like): a Gaussian of FWHM ``width_s`` arriving at
  ``t0 + delay(DM, f)`` (see ``conventions.delay_s``), spectral index alpha in [-2, 1] and
  optional band-limitation; its amplitude is set from the wanted *ideal* S/N, the matched-filter S/N
  ``sqrt(sum a^2)`` over the whole burst (recorded as ``snr`` in the truth).  With
  ``StreamConfig.cross_boundary`` (the default) ``t0`` is anywhere in the chunk and the part of the
  sweep after the chunk's end is carried into the next chunk (dropped if that chunk is lost to a
  gap); the truth entry goes to the chunk the burst *belongs to* by the stream convention
  (``conventions``, "Chunks": the chunk in which it reaches ``OWNER_MHZ``).  Without it every burst
  lies inside one chunk (the first version).
* Solar type III: starts at ``f_s`` in 55..80 MHz, drifts as ``df/dt = -0.01 f^1.84``, rises in
  ~0.15 s and decays exponentially with ``tau(f) = 0.6 s (50 / f)`` (longer at low frequency), with
  patchy (striated) spectra; bright (ideal S/N 15..120).
* Narrow-band persistent RFI: 1-4 channels carrying a carrier that is always on, with a slowly
  wandering amplitude (random walk) plus occasional on/off keying.
* Broadband impulsive RFI: all channels at once (DM 0), 1-2 samples, 3-12 sigma per pixel.

Faults (``faults={index: kind}``): ``"shape"`` (wrong number of channels), ``"nan"`` (a block of
NaNs), ``"gap"`` (the chunk's ``t0`` jumps: packets of one chunk lost), ``"dropout"`` (zeros in a
block of samples inside the chunk), ``"stall"`` (recorded in the chunk list: the source delivers
it late; the stream decides how long it waits).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nenufar_bursts import conventions as cv

NOISE_SIGMA = 0.05
"""Relative radiometer noise per pixel (a stand-in for 1/sqrt(dnu dt))."""


@dataclass
class StreamConfig:
    """Rates (per chunk) of the injected components and the faults of a simulated stream."""

    burst_rate: float = 0.5
    type3_rate: float = 0.3
    impulse_rate: float = 0.6
    narrowband_rfi: bool = True
    snr_range: tuple[float, float] = (6.0, 30.0)
    dm_range: tuple[float, float] = (0.1, 0.7)
    faults: dict[int, str] = field(default_factory=dict)
    cross_boundary: bool = True


def _bandpass(rng: np.random.Generator, f: np.ndarray) -> np.ndarray:
    ripple = 1.0 + 0.1 * np.sin(2 * np.pi * (f - cv.F_LO_MHZ) / rng.uniform(8.0, 15.0) + rng.uniform(0, 6.3))
    return (f / 50.0) ** -2.55 * ripple


def _scale_to_snr(a: np.ndarray, snr: float) -> np.ndarray:
    norm = float(np.sqrt(np.sum(a**2)))
    return a * (snr / norm) if norm > 0 else a


def dispersed_burst(
    t: np.ndarray,
    f: np.ndarray,
    *,
    t0: float,
    dm: float,
    width_s: float,
    snr: float,
    alpha: float,
    band: tuple[float, float],
) -> np.ndarray:
    """``(N_T, N_CHAN)`` signal of a dispersed Gaussian pulse (see the module docstring)."""
    arrival = t0 + cv.delay_s(dm, f)
    sigma = width_s / 2.3548
    a = np.exp(-0.5 * ((t[:, None] - arrival[None, :]) / sigma) ** 2) * (f / 50.0) ** alpha
    a[:, (f < band[0]) | (f > band[1])] = 0.0
    return _scale_to_snr(a, snr)


def type3_burst(
    rng: np.random.Generator, t: np.ndarray, f: np.ndarray, *, t0: float, f_start: float, snr: float
) -> np.ndarray:
    """``(N_T, N_CHAN)`` signal of a drifting solar type III burst (see the module docstring)."""
    onset = t0 + cv.type3_time_s(np.minimum(f, f_start), f_start)
    tau = 0.6 * (50.0 / f)
    dt = t[:, None] - onset[None, :]
    a = np.where(dt < 0, np.exp(-0.5 * (dt / 0.15) ** 2), np.exp(-np.clip(dt, 0, None) / tau[None, :]))
    patch = np.clip(1.0 + 0.6 * np.convolve(rng.normal(size=f.size), np.ones(5) / 5, "same") * 2, 0.1, None)
    a *= patch[None, :] * (f <= f_start)[None, :]
    return _scale_to_snr(a, snr)


def _burst(
    rng: np.random.Generator, config: StreamConfig, f: np.ndarray, t_base: float
) -> tuple[np.ndarray, dict[str, Any], bool]:
    """One random burst over this chunk and the next ``(2 N_T, N_CHAN)``, its truth, and whether it
    belongs to this chunk (reaches ``OWNER_MHZ`` before the hand-off, ``OWNER_GUARD_S`` before its end)."""
    t = (np.arange(2 * cv.N_T) + 0.5) * cv.DT_S
    dm = float(rng.uniform(*config.dm_range))
    sweep = float(cv.delay_s(dm, cv.F_LO_MHZ))
    t0 = float(rng.uniform(0.3, cv.CHUNK_S - (0.3 if config.cross_boundary else sweep + 0.4)))
    width = float(rng.uniform(0.1, 0.5))
    snr = float(np.exp(rng.uniform(*np.log(config.snr_range))))
    lo = float(rng.uniform(cv.F_LO_MHZ, 40.0)) if rng.random() < 0.3 else cv.F_LO_MHZ
    hi = float(rng.uniform(55.0, cv.F_HI_MHZ)) if rng.random() < 0.3 else cv.F_HI_MHZ
    signal = dispersed_burst(t, f, t0=t0, dm=dm, width_s=width, snr=snr, alpha=float(rng.uniform(-2, 1)),
                             band=(lo, hi))
    entry = {
        "kind": "burst",
        "time_s": round(t_base + t0, 4),
        "dm": round(dm, 4),
        "width_s": round(width, 3),
        "snr": round(snr, 2),
        "band_mhz": [round(lo, 2), round(hi, 2)],
    }
    return signal, entry, t0 + float(cv.delay_s(dm, cv.OWNER_MHZ)) < cv.CHUNK_S - cv.OWNER_GUARD_S


Carry = tuple[np.ndarray, list[dict[str, Any]]]
"""Signal (in noise units, ``(N_T, N_CHAN)``) and truth entries passed on to the next chunk."""


def simulate_chunk(
    rng: np.random.Generator, index: int, config: StreamConfig, obs_id: str = "nenu-sim"
) -> tuple[np.ndarray, dict[str, Any]]:
    """One chunk: ``data`` ``(N_T, N_CHAN)`` float32 and ``meta`` (with ``truth``, see conventions).

    On its own (no previous chunk): bursts crossing into the next chunk are cut at its end.
    """
    data, meta, _ = simulate_chunk_carry(rng, index, config, obs_id)
    return data, meta


def simulate_chunk_carry(
    rng: np.random.Generator,
    index: int,
    config: StreamConfig,
    obs_id: str = "nenu-sim",
    carry: Carry | None = None,
) -> tuple[np.ndarray, dict[str, Any], Carry]:
    """``simulate_chunk`` adding ``carry`` (from the previous chunk); also returns the next carry."""
    f = cv.freqs_mhz()
    t = (np.arange(cv.N_T) + 0.5) * cv.DT_S
    bp = _bandpass(rng, f)
    a = rng.normal(size=(cv.N_T, cv.N_CHAN))
    truth: list[dict[str, Any]] = []
    spill = np.zeros((cv.N_T, cv.N_CHAN))
    spill_truth: list[dict[str, Any]] = []
    if carry is not None:
        a += carry[0]
        truth.extend(carry[1])
    gaps = sum(1 for k, v in config.faults.items() if v == "gap" and k <= index)
    t_base = (index + gaps) * cv.CHUNK_S  # a gap: one chunk's worth of data never arrived
    for _ in range(rng.poisson(config.burst_rate)):
        signal, entry, owned_here = _burst(rng, config, f, t_base)
        a += signal[: cv.N_T]
        spill += signal[cv.N_T :]
        (truth if owned_here else spill_truth).append(entry)
    for _ in range(rng.poisson(config.type3_rate)):
        f_start = float(rng.uniform(55.0, cv.F_HI_MHZ))
        t0 = float(rng.uniform(0.0, cv.CHUNK_S - 4.0))
        snr = float(rng.uniform(15.0, 120.0))
        a += type3_burst(rng, t, f, t0=t0, f_start=f_start, snr=snr)
        truth.append(
            {
                "kind": "type3",
                "time_s": round(t_base + t0, 4),
                "f_start_mhz": round(f_start, 2),
                "snr": round(snr, 2),
            }
        )
    for _ in range(rng.poisson(config.impulse_rate)):
        k = int(rng.integers(0, cv.N_T - 2))
        n = int(rng.integers(1, 3))
        amp = float(rng.uniform(3.0, 12.0))
        a[k : k + n, :] += amp * rng.uniform(0.7, 1.3, size=(n, cv.N_CHAN))
        truth.append(
            {"kind": "impulse", "time_s": round(t_base + (k + 0.5) * cv.DT_S, 4), "amp": round(amp, 2)}
        )
    if config.narrowband_rfi:
        chans = sorted({int(c) for c in rng.integers(0, cv.N_CHAN, size=int(rng.integers(1, 5)))})
        for c in chans:
            level = float(rng.uniform(5.0, 50.0))
            walk = level * np.exp(np.cumsum(rng.normal(0, 0.05, size=cv.N_T)))
            keyed = np.where(rng.random(cv.N_T) < 0.05, 0.0, 1.0)
            a[:, c] += walk * keyed
        truth.append({"kind": "narrowband", "channels": chans})
    data = (bp[None, :] * (1.0 + NOISE_SIGMA * a)).astype(np.float32)
    fault = config.faults.get(index)
    if fault == "shape":
        data = data[:, : cv.N_CHAN // 2]
    elif fault == "nan":
        k = int(rng.integers(0, cv.N_T - 20))
        data[k : k + 15, :] = np.nan
    elif fault == "dropout":
        k = int(rng.integers(0, cv.N_T - 20))
        data[k : k + 12, :] = 0.0
    meta = {
        "obs_id": obs_id,
        "index": index,
        "t0": t_base,
        "dt": cv.DT_S,
        "beam": 0,
        "format": cv.CHUNK_FORMAT,
        "truth": truth,
        "fault": fault,
    }
    return data, meta, (spill, spill_truth)


def write_chunk(path: Path, data: np.ndarray, meta: dict[str, Any]) -> Path:
    """Write a chunk as documented in ``conventions`` (``.npz``: data, freqs_mhz, meta JSON)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        np.savez(fh, data=data, freqs_mhz=cv.freqs_mhz(), meta=np.array(json.dumps(meta)))
    return path


def read_chunk(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(data, freqs_mhz, meta)`` of a chunk file."""
    with np.load(path, allow_pickle=False) as z:
        return np.array(z["data"]), np.array(z["freqs_mhz"]), json.loads(str(z["meta"]))


def simulate_stream(
    out_dir: Path, obs_id: str, seed: int, n_chunks: int, config: StreamConfig | None = None
) -> list[dict[str, Any]]:
    """Write ``n_chunks`` chunk files; return ``[{"path", "index", "t0", "truth", "fault"}]``."""
    config = config or StreamConfig()
    out = []
    for data, meta in _chunks(seed, n_chunks, config, obs_id):
        i = meta["index"]
        path = write_chunk(out_dir / f"{obs_id}_{i:05d}.npz", data, meta)
        out.append(
            {"path": str(path), "index": i, "t0": meta["t0"], "truth": meta["truth"], "fault": meta["fault"]}
        )
    return out


def chunk_arrays(
    seed: int, n_chunks: int, config: StreamConfig | None = None
) -> list[tuple[np.ndarray, dict[str, Any]]]:
    """The same chunks as ``simulate_stream`` in memory (for training and tests)."""
    return list(_chunks(seed, n_chunks, config or StreamConfig(), "nenu-sim"))


def _chunks(
    seed: int, n_chunks: int, config: StreamConfig, obs_id: str
) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    carry: Carry | None = None
    for i in range(n_chunks):
        if config.faults.get(i) == "gap":
            carry = None  # the chunk that held the rest of those sweeps was lost
        data, meta, carry = simulate_chunk_carry(rng, i, config, obs_id, carry)
        yield data, meta
