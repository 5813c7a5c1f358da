"""``skyweave demo bursts``: stream 3 minutes of simulated NenuFAR-like data (18 chunks of 10 s, played
10x faster than real time), one priority-1 run per chunk; a retrained model is injected half-way;
detections trigger priority-10 follow-up runs.  Prints detections vs truth (model and baseline),
chunk-arrival -> alert latency (median, p99), throughput, and where the plots and alerts are."""

from __future__ import annotations

import json
import queue
import sys
import time
from collections import Counter
from typing import Any

import numpy as np
from rich.console import Console

from nenufar_bursts import conventions as cv
from nenufar_bursts.features import match
from nenufar_bursts.followup import on_detection
from nenufar_bursts.simulate import StreamConfig, simulate_stream
from nenufar_bursts.stream import BurstStream, alerts, play
from skyweave import Client

OBS_ID = "nenu-demo"
N_CHUNKS = 18
SPEEDUP = 10.0


def run(store: str | None = None, *, as_json: bool = False) -> dict[str, Any]:
    console = Console(quiet=as_json)
    with Client(store, workers=2, listeners=[on_detection]) as client:
        data_dir = client.settings.store_dir / "bursts-data"
        stream = BurstStream(client, OBS_ID)
        v1 = stream.install_model(seed=1, n_chunks=300)
        console.print(f"model {v1} trained and registered as {cv.DETECTOR_TASK}@{v1}")
        faults = {5: "nan", 9: "shape", 12: "gap"}
        chunks = simulate_stream(
            data_dir, OBS_ID, 2026, N_CHUNKS, StreamConfig(burst_rate=0.6, faults=faults)
        )
        pace = cv.CHUNK_S / SPEEDUP
        delays = [(c["path"], pace * (4 if c["index"] == 14 else 1)) for c in chunks]  # a stall before 14
        source: queue.Queue[str | None] = queue.Queue()
        t_start = time.time()
        play(delays[: N_CHUNKS // 2], source)
        stream.consume(source, stall_s=2.5 * pace)
        v2 = stream.install_model(seed=2, n_chunks=300)  # retrained while the stream runs
        console.print(f"retrained: {cv.DETECTOR_TASK}@{v2} is current from chunk {N_CHUNKS // 2}")
        source = queue.Queue()
        play(delays[N_CHUNKS // 2 :], source)
        stream.consume(source, stall_s=2.5 * pace)
        stream.wait()
        deadline = time.time() + 60
        n_expected = 0
        summary: dict[str, Any] = {"chunks": [], "store": str(client.settings.store_dir)}
        counts: dict[str, Counter[str]] = {"model": Counter(), "baseline": Counter()}
        for rec in stream.chunks:
            det = json.loads(rec.run.results().local_path.read_text()) if rec.run else {}
            versions = {a.task_version for a in rec.run.activities()} if rec.run else set()
            n_expected += bool(det.get("detections"))
            for name, key in (("model", "detections"), ("baseline", "baseline")):
                tp, fp, fn, _ = match(det.get(key, []), rec.truth)
                counts[name].update(tp=tp, fp=fp, fn=fn)
            summary["chunks"].append(
                {
                    "index": rec.index,
                    "status": det.get("status"),
                    "flags": det.get("flags"),
                    "task_version": sorted(versions),
                    "detections": det.get("detections"),
                    "truth": [t for t in rec.truth if t["kind"] == "burst"],
                }
            )
        while len(alerts(client, OBS_ID, since=t_start)) < n_expected and time.time() < deadline:
            time.sleep(0.2)
        wall = time.time() - t_start
        found = alerts(client, OBS_ID, since=t_start)
        lat = np.array([a["latency_s"] for a in found if a["latency_s"] is not None])
    for c in summary["chunks"]:
        truth = (
            ", ".join(f"t={t['time_s']:.1f} DM={t['dm']:.2f} S/N={t['snr']:.0f}" for t in c["truth"]) or "-"
        )
        dets = (
            ", ".join(
                f"t={d['time_s']:.1f} DM={d['dm']:.2f} S/N={d['snr']:.0f} P={d['probability']:.2f}"
                for d in c["detections"] or []
            )
            or "-"
        )
        console.print(
            f"chunk {c['index']:2d} ({c['status']}) {','.join(c['task_version'])}: found {dets} | "
            f"injected {truth}" + (f"  ({'; '.join(c['flags'])})" if c["flags"] else "")
        )
    for name, cnt in counts.items():
        console.print(f"{name}: {cnt['tp']} true, {cnt['fp']} false detections, {cnt['fn']} missed")
    summary.update(
        {
            "model_versions": [v1, v2],
            "scores": {k: dict(v) for k, v in counts.items()},
            "alerts": found,
            "stalls": stream.stalls,
            "gaps": stream.gaps,
            "wall_s": round(wall, 2),
            "chunks_per_s": round(N_CHUNKS / wall, 2),
            "latency_s": {
                "median": float(np.median(lat)) if lat.size else None,
                "p99": float(np.percentile(lat, 99)) if lat.size else None,
            },
        }
    )
    med, p99 = summary["latency_s"]["median"], summary["latency_s"]["p99"]
    console.print(
        f"{len(found)} alerts; chunk arrival -> VOEvent latency "
        + (f"median {med:.3f} s, p99 {p99:.3f} s; " if med is not None and p99 is not None else "n/a; ")
        + f"{summary['chunks_per_s']} chunks/s over {wall:.1f} s (paced {SPEEDUP:g}x real time)"
    )
    stalls = "; ".join(
        f"after chunk {st['after_index']}: silent {st['silent_s']:.1f} s"
        + (f", resumed after {st['resumed_after_s']:.1f} s" if st.get("resumed_after_s") is not None else "")
        for st in stream.stalls
    )
    gaps = "; ".join(f"{g['missing_s']:.0f} s missing before chunk {g['before_index']}" for g in stream.gaps)
    console.print(f"stream stalls: {stalls or 'none'}; gaps: {gaps or 'none'}")
    for a in found:
        console.print(f"   VOEvent {a['path']}  (plot beside it in the follow-up run's products)")
    console.print(
        f"[bold]store[/] {summary['store']}   skyweave runs | skyweave products list --type {cv.PLOT} | "
        "skyweave lineage PRODUCT --direction up"
    )
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


if __name__ == "__main__":
    run()
