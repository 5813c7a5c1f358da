"""Direction-independent gain calibration of one sub-band against a sky model (StEFCal).

Model
    ``V_pq = g_p conj(g_q) M_pq`` with one complex gain per antenna for the whole sub-band (all
    times and channels): ``M`` is the direct Fourier transform (with w term) of the point-source
    calibrator model.

Solver: StEFCal (Salvini & Wijnholds 2014, A&A 571, A97), alternating least squares
    With the other gains fixed, ``g_p = sum_q w conj(z_pq) V_pq / sum_q w |z_pq|^2`` with
    ``z_pq = conj(g_q) M_pq``, summed over every baseline involving p (both orientations), time and
    channel; every second iteration the new estimate is averaged with the previous one, which makes
    the iteration converge.  Stops when ``max |g_new - g_old| / max |g| < tol`` (default 1e-6) or at
    ``max_iter``.  Solutions are phase-referenced to antenna ``REF_ANT`` (zero phase).

Flagging and checks (the result's ``ok`` is False, with a ``reason``, when any fails)
    * samples that are flagged, have zero weight, or are not finite are excluded (counted in
      ``n_nonfinite`` and ``flagged_fraction``);
    * fewer than ``min_good_fraction`` (default 5 %) good samples: "no good data", no solution;
    * an antenna with no good sample gets gain NaN and is reported in ``dead_antennas``;
    * an antenna whose data carry no signal (a receiver that is off: the EVLA test file has one
      antenna at 1e-4 of the others' amplitude, unflagged) solves to a gain near 0, and dividing
      by it would turn its noise into the brightest thing in the image.  After the first solve, an
      antenna with ``|g| < min_gain_frac * median |g|`` (default 0.3, i.e. < 9 % of the typical
      power; injected NenuFAR gains are >= 0.5 of the median) is flagged (gain NaN, listed in
      ``dead_antennas`` and ``weak_antennas``) and the others are solved again without it;
    * model mismatch: after the fit, ``resid_frac = sum w |V - g M g*|^2 / sum w |V|^2``.  With a model
      that describes the field this is the noise fraction (~ sigma^2 / (S^2 + sigma^2)); a calibrator
      model of another field leaves most of the power unexplained (samples of flagged antennas
      are left out of both sums).  Real files are often noise-dominated per sample (the EVLA test
      file: 91 % of the power is noise with the right model), so the check is on the *signal*
      power left unexplained, ``(resid_frac - noise_frac) / (1 - noise_frac) > max_resid`` (default
      0.5) flags the sub-band as "calibrator model does not match the field"; ``noise_frac`` is the
      noise's share of the power, estimated from differences of adjacent channels, or of
      consecutive times of a baseline, whichever is smaller (both can only over-estimate the noise;
      0 when neither exists).  ``noise_frac`` > 0.98: "no detectable signal", flagged too.

A failed check returns a flagged result instead of raising: the other sub-bands go on and the
report lists the flagged ones with their reason; nothing downstream images a flagged sub-band.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from radio_nenufar import conventions as cv
from skyweave import Product, context, task

MIN_GOOD_FRACTION = 0.05
MAX_RESID = 0.5
MIN_GAIN_FRAC = 0.3
MAX_NOISE_FRAC = 0.98


def predict_model(data: dict[str, Any], model: dict[str, Any]) -> np.ndarray:
    """Model visibilities (nrow, nchan) of a point-source model for this file's uvw and channels."""
    lam = cv.C_M_S / data["freq_hz"]
    out = np.zeros(data["vis"].shape, np.complex128)
    for src in model["sources"]:
        l, m = cv.direction_cosines(src["ra_deg"], src["dec_deg"], data["ra_deg"], data["dec_deg"])  # noqa: E741
        phase = data["uvw_m"] @ np.array([l, m, np.sqrt(1 - l * l - m * m) - 1.0])
        flux = cv.model_flux(src, data["freq_hz"], model["ref_freq_hz"])
        out += flux * np.exp(-2j * np.pi * phase[:, None] / lam[None, :])
    return out


