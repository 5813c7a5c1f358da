"""The radio pipeline as a skyweave workflow.

    vis ─ list_subbands ─┬ extract_subband ─ calibrate ─ loop(selfcal_step) ─┐   (one per sub-band)
                         │                     ▲ calibrator model (product)    │
                         └──────────────────────────── merge_images ◄──────────┘ ─ report

* fan-out: ``extract_subband.map`` over the sub-bands found by ``list_subbands``;
* each sub-band is calibrated against the calibrator model product (flagged sub-bands are
  reported, not imaged), then self-calibrated in a bounded loop
  (``until=result["delta"] < tol``, at most ``max_selfcal`` rounds);
* gather: ``merge_images`` and ``report`` take every sub-band's result.

The calibrator model is a registered product (``radio.cal.skymodel``) and is an input of
``calibrate`` only, so a new model re-runs calibration, self-calibration, merge and report while
``list_subbands`` and ``extract_subband`` are reused (smart recomputation).

``npix``/``cell_arcmin`` default to None: each sub-band's image grid is chosen from its data
(``image.image_grid``: ~4 pixels across the synthesized beam, the field covering the primary beam up
to 512 pixels); ``merge_images`` resamples sub-band images of different cells onto the finest grid.
Without ``model_id`` (None), the sub-bands are imaged as they are (``make_image.map``, already
calibrated data or simulations) and merged: ``{"images", "merged"}``.
Real files: ``ingest.import_visibilities`` (uvfits/uvh5, one sub-band per spectral window) and
``ingest.point_model`` (a point source at the phase centre, for a calibrator observation).
"""

from __future__ import annotations

from typing import Any

import skyweave
from radio_nenufar import calibrate, image, merge, partition, selfcal
from skyweave import Product, workflow


@workflow
def observation(vis_id: str, model_id: str | None = None, *, npix: int | None = None,
                cell_arcmin: float | None = None, niter: int = 500, tol: float = 0.01, max_selfcal: int = 4,
                max_resid: float = 0.5) -> Any:
    vis = Product("", id=vis_id)
    subbands = partition.list_subbands(vis=vis)
    parts = partition.extract_subband.map(vis=vis, subband=subbands)
    if not model_id:                       # no calibrator model: image the data as they are
        images = image.make_image.map(vis=parts, npix=npix, cell_arcmin=cell_arcmin, niter=niter)
        return {"images": images, "merged": merge.merge_images(results=images)}
    model = Product("", id=model_id)
    cals = calibrate.calibrate.map(vis=parts, model=model, max_resid=max_resid)
    loops = skyweave.loop(selfcal.selfcal_step, until=skyweave.result["delta"] < tol,
                          max_iterations=max_selfcal, mapped=True, vis=parts, cal=cals, npix=npix,
                          cell_arcmin=cell_arcmin, niter=niter)
    merged = merge.merge_images(results=loops)
    return {"calibrations": cals, "selfcal": loops, "merged": merged,
            "report": merge.report(calibrations=cals, selfcal=loops, merged=merged)}
