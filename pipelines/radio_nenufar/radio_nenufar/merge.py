"""Merge sub-band images into one, write FITS and a PNG quick-look, and report the run.

The merged image is the inverse-variance weighted mean of the sub-band restored images (weights
``1 / noise^2``, the expected thermal noise of each image) on the pixel grid of the sub-band image
with the finest cell; an image on another grid (another cell, size or phase centre) is resampled
onto it first (bilinear, through the celestial WCS of both; pixels outside it count as missing).
Spectra are not modelled: a source's merged flux is the weighted mean of its sub-band fluxes.
``BMAJ``/``BMIN`` are the weighted means of the sub-band beams.  Flagged sub-bands never reach the merge.

The PNG quick-look (matplotlib, astropy WCSAxes): RA/Dec axes and grid, North up, East left,
square-root stretch from max(0, 1st percentile) to the peak, a colour bar in Jy/beam, the restoring
beam drawn in the lower-left corner, the title naming the observation, sub-bands and frequencies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse
from scipy import ndimage

from radio_nenufar import conventions as cv
from skyweave import Fatal, Product, context, task


def write_png(path: Path, img: np.ndarray, header: fits.Header | None = None, *, title: str = "") -> Path:
    """A quick-look PNG of a 2-D image (row 0 at the bottom, as in FITS): celestial axes, colour bar
    and restoring beam when ``header`` carries a WCS (and BMAJ/BMIN/BPA), pixel axes otherwise."""
    finite = np.nan_to_num(np.asarray(img, float), nan=0.0)
    lo, hi = float(np.percentile(finite, 1)), float(finite.max())
    lo = max(lo, 0.0) if hi > 0 else lo                # negative noise shown black
    fig = Figure(figsize=(6.4, 5.6), dpi=100)
    FigureCanvasAgg(fig)
    wcs = WCS(header).celestial if header is not None and "CTYPE1" in header else None
    ax: Any = fig.add_subplot(projection=wcs) if wcs is not None else fig.add_subplot()
    norm = _sqrt_norm(lo, hi)
    shown = ax.imshow(finite, origin="lower", cmap="inferno", norm=norm, interpolation="nearest")
    if wcs is not None:
        for coord, label, side in ((ax.coords[0], "Right ascension (ICRS)", "b"),
                                   (ax.coords[1], "Declination (ICRS)", "l")):
            coord.set_axislabel(label)
            coord.set_ticklabel_position(side)
            coord.set_axislabel_position(side)
            coord.set_ticks_position(side)
        ax.coords.grid(color="white", alpha=0.25, linestyle="dotted")
        cell = abs(float(header["CDELT2"])) if header is not None else 1.0
        if header is not None and "BMAJ" in header and cell > 0:
            bmaj, bmin = float(header["BMAJ"]) / cell, float(header["BMIN"]) / cell
            pad = 0.6 * max(bmaj, bmin) + 2
            ax.add_patch(Ellipse((pad, pad), bmin, bmaj, angle=float(header.get("BPA", 0.0)),
                                 edgecolor="white", facecolor="none", linewidth=1.2))
    else:
        ax.set_xlabel("x (pixel)")
        ax.set_ylabel("y (pixel)")
    unit = str(header.get("BUNIT", "")) if header is not None else ""
    fig.colorbar(shown, ax=ax, label=unit or "value", fraction=0.046, pad=0.04)
    if title:
        ax.set_title(title, fontsize=10)
    fig.savefig(path, format="png")
    return path


def _sqrt_norm(lo: float, hi: float) -> Any:
    from astropy.visualization import ImageNormalize, ManualInterval, SqrtStretch

    return ImageNormalize(interval=ManualInterval(lo, hi if hi > lo else lo + 1e-30), stretch=SqrtStretch(),
                          clip=True)


def resample(img: np.ndarray, src: fits.Header, dst: fits.Header, shape: tuple[int, ...]) -> np.ndarray:
    """``img`` (on the grid of header ``src``) resampled onto the grid of ``dst`` (bilinear through
    both celestial WCS); pixels of ``dst`` outside ``img`` are NaN."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    ra, dec = WCS(dst).celestial.wcs_pix2world(xx.ravel(), yy.ravel(), 0)
    sx, sy = WCS(src).celestial.wcs_world2pix(ra, dec, 0)
    out = ndimage.map_coordinates(np.asarray(img, float), [sy, sx], order=1, mode="constant", cval=np.nan)
    return np.asarray(out.reshape(shape))


