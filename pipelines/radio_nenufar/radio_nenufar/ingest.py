"""Ingest real visibility files (uvfits, read with pyuvdata) into the pipeline's format.

pyuvdata is a real dependency of the pipeline (this task), not only of the tests: reading uvfits
(random groups, AIPS tables, phase-centre catalogues) correctly is what pyuvdata is for.  Only the
uvfits reader is used: with astropy 8, pyuvdata's Miriad/MeasurementSet readers try to download
astropy's site list.

Conversion: autocorrelations dropped; baselines ordered ant1 < ant2 (a row with ant1 > ant2 is
conjugated and its uvw negated); uvw as pyuvdata gives them (``x[ant2] - x[ant1]``, metres, toward
the phase centre); weight = nsample (relative weights: the absolute noise of archival files is not
trusted), 0 where flagged; the whole spectral window is one sub-band (number 0); the phase centre is
the file's (single) phase-centre catalogue entry (for uvfits: ``CRVAL6``/``CRVAL7``).

Polarisation (``per_feed``, default True): every parallel hand (RR, LL or XX, YY) becomes its own set
of rows, and each *feed* of an antenna its own gain "antenna" (``ant_names`` ``"ea01/R"``, ...).
R and L (or X and Y) feeds have independent complex gains, so averaging RR and LL into Stokes I
*before* calibration mixes two different gain products per baseline, which no per-antenna gain can
undo (on the EVLA test file the RR and LL phases of a baseline differ by up to 180 deg).  Calibrated
rows image to ``(RR + LL) / 2 = I`` for an unpolarised sky, as the imager averages all rows.
``per_feed=False`` writes one Stokes-I row per baseline (mean of the parallel hands, flagged if any
of them is), the format for data that are already calibrated.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from radio_nenufar import conventions as cv
from skyweave import Product, context, task

PARALLEL_HANDS = {-1, -2, -5, -6}  # RR, LL, XX, YY (AIPS codes)
FEED = {-1: "R", -2: "L", -5: "X", -6: "Y"}


def uvfits_to_vis(src: Path | str, dest: Path, obs_id: str, *, per_feed: bool = True
                  ) -> dict[str, int | float]:
    """Convert one uvfits file; returns a summary (rows, channels, frequency, antennas, gain
    "antennas" = feeds when ``per_feed``)."""
    from pyuvdata import UVData

    with warnings.catch_warnings():  # pyuvdata warns about uvw vs antenna positions on real files
        warnings.simplefilter("ignore")
        uv = UVData.from_file(str(src), file_type="uvfits")
    cross = uv.ant_1_array != uv.ant_2_array
    pols = [i for i, p in enumerate(uv.polarization_array) if int(p) in PARALLEL_HANDS]
    if not pols:
        raise ValueError(f"{src}: no parallel-hand polarisation to form Stokes I")
    a1, a2, uvw = uv.ant_1_array[cross], uv.ant_2_array[cross], uv.uvw_array[cross]
    swap = a1 > a2
    uvw[swap] = -uvw[swap]
    a1, a2 = np.where(swap, a2, a1), np.where(swap, a1, a2)
    ants, inv = np.unique(np.r_[a1, a2], return_inverse=True)
    i1, i2 = inv[: a1.size], inv[a1.size:]
    names = [uv.telescope.antenna_names[list(uv.telescope.antenna_numbers).index(a)] for a in ants]
    data = uv.data_array[cross][:, :, pols]
    data[swap] = np.conj(data[swap])
    flags = uv.flag_array[cross][:, :, pols]
    nsamp = uv.nsample_array[cross][:, :, pols]
    if per_feed:
        n_pol = len(pols)
        feeds = [FEED[int(uv.polarization_array[i])] for i in pols]
        vis = np.concatenate([data[:, :, k] for k in range(n_pol)])
        flag = np.concatenate([flags[:, :, k] for k in range(n_pol)])
        weight = np.where(flag, 0.0, np.concatenate([nsamp[:, :, k] for k in range(n_pol)]))
        ant1 = np.concatenate([i1 + k * ants.size for k in range(n_pol)])
        ant2 = np.concatenate([i2 + k * ants.size for k in range(n_pol)])
        uvw, time = np.tile(uvw, (n_pol, 1)), np.tile(uv.time_array[cross], n_pol)
        names = [f"{n}/{f}" for f in feeds for n in names]
    else:
        flag = flags.any(axis=-1)
        vis = data.mean(axis=-1)
        weight = np.where(flag, 0.0, nsamp.mean(axis=-1))
        ant1, ant2, time = i1, i2, uv.time_array[cross]
    cat = next(iter(uv.phase_center_catalog.values()))
    freq = np.asarray(uv.freq_array).ravel()
    t0 = float(uv.time_array.min())
    cv.write_vis(dest, {"vis": vis, "flag": flag, "weight": weight, "uvw_m": uvw,
                        "ant1": ant1, "ant2": ant2, "time_s": (time - t0) * 86400,
                        "freq_hz": freq, "subband": np.zeros(freq.size, int), "ant_names": names,
                        "ra_deg": float(np.degrees(cat["cat_lon"])),
                        "dec_deg": float(np.degrees(cat["cat_lat"])),
                        "t0_mjd": t0 - 2400000.5, "n_ant": len(names), "obs_id": obs_id,
                        "telescope": str(uv.telescope.name)})
    return {"n_rows": int(vis.shape[0]), "n_chan": int(freq.size), "freq_hz": float(freq.mean()),
            "n_ant": int(ants.size), "n_gain_ant": len(names)}


@task(version="1.1")
def import_uvfits(path: str, obs_id: str, per_feed: bool = True) -> Product:
    """A uvfits file (by path) as a ``radio.vis.raw`` product (one gain per feed by default)."""
    dest = context().output(f"{obs_id}.npz")
    summary = uvfits_to_vis(path, dest, obs_id, per_feed=per_feed)
    return Product(dest, type=cv.VIS_RAW, obs_id=obs_id, attributes={"source_file": Path(path).name,
                                                                     **summary})
