"""X-ray pipeline wall time: skyweave (local executor, 2 workers) against the ideal, the same task
functions called by a plain Python script on a 2-process pool with the same fan-out structure.

    .venv/bin/python bench/xray_bench.py [--reps 3] [--json out.json]

Both sides get the same simulated observations (made once, not timed) with their attitude and
orbit files given (no backtracking: the plain script has no engine to backtrack with), and both
run every observation concurrently: per observation list_cmos -> decode_cmos (per CMOS) ->
calibrate (per CMOS) -> merge_events -> make_image -> exposure_map -> detect_sources ->
light_curve and spectrum (per source) -> transient_test (per source) -> make_voevent (per
transient).  The plain script submits each task as soon as its inputs are done.  Timed: from the
first submission to the last result (the skyweave client and its engine are started before; their
start-up is reported separately).  Repetitions alternate the order; medians are compared.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from skyweave import Client, Product
from skyweave.testing import activity_context
from xray_ep import alert, l1, l2, l3_image, l3_products
from xray_ep import conventions as cv
from xray_ep.simulate import simulate_observation
from xray_ep.workflow import observation

OBSERVATIONS = [("ep0001", 1, True), ("ep0002", 2, False), ("ep0003", 3, False)]
WORKERS = 2


def simulate(base: Path) -> list[dict[str, Any]]:
    return [simulate_observation(base / o, o, seed, transient=tr, archive_dir=base / "archive")
            for o, seed, tr in OBSERVATIONS]


# -- the ideal: the task functions on a process pool ----------------------------------------------
def _call(name: str, workdir: str, kwargs: dict[str, Any]) -> Any:
    """Run one task function in a pool process, with an activity context like skyweave gives it."""
    task = {t.name: t for t in (l1.list_cmos, l1.decode_cmos, l2.calibrate, l2.merge_events,
                                l3_image.make_image, l2.exposure_map, l3_image.detect_sources,
                                l3_products.light_curve, l3_products.spectrum,
                                l3_products.transient_test, alert.make_voevent)}[name]
    assert task.fn is not None
    with activity_context(Path(workdir), task=name, version=task.spec.version,
                          activity_id=f"plain-{name}", run_id="plain"):
        return task.fn(**kwargs)


class Plain:
    """A dependency-driven driver of one observation's tasks on a shared pool."""

    def __init__(self, pool: ProcessPoolExecutor, sim: dict[str, Any], work: Path) -> None:
        self.pool, self.sim, self.work = pool, sim, work
        self.l0 = Product(sim["l0"], type=cv.L0_TELEMETRY, obs_id=sim["obs_id"])
        self.att = Product(sim["attitude"], type=cv.AUX_ATTITUDE, obs_id=sim["obs_id"])
        self.orb = Product(sim["orbit"], type=cv.AUX_ORBIT, obs_id=sim["obs_id"])
        self.level2: list[Any] = []
        self.n_cmos = 0
        self.sources: list[dict[str, Any]] = []
        self.curves: dict[int, Any] = {}
        self.alerts: list[Any] = []
        self.events: Any = None
        self.image: Any = None
        self.pending = 0
        self.count = 0

    def submit(self, name: str, then: Callable[[Any], None], **kwargs: Any) -> tuple[Future[Any], Callable]:
        self.count += 1
        workdir = self.work / f"{self.count:04d}-{name}"
        self.pending += 1
        return self.pool.submit(_call, name, str(workdir), kwargs), then

    def start(self) -> list[tuple[Future[Any], Callable]]:
        return [self.submit("list_cmos", self.on_cmos, l0=self.l0)]

    def on_cmos(self, chips: list[str]) -> list[tuple[Future[Any], Callable]]:
        self.n_cmos = len(chips)
        return [self.submit("decode_cmos", self.on_l1, l0=self.l0, cmos=c) for c in chips]

    def on_l1(self, events: Product) -> list[tuple[Future[Any], Callable]]:
        return [self.submit("calibrate", self.on_l2, events=events, attitude=self.att, orbit=self.orb)]

    def on_l2(self, events: Product) -> list[tuple[Future[Any], Callable]]:
        self.level2.append(events)
        if len(self.level2) < self.n_cmos:
            return []
        return [self.submit("merge_events", self.on_merged, events=self.level2)]

    def on_merged(self, events: Product) -> list[tuple[Future[Any], Callable]]:
        self.events = events
        return [self.submit("make_image", self.on_image, events=events)]

    def on_image(self, image: Product) -> list[tuple[Future[Any], Callable]]:
        self.image = image
        return [self.submit("exposure_map", self.on_expmap, events=self.events, image=image)]

    def on_expmap(self, expmap: Product) -> list[tuple[Future[Any], Callable]]:
        return [self.submit("detect_sources", self.on_sources, image=self.image, events=self.events,
                            expmap=expmap)]

    def on_sources(self, sources: list[dict[str, Any]]) -> list[tuple[Future[Any], Callable]]:
        self.sources = sources
        out = []
        for s in sources:
            out.append(self.submit("light_curve", self._on_lc(s), events=self.events, source=s))
            out.append(self.submit("spectrum", lambda _r: [], events=self.events, source=s))
        return out

    def _on_lc(self, source: dict[str, Any]) -> Callable[[Any], list]:
        def on_lc(lc: Product) -> list[tuple[Future[Any], Callable]]:
            return [self.submit("transient_test", self._on_test(source, lc), lc=lc)]
        return on_lc

    def _on_test(self, source: dict[str, Any], lc: Product) -> Callable[[Any], list]:
        def on_test(test: dict[str, Any]) -> list[tuple[Future[Any], Callable]]:
            if not test["is_transient"]:
                return []
            return [self.submit("make_voevent", self.alerts.append, source=source, test=test, lc=lc,
                                obs_id=self.sim["obs_id"])]
        return on_test


