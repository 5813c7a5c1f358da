"""Self-calibration: one round, run by skyweave as a bounded loop until the gains converge.

A round (``selfcal_step``) takes the previous round's gains (the first round: the calibrator
solution), images the gain-corrected sub-band, CLEANs it, uses the CLEAN components as the new sky
model, and re-solves the gains against it (StEFCal started from the previous gains).  Its result
carries ``delta = max_p |g_new,p - g_old,p| / max_p |g_old,p|`` (both phase-referenced to
``REF_ANT``), which the loop's ``until=result["delta"] < tol`` tests.  The round's image is the one
made with the gains it started from.

A flagged sub-band (calibration ``ok`` False) is passed through as ``{"ok": False, "delta": 0}``
without imaging: skyweave loops take no ``when=``, so the body itself must decline the work.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from radio_nenufar import conventions as cv
from radio_nenufar.calibrate import read_gains, solve, write_gains
from radio_nenufar.image import ARCMIN, components_model, image_data, write_image_fits
from skyweave import Product, context, task


@task(version="1.0")
def selfcal_step(vis: Product, cal: dict[str, Any], *, npix: int = 256, cell_arcmin: float = 2.0,
                 niter: int = 500, state: dict[str, Any] | None = None) -> dict[str, Any]:
    """One self-calibration round of one sub-band (see the module docstring)."""
    sub = int(cal["subband"])
    if not cal["ok"]:
        return {"ok": False, "subband": sub, "reason": cal["reason"], "delta": 0.0, "iteration": 0,
                "image": None, "gains": None, "sources": []}
    gains_product: Product = state["gains"] if state else cal["gains"]
    g_old = read_gains(gains_product.local_path)
    data = cv.read_vis(vis.local_path)
    res = image_data(data, g_old, npix=npix, cell_arcmin=cell_arcmin, niter=niter)
    freq = float(np.mean(data["freq_hz"]))
    model = components_model(res["comps"], res["wcs"], freq)
    sol = solve(data, model, g0=g_old)
    g_new = sol["gains"]
    both = np.isfinite(g_new) & np.isfinite(g_old)
    delta = float(np.max(np.abs(g_new - g_old)[both]) / np.max(np.abs(g_old)[both]))
    iteration = 1 if state is None else int(state["iteration"]) + 1
    obs_id = str(data["obs_id"])
    ctx = context()
    gpath = write_gains(ctx.output(f"{obs_id}_sb{sub:03d}_selfcal{iteration}_gains.npz"), g_new, sub, obs_id,
                        data["ant_names"])
    ipath = write_image_fits(ctx.output(f"{obs_id}_sb{sub:03d}_selfcal{iteration}_image.fits"),
                             res["restored"],
                             res["wcs"], beam_pix=res["beam"], cell_rad=cell_arcmin * ARCMIN, header={
                                 "obs_id": obs_id, "subband": sub, "freq": freq,
                                 "telescope": str(data["telescope"]), "noise": res["noise"],
                                 "selfcal": iteration}, comps=res["comps"])
    ctx.log.info("sub-band %d self-cal round %d: delta %.2e, residual %.4f", sub, iteration, delta,
                 sol.get("resid_frac", float("nan")))
    return {"ok": True, "subband": sub, "reason": "", "delta": delta, "iteration": iteration,
            "freq_hz": freq, "noise": res["noise"], "resid_frac": sol.get("resid_frac"),
            "sources": res["sources"], "n_dropped": res["n_dropped"],
            "gains": Product(gpath, type=cv.GAINS, obs_id=obs_id, detector=f"sb{sub:03d}",
                             attributes={"subband": sub, "selfcal_round": iteration}),
            "image": Product(ipath, type=cv.IMAGE_SUBBAND, obs_id=obs_id, detector=f"sb{sub:03d}",
                             attributes={"subband": sub, "freq_hz": freq, "noise": res["noise"],
                                         "selfcal_round": iteration})}
