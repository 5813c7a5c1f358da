"""Simulated NenuFAR observations: the real mini-array layout, a few point sources, per-antenna
complex gains (the truth to recover) and thermal noise, in several sub-bands of 20-80 MHz.

Geometry
    Mini-array positions come from the vendored ``data/nenufar_array.json`` (nenupy 2.8.5, see
    ``data/NOTICE``): geodetic lon/lat (deg) from the file and, as height, the third component of the
    Lambert-93 ``position`` (the ``height`` field of a few remote mini-arrays is ~46 m lower, a
    geoid/ellipsoid mix-up; entries with height 0 are missing and get the site height).  WGS84
    geodetic -> ECEF -> local ENU at the site of ``data/telescopes.json`` -> equatorial XYZ
    (``X = -sin(lat) N + cos(lat) U``, ``Y = E``, ``Z = cos(lat) N + sin(lat) U``) -> (u, v, w) for
    hour angle H and declination dec (Thompson, Moran & Swenson eq. 4.1).  Baselines are
    ``x[ant2] - x[ant1]`` as in ``conventions``.

Sky and instrument
    Point sources with power-law spectra, no primary beam (the mini-array beam is wide compared to
    the few degrees simulated), exact direct Fourier transform including the w term.  Gains are
    drawn per antenna and sub-band: amplitude ``1 + N(0, 0.15)``, phase uniform in [-pi, pi); they
    are constant in time and across the channels of a sub-band.  Noise: complex Gaussian with
    ``sigma`` Jy per real/imaginary part; weights are ``1 / (2 sigma^2)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from radio_nenufar import conventions as cv

WGS84_A = 6378137.0
WGS84_F = 1.0 / 298.257223563
SIDEREAL_RATE = 2 * np.pi / 86164.0905
"""Earth rotation, rad per second of time."""


def _data_json(name: str) -> Any:
    return json.loads((Path(__file__).parent / "data" / name).read_text())


def _ecef(lon_deg: np.ndarray, lat_deg: np.ndarray, h: np.ndarray) -> np.ndarray:
    lon, lat = np.radians(lon_deg), np.radians(lat_deg)
    e2 = WGS84_F * (2 - WGS84_F)
    nu = WGS84_A / np.sqrt(1 - e2 * np.sin(lat) ** 2)
    return np.stack([(nu + h) * np.cos(lat) * np.cos(lon), (nu + h) * np.cos(lat) * np.sin(lon),
                     (nu * (1 - e2) + h) * np.sin(lat)], axis=-1)


def nenufar_layout() -> tuple[list[str], np.ndarray, float]:
    """Mini-array names, ENU positions (m, relative to the site) and the site latitude (deg)."""
    arrays = _data_json("nenufar_array.json")
    site = _data_json("telescopes.json")["nenufar"]
    names = sorted(arrays, key=lambda k: arrays[k]["id"])
    lon = np.array([arrays[k]["lon"] for k in names])
    lat = np.array([arrays[k]["lat"] for k in names])
    h = np.array([arrays[k]["position"][2] for k in names], float)
    h[h <= 0] = site["height"]
    xyz = _ecef(lon, lat, h) - _ecef(np.array(site["lon"]), np.array(site["lat"]), np.array(site["height"]))
    slon, slat = np.radians(site["lon"]), np.radians(site["lat"])
    east = np.array([-np.sin(slon), np.cos(slon), 0.0])
    north = np.array([-np.sin(slat) * np.cos(slon), -np.sin(slat) * np.sin(slon), np.cos(slat)])
    up = np.array([np.cos(slat) * np.cos(slon), np.cos(slat) * np.sin(slon), np.sin(slat)])
    return names, np.stack([xyz @ east, xyz @ north, xyz @ up], axis=-1), float(site["lat"])


def enu_to_uvw(enu: np.ndarray, lat_deg: float, hour_angle_rad: np.ndarray, dec_deg: float) -> np.ndarray:
    """(u, v, w) in metres of ENU vectors ``enu`` (..., 3) for each hour angle: (nha, ..., 3)."""
    lat, dec = np.radians(lat_deg), np.radians(dec_deg)
    e, n, u = enu[..., 0], enu[..., 1], enu[..., 2]
    x, y, z = -np.sin(lat) * n + np.cos(lat) * u, e, np.cos(lat) * n + np.sin(lat) * u
    ha = np.asarray(hour_angle_rad).reshape((-1,) + (1,) * e.ndim)
    sh, ch, sd, cd = np.sin(ha), np.cos(ha), np.sin(dec), np.cos(dec)
    return np.stack([sh * x + ch * y, -sd * ch * x + sd * sh * y + cd * z,
                     cd * ch * x - cd * sh * y + sd * z], axis=-1)


def predict(uvw_m: np.ndarray, freq_hz: np.ndarray, model: dict[str, Any], ra0: float, dec0: float
            ) -> np.ndarray:
    """Model visibilities (nrow, nchan) of a point-source sky model (exact DFT with w term)."""
    out = np.zeros((uvw_m.shape[0], freq_hz.size), np.complex128)
    for src in model["sources"]:
        l, m = cv.direction_cosines(src["ra_deg"], src["dec_deg"], ra0, dec0)  # noqa: E741
        n = np.sqrt(1 - l * l - m * m)
        path = uvw_m @ np.array([l, m, n - 1.0])                  # metres
        flux = cv.model_flux(src, freq_hz, model["ref_freq_hz"])
        out += flux[None, :] * np.exp(-2j * np.pi * path[:, None] * freq_hz[None, :] / cv.C_M_S)
    return out


def default_sky(ra0: float, dec0: float) -> dict[str, Any]:
    """The simulated field: five point sources within 2.5 deg of the phase centre."""
    offsets = [("A", 0.0, 0.0, 60.0, -0.8), ("B", 2.0, 1.0, 25.0, -0.7), ("C", -1.0, 1.5, 15.0, -0.9),
               ("D", -1.8, -1.2, 10.0, -0.5), ("E", 0.8, -1.6, 8.0, -1.0)]
    cosd = np.cos(np.radians(dec0))
    return {"name": "sim-field", "ref_freq_hz": 50e6, "sources": [
        {"name": n, "ra_deg": float((ra0 + dx / cosd) % 360), "dec_deg": dec0 + dy, "flux_jy": s,
         "spectral_index": a} for n, dx, dy, s, a in offsets]}


def simulate_observation(out_dir: Path, obs_id: str = "nenu0001", seed: int = 1, *,
                         subbands_mhz: tuple[float, ...] = (30.0, 45.0, 60.0, 75.0),
                         channels_per_subband: int = 2, channel_width_mhz: float = 0.195,
                         n_times: int = 6, duration_h: float = 1.0, sigma_jy: float = 3.0,
                         n_ant: int | None = None, sky: dict[str, Any] | None = None,
                         ra0: float = 180.0, dec0: float | None = None,
                         nan_subband: int | None = None, empty_subband: int | None = None) -> dict[str, Any]:
    """Simulate one observation and write ``{obs_id}.npz`` (visibilities), ``{obs_id}_truth.json``
    (gains, sky) and ``{obs_id}_calmodel.json`` (the matching calibrator model: the sky itself).

    The pointing is at the zenith declination, observed symmetrically about transit, so that the
    w term stays small (the imager makes no w correction).  ``nan_subband`` puts NaNs in a third of
    that sub-band's samples (unflagged, as a broken correlator would); ``empty_subband`` flags all of
    that sub-band's samples.  Returns the paths and the truth.
    """
    rng = np.random.default_rng(seed)
    names, enu, lat = nenufar_layout()
    if n_ant is not None:
        names, enu = names[:n_ant], enu[:n_ant]
    dec0 = lat if dec0 is None else dec0
    sky = sky or default_sky(ra0, dec0)
    na = len(names)
    a1, a2 = np.triu_indices(na, 1)
    ha = np.linspace(-0.5, 0.5, n_times) * duration_h * 3600 * SIDEREAL_RATE
    uvw = enu_to_uvw(enu[a2] - enu[a1], lat, ha, dec0).reshape(-1, 3)
    nbl = a1.size
    ant1, ant2 = np.tile(a1, n_times), np.tile(a2, n_times)
    time_s = np.repeat(ha / SIDEREAL_RATE - ha[0] / SIDEREAL_RATE, nbl)
    offs = (np.arange(channels_per_subband) - (channels_per_subband - 1) / 2) * channel_width_mhz
    freq = (np.asarray(subbands_mhz)[:, None] + offs[None, :]).ravel() * 1e6
    subband = np.repeat(np.arange(len(subbands_mhz)), channels_per_subband)
    gains = (1 + 0.15 * rng.standard_normal((len(subbands_mhz), na))).clip(0.5, 1.6) \
        * np.exp(1j * rng.uniform(-np.pi, np.pi, (len(subbands_mhz), na)))
    g = gains[subband]                                    # (nchan, nant)
    vis = predict(uvw, freq, sky, ra0, dec0) * g[:, ant1].T * np.conj(g[:, ant2]).T
    vis += sigma_jy * (rng.standard_normal(vis.shape) + 1j * rng.standard_normal(vis.shape))
    flag = np.zeros(vis.shape, bool)
    if nan_subband is not None:
        cols = subband == nan_subband
        bad = rng.random((vis.shape[0], int(cols.sum()))) < 1 / 3
        block = vis[:, cols]
        block[bad] = np.nan
        vis[:, cols] = block
    if empty_subband is not None:
        flag[:, subband == empty_subband] = True
    weight = np.where(flag, 0.0, 1.0 / (2 * sigma_jy**2))
    out_dir.mkdir(parents=True, exist_ok=True)
    vis_path = cv.write_vis(out_dir / f"{obs_id}.npz", {
        "vis": vis, "flag": flag, "weight": weight, "uvw_m": uvw, "ant1": ant1, "ant2": ant2,
        "time_s": time_s, "freq_hz": freq, "subband": subband, "ant_names": names, "ra_deg": ra0,
        "dec_deg": dec0, "t0_mjd": 60310.0, "n_ant": na, "obs_id": obs_id, "telescope": cv.TELESCOPE})
    truth = {"obs_id": obs_id, "seed": seed, "ra_deg": ra0, "dec_deg": dec0, "sigma_jy": sigma_jy,
             "subbands_mhz": list(subbands_mhz), "freq_hz": freq.tolist(), "ant_names": names,
             "gains_re": gains.real.tolist(), "gains_im": gains.imag.tolist(), "sky": sky,
             "nan_subband": nan_subband, "empty_subband": empty_subband}
    truth_path = out_dir / f"{obs_id}_truth.json"
    truth_path.write_text(json.dumps(truth, indent=1))
    model_path = out_dir / f"{obs_id}_calmodel.json"
    model_path.write_text(json.dumps({**sky, "name": f"{obs_id}-calibrator"}, indent=1))
    return {"vis": vis_path, "truth": truth_path, "calmodel": model_path, "n_ant": na,
            "n_rows": int(vis.shape[0]), "n_chan": int(freq.size), "gains": gains, "sky": sky}


def truth_gains(truth: dict[str, Any]) -> np.ndarray:
    """The injected gains (n_subband, n_ant) from a truth JSON dict."""
    return np.asarray(truth["gains_re"]) + 1j * np.asarray(truth["gains_im"])
