"""Burst pipeline throughput and alert latency on 2 cores, against the data rate of one NenuFAR beam.

    .venv/bin/python bench/bursts_bench.py [--chunks 200] [--paced 150] [--rate 4] [--json out.json]

Set-up: ``skyweave.Client(store, workers=2, listeners=[on_detection])`` (embedded engine, local
process-pool executor, SQLite store), the process pinned to 2 cores when the machine has more, and
``OMP_NUM_THREADS=1``.  A model is trained and registered first (not timed).  Chunks are simulated
NenuFAR-like dynamic spectra (``nenufar_bursts.simulate``, 10 s x 128 channels x 0.1 s, bursts in
~60 % of chunks) written to disk before timing; each is fed through ``BurstStream.feed`` (register the
chunk product, submit its priority-1 run; the detector searches each chunk together with its
predecessor, so every search covers 20 s); detections trigger the priority-10 follow-up runs (cut-out,
plot, VOEvent) through the ``product.created`` listener.

1. **Sustained throughput**: ``--chunks`` chunks fed as fast as possible; chunks/s = chunks / (time
   from the first feed to the end of the last chunk run).  The follow-ups triggered meanwhile run
   too (they compete for the same 2 workers), so this is the rate of the whole pipeline.
2. **Latency**: ``--paced`` chunks fed at ``--rate`` chunks/s (far above the real-time 0.1 chunk/s,
   but below the sustained rate); for every alert, the time from its chunk's arrival (``feed``) to
   the VOEvent product's creation in the store; median and 99th percentile.

Reference rate of one beam (``conventions.BEAM_*``), **cited**: the nenupy documentation,
"UnDySPuTeD Time-Frequency Data" (https://nenupy.readthedocs.io/en/latest/io/tf_reading.html;
github.com/AlanLoh/nenupy, docs/source/io/tf_reading.rst at ea46d661, lines 67-75), shows
``Spectra.info()`` of a real NenuFAR DynSpec file (one UnDySPuTeD lane, beam 0): ``dt: 20.97152 ms``,
``df: 3.0517578125 kHz``, 19.921875-57.421875 MHz.  That is 37.5 MHz / 3.05 kHz = 12288 channels
(192 beamlets of 195.3125 kHz x fftlen 64) every 20.97152 ms (nfft2int 64):
**585,937.5 time-frequency samples/s**, and 16 bytes per sample in the ``.spectra`` file (two
float32 pairs ``fft0``/``fft1``: XX*, YY*, XY*; nenupy/io/tf.py) = **9.375 MB/s**.  The same page
gives the ranges (fftlen 16..2048, nfft2int 4..1024, dt 0.3..83.9 ms); the backend is Bondonneau
et al. 2021, A&A 652, A34.  What is *not* cited: that this configuration is typical of burst
searches (observers choose fftlen/nfft2int), and the 20-80 MHz scaling (``native_samples_per_s_20_80``,
1.6 lanes at the same resolution), which is an extrapolation.  Ratios reported:

* ``realtime_ratio`` = sky seconds processed per wall second = chunks/s x 10 s: how many beams of
  the pipeline's own (downsampled, 128 x 0.1 s) product the 2 cores keep up with;
* ``sample_ratio`` = samples/s scored (chunks/s x 12,800) / 585,937.5: against the cited native beam
  rate (``sample_ratio_20_80`` against the 20-80 MHz extrapolation).  The pipeline does not perform
  the native -> 128 x 0.1 s downsampling (it starts from downsampled chunks), so this ratio says how
  far the *detector* is from scoring native-resolution data, not the cost of the downsampling.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from nenufar_bursts import conventions as cv
from nenufar_bursts.followup import on_detection
from nenufar_bursts.simulate import StreamConfig, simulate_stream
from nenufar_bursts.stream import BurstStream, alerts, play
from skyweave import Client

WORKERS = 2
CONFIG = StreamConfig(burst_rate=0.6, type3_rate=0.3, impulse_rate=0.6)
CHUNK_SAMPLES = cv.N_T * cv.N_CHAN


def _pin_two_cores() -> list[int]:
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) > WORKERS:
        os.sched_setaffinity(0, cores[:WORKERS])  # inherited by the worker processes
    return sorted(os.sched_getaffinity(0))


def _wait_alerts(client: Client, obs_id: str, n: int, timeout: float = 300.0) -> None:
    deadline = time.time() + timeout
    while len(alerts(client, obs_id)) < n and time.time() < deadline:
        time.sleep(0.05)


def _expected_alerts(client: Client, obs_id: str) -> int:
    return sum(1 for p in client.store.find_products(type=cv.DETECTIONS, match={"obs_id": obs_id})
               if p.attributes.get("n_detections"))


def run(n_chunks: int, n_paced: int, rate: float, train_chunks: int) -> dict[str, Any]:
    cores = _pin_two_cores()
    with tempfile.TemporaryDirectory(prefix="bursts-bench-") as tmp, \
            Client(str(Path(tmp) / "st"), workers=WORKERS, listeners=[on_detection]) as client:
        stream = BurstStream(client, "bench-sat")
        t = time.perf_counter()
        version = stream.install_model(seed=1, n_chunks=train_chunks)
        train_s = time.perf_counter() - t
        sat = simulate_stream(Path(tmp) / "sat", "bench-sat", 7, n_chunks, CONFIG)
        paced = simulate_stream(Path(tmp) / "paced", "bench-paced", 8, n_paced, CONFIG)

        # 1. sustained throughput
        t0 = time.time()
        for c in sat:
            stream.feed(c["path"])
        stream.wait(timeout=600)
        t_end = max(a.ended_at or 0.0 for a in client.store.list_activities(task_name=cv.DETECTOR_TASK))
        chunks_per_s = n_chunks / (t_end - t0)
        _wait_alerts(client, "bench-sat", _expected_alerts(client, "bench-sat"))

        # 2. latency at a paced arrival rate
        pstream = BurstStream(client, "bench-paced")
        pstream.models = dict(stream.models)
        source: queue.Queue[str | None] = queue.Queue()
        play([(c["path"], 1.0 / rate) for c in paced], source)
        pstream.consume(source, stall_s=10.0)
        pstream.wait(timeout=600)
        _wait_alerts(client, "bench-paced", _expected_alerts(client, "bench-paced"))
        found = alerts(client, "bench-paced")
        lat = np.array([a["latency_s"] for a in found if a["latency_s"] is not None])
        sat_found = alerts(client, "bench-sat")
        sat_lat = np.array([a["latency_s"] for a in sat_found if a["latency_s"] is not None])

    beam = cv.BEAM_SAMPLES_PER_S
    return {
        "cores": cores,
        "workers": WORKERS,
        "model_version": version,
        "train_s": round(train_s, 2),
        "sustained": {
            "chunks": n_chunks,
            "chunks_per_s": round(chunks_per_s, 2),
            "alerts": int(sat_lat.size),
            "latency_median_s_under_backlog": round(float(np.median(sat_lat)), 3) if sat_lat.size else None,
        },
        "paced": {
            "chunks": n_paced,
            "rate_chunks_per_s": rate,
            "alerts": int(lat.size),
            "latency_median_s": round(float(np.median(lat)), 3) if lat.size else None,
            "latency_p99_s": round(float(np.percentile(lat, 99)), 3) if lat.size else None,
            "latency_max_s": round(float(lat.max()), 3) if lat.size else None,
        },
        "beam": {
            "realtime_chunks_per_s": 1.0 / cv.CHUNK_S,
            "native_samples_per_s": beam,
            "native_bytes_per_s": cv.BEAM_BYTES_PER_S,
            "native_samples_per_s_20_80": cv.BEAM_SAMPLES_PER_S_20_80,
            "config": f"{cv.BEAM_CHANNELS} ch ({cv.BEAM_DF_KHZ} kHz) x {cv.BEAM_DT_S * 1e3:.5g} ms, "
                      f"{cv.BEAM_BAND_MHZ[0]}-{cv.BEAM_BAND_MHZ[1]} MHz, 4 x float32",
            "source": "cited: nenupy docs 'UnDySPuTeD Time-Frequency Data' (docs/source/io/tf_reading.rst, "
                      "Spectra.info() of a real DynSpec file); backend: Bondonneau et al. 2021, A&A 652, "
                      "A34. "
                      "The 20-80 MHz scaling is an extrapolation",
        },
        "realtime_ratio": round(chunks_per_s * cv.CHUNK_S, 1),
        "sample_ratio": round(chunks_per_s * CHUNK_SAMPLES / beam, 4),
        "sample_ratio_20_80": round(chunks_per_s * CHUNK_SAMPLES / cv.BEAM_SAMPLES_PER_S_20_80, 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", type=int, default=200, help="chunks for the throughput phase")
    ap.add_argument("--paced", type=int, default=150, help="chunks for the latency phase")
    ap.add_argument("--rate", type=float, default=4.0, help="arrival rate of the latency phase (chunks/s)")
    ap.add_argument("--train-chunks", type=int, default=300)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    res = run(args.chunks, args.paced, args.rate, args.train_chunks)
    s, p = res["sustained"], res["paced"]
    print(f"cores {res['cores']}, {res['workers']} workers, model {res['model_version']} "
          f"(trained in {res['train_s']} s, not timed)")
    print(f"sustained: {s['chunks_per_s']} chunks/s over {s['chunks']} chunks ({s['alerts']} alerts)")
    print(f"latency at {p['rate_chunks_per_s']} chunks/s: chunk arrival -> VOEvent median "
          f"{p['latency_median_s']} s, p99 {p['latency_p99_s']} s, max {p['latency_max_s']} s "
          f"({p['alerts']} alerts over {p['chunks']} chunks)")
    print(f"one beam in real time = {res['beam']['realtime_chunks_per_s']} chunks/s of 10 s -> "
          f"ratio {res['realtime_ratio']}x real time (downsampled 128 ch x 0.1 s product)")
    b = res["beam"]
    print(f"native beam rate {b['native_samples_per_s']:,.1f} samples/s = "
          f"{b['native_bytes_per_s'] / 1e6:.3f} MB/s ({b['config']}; {b['source']}) -> detector scores "
          f"{res['sample_ratio']}x of it ({res['sample_ratio_20_80']}x of the 20-80 MHz extrapolation, "
          f"{b['native_samples_per_s_20_80']:,.0f}/s)")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    json.dump(res, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
