"""Seeded simulator of an EP-like wide-field X-ray observation (the "ground segment" test bench).

``simulate_observation`` writes what the satellite and the ground segment would deliver:

* ``{obs_id}.l0`` — L0 telemetry in the packet format of ``xray_ep.conventions`` (one packet per
  non-empty CMOS frame, CRC32 per packet) from a random subset of the CMOS mosaic;
* ``{obs_id}_att.fits`` / ``{obs_id}_orb.fits`` — attitude (1 s cadence) and orbit (10 s cadence)
  files that cover the whole observation (``aux="full"``), only its first half (``"partial"``),
  or are absent (``"missing"``); with ``archive_dir`` the complete files (observation +/- 400 s) are
  also put there, as the archive the aux providers fetch from;
* ``{obs_id}_truth.json`` — the injected sky (positions, count rates, spectra, variability, the
  transient flare), the CMOS list and the pointing; ``{obs_id}_events_truth.npz`` — every injected
  event (TIME, CMOS, RAWX, RAWY, PHA, true ENERGY, source index SRC or -1 for background, true
  RA/DEC) in telemetry order.

The physics is simple but consistent: point sources (constant, sinusoidally variable, or a
fast-rise exponential-decay flare) seen through a core + halo Gaussian PSF, Earth occultation from
the orbit (sky photons only), a flat particle background per chip, a pointing that drifts and
jitters (events are mapped to the detector with the attitude at their frame time), power-law
spectra folded through a Gaussian energy resolution and each chip's gain.  Everything is numpy
vectorised and deterministic for ``(seed, obs_id)``.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any, Literal

import numpy as np
from astropy.io import fits
from numpy.typing import NDArray

from xray_ep import conventions as cv

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
Events = dict[str, NDArray[Any]]
Aux = dict[str, FloatArray]

MU_EARTH_KM3_S2 = 398600.4418
PSF_CORE_SIGMA_ARCSEC = cv.PSF_CORE_SIGMA_ARCSEC
PSF_HALO_SIGMA_ARCSEC = cv.PSF_HALO_SIGMA_ARCSEC
PSF_HALO_FRACTION = cv.PSF_HALO_FRACTION
FLARE_PEAK_RATE = 5.0
"""Peak count rate (cts/s, 0.5-4 keV) of the injected transient.  With a WXT-like effective area of
~3 cm^2 and a mean photon energy of ~1.6 keV this is a flux of ~4e-9 erg/cm2/s: an ordinary Einstein
Probe WXT fast X-ray transient (they are seen from ~1e-10 to 1e-8 erg/cm2/s)."""
FLARE_RISE_S = 10.0
FLARE_DECAY_S = 60.0
ARCHIVE_MARGIN_S = 400.0
"""The archive's aux files cover the observation +/- this many seconds."""
LOCAL_MARGIN_S = 10.0
"""The aux files delivered with the observation cover it +/- this many seconds."""
PARTIAL_FRACTION = 0.5
"""A ``partial`` aux file stops this fraction of the way through the observation."""


# -- geometry (this team's own implementation of the conventions) ----------------------------------
def _radec_to_std(ra: FloatArray, dec: FloatArray, ra0: FloatArray, dec0: FloatArray,
                  ) -> tuple[FloatArray, FloatArray]:
    """Gnomonic projection: standard coordinates (deg; xi East, eta North) about (ra0, dec0)."""
    a, d, a0, d0 = (np.radians(v) for v in (ra, dec, ra0, dec0))
    cosc = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
    xi = np.cos(d) * np.sin(a - a0) / cosc
    eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / cosc
    return np.degrees(xi), np.degrees(eta)


def _std_to_radec(xi: FloatArray, eta: FloatArray, ra0: FloatArray, dec0: FloatArray,
                  ) -> tuple[FloatArray, FloatArray]:
    """Inverse gnomonic projection (deg)."""
    x, y, a0, d0 = (np.radians(v) for v in (xi, eta, ra0, dec0))
    denom = np.cos(d0) - y * np.sin(d0)
    ra = np.degrees(a0 + np.arctan2(x, denom)) % 360.0
    dec = np.degrees(np.arctan2(np.sin(d0) + y * np.cos(d0), np.hypot(x, denom)))
    return ra, dec