def run_plain(sims: list[dict[str, Any]], work: Path) -> tuple[float, dict[str, Any]]:
    with ProcessPoolExecutor(WORKERS) as pool:
        pool.submit(int).result()  # processes up before the clock starts, like skyweave's workers
        t0 = time.perf_counter()
        drivers = [Plain(pool, sim, work / sim["obs_id"]) for sim in sims]
        waiting: dict[Future[Any], tuple[Plain, Callable]] = {}
        for d in drivers:
            for fut, then in d.start():
                waiting[fut] = (d, then)
        while waiting:
            done, _ = wait(list(waiting), return_when=FIRST_COMPLETED)
            for fut in done:
                d, then = waiting.pop(fut)
                d.pending -= 1
                for nxt, cb in then(fut.result()) or []:
                    waiting[nxt] = (d, cb)
        elapsed = time.perf_counter() - t0
    return elapsed, {d.sim["obs_id"]: {"sources": len(d.sources), "alerts": len(d.alerts),
                                       "tasks": d.count} for d in drivers}


def run_skyweave(sims: list[dict[str, Any]], store: Path) -> tuple[float, float, dict[str, Any]]:
    t_start = time.perf_counter()
    with Client(str(store), workers=WORKERS) as client:
        ids = {}
        for sim in sims:
            o = sim["obs_id"]
            ids[o] = client.add_product(sim["l0"], type=cv.L0_TELEMETRY, obs_id=o).id
            client.add_product(sim["attitude"], type=cv.AUX_ATTITUDE, obs_id=o)
            client.add_product(sim["orbit"], type=cv.AUX_ORBIT, obs_id=o)
        startup = time.perf_counter() - t_start
        t0 = time.perf_counter()
        handles = {o: client.submit(observation, {"l0": i, "obs_id": o}) for o, i in ids.items()}
        for h in handles.values():
            h.wait(timeout=1800)
        elapsed = time.perf_counter() - t0
        out = {}
        for o, h in handles.items():
            if h.status != "succeeded":
                raise RuntimeError(f"{o}: {h.summary()}")
            res = h.results()
            out[o] = {"sources": len(res["sources"]), "alerts": len([a for a in res["alerts"] if a]),
                      "tasks": sum(a.state == "succeeded" for a in h.activities())}
    return elapsed, startup, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="xray-bench-") as tmp:
        base = Path(tmp)
        sims = simulate(base / "data")
        print(f"{len(sims)} observations, {sum(len(s['cmos']) for s in sims)} CMOS lists, "
              f"{sum(s['n_events'] for s in sims)} events; {WORKERS} workers; {args.reps} repetitions")
        plain_t: list[float] = []
        sky_t: list[float] = []
        startups: list[float] = []
        for rep in range(args.reps):
            order = ("plain", "skyweave") if rep % 2 == 0 else ("skyweave", "plain")
            for mode in order:
                if mode == "plain":
                    t, plain_out = run_plain(sims, base / f"plain{rep}")
                    plain_t.append(t)
                else:
                    t, s, sky_out = run_skyweave(sims, base / f"store{rep}")
                    sky_t.append(t)
                    startups.append(s)
                print(f"  rep {rep} {mode:9s} {t:7.2f} s")
        if plain_out != {o: {**v, "tasks": plain_out[o]["tasks"]} for o, v in sky_out.items()}:
            print(f"WARNING: results differ: plain {plain_out} skyweave {sky_out}")
        p, s = statistics.median(plain_t), statistics.median(sky_t)
        result = {"plain_pool_s": p, "skyweave_s": s, "ratio": s / p, "overhead_pct": 100 * (s / p - 1),
                  "skyweave_startup_s": statistics.median(startups), "plain_runs": plain_t,
                  "skyweave_runs": sky_t, "per_observation": {"plain": plain_out, "skyweave": sky_out}}
        print(f"plain ProcessPoolExecutor({WORKERS}): {p:.2f} s   skyweave (local, workers={WORKERS}): "
              f"{s:.2f} s   ratio {s / p:.3f} ({100 * (s / p - 1):+.1f} %, target <= +10 %)   "
              f"[skyweave client start-up {result['skyweave_startup_s']:.2f} s, not included]")
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
