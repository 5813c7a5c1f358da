"""``skyweave demo xray``: simulate observations, run the pipeline on the embedded engine, compare
what it found with what the simulator injected, and say where everything is."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from skyweave import Client
from xray_ep import conventions as cv
from xray_ep.simulate import simulate_observation
from xray_ep.workflow import observation

POSITION_TOLERANCE_ARCSEC = 30.0
"""A detection matches an injected source within this distance (the PSF is ~15 arcsec wide)."""

OBSERVATIONS = [  # obs_id, seed, aux situation, transient
    ("ep0001", 11, "full", True),
    ("ep0002", 12, "missing", False),
    ("ep0003", 13, "partial", False),
]


def _sep_arcsec(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    r1, d1, r2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    c = math.sin(d1) * math.sin(d2) + math.cos(d1) * math.cos(d2) * math.cos(r1 - r2)
    return math.degrees(math.acos(max(-1.0, min(1.0, c)))) * 3600


def score(found: list[dict[str, Any]], truth: list[dict[str, Any]]) -> dict[str, Any]:
    """Match detections to injected sources; report matches, misses and spurious detections."""
    injected = [s for s in truth if s.get("rate", 0) > 0 or s.get("transient")]
    matched, used = [], set()
    for src in injected:
        best = min(((_sep_arcsec(d["ra"], d["dec"], src["ra"], src["dec"]), i) for i, d in enumerate(found)
                    if i not in used), default=None)
        if best is not None and best[0] <= POSITION_TOLERANCE_ARCSEC:
            used.add(best[1])
            matched.append({"source": src["id"], "offset_arcsec": round(best[0], 1)})
    return {"injected": len(injected), "detected": len(found), "matched": len(matched),
            "spurious": len(found) - len(matched), "matches": matched}


def run(store: str | None = None, *, as_json: bool = False) -> dict[str, Any]:
    console = Console(quiet=as_json)
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
    console.print(f"[bold]store[/] {summary['store']}   look around: skyweave runs | skyweave status RUN | "
                  "skyweave lineage PRODUCT --direction up | skyweave prov export RUN --format provn")
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _report(console: Console, obs_id: str, sim: dict[str, Any], handle: Any) -> dict[str, Any]:
    truth = json.loads(Path(sim["truth"]).read_text())
    record: dict[str, Any] = {"obs_id": obs_id, "run_id": handle.id, "status": handle.status}
    if handle.status != "succeeded":
        record["error"] = handle.summary()["failures"]
        console.print(f"[red]{obs_id} {handle.status}[/] {record['error']}")
        return record
    result = handle.results()
    acts = handle.activities()
    record.update(score(result["sources"], truth["sources"]))
    record["alerts"] = [a.uri for a in result["alerts"]]
    record["transient_injected"] = bool(truth.get("transient"))
    record["detours"] = sorted({d.kind for a in acts for d in a.detours})
    record["products"] = len(handle.products())
    table = Table(title=f"{obs_id} ({handle.id})")
    for col in ("CMOS", "sources found/injected", "matched", "spurious", "alerts", "backtracks", "products"):
        table.add_column(col)
    table.add_row(str(len(truth["cmos"])), f"{record['detected']}/{record['injected']}",
                  str(record["matched"]), str(record["spurious"]), str(len(record["alerts"])),
                  ",".join(record["detours"]) or "-", str(record["products"]))
    console.print(table)
    for uri in record["alerts"]:
        console.print(f"   VOEvent alert: {uri}")
    return record


if __name__ == "__main__":
    run()
