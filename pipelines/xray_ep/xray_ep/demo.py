"""``skyweave demo xray``: simulate observations, run the pipeline on the embedded engine, compare
what it found with what the simulator injected, and say where everything is."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.markup import escape  # paths (the store's) and messages are user text, not markup
from rich.table import Table

from skyweave import Client
from xray_ep import conventions as cv
from xray_ep.simulate import simulate_observation
from xray_ep.workflow import observation

POSITION_TOLERANCE_ARCSEC = 30.0
"""A detection matches an injected source within this distance (the PSF is ~15 arcsec wide)."""

OBSERVATIONS: list[tuple[str, int, Literal["full", "partial", "missing"], bool]] = [
    # obs_id, seed, aux situation, transient (seeds 1-3: no Earth occultation)
    ("ep0001", 1, "full", True),
    ("ep0002", 2, "missing", False),
    ("ep0003", 3, "partial", False),
]


def _sep_arcsec(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    r1, d1, r2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    c = math.sin(d1) * math.sin(d2) + math.cos(d1) * math.cos(d2) * math.cos(r1 - r2)
    return math.degrees(math.acos(max(-1.0, min(1.0, c)))) * 3600


def score(found: list[dict[str, Any]], truth: list[dict[str, Any]], exposure: float) -> dict[str, Any]:
    """Match detections to injected sources (nearest first, each used once, within the tolerance);
    report matches (offset, measured and injected rate), misses and spurious detections."""
    injected = [s for s in truth if s.get("n_events", 0) > 0]
    pairs = sorted((_sep_arcsec(d["ra"], d["dec"], s["ra"], s["dec"]), i, s["id"])
                   for i, d in enumerate(found) for s in injected)
    matched: dict[int, dict[str, Any]] = {}
    used: set[int] = set()
    for sep, i, sid in pairs:
        if sep <= POSITION_TOLERANCE_ARCSEC and i not in used and sid not in matched:
            used.add(i)
            matched[sid] = {"source": sid, "detection": found[i].get("name", ""),
                            "offset_arcsec": round(sep, 1), "rate": round(float(found[i]["rate"]), 4),
                            "true_rate": round(truth[sid]["n_events"] / exposure, 4)}
    return {"injected": len(injected), "detected": len(found), "matched": len(matched),
            "spurious": len(found) - len(matched),
            "missed": [s["id"] for s in injected if s["id"] not in matched],
            "matches": [matched[k] for k in sorted(matched)]}


def run(store: str | None = None, *, as_json: bool = False) -> dict[str, Any]:
    console = Console(quiet=as_json)
    started = time.perf_counter()
    summary: dict[str, Any] = {"observations": []}
    with Client(store) as client:
        data = client.settings.store_dir / "xray-data"
        archive = data / "archive"
        handles = []
        for obs_id, seed, aux, transient in OBSERVATIONS:
            sim = simulate_observation(data / obs_id, obs_id, seed, aux=aux, transient=transient,
                                       archive_dir=archive)
            l0 = client.add_product(sim["l0"], type=cv.L0_TELEMETRY, obs_id=obs_id)
            for kind, ptype in (("attitude", cv.AUX_ATTITUDE), ("orbit", cv.AUX_ORBIT)):
                if sim.get(kind):
                    client.add_product(sim[kind], type=ptype, obs_id=obs_id)
            console.print(f"simulated {obs_id}: {len(sim['cmos'])} CMOS, aux {aux}, "
                          f"{'with' if transient else 'no'} transient, {sim['n_events']} events")
            handles.append((obs_id, sim, client.submit(observation, {"l0": l0.id, "obs_id": obs_id,
                                                                     "archive": str(archive)})))
        for obs_id, sim, handle in handles:
            handle.wait(progress=not as_json and sys.stderr.isatty())
            summary["observations"].append(_report(console, obs_id, sim, handle))
        summary["store"] = str(client.settings.store_dir)
        summary["wall_s"] = round(time.perf_counter() - started, 1)
    console.print(f"{len(OBSERVATIONS)} observations in {summary['wall_s']} s")
    console.print(f"[bold]store[/] {escape(summary['store'])} (simulated data and truth in xray-data/)\n"
                  "look around: skyweave runs | skyweave status RUN | skyweave products list --run RUN | "
                  "skyweave lineage ALERT_PRODUCT --direction up | skyweave prov export RUN --format provn")
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _alert_summary(path: Path) -> dict[str, Any]:
    import voeventparse as vp

    with path.open("rb") as f:
        v = vp.load(f)
    pos = vp.get_event_position(v)
    params = vp.get_grouped_params(v)["transient"]
    return {"path": str(path), "ivorn": v.attrib["ivorn"], "valid_voevent_2_0": bool(vp.valid_as_v2_0(v)),
            "ra": round(pos.ra, 5), "dec": round(pos.dec, 5), "err_arcsec": round(pos.err * 3600, 1),
            "time_utc": vp.get_event_time_as_utc(v).isoformat(),
            "significance": float(params["significance"]["value"]),
            "peak_rate": round(float(params["peak_rate"]["value"]), 3),
            "provenance": v.How.Reference.attrib["uri"] if hasattr(v, "How") else ""}


def _report(console: Console, obs_id: str, sim: dict[str, Any], handle: Any) -> dict[str, Any]:
    truth = json.loads(Path(sim["truth"]).read_text())
    record: dict[str, Any] = {"obs_id": obs_id, "run_id": handle.id, "status": handle.status}
    if handle.status != "succeeded":
        record["error"] = handle.summary()["failures"]
        console.print(f"[red]{obs_id} {handle.status}[/] {escape(str(record['error']))}")
        return record
    result = handle.results()
    acts = handle.activities()
    exposure = float(result["events"].attributes.get("exposure", 0.0)) or 1.0
    record.update(score(result["sources"], truth["sources"], exposure))
    record["exposure_s"] = exposure
    record["alerts"] = [_alert_summary(Path(a.uri.removeprefix("file://"))) for a in result["alerts"] if a]
    record["transient_injected"] = bool(truth.get("transient"))
    record["detours"] = sorted({d.kind for a in acts for d in a.detours})
    products = handle.products()
    record["products"] = {t: sum(p.type == t for p in products) for t in sorted({p.type for p in products})}
    table = Table(title=f"{obs_id} ({handle.id}): {len(truth['cmos'])} CMOS, aux {truth['aux']}, "
                        f"exposure {exposure:.0f} s")
    for col in ("sources found/injected", "matched", "missed", "spurious", "alerts", "backtracking",
                "products"):
        table.add_column(col)
    table.add_row(f"{record['detected']}/{record['injected']}", str(record["matched"]),
                  str(len(record["missed"])), str(record["spurious"]), str(len(record["alerts"])),
                  ",".join(record["detours"]) or "-", str(sum(record["products"].values())))
    console.print(table)
    console.print("   products: " + ", ".join(f"{n} {t}" for t, n in record["products"].items()))
    worst = max((abs(m["rate"] / m["true_rate"] - 1) for m in record["matches"] if m["true_rate"] > 0),
                default=0.0)
    offset = max((m["offset_arcsec"] for m in record["matches"]), default=0)
    console.print(f"   positions: largest offset {offset}\" (tolerance {POSITION_TOLERANCE_ARCSEC:.0f}\"); "
                  f"net rates vs injected: worst {100 * worst:.0f} %")
    if record["transient_injected"] and not record["alerts"]:
        console.print("   [red]the injected transient raised no alert[/]")
    for a in record["alerts"]:
        console.print(f"   [bold]VOEvent alert[/] {escape(a['path'])}\n     {escape(a['ivorn'])}: "
                      f"X-ray transient at RA "
                      f"{a['ra']} Dec {a['dec']} (+/- {a['err_arcsec']}\"), {a['time_utc']} UTC, "
                      f"{a['significance']:.1f} sigma, peak {a['peak_rate']} ct/s; valid VOEvent 2.0: "
                      f"{a['valid_voevent_2_0']}; provenance {escape(a['provenance'])}")
    return record


if __name__ == "__main__":
    run()