def _same_grid(a: fits.Header, b: fits.Header, shape_a: tuple[int, ...], shape_b: tuple[int, ...]) -> bool:
    keys = ("CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CDELT1", "CDELT2", "CTYPE1", "CTYPE2")
    return shape_a == shape_b and all(a.get(k) == b.get(k) for k in keys)


@task(version="1.0")
def merge_images(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Weighted merge of the good sub-band images (results of ``selfcal_step`` / ``make_image``)."""
    good = [r for r in results if r.get("ok", True) and r.get("image") is not None]
    if not good:
        raise Fatal("no sub-band image to merge: every sub-band was flagged",
                    hint="see the report's reasons (calibrate's log says why each sub-band was flagged)")
    images: list[tuple[np.ndarray, fits.Header]] = []
    weights, beams = [], []
    for r in sorted(good, key=lambda r: r["subband"]):
        with fits.open(r["image"].local_path) as hdul:
            images.append((np.asarray(hdul[0].data, float), hdul[0].header.copy()))
            beams.append((hdul[0].header["BMAJ"], hdul[0].header["BMIN"]))
        weights.append(1.0 / float(r["noise"]) ** 2)
    # the finest grid (smallest cell) is the merged image's grid
    ref_img, ref_hdr = min(images, key=lambda ih: abs(float(ih[1]["CDELT2"])))
    header = ref_hdr.copy()
    stack = np.asarray([img if _same_grid(hdr, ref_hdr, img.shape, ref_img.shape)
                        else resample(img, hdr, ref_hdr, ref_img.shape) for img, hdr in images])
    w = np.asarray(weights) / np.sum(weights)
    have = np.isfinite(stack)
    wsum = np.tensordot(w, have.astype(float), axes=1)
    merged = np.tensordot(w, np.where(have, stack, 0.0), axes=1) / np.where(wsum > 0, wsum, np.nan)
    header["BMAJ"], header["BMIN"] = (float(np.dot(w, [b[i] for b in beams])) for i in (0, 1))
    header["SUBBANDS"] = ",".join(str(r["subband"]) for r in good)
    header["NSUBBAND"] = len(good)
    for key in ("SUBBAND", "SELFCAL"):
        header.pop(key, None)
    obs_id = str(header.get("OBS_ID", "obs"))
    ctx = context()
    path = ctx.output(f"{obs_id}_merged.fits")
    fits.PrimaryHDU(merged.astype(np.float32), header=header).writeto(path, overwrite=True)
    freqs = ", ".join(f"{float(r['freq_hz']) / 1e6:.1f}" for r in sorted(good, key=lambda r: r["subband"])
                      if r.get("freq_hz"))
    png = write_png(ctx.output(f"{obs_id}_merged.png"), merged, header,
                    title=f"{obs_id}: {len(good)} sub-band(s) merged" + (f" ({freqs} MHz)" if freqs else ""))
    subs = [int(r["subband"]) for r in good]
    return {"subbands": subs, "weights": w.tolist(), "peak_jy_beam": float(np.nanmax(merged)),
            "image": Product(path, type=cv.IMAGE_MERGED, obs_id=obs_id, attributes={"subbands": subs}),
            "png": Product(png, type=cv.IMAGE_PNG, obs_id=obs_id, attributes={"subbands": subs})}


@task(version="1.0")
def report(calibrations: list[dict[str, Any]], selfcal: list[dict[str, Any]], merged: dict[str, Any]
           ) -> dict[str, Any]:
    """What happened to every sub-band: calibrated and imaged, or flagged and why."""
    loops = {int(s["subband"]): s for s in selfcal}
    rows = []
    for cal in sorted(calibrations, key=lambda c: c["subband"]):
        sc = loops.get(int(cal["subband"]), {})
        rows.append({"subband": cal["subband"], "freq_mhz": round(cal["freq_hz"] / 1e6, 3), "ok": cal["ok"],
                     "reason": cal["reason"], "resid_frac": cal.get("resid_frac"),
                     "flagged_fraction": cal["flagged_fraction"], "selfcal_rounds": sc.get("iteration", 0),
                     "selfcal_delta": sc.get("delta"), "n_sources": len(sc.get("sources", []))})
    return {"subbands": rows, "flagged": [r["subband"] for r in rows if not r["ok"]],
            "merged_subbands": merged["subbands"]}
