"""``skyweave demo radio``: simulate a NenuFAR observation, run the pipeline on the embedded engine,
compare recovered gains and sources with the truth, and say where the merged image and PNG are."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np

from radio_nenufar import conventions as cv
from radio_nenufar.calibrate import read_gains
from radio_nenufar.simulate import simulate_observation, truth_gains
from radio_nenufar.workflow import observation
from skyweave import Client


def _path(record: Any) -> Path:
    """Local path of a product record (a ``file://`` URI)."""
    return Path(unquote(urlparse(record.uri).path))


def run(store: str | None = None, *, as_json: bool = False) -> dict[str, Any]:
    """Run the demo and return (and print) its summary."""
    out = print if not as_json else (lambda *_a, **_k: None)
    with Client(store) as client:
        data = client.settings.store_dir / "radio-data"
        sim = simulate_observation(data, "nenu0001", 1, nan_subband=1, empty_subband=2)
        vis = client.add_product(sim["vis"], type=cv.VIS_RAW, obs_id="nenu0001")
        model = client.add_product(sim["calmodel"], type=cv.SKYMODEL, obs_id="nenu0001")
        out(f"simulated nenu0001: {sim['n_ant']} NenuFAR mini-arrays, {sim['n_rows']} rows x {sim['n_chan']} "
            "channels, 4 sub-bands (sub-band 1 with NaNs, sub-band 2 fully flagged)")
        run_ = client.run(observation, {"vis_id": vis.id, "model_id": model.id}, timeout=600)
        summary: dict[str, Any] = {"run_id": run_.id, "status": run_.status,
                                   "store": str(client.settings.store_dir)}
        if run_.status != "succeeded":
            summary["error"] = run_.summary()
            out(summary)
            return summary
        res = run_.results()
        truth = json.loads(Path(sim["truth"]).read_text())
        tg = truth_gains(truth)
        rows = []
        for cal, sc in zip(res["calibrations"], res["selfcal"], strict=True):
            row = {"subband": cal["subband"], "ok": cal["ok"], "reason": cal["reason"]}
            if cal["ok"]:
                g = read_gains(_path(sc["gains"] if sc.get("gains") else cal["gains"]))
                t = tg[cal["subband"]] * np.exp(-1j * np.angle(tg[cal["subband"]][cv.REF_ANT]))
                ratio = g / t
                row.update({"gain_amp_err_max": float(np.nanmax(np.abs(np.abs(ratio) - 1))),
                            "gain_phase_err_max_deg": float(np.nanmax(np.abs(np.degrees(np.angle(ratio))))),
                            "selfcal_rounds": sc["iteration"], "sources_found": len(sc["sources"])})
            rows.append(row)
            out("  sub-band", row)
        summary.update({"subbands": rows, "sources_injected": len(truth["sky"]["sources"]),
                        "merged_fits": res["merged"]["image"].uri, "merged_png": res["merged"]["png"].uri})
        out(f"merged image: {summary['merged_fits']}\nPNG: {summary['merged_png']}")
        out(f"store: {summary['store']}   look around: skyweave status {run_.id}")
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


if __name__ == "__main__":
    run()
