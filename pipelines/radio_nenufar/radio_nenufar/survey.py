"""Survey: every uvfits/uvh5 file bundled with pyuvdata 3.2.3, through ingest -> calibrate -> image.

    python -m radio_nenufar.survey [FILE ...]        (default: every *.uvfits, *.uvh5 in pyuvdata/data)

Each file runs in its own process (time and peak memory are that process's).  Per sub-band: a file
whose phase centre is a known calibrator (``CALIBRATORS``) is calibrated per feed against a point
source at the phase centre (``calibrate.solve``, ``max_resid`` 1: per-sample data are noise
dominated) when the bispectrum shows a point-like signal (``closure``; else not calibrated, as
``ingest.point_model`` refuses); any other file is imaged as it is (simulations and already
calibrated data).  The image grid is automatic (``image.image_grid``).  Printed per sub-band:
grid, restoring beam, the brightest pixel's offset from the phase centre in beams and peak /
residual rms.  A file the pipeline refuses prints its ``Fatal`` message.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from radio_nenufar import conventions as cv
from radio_nenufar.calibrate import solve
from radio_nenufar.closure import MIN_Z, bispectrum_z
from radio_nenufar.image import image_data
from radio_nenufar.ingest import phase_centre_model, to_vis
from skyweave import Fatal

CALIBRATORS = {"J1008+0730", "3c286", "3C286", "1228+126"}
"""Phase-centre names of calibrator (or bright compact) targets in pyuvdata's test files."""


def subband_data(data: dict[str, Any], sb: int) -> dict[str, Any]:
    """One sub-band's channels (what ``partition.extract_subband`` writes), in memory."""
    cols = data["subband"] == sb
    out = dict(data)
    for key in ("vis", "flag", "weight"):
        out[key] = data[key][:, cols]
    out["freq_hz"], out["subband"] = data["freq_hz"][cols], data["subband"][cols]
    return out


def survey_one(path: Path, niter: int = 200) -> dict[str, Any]:
    """Ingest, calibrate (calibrators) and image one file; a summary row."""
    t0 = time.perf_counter()
    row: dict[str, Any] = {"file": path.name}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            summary = to_vis(path, Path(tmp) / "vis.npz", path.stem[:40])
        except Fatal as exc:
            row.update(status="refused", message=exc.message, hint=exc.hint)
            return row
        data = cv.read_vis(Path(tmp) / "vis.npz")
    row.update(status="ok", ingest=summary, subbands=[])
    calibrator = summary["phase_center"] in CALIBRATORS
    row["bispectrum"] = bispectrum_z(data)
    for sb in np.unique(data["subband"]):
        part = subband_data(data, int(sb))
        gains = None
        entry: dict[str, Any] = {"subband": int(sb), "freq_mhz": float(np.mean(part["freq_hz"]) / 1e6)}
        try:
            if calibrator and row["bispectrum"]["z"] < MIN_Z:
                entry.update(cal_ok=False, cal_reason="no point-like signal: point_model refuses")
            elif calibrator:
                sol = solve(part, phase_centre_model(part), max_resid=1.0)
                entry.update(cal_ok=bool(sol["ok"]), cal_reason=sol.get("reason", ""),
                             resid_frac=sol.get("resid_frac"),
                             dead=[str(part["ant_names"][i]) for i in sol.get("dead_antennas", [])])
                gains = sol["gains"] if sol["ok"] else None
            res = image_data(part, gains, niter=niter)
        except Fatal as exc:
            entry.update(status="refused", message=exc.message)
            row["subbands"].append(entry)
            continue
        img = res["restored"]
        py, px = np.unravel_index(np.argmax(img), img.shape)
        c = res["npix"] // 2
        ra, dec = res["wcs"].wcs_pix2world([[px, py]], 0)[0]
        entry.update(npix=res["npix"], cell_arcmin=res["cell_arcmin"], beam_pix=res["beam"][0],
                     peak_offset_pix=float(np.hypot(px - c, py - c)),
                     peak_offset_beam=float(np.hypot(px - c, py - c) / res["beam"][0]),
                     peak_ra_deg=float(ra), peak_dec_deg=float(dec),
                     peak_rms=float(img.max() / np.std(res["resid"])), n_vis=res["n_vis"],
                     n_dropped=res["n_dropped"], n_sources=len(res["sources"]))
        row["subbands"].append(entry)
    row["seconds"] = time.perf_counter() - t0
    return row


def bundled_files() -> list[Path]:
    """pyuvdata's bundled uvfits and uvh5 files."""
    import pyuvdata

    data = Path(pyuvdata.__file__).parent / "data"
    return sorted([*data.glob("*.uvfits"), *data.glob("*.uvh5")])


def main(argv: list[str]) -> int:
    if argv[:1] == ["--one"]:
        row = survey_one(Path(argv[1]))
        row["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        sys.stdout.write(json.dumps(row, default=str) + "\n")
        return 0
    for f in [Path(a) for a in argv] or bundled_files():
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "radio_nenufar.survey", "--one", str(f)],
                              capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            sys.stdout.write(json.dumps({"file": f.name, "status": "crashed",
                                         "stderr": done.stderr[-800:], "wall_s": wall}) + "\n")
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row["wall_s"] = wall
        sys.stdout.write(json.dumps(row, default=str) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
