"""Merge sub-band images into one, write FITS and a PNG quick-look, and report the run.

The merged image is the inverse-variance weighted mean of the sub-band restored images (weights
``1 / noise^2``, the expected thermal noise of each image); all sub-band images share the pixel
grid and WCS (same npix, cell and phase centre) so the mean is pixel by pixel.  Spectra are not
modelled: a source's merged flux is the weighted mean of its sub-band fluxes.  ``BMAJ``/``BMIN``
are the weighted means of the sub-band beams.  Flagged sub-bands never reach the merge.

The PNG is 8-bit greyscale (square-root stretch between the 1st percentile and the peak, North up,
East left), written with a minimal pure-numpy/zlib PNG encoder: no plotting dependency.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from radio_nenufar import conventions as cv
from skyweave import Product, context, task


def write_png(path: Path, img: np.ndarray) -> Path:
    """Write a 2-D array (row 0 at the bottom, as in FITS) as an 8-bit greyscale PNG."""
    finite = np.nan_to_num(img, nan=0.0)
    lo, hi = np.percentile(finite, 1), float(finite.max())
    scaled = np.sqrt(np.clip((finite - lo) / max(hi - lo, 1e-30), 0, 1))
    pix = (scaled[::-1] * 255).astype(np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in pix)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", pix.shape[1], pix.shape[0], 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6))
                     + chunk(b"IEND", b""))
    return path


@task(version="1.0")
def merge_images(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Weighted merge of the good sub-band images (results of ``selfcal_step`` / ``make_image``)."""
    good = [r for r in results if r.get("ok", True) and r.get("image") is not None]
    if not good:
        raise ValueError("no sub-band image to merge: every sub-band was flagged")
    stack, weights, beams = [], [], []
    header: Any = None
    for r in sorted(good, key=lambda r: r["subband"]):
        with fits.open(r["image"].local_path) as hdul:
            stack.append(np.asarray(hdul[0].data, float))
            header = header or hdul[0].header.copy()
            beams.append((hdul[0].header["BMAJ"], hdul[0].header["BMIN"]))
        weights.append(1.0 / float(r["noise"]) ** 2)
    w = np.asarray(weights) / np.sum(weights)
    merged = np.tensordot(w, np.asarray(stack), axes=1)
    header["BMAJ"], header["BMIN"] = (float(np.dot(w, [b[i] for b in beams])) for i in (0, 1))
    header["SUBBANDS"] = ",".join(str(r["subband"]) for r in good)
    header["NSUBBAND"] = len(good)
    for key in ("SUBBAND", "SELFCAL"):
        header.pop(key, None)
    obs_id = str(header.get("OBS_ID", "obs"))
    ctx = context()
    path = ctx.output(f"{obs_id}_merged.fits")
    fits.PrimaryHDU(merged.astype(np.float32), header=header).writeto(path, overwrite=True)
    png = write_png(ctx.output(f"{obs_id}_merged.png"), merged)
    subs = [int(r["subband"]) for r in good]
    return {"subbands": subs, "weights": w.tolist(), "peak_jy_beam": float(merged.max()),
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