def _std_to_det(xi: FloatArray, eta: FloatArray, roll: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Standard coordinates (deg) -> detector pixels, ROLL = PA of +DETY (conventions)."""
    s = cv.PIXEL_SCALE_ARCSEC / 3600.0
    r = np.radians(roll)
    return (-xi * np.cos(r) + eta * np.sin(r)) / s, (xi * np.sin(r) + eta * np.cos(r)) / s


def _det_to_std(detx: FloatArray, dety: FloatArray, roll: FloatArray) -> tuple[FloatArray, FloatArray]:
    s = cv.PIXEL_SCALE_ARCSEC / 3600.0
    r = np.radians(roll)
    return s * (-detx * np.cos(r) + dety * np.sin(r)), s * (detx * np.sin(r) + dety * np.cos(r))


def _unit(ra: FloatArray, dec: FloatArray) -> FloatArray:
    a, d = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)], axis=-1)


def _elevation(ra: FloatArray, dec: FloatArray, pos_km: FloatArray) -> FloatArray:
    """Angle (deg) of the pointing above the Earth limb seen from the spacecraft at ``pos_km``."""
    dist = np.linalg.norm(pos_km, axis=-1)
    to_earth = -pos_km / dist[:, None]
    theta = np.degrees(np.arccos(np.clip(np.sum(_unit(ra, dec) * to_earth, axis=-1), -1.0, 1.0)))
    return np.asarray(theta - np.degrees(np.arcsin(cv.EARTH_RADIUS_KM / dist)), dtype=np.float64)


# -- sky model -------------------------------------------------------------------------------------
def powerlaw_mean_energy(gamma: float, band: tuple[float, float] = cv.BAND_KEV) -> float:
    """Mean photon energy (keV) of a power law N(E) ~ E^-gamma restricted to ``band``."""
    e1, e2 = band

    def integral(p: float) -> float:  # integral of E^p over the band
        return float(np.log(e2 / e1)) if abs(p + 1.0) < 1e-9 else (e2 ** (p + 1) - e1 ** (p + 1)) / (p + 1)

    return integral(1.0 - gamma) / integral(-gamma)


def _powerlaw_energies(rng: np.random.Generator, gamma: float, n: int) -> FloatArray:
    e1, e2 = cv.BAND_KEV
    u = rng.random(n)
    if abs(gamma - 1.0) < 1e-9:
        return np.asarray(e1 * (e2 / e1) ** u)
    p = 1.0 - gamma
    return np.asarray((e1**p + u * (e2**p - e1**p)) ** (1.0 / p))


def _rate(src: dict[str, Any], t: FloatArray) -> FloatArray:
    """Count rate (cts/s) of a source at MET ``t``."""
    if src["flare"] is not None:
        f = src["flare"]
        dt = t - f["t_peak"]
        shape = np.where(dt < 0, np.exp(np.minimum(dt, 0) / f["rise"]),
                         np.exp(-np.maximum(dt, 0) / f["decay"]))
        return np.asarray(src["rate"] + f["peak_rate"] * shape)
    if src["variability"] is not None:
        v = src["variability"]
        phase = 2 * np.pi * t / v["period"] + v["phase"]
        return np.asarray(src["rate"] * (1 + v["amplitude"] * np.sin(phase)))
    return np.full_like(t, src["rate"])


def _photon_times(rng: np.random.Generator, src: dict[str, Any], tstart: float, tstop: float) -> FloatArray:
    """Arrival times of a (possibly variable) Poisson process, by thinning."""
    grid = np.linspace(tstart, tstop, 2001)
    rmax = float(_rate(src, grid).max()) * 1.05 + 1e-12
    n = rng.poisson(rmax * (tstop - tstart))
    t = np.sort(rng.uniform(tstart, tstop, n))
    return t[rng.random(n) * rmax < _rate(src, t)]


def _circular_orbit(rng: np.random.Generator, times: FloatArray) -> FloatArray:
    a = cv.EARTH_RADIUS_KM + 600.0
    n = np.sqrt(MU_EARTH_KM3_S2 / a**3)
    inc, raan, phase = np.radians(29.0), rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)
    u = phase + n * (times - times[0])
    x_orb, y_orb = a * np.cos(u), a * np.sin(u)
    x = x_orb * np.cos(raan) - y_orb * np.cos(inc) * np.sin(raan)
    y = x_orb * np.sin(raan) + y_orb * np.cos(inc) * np.cos(raan)
    z = y_orb * np.sin(inc)
    return np.stack([x, y, z], axis=-1)


# -- files -----------------------------------------------------------------------------------------
def _aux_hdul(extname: str, columns: dict[str, str], data: dict[str, FloatArray], obs_id: str,
              ) -> fits.HDUList:
    cols = [fits.Column(name=n, format="D", unit=u, array=data[n]) for n, u in columns.items()]
    hdu = fits.BinTableHDU.from_columns(cols, name=extname)
    h = hdu.header
    h["TELESCOP"], h["INSTRUME"], h[cv.KW_OBS_ID] = cv.TELESCOP, cv.INSTRUME, obs_id
    h[cv.KW_TSTART], h[cv.KW_TSTOP] = float(data["TIME"][0]), float(data["TIME"][-1])
    h["MJDREFI"], h["MJDREFF"], h["TIMESYS"], h["TIMEUNIT"] = cv.MJDREFI, cv.MJDREFF, cv.TIMESYS, cv.TIMEUNIT
    if extname == cv.ORBIT_EXT:
        h["REFFRAME"] = ("GCRS", "geocentric equatorial (J2000) frame")
    h["CREATOR"] = "xray_ep.simulate"
    return fits.HDUList([fits.PrimaryHDU(), hdu])


def _write_aux(directory: Path, kind: str, data: Aux, obs_id: str, *, lo: float = -np.inf,
               hi: float = np.inf) -> str:
    """Write the samples of ``data`` within [lo, hi] as ``aux_filename(obs_id, kind)``."""
    extname, columns = ((cv.ATTITUDE_EXT, cv.ATTITUDE_COLUMNS) if kind == "att"
                        else (cv.ORBIT_EXT, cv.ORBIT_COLUMNS))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / cv.aux_filename(obs_id, kind)
    keep = (data["TIME"] >= lo) & (data["TIME"] <= hi)
    _aux_hdul(extname, columns, {k: data[k][keep] for k in columns}, obs_id).writeto(path, overwrite=True)
    return str(path)


def _write_telemetry(path: Path, obs_id: str, tstart: float, tstop: float, ev: Events) -> int:
    """Write events (already in telemetry order) as packets; returns the number of packets."""
    frame_idx, chip = ev["frame"], ev["chip"]
    n = frame_idx.size
    key = frame_idx * cv.N_CMOS + chip
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if n else np.zeros(0, np.int64)
    bounds = list(zip(starts.tolist(), np.r_[starts[1:], n].tolist(), strict=True))
    payload = np.stack([ev["rawx"], ev["rawy"], ev["pha"]], axis=1).astype(">u2").tobytes()
    seq = np.zeros(cv.N_CMOS, dtype=np.int64)
    packets: list[bytes] = []
    for lo, hi in bounds:
        c = int(chip[lo])
        ftime = tstart + int(frame_idx[lo]) * cv.FRAME_TIME
        for a in range(lo, hi, cv.MAX_EVENTS_PER_PACKET):
            b = min(hi, a + cv.MAX_EVENTS_PER_PACKET)
            head = cv.PACKET_HEADER.pack(cv.SYNC, c, 0, int(seq[c]) % 65536, ftime, b - a)
            body = head[4:] + payload[a * cv.EVENT_BYTES: b * cv.EVENT_BYTES]
            packets.append(head[:4] + body + zlib.crc32(body).to_bytes(4, "big"))
            seq[c] += 1
    header = cv.FILE_HEADER.pack(cv.FILE_MAGIC, cv.FORMAT_VERSION, cv.FILE_HEADER_SIZE,
                                 obs_id.encode("ascii")[:16], tstart, tstop, cv.FRAME_TIME, len(packets))
    path.write_bytes(header + zlib.crc32(header).to_bytes(4, "big") + b"".join(packets))
    return len(packets)


# -- the simulator ---------------------------------------------------------------------------------
def _attitude_and_orbit(rng: np.random.Generator, tstart: float, tstop: float) -> tuple[Aux, Aux]:
    """Attitude (1 s): drift (~20") and jitter (~3") around a random pointing; orbit (10 s): LEO."""
    duration, tmid = tstop - tstart, 0.5 * (tstart + tstop)
    ra0, dec0, roll0 = rng.uniform(0, 360), rng.uniform(-60, 60), rng.uniform(0, 360)
    att_t = np.arange(tstart - ARCHIVE_MARGIN_S, tstop + ARCHIVE_MARGIN_S + 0.5, 1.0)
    drift = rng.normal(0, 20.0 / 3600.0, 2)
    jit_amp, jit_per, jit_ph = 3.0 / 3600.0, rng.uniform(60, 140), rng.uniform(0, 2 * np.pi, 2)
    x = (att_t - tmid) / duration
    att = {
        "TIME": att_t,
        "RA": (ra0 + (drift[0] * x + jit_amp * np.sin(2 * np.pi * att_t / jit_per + jit_ph[0]))
               / np.cos(np.radians(dec0))) % 360.0,
        "DEC": dec0 + drift[1] * x + jit_amp * np.cos(2 * np.pi * att_t / jit_per + jit_ph[1]),
        "ROLL": (roll0 + 0.01 * x) % 360.0,
        "nominal": np.array([ra0, dec0, roll0]),
    }
    orb_t = np.arange(tstart - ARCHIVE_MARGIN_S, tstop + ARCHIVE_MARGIN_S + 5.0, 10.0)
    pos = _circular_orbit(rng, orb_t)
    return att, {"TIME": orb_t, "X": pos[:, 0], "Y": pos[:, 1], "Z": pos[:, 2]}


def _pointing(att: Aux, t: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """RA, DEC, ROLL linearly interpolated in the sampled attitude (what the L2 stage also does)."""
    ra = np.degrees(np.unwrap(np.radians(att["RA"])))
    roll = np.degrees(np.unwrap(np.radians(att["ROLL"])))
    return (np.interp(t, att["TIME"], ra) % 360.0, np.interp(t, att["TIME"], att["DEC"]),
            np.interp(t, att["TIME"], roll) % 360.0)


def _visible_peak_time(rng: np.random.Generator, att: Aux, orb: Aux, tstart: float, duration: float) -> float:
    """A flare peak time in the middle of the observation (30-60 %) at which the whole flare (rise
    to 3 decay times) is above the Earth limb; with no such time, the start of the longest visible
    stretch.  (A flare injected while the Earth blocks the view would be no test of the pipeline.)"""
    grid = tstart + np.arange(0.0, duration, 1.0)
    p_ra, p_dec, _ = _pointing(att, grid)
    pos = np.stack([np.interp(grid, orb["TIME"], orb[k]) for k in ("X", "Y", "Z")], axis=-1)
    visible = _elevation(p_ra, p_dec, pos) > cv.ELV_MIN_DEG
    lo, hi = int(2 * FLARE_RISE_S), int(3 * FLARE_DECAY_S)
    ok = np.array([visible[max(i - lo, 0): i + hi].all() for i in range(visible.size - hi)]
                  + [False] * min(hi, visible.size), dtype=bool)
    middle = np.flatnonzero(ok & (grid >= tstart + 0.3 * duration) & (grid <= tstart + 0.6 * duration))
    candidates = middle if middle.size else np.flatnonzero(ok)
    if candidates.size:
        return float(grid[int(rng.choice(candidates))])
    edges = np.diff(np.r_[0, visible.astype(np.int8), 0])
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if not starts.size:
        return float(tstart + 0.5 * duration)
    k = int(np.argmax(stops - starts))
    return float(grid[min(starts[k] + lo, visible.size - 1)])


def _sky_model(rng: np.random.Generator, chips: IntArray, att: Aux, orb: Aux, *, tstart: float,
               duration: float, transient: bool) -> list[dict[str, Any]]:
    """1-3 sources per present chip (the first chip's first one bright), placed away from the chip
    edges at the mid-observation pointing; ~30 % sinusoidally variable; optionally a flaring one."""
    sources: list[dict[str, Any]] = []
    placements: list[tuple[int, float, float]] = []
    for k, c in enumerate(chips):
        for j in range(int(rng.integers(1, 4))):
            placements.append((int(c), *rng.uniform(60, cv.CHIP_SIZE - 60, 2)))
            bright = k == 0 and j == 0
            rate = 3.0 if bright else float(np.exp(rng.uniform(np.log(0.03), np.log(0.5))))
            var = None
            if not bright and rng.random() < 0.3:
                var = {"kind": "sine", "amplitude": float(rng.uniform(0.3, 0.8)),
                       "period": float(rng.uniform(100, 400)), "phase": float(rng.uniform(0, 2 * np.pi))}
            sources.append({"rate": rate, "variability": var, "flare": None})
    if transient:
        placements.append((int(rng.choice(chips)), *rng.uniform(60, cv.CHIP_SIZE - 60, 2)))
        flare = {"t_peak": _visible_peak_time(rng, att, orb, tstart, duration), "peak_rate": FLARE_PEAK_RATE,
                 "rise": FLARE_RISE_S, "decay": FLARE_DECAY_S}
        sources.append({"rate": 0.0, "variability": None, "flare": flare})
    p_ra, p_dec, p_roll = _pointing(att, np.array([tstart + 0.5 * duration]))
    for i, (src, (c, rx, ry)) in enumerate(zip(sources, placements, strict=True)):
        ox, oy = cv.chip_origin(c)
        xi, eta = _det_to_std(np.array([ox + rx]), np.array([oy + ry]), p_roll)
        ra, dec = _std_to_radec(xi, eta, p_ra, p_dec)
        gamma = float(rng.uniform(1.5, 2.5))
        src.update(id=i, ra=float(ra[0]), dec=float(dec[0]), cmos=cv.cmos_name(c),
                   transient=src["flare"] is not None, photon_index=gamma,
                   mean_energy_kev=powerlaw_mean_energy(gamma))
    return sources


def _sky_events(rng: np.random.Generator, sources: list[dict[str, Any]], att: Aux, orb: Aux, *,
                present: NDArray[np.bool_], tstart: float, tstop: float) -> Events:
    """Source photons: arrival times, PSF, energies, then onto the detector with the attitude at
    their frame time; photons off the present chips or while the Earth blocks the view are lost."""
    parts: dict[str, list[NDArray[Any]]] = {"t": [], "ra": [], "dec": [], "energy": [], "src": []}
    for src in sources:
        t = _photon_times(rng, src, tstart, tstop)
        n = t.size
        sigma = np.where(rng.random(n) < PSF_HALO_FRACTION, PSF_HALO_SIGMA_ARCSEC,
                         PSF_CORE_SIGMA_ARCSEC) / 3600
        ra, dec = _std_to_radec(rng.normal(0, 1, n) * sigma, rng.normal(0, 1, n) * sigma,
                                np.full(n, src["ra"]), np.full(n, src["dec"]))
        for key, value in (("t", t), ("ra", ra), ("dec", dec), ("src", np.full(n, src["id"])),
                           ("energy", _powerlaw_energies(rng, src["photon_index"], n))):
            parts[key].append(value)
    ev = {k: np.concatenate(v) for k, v in parts.items()}
    frame = np.floor((ev["t"] - tstart) / cv.FRAME_TIME).astype(np.int64)
    ftime = np.asarray(tstart + frame * cv.FRAME_TIME, dtype=np.float64)
    p_ra, p_dec, p_roll = _pointing(att, ftime)
    pos_t = np.stack([np.interp(ftime, orb["TIME"], orb[k]) for k in ("X", "Y", "Z")], axis=-1)
    detx, dety = _std_to_det(*_radec_to_std(ev["ra"], ev["dec"], p_ra, p_dec), p_roll)
    pitch = cv.CHIP_SIZE + cv.CHIP_GAP
    half = (cv.MOSAIC * pitch - cv.CHIP_GAP) / 2
    col = np.floor((detx + half) / pitch).astype(np.int64)
    row = np.floor((dety + half) / pitch).astype(np.int64)
    rawx = np.floor(detx + half - col * pitch).astype(np.int64)
    rawy = np.floor(dety + half - row * pitch).astype(np.int64)
    chip = row * cv.MOSAIC + col
    keep = ((col >= 0) & (col < cv.MOSAIC) & (row >= 0) & (row < cv.MOSAIC)
            & (rawx < cv.CHIP_SIZE) & (rawy < cv.CHIP_SIZE))
    keep &= present[np.where(keep, chip, 0)]
    keep &= _elevation(p_ra, p_dec, pos_t) > cv.ELV_MIN_DEG
    return {"frame": frame[keep], "chip": chip[keep], "rawx": rawx[keep], "rawy": rawy[keep],
            "energy": ev["energy"][keep], "src": ev["src"][keep], "ra": ev["ra"][keep],
            "dec": ev["dec"][keep]}


def _background(rng: np.random.Generator, chips: IntArray, duration: float, bkg_rate: float) -> Events:
    """Particle background: flat on each present chip, flat in energy, not occulted by the Earth."""
    nb = rng.poisson(bkg_rate * duration, chips.size)
    n = int(nb.sum())
    return {"frame": np.floor(rng.uniform(0, duration, n) / cv.FRAME_TIME).astype(np.int64),
            "chip": np.repeat(chips, nb).astype(np.int64),
            "rawx": rng.integers(0, cv.CHIP_SIZE, n), "rawy": rng.integers(0, cv.CHIP_SIZE, n),
            "energy": rng.uniform(*cv.BAND_KEV, n), "src": np.full(n, -1),
            "ra": np.full(n, np.nan), "dec": np.full(n, np.nan)}


def _detector_response(rng: np.random.Generator, ev: Events, duration: float) -> Events:
    """Gaussian energy resolution and each chip's gain -> PHA; events put in telemetry order
    (frame, CMOS, random order within a frame)."""
    ev = {k: v[ev["frame"] < round(duration / cv.FRAME_TIME)] for k, v in ev.items()}
    measured = ev["energy"] + rng.normal(0, 1, ev["energy"].size) * 0.06 * np.sqrt(ev["energy"])
    gains = np.array([cv.gain_kev_per_chan(i) for i in range(cv.N_CMOS)])
    ev["pha"] = np.clip(np.floor((measured - cv.GAIN_OFFSET_KEV) / gains[ev["chip"]]), 0,
                        cv.N_PHA - 1).astype(np.int64)
    order = np.lexsort((rng.random(ev["frame"].size), ev["chip"], ev["frame"]))
    return {k: v[order] for k, v in ev.items()}


def simulate_observation(
    out_dir: str | Path,
    obs_id: str,
    seed: int,
    *,
    n_cmos: int | None = None,
    aux: Literal["full", "partial", "missing"] = "full",
    transient: bool = False,
    archive_dir: str | Path | None = None,
    duration: float = 1200.0,
    bkg_rate: float = 12.0,
) -> dict[str, Any]:
    """Simulate one observation and write its files into ``out_dir``.

    ``n_cmos`` chips (default: 3 to 6, drawn) of the 4x4 mosaic deliver data; each carries one to
    three point sources, the first chip a bright one (3 cts/s); ``transient`` adds a source that
    flares (peak ``FLARE_PEAK_RATE`` = 5 cts/s, ~4e-9 erg/cm2/s) in the middle of the observation while
    the target is above the Earth limb.  ``bkg_rate`` is the
    particle background per chip (cts/s).  Returns the paths written (``l0``, ``attitude``,
    ``orbit``, ``archive_attitude``, ``archive_orbit``, ``truth``, ``events``; absent aux files
    are ``None``) and a summary (``obs_id``, ``cmos``, ``tstart``, ``tstop``, ``n_events``,
    ``n_packets``).
    """
    if aux not in ("full", "partial", "missing"):
        raise ValueError(f"aux must be 'full', 'partial' or 'missing', got {aux!r}")
    if len(obs_id.encode("ascii")) > 16:
        raise ValueError(f"obs_id {obs_id!r} is longer than the 16 bytes of the telemetry header")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(obs_id.encode())]))

    n_chips = int(n_cmos) if n_cmos is not None else int(rng.integers(3, 7))
    if not 1 <= n_chips <= cv.N_CMOS:
        raise ValueError(f"n_cmos must be between 1 and {cv.N_CMOS}, got {n_chips}")
    chips = np.sort(rng.choice(cv.N_CMOS, n_chips, replace=False))
    present = np.zeros(cv.N_CMOS, dtype=bool)
    present[chips] = True
    tstart = float(np.round(1.0e7 + rng.uniform(0.0, 5.0e7)))
    tstop = tstart + float(duration)

    att, orb = _attitude_and_orbit(rng, tstart, tstop)
    ra0, dec0, roll0 = (float(v) for v in att.pop("nominal"))
    sources = _sky_model(rng, chips, att, orb, tstart=tstart, duration=duration, transient=transient)
    sky = _sky_events(rng, sources, att, orb, present=present, tstart=tstart, tstop=tstop)
    bkg = _background(rng, chips, duration, bkg_rate)
    ev = _detector_response(rng, {k: np.concatenate([sky[k], bkg[k]]) for k in sky}, duration)
    l0_path = out / f"{obs_id}.l0"
    n_packets = _write_telemetry(l0_path, obs_id, tstart, tstop, ev)
    events_path = out / f"{obs_id}_events_truth.npz"
    np.savez_compressed(events_path, TIME=tstart + ev["frame"] * cv.FRAME_TIME, CMOS=ev["chip"],
                        RAWX=ev["rawx"], RAWY=ev["rawy"], PHA=ev["pha"], ENERGY=ev["energy"],
                        SRC=ev["src"], RA=ev["ra"], DEC=ev["dec"])

    files: dict[str, str | None] = {"attitude": None, "orbit": None, "archive_attitude": None,
                                    "archive_orbit": None}
    hi = tstop + LOCAL_MARGIN_S if aux == "full" else tstart + PARTIAL_FRACTION * duration
    if aux != "missing":
        files["attitude"] = _write_aux(out, "att", att, obs_id, lo=tstart - LOCAL_MARGIN_S, hi=hi)
        files["orbit"] = _write_aux(out, "orb", orb, obs_id, lo=tstart - LOCAL_MARGIN_S, hi=hi)
    if archive_dir is not None:
        files["archive_attitude"] = _write_aux(Path(archive_dir), "att", att, obs_id)
        files["archive_orbit"] = _write_aux(Path(archive_dir), "orb", orb, obs_id)

    counts = np.bincount(ev["src"][ev["src"] >= 0], minlength=len(sources))
    for src in sources:
        src["n_events"] = int(counts[src["id"]])
    truth = {
        "obs_id": obs_id, "seed": seed, "tstart": tstart, "tstop": tstop, "frame_time": cv.FRAME_TIME,
        "cmos": [cv.cmos_name(int(c)) for c in chips],
        "pointing": {"ra": ra0, "dec": dec0, "roll": roll0},
        "bkg_rate_per_cmos": bkg_rate, "aux": aux, "transient": transient,
        "sources": sources, "n_events": int(ev["frame"].size), "n_packets": n_packets,
        "events_per_cmos": {cv.cmos_name(int(c)): int(np.sum(ev["chip"] == c)) for c in chips},
    }
    truth_path = out / f"{obs_id}_truth.json"
    truth_path.write_text(json.dumps(truth, indent=1))
    return {"obs_id": obs_id, "l0": str(l0_path), **files, "truth": str(truth_path),
            "events": str(events_path), "cmos": truth["cmos"], "tstart": tstart, "tstop": tstop,
            "n_events": truth["n_events"], "n_packets": n_packets}