def noise_fraction(data: dict[str, Any], good: np.ndarray) -> float:
    """The noise's share of the visibility power (see the module docstring), 0 when unknown."""
    vis = np.where(good, data["vis"], np.nan).astype(np.complex128)
    power = float(np.nanmean(np.abs(vis) ** 2)) if good.any() else 0.0
    estimates = []
    if vis.shape[1] > 1:
        d = np.diff(vis, axis=1)
        estimates.append(np.nanmean(np.abs(d) ** 2) / 2)
    order = np.lexsort((data["time_s"], data["ant2"], data["ant1"]))
    same = ((data["ant1"][order][1:] == data["ant1"][order][:-1])
            & (data["ant2"][order][1:] == data["ant2"][order][:-1]))
    if same.any():
        d = (vis[order][1:] - vis[order][:-1])[same]
        estimates.append(np.nanmean(np.abs(d) ** 2) / 2)
    estimates = [float(e) for e in estimates if np.isfinite(e)]
    if not estimates or power <= 0:
        return 0.0
    return float(min(min(estimates) / power, 1.0))


def good_mask(data: dict[str, Any]) -> np.ndarray:
    """Samples usable for calibration and imaging: unflagged, positive weight, finite."""
    return np.asarray((~data["flag"]) & (data["weight"] > 0) & np.isfinite(data["vis"]))


def stefcal(vis: np.ndarray, model: np.ndarray, weight: np.ndarray, ant1: np.ndarray, ant2: np.ndarray,
            *, n_ant: int, tol: float = 1e-6, max_iter: int = 200, g0: np.ndarray | None = None,
            phase_only: bool = False) -> tuple[np.ndarray, int]:
    """StEFCal on flattened samples (vis, model, weight, ant1, ant2 all of one length).

    ``phase_only``: the amplitudes stay those of ``g0`` and each update keeps only the phase of the
    least-squares estimate (``arg sum w conj(z) V``, the phase-only least-squares solution).

    Returns the gains (phase-referenced to ``REF_ANT`` when it has data; NaN for antennas without
    data) and the number of iterations.
    """
    g = np.ones(n_ant, complex) if g0 is None else np.where(np.isfinite(g0), g0, 1.0).astype(complex)
    has = np.bincount(ant1, weight, n_ant) + np.bincount(ant2, weight, n_ant) > 0
    it = 0
    for it in range(1, max_iter + 1):
        z1 = np.conj(g[ant2]) * model                # V_pq ~ g_p z1  (p = ant1)
        z2 = np.conj(g[ant1] * model)                # V_qp = conj(V_pq) ~ g_q z2  (q = ant2)
        vq = np.conj(vis)
        num = (np.bincount(ant1, (weight * np.conj(z1) * vis).real, n_ant)
               + 1j * np.bincount(ant1, (weight * np.conj(z1) * vis).imag, n_ant)
               + np.bincount(ant2, (weight * np.conj(z2) * vq).real, n_ant)
               + 1j * np.bincount(ant2, (weight * np.conj(z2) * vq).imag, n_ant))
        den = np.bincount(ant1, weight * np.abs(z1) ** 2, n_ant) + np.bincount(ant2, weight * np.abs(z2) ** 2,
                                                                              n_ant)
        new = np.where(den > 0, num / np.where(den > 0, den, 1.0), g)
        if it % 2 == 0:
            new = 0.5 * (new + g)
        if phase_only:
            new = np.abs(g) * np.exp(1j * np.angle(new))
        change = np.max(np.abs(new - g)[has]) / max(np.max(np.abs(new)[has]), 1e-30)
        g = new
        if change < tol:
            break
    ref = cv.REF_ANT if has[cv.REF_ANT] else int(np.argmax(has))
    g = g * np.exp(-1j * np.angle(g[ref]))
    g[~has] = np.nan
    return g, it


