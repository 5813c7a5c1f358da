"""Ingest real visibility files (uvfits, read with pyuvdata) into the pipeline's format.

pyuvdata is a real dependency of the pipeline (this task), not only of the tests: reading uvfits
(random groups, AIPS tables, phase-centre catalogues) correctly is what pyuvdata is for.  Only the
uvfits reader is used: with astropy 8, pyuvdata's Miriad/MeasurementSet readers try to download
astropy's site list.

Conversion: autocorrelations dropped; Stokes I = mean of the parallel-hand polarisations present
(RR, LL or XX, YY), flagged if any of them is flagged; weight = nsample (relative weights: the
absolute noise of archival files is not trusted); baselines ordered ant1 < ant2 (a row with
ant1 > ant2 is conjugated and its uvw negated); uvw as pyuvdata gives them (``x[ant2] - x[ant1]``,
metres, toward the phase centre); the whole spectral window is one sub-band (number 0).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from radio_nenufar import conventions as cv
from skyweave import Product, context, task

PARALLEL_HANDS = {-1, -2, -5, -6}  # RR, LL, XX, YY (AIPS codes)


def uvfits_to_vis(src: Path | str, dest: Path, obs_id: str) -> dict[str, int | float]:
    """Convert one uvfits file; returns a summary (rows, channels, frequency)."""
    from pyuvdata import UVData

    with warnings.catch_warnings():  # pyuvdata warns about uvw vs antenna positions on real files
        warnings.simplefilter("ignore")
        uv = UVData.from_file(str(src), file_type="uvfits")
    cross = uv.ant_1_array != uv.ant_2_array
    pols = [i for i, p in enumerate(uv.polarization_array) if int(p) in PARALLEL_HANDS]
    if not pols:
        raise ValueError(f"{src}: no parallel-hand polarisation to form Stokes I")
    data = uv.data_array[cross][:, :, pols]
    flags = uv.flag_array[cross][:, :, pols].any(axis=-1)
    vis = data.mean(axis=-1)
    weight = np.where(flags, 0.0, uv.nsample_array[cross][:, :, pols].mean(axis=-1))
    a1, a2, uvw = uv.ant_1_array[cross], uv.ant_2_array[cross], uv.uvw_array[cross]
    swap = a1 > a2
    vis[swap], uvw[swap] = np.conj(vis[swap]), -uvw[swap]
    a1, a2 = np.where(swap, a2, a1), np.where(swap, a1, a2)
    ants, inv = np.unique(np.r_[a1, a2], return_inverse=True)
    cat = next(iter(uv.phase_center_catalog.values()))
    freq = np.asarray(uv.freq_array).ravel()
    names = [uv.telescope.antenna_names[list(uv.telescope.antenna_numbers).index(a)] for a in ants]
    t0 = float(uv.time_array.min())
    cv.write_vis(dest, {"vis": vis, "flag": flags, "weight": weight, "uvw_m": uvw,
                        "ant1": inv[: a1.size], "ant2": inv[a1.size:],
                        "time_s": (uv.time_array[cross] - t0) * 86400,
                        "freq_hz": freq, "subband": np.zeros(freq.size, int), "ant_names": names,
                        "ra_deg": float(np.degrees(cat["cat_lon"])),
                        "dec_deg": float(np.degrees(cat["cat_lat"])),
                        "t0_mjd": t0 - 2400000.5, "n_ant": ants.size, "obs_id": obs_id,
                        "telescope": str(uv.telescope.name)})
    return {"n_rows": int(vis.shape[0]), "n_chan": int(freq.size), "freq_hz": float(freq.mean()),
            "n_ant": int(ants.size)}


@task(version="1.0")
def import_uvfits(path: str, obs_id: str) -> Product:
    """A uvfits file (by path) as a ``radio.vis.raw`` product."""
    dest = context().output(f"{obs_id}.npz")
    summary = uvfits_to_vis(path, dest, obs_id)
    return Product(dest, type=cv.VIS_RAW, obs_id=obs_id, attributes={"source_file": Path(path).name,
                                                                     **summary})
