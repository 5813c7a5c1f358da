"""``skyweave demo radio``: simulate a NenuFAR observation, run the pipeline on the embedded engine,
compare recovered gains and sources with the truth, and say where the merged image and PNG are.

The calibrator model given to the pipeline holds only the field's brightest source (as a calibrator
catalogue would): calibration against it leaves gain errors of several degrees, which self-calibration
on the field removes; the summary shows both (``--full-model`` gives the whole field instead)."""

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


def _errors(gains: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(max relative amplitude error, max phase error in deg), referenced to antenna REF_ANT."""
    ratio = gains / (truth * np.exp(-1j * np.angle(truth[cv.REF_ANT])))
    return float(np.nanmax(np.abs(np.abs(ratio) - 1))), float(np.nanmax(np.abs(np.degrees(np.angle(ratio)))))


def _match_sources(found: list[dict[str, Any]], sky: dict[str, Any], freq_hz: float) -> dict[str, float]:
    """Each injected source against the nearest one found: the largest offset (arcmin) and the
    largest error of the flux relative to the brightest source (fraction)."""
    if not found:
        return {"pos_err_max_arcmin": float("inf"), "rel_flux_err_max": float("inf")}
    fluxes = {s["name"]: float(cv.model_flux(s, freq_hz, sky["ref_freq_hz"])) for s in sky["sources"]}
    top_true, top_found = max(fluxes.values()), max(f["flux_jy"] for f in found)
    offsets, flux_errs = [], []
    for src in sky["sources"]:
        seps = [60 * float(np.hypot((f["ra_deg"] - src["ra_deg"]) * np.cos(np.radians(src["dec_deg"])),
                                    f["dec_deg"] - src["dec_deg"])) for f in found]
        best = int(np.argmin(seps))
        offsets.append(seps[best])
        flux_errs.append(abs(found[best]["flux_jy"] / top_found - fluxes[src["name"]] / top_true))
    return {"pos_err_max_arcmin": max(offsets), "rel_flux_err_max": max(flux_errs)}


def run(store: str | None = None, *, as_json: bool = False, full_model: bool = False) -> dict[str, Any]:
    """Run the demo and return (and print) its summary."""
    out = print if not as_json else (lambda *_a, **_k: None)
    with Client(store) as client:
        data = client.settings.store_dir / "radio-data"
        sim = simulate_observation(data, "nenu0001", 1, nan_subband=1, empty_subband=2)
        vis = client.add_product(sim["vis"], type=cv.VIS_RAW, obs_id="nenu0001")
        calmodel = Path(sim["calmodel"])
        if not full_model:
            sky = json.loads(calmodel.read_text())
            calmodel = calmodel.with_name("nenu0001_calmodel_brightest.json")
            brightest = {**sky, "name": "nenu0001-brightest", "sources": sky["sources"][:1]}
            calmodel.write_text(json.dumps(brightest))
        model = client.add_product(calmodel, type=cv.SKYMODEL, obs_id="nenu0001")
        out(f"simulated nenu0001: {sim['n_ant']} NenuFAR mini-arrays, {sim['n_rows']} rows x {sim['n_chan']} "
            "channels, 4 sub-bands (sub-band 1 with NaNs, sub-band 2 fully flagged); calibrator model: "
            + ("the whole field" if full_model else "the brightest source only"))
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
                truth_sb = tg[cal["subband"]]
                amp0, ph0 = _errors(read_gains(_path(cal["gains"])), truth_sb)
                final = sc["gains"] if sc.get("gains") else cal["gains"]
                amp1, ph1 = _errors(read_gains(_path(final)), truth_sb)
                match = _match_sources(sc["sources"], truth["sky"], float(cal["freq_hz"]))
                row.update({"gain_amp_err_max_cal": amp0, "gain_phase_err_max_deg_cal": ph0,
                            "gain_amp_err_max": amp1, "gain_phase_err_max_deg": ph1,
                            "selfcal_rounds": sc["iteration"], "sources_found": len(sc["sources"]), **match})
                out(f"  sub-band {cal['subband']} ({cal['freq_hz'] / 1e6:.0f} MHz): gains vs truth (max over "
                    f"mini-arrays) after calibration {100 * amp0:.1f} % / {ph0:.2f} deg, after "
                    f"{sc['iteration']} self-cal round(s) {100 * amp1:.1f} % / {ph1:.2f} deg; "
                    f"{len(sc['sources'])} of {len(truth['sky']['sources'])} sources found, positions within "
                    f"{match['pos_err_max_arcmin']:.2f}', relative fluxes within "
                    f"{100 * match['rel_flux_err_max']:.1f} %")
            else:
                out(f"  sub-band {cal['subband']}: flagged, not imaged: {cal['reason']}")
            rows.append(row)
        summary.update({"subbands": rows, "sources_injected": len(truth["sky"]["sources"]),
                        "merged_fits": res["merged"]["image"].uri, "merged_png": res["merged"]["png"].uri})
        out(f"merged image: {summary['merged_fits']}\nPNG: {summary['merged_png']}")
        out(f"store: {summary['store']}   look around: skyweave status {run_.id}")
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


if __name__ == "__main__":
    run(full_model="--full-model" in sys.argv)