def solve(data: dict[str, Any], model: dict[str, Any], *, tol: float = 1e-6, max_iter: int = 200,
          min_good_fraction: float = MIN_GOOD_FRACTION, max_resid: float = MAX_RESID,
          min_gain_frac: float = MIN_GAIN_FRAC, g0: np.ndarray | None = None, phase_only: bool = False
          ) -> dict[str, Any]:
    """Solve and check one sub-band (see the module docstring); returns gains and statistics."""
    good = good_mask(data)
    n_ant = int(data["n_ant"])
    stats: dict[str, Any] = {"n_samples": int(good.size), "flagged_fraction": float(1 - good.mean()),
                             "n_nonfinite": int((~np.isfinite(data["vis"])).sum())}
    if good.mean() < min_good_fraction:
        return {**stats, "ok": False, "reason": f"no good data ({100 * good.mean():.1f}% usable)",
                "gains": np.full(n_ant, np.nan, complex)}
    mvis = predict_model(data, model)
    rows, _ = np.nonzero(good)
    a1, a2 = data["ant1"][rows], data["ant2"][rows]
    v, m, w = data["vis"][good].astype(complex), mvis[good], data["weight"][good].astype(float)
    g, iters = stefcal(v, m, w, a1, a2, n_ant=n_ant, tol=tol, max_iter=max_iter, g0=g0, phase_only=phase_only)
    amp = np.abs(g)
    weak = np.isfinite(amp) & (amp < min_gain_frac * np.nanmedian(amp))
    if weak.any():
        w = np.where(weak[a1] | weak[a2], 0.0, w)
        g, more = stefcal(v, m, w, a1, a2, n_ant=n_ant, tol=tol, max_iter=max_iter, g0=g,
                          phase_only=phase_only)
        iters += more
    live = np.isfinite(g[a1]) & np.isfinite(g[a2])
    gz = np.where(np.isfinite(g), g, 0.0)
    resid, wl = (v - gz[a1] * np.conj(gz[a2]) * m)[live], w[live]
    resid_frac = float(np.sum(wl * np.abs(resid) ** 2) / max(np.sum(wl * np.abs(v[live]) ** 2), 1e-30))
    dead = [int(a) for a in np.flatnonzero(~np.isfinite(g))]
    stats["weak_antennas"] = [int(a) for a in np.flatnonzero(weak)]
    stats.update({"iterations": iters, "resid_frac": resid_frac, "dead_antennas": dead})
    noise_frac = noise_fraction(data, good)
    stats["noise_frac"] = noise_frac
    if noise_frac > MAX_NOISE_FRAC:
        return {**stats, "ok": False, "gains": g,
                "reason": f"no detectable signal (noise ~{100 * noise_frac:.0f}% of the power)"}
    if (resid_frac - noise_frac) / (1 - noise_frac) > max_resid:
        return {**stats, "ok": False, "gains": g,
                "reason": f"calibrator model does not match the field (residual {100 * resid_frac:.0f}% "
                          f"of the power, noise ~{100 * noise_frac:.0f}%: more than {100 * max_resid:.0f}% "
                          "of the signal unexplained)"}
    return {**stats, "ok": True, "reason": "", "gains": g}


def write_gains(path: Path, gains: np.ndarray, subband: int, obs_id: str, ant_names: np.ndarray) -> Path:
    """Gain table: ``gains`` complex128 (n_ant,), ``subband``, ``obs_id``, ``ant_names``."""
    with path.open("wb") as fh:
        np.savez(fh, gains=gains, subband=np.asarray(subband), obs_id=np.asarray(obs_id),
                 ant_names=np.asarray(ant_names, dtype=str))
    return path


def read_gains(path: Path | str) -> np.ndarray:
    """The complex gains (n_ant,) of a gain table."""
    with np.load(path, allow_pickle=False) as npz:
        return np.asarray(npz["gains"])


@task(version="1.2")
def calibrate(vis: Product, model: Product, max_resid: float = MAX_RESID) -> dict[str, Any]:
    """Calibrate one sub-band against the calibrator model product (``radio.cal.skymodel``).

    Returns ``{"ok", "reason", "subband", "freq_hz", "gains": Product | None, <statistics>}``; a
    sub-band that fails a check is reported with ``ok`` False and no gain table.
    """
    data = cv.read_vis(vis.local_path)
    sky = json.loads(model.local_path.read_text())
    sub = int(data["subband"][0])
    result = solve(data, sky, max_resid=max_resid)
    gains = result.pop("gains")
    out: dict[str, Any] = {**result, "subband": sub, "freq_hz": float(np.mean(data["freq_hz"])),
                           "model": sky.get("name", ""), "gains": None}
    log = context().log
    if result["ok"]:
        path = write_gains(context().output(f"{data['obs_id']}_sb{sub:03d}_gains.npz"), gains, sub,
                           str(data["obs_id"]), data["ant_names"])
        out["gains"] = Product(path, type=cv.GAINS, obs_id=str(data["obs_id"]), detector=f"sb{sub:03d}",
                               attributes={"subband": sub, "resid_frac": result["resid_frac"]})
        log.info("sub-band %d calibrated: residual %.3f, %d iterations", sub, result["resid_frac"],
                 result["iterations"])
    else:
        log.warning("sub-band %d flagged: %s", sub, result["reason"])
    return out
