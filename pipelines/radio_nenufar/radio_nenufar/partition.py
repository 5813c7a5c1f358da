"""Partition an observation by sub-band: the fan-out of the pipeline.

``list_subbands`` reads only the small ``subband`` array; ``extract_subband`` writes one file per
sub-band in the same format (``conventions``) with only that sub-band's channels.  Both are pure
functions of the input file's content, so a re-run with the same observation reuses them.
"""

from __future__ import annotations

import numpy as np

from radio_nenufar import conventions as cv
from skyweave import Product, context, task


@task(version="1.0")
def list_subbands(vis: Product) -> list[int]:
    """The sub-band numbers present in an observation, in increasing order."""
    return sorted(int(s) for s in np.unique(cv.read_subbands(vis.local_path)))


@task(version="1.0")
def extract_subband(vis: Product, subband: int) -> Product:
    """One sub-band's channels of an observation, as a ``radio.vis.subband`` product."""
    data = cv.read_vis(vis.local_path)
    cols = data["subband"] == subband
    if not cols.any():
        raise ValueError(f"sub-band {subband} not in {vis.local_path.name}")
    for key in ("vis", "flag", "weight"):
        data[key] = data[key][:, cols]
    data["freq_hz"], data["subband"] = data["freq_hz"][cols], data["subband"][cols]
    obs_id = str(data["obs_id"])
    path = cv.write_vis(context().output(f"{obs_id}_sb{subband:03d}.npz"), data)
    return Product(path, type=cv.VIS_SUBBAND, obs_id=obs_id, detector=f"sb{subband:03d}",
                   attributes={"subband": subband, "freq_hz": float(data["freq_hz"].mean()),
                               "n_chan": int(cols.sum()), "n_rows": int(data["vis"].shape[0])})
