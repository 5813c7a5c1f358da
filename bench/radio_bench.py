"""Radio pipeline performance: (1) gridding + FFT imaging throughput of ``radio_nenufar.image``
against a plain numpy reference of the same algorithm, (2) the whole pipeline's wall time under
skyweave (local executor, 2 workers) against the ideal, the same task functions on a plain
2-process pool with the same fan-out structure.

    .venv/bin/python bench/radio_bench.py [--quick] [--reps N] [--json out.json]

Imaging
    Data: a simulated NenuFAR observation (``simulate.simulate_observation``, all mini-arrays, no
    flags), the good samples of every sub-band imaged together (``image.uv_samples``, no gain
    correction: the algorithm does not care).  The pipeline's ``dirty_and_psf`` (two gridding
    passes, vectorised ``np.bincount`` per kernel offset, then inverse FFT, crop, grid correction,
    PSF normalisation) is compared with a reference written here: the same truncated Gaussian
    kernel scattered with ``np.add.at`` (one pass over all (visibility, kernel cell) pairs), the same
    FFT, crop and correction.  The two images must agree (max |difference| / peak < 1e-6) before
    anything is timed.  Reported: visibilities/s (visibilities imaged per second of dirty image +
    PSF; gridding alone separately), median of ``reps`` runs, and the ratio pipeline / reference.

Pipeline
    Both sides get the same simulated observation as ``skyweave demo radio`` (4 sub-bands, one with
    NaNs, one fully flagged; made once, not timed) and run: list_subbands -> extract_subband (per
    sub-band) -> calibrate (per sub-band) -> selfcal_step loop (per sub-band, until delta < tol or
    max_selfcal rounds) -> merge_images -> report.  Both get the workflow's own defaults (npix, tol,
    max_selfcal...), read from ``observation`` and passed explicitly to both.  The plain driver
    submits each task as soon as its inputs are done and sets a skyweave ``ActivityContext`` around
    every call (so ``context().output()`` works).  Timed: first submission to last result.

    Same starting point on both sides: the pool's processes are forked from this process, which
    has imported the pipeline (numpy, scipy, astropy...), and are started before the clock; the
    skyweave workers get the same modules through ``preload`` and the client start-up (workers
    started and importing) is reported separately.  ``--cold`` adds a third mode, skyweave without
    ``preload``: each worker process then imports the pipeline when it first runs one of its tasks
    (about 0.9 s per process here, measured), on the clock.

    Both sides run one BLAS thread per process (``OMP_NUM_THREADS=1`` unless set, as ``bench/run.py``
    does): two processes with two spinning BLAS threads each on two cores made the run time of the
    same work vary by a factor of two.

    Repetitions alternate the order; medians are compared.  Each repetition checks that both sides
    did the same work (self-cal rounds per sub-band, flagged sub-bands, merged peak) and that the
    pipeline's source files did not change during the benchmark (skyweave workers import them
    afresh for every client; the pool processes keep what this process imported at start).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

# one BLAS thread per process (as bench/run.py does), set before numpy loads: see the docstring
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np

import radio_nenufar
from radio_nenufar import calibrate, merge, partition, selfcal
from radio_nenufar import conventions as cv
from radio_nenufar import image as im
from radio_nenufar.simulate import simulate_observation
from radio_nenufar.workflow import observation
from skyweave import Client, Product
from skyweave.testing import activity_context

WORKERS = 2
PARAMS: dict[str, Any] = {k: observation.defaults[k]
                          for k in ("npix", "cell_arcmin", "niter", "tol", "max_selfcal", "max_resid")}
"""The workflow's defaults for what the plain driver passes too, given explicitly to both sides."""
PRELOAD = ["radio_nenufar.workflow"]
"""What skyweave workers import at start-up: the modules of every task of the workflow, as the pool
processes inherit them from this process."""


# -- 1. imaging throughput ---------------------------------------------------------------------
def ref_grid(u: np.ndarray, v: np.ndarray, vis: np.ndarray, w: np.ndarray, *, ngrid: int, cell_rad: float
             ) -> np.ndarray:
    """Plain reference gridder: every visibility's 7x7 Gaussian kernel scattered with np.add.at."""
    du = 1.0 / (ngrid * cell_rad)
    gx, gy = -u / du + ngrid // 2, v / du + ngrid // 2
    h = im.KERNEL_HALF
    ok = (gx >= h) & (gx < ngrid - h - 1) & (gy >= h) & (gy < ngrid - h - 1)
    gx, gy, wv = gx[ok], gy[ok], (w * vis)[ok]
    ix, iy = np.rint(gx).astype(np.int64), np.rint(gy).astype(np.int64)
    dy, dx = (a.ravel() for a in np.mgrid[-h:h + 1, -h:h + 1])
    grid = np.zeros((ngrid, ngrid), np.complex128)
    for s in range(0, ix.size, 65536):                      # chunks bound the (nvis, 49) temporaries
        sl = slice(s, s + 65536)
        ddx = dx[None, :] - (gx[sl] - ix[sl])[:, None]
        ddy = dy[None, :] - (gy[sl] - iy[sl])[:, None]
        kern = np.exp(-(ddx**2 + ddy**2) / (2 * im.KERNEL_SIGMA**2))
        np.add.at(grid, (iy[sl, None] + dy[None, :], ix[sl, None] + dx[None, :]), kern * wv[sl, None])
    return grid


def ref_image(grid: np.ndarray, npix: int) -> np.ndarray:
    """Inverse FFT, central crop, division by the Gaussian kernel's transform."""
    ngrid = grid.shape[0]
    img = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(grid))).real * ngrid * ngrid
    lo = ngrid // 2 - npix // 2
    img = img[lo:lo + npix, lo:lo + npix]
    x = (np.arange(npix) - npix // 2) / ngrid
    c = np.exp(-2 * np.pi**2 * im.KERNEL_SIGMA**2 * x**2)
    return img / np.outer(c, c)


def ref_dirty_and_psf(u: np.ndarray, v: np.ndarray, vis: np.ndarray, w: np.ndarray, *, npix: int,
                      cell_rad: float) -> tuple[np.ndarray, np.ndarray]:
    dirty = ref_image(ref_grid(u, v, vis, w, ngrid=im.PAD * npix, cell_rad=cell_rad), npix)
    psf = ref_image(ref_grid(u, v, np.ones_like(vis), w, ngrid=2 * im.PAD * npix,
                                 cell_rad=cell_rad), 2 * npix)
    peak = psf[npix, npix]
    return dirty / peak, psf / peak


def _median_time(fn: Callable[[], Any], reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_imaging(base: Path, *, quick: bool, reps: int, npix: int = 256, cell_arcmin: float = 2.0
                  ) -> dict[str, Any]:
    sim = simulate_observation(base / "img", "nenu0900", 9, n_times=3 if quick else 12)
    u, v, vis, w = im.uv_samples(cv.read_vis(sim["vis"]))
    cell = cell_arcmin * im.ARCMIN
    dirty, psf, dropped = im.dirty_and_psf(u, v, vis, w, npix=npix, cell_rad=cell)
    rdirty, rpsf = ref_dirty_and_psf(u, v, vis, w, npix=npix, cell_rad=cell)
    err_dirty = float(np.max(np.abs(dirty - rdirty)) / np.max(np.abs(rdirty)))
    err_psf = float(np.max(np.abs(psf - rpsf)) / np.max(np.abs(rpsf)))
    print(f"imaging: {vis.size} visibilities ({dropped} outside the grid), npix {npix}, grids "
          f"{im.PAD * npix}^2 + {2 * im.PAD * npix}^2; pipeline vs reference: max|diff|/peak "
          f"dirty {err_dirty:.1e}, PSF {err_psf:.1e}")
    if max(err_dirty, err_psf) >= 1e-6:
        raise SystemExit("imaging: pipeline and reference images differ (>= 1e-6 of the peak); not timing")
    ng = im.PAD * npix
    t_pipe = _median_time(lambda: im.dirty_and_psf(u, v, vis, w, npix=npix, cell_rad=cell), reps)
    t_ref = _median_time(lambda: ref_dirty_and_psf(u, v, vis, w, npix=npix, cell_rad=cell), reps)
    g_pipe = _median_time(lambda: im.grid_vis(u, v, vis, w, ngrid=ng, cell_rad=cell), reps)
    g_ref = _median_time(lambda: ref_grid(u, v, vis, w, ngrid=ng, cell_rad=cell), reps)
    out = {"n_vis": int(vis.size), "npix": npix, "max_rel_diff_dirty": err_dirty, "max_rel_diff_psf": err_psf,
           "dirty_psf_s": {"pipeline": t_pipe, "reference": t_ref},
           "grid_only_s": {"pipeline": g_pipe, "reference": g_ref},
           "vis_per_s": {"pipeline": vis.size / t_pipe, "reference": vis.size / t_ref},
           "grid_vis_per_s": {"pipeline": vis.size / g_pipe, "reference": vis.size / g_ref},
           "speedup_dirty_psf": t_ref / t_pipe, "speedup_grid": g_ref / g_pipe}
    print(f"  dirty + PSF (2 gridding passes + 2 FFTs), median of {reps}: pipeline {t_pipe:.3f} s = "
          f"{vis.size / t_pipe:,.0f} vis/s   reference (np.add.at) {t_ref:.3f} s = {vis.size / t_ref:,.0f} "
          f"vis/s   pipeline/reference throughput {t_ref / t_pipe:.2f}x")
    print(f"  gridding only ({ng}^2): pipeline {vis.size / g_pipe:,.0f} vis/s   reference "
          f"{vis.size / g_ref:,.0f} vis/s   ratio {g_ref / g_pipe:.2f}x")
    return out


# -- 2. pipeline wall time: the ideal, the task functions on a process pool ------------------
TASKS = {t.name: t for t in (partition.list_subbands, partition.extract_subband, calibrate.calibrate,
                             selfcal.selfcal_step, merge.merge_images, merge.report)}


def pipeline_sources() -> str:
    """A hash of the pipeline package's source files (edited under us, the two sides would differ)."""
    digest = hashlib.sha256()
    for path in sorted(Path(str(radio_nenufar.__file__)).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _call(name: str, workdir: str, kwargs: dict[str, Any]) -> Any:
    """Run one task function in a pool process, with an activity context like skyweave gives it."""
    task = TASKS[name]
    assert task.fn is not None
    with activity_context(Path(workdir), task=name, version=task.spec.version,
                          activity_id=f"plain-{name}", run_id="plain"):
        return task.fn(**kwargs)


class Plain:
    """Dependency-driven driver of one observation's tasks on a pool (same fan-out as the workflow)."""

    def __init__(self, pool: ProcessPoolExecutor, sim: dict[str, Any], work: Path) -> None:
        self.pool, self.work = pool, work
        self.vis = Product(sim["vis"], type=cv.VIS_RAW, obs_id="nenu0001")
        self.model = Product(sim["calmodel"], type=cv.SKYMODEL, obs_id="nenu0001")
        self.n_sub = 0
        self.parts: dict[int, Product] = {}
        self.cals: dict[int, dict[str, Any]] = {}
        self.loops: dict[int, dict[str, Any]] = {}
        self.merged: Any = None
        self.report: Any = None
        self.count = 0

    def submit(self, name: str, then: Callable[[Any], Any], **kwargs: Any) -> tuple[Future[Any], Callable]:
        self.count += 1
        return self.pool.submit(_call, name, str(self.work / f"{self.count:04d}-{name}"), kwargs), then

    def start(self) -> list[tuple[Future[Any], Callable]]:
        return [self.submit("list_subbands", self.on_subbands, vis=self.vis)]

    def on_subbands(self, subs: list[int]) -> list[tuple[Future[Any], Callable]]:
        self.n_sub = len(subs)
        return [self.submit("extract_subband", self._on_part(i), vis=self.vis, subband=s)
                for i, s in enumerate(subs)]

    def _on_part(self, i: int) -> Callable[[Any], list]:
        def on_part(part: Product) -> list[tuple[Future[Any], Callable]]:
            self.parts[i] = part
            return [self.submit("calibrate", self._on_cal(i), vis=part, model=self.model,
                                max_resid=PARAMS["max_resid"])]
        return on_part

    def _on_cal(self, i: int) -> Callable[[Any], list]:
        def on_cal(cal: dict[str, Any]) -> list[tuple[Future[Any], Callable]]:
            self.cals[i] = cal
            return [self._selfcal(i, None, 1)]
        return on_cal

    def _selfcal(self, i: int, state: dict[str, Any] | None, rnd: int) -> tuple[Future[Any], Callable]:
        """One round of sub-band i's bounded loop: stop when delta < TOL or after MAX_SELFCAL rounds."""
        def on_round(res: dict[str, Any]) -> list[tuple[Future[Any], Callable]]:
            if res["delta"] < PARAMS["tol"] or rnd >= PARAMS["max_selfcal"]:
                self.loops[i] = res
                return self._maybe_merge()
            return [self._selfcal(i, res, rnd + 1)]
        return self.submit("selfcal_step", on_round, vis=self.parts[i], cal=self.cals[i], npix=PARAMS["npix"],
                           cell_arcmin=PARAMS["cell_arcmin"], niter=PARAMS["niter"], state=state)

    def _maybe_merge(self) -> list[tuple[Future[Any], Callable]]:
        if len(self.loops) < self.n_sub:
            return []
        loops = [self.loops[i] for i in range(self.n_sub)]
        return [self.submit("merge_images", self.on_merged, results=loops)]

    def on_merged(self, merged: dict[str, Any]) -> list[tuple[Future[Any], Callable]]:
        self.merged = merged
        return [self.submit("report", self.on_report, calibrations=[self.cals[i] for i in range(self.n_sub)],
                            selfcal=[self.loops[i] for i in range(self.n_sub)], merged=merged)]

    def on_report(self, rep: dict[str, Any]) -> list:
        self.report = rep
        return []

    def summary(self) -> dict[str, Any]:
        return {"rounds": [self.loops[i]["iteration"] for i in range(self.n_sub)],
                "flagged": self.report["flagged"], "merged_subbands": self.merged["subbands"],
                "merged_peak": round(self.merged["peak_jy_beam"], 4)}


def run_plain(sim: dict[str, Any], work: Path) -> tuple[float, dict[str, Any], int]:
    with ProcessPoolExecutor(WORKERS) as pool:
        for f in [pool.submit(int) for _ in range(WORKERS)]:
            f.result()                        # processes up before the clock starts
        t0 = time.perf_counter()
        d = Plain(pool, sim, work)
        waiting = dict(d.start())
        while waiting:
            done, _ = wait(list(waiting), return_when=FIRST_COMPLETED)
            for fut in done:
                then = waiting.pop(fut)
                waiting.update(then(fut.result()) or [])
        elapsed = time.perf_counter() - t0
    return elapsed, d.summary(), d.count


def run_skyweave(sim: dict[str, Any], store: Path, *, preload: bool = True
                 ) -> tuple[float, float, dict[str, Any], int]:
    t_start = time.perf_counter()
    with Client(str(store), workers=WORKERS, preload=PRELOAD if preload else []) as client:
        vis = client.add_product(sim["vis"], type=cv.VIS_RAW, obs_id="nenu0001")
        model = client.add_product(sim["calmodel"], type=cv.SKYMODEL, obs_id="nenu0001")
        startup = time.perf_counter() - t_start
        t0 = time.perf_counter()
        h = client.submit(observation, {"vis_id": vis.id, "model_id": model.id, **PARAMS})
        h.wait(timeout=1800)
        elapsed = time.perf_counter() - t0
        if h.status != "succeeded":
            raise RuntimeError(h.summary())
        res = h.results()
        n_tasks = sum(a.state == "succeeded" for a in h.activities())
        out = {"rounds": [s["iteration"] for s in res["selfcal"]], "flagged": res["report"]["flagged"],
               "merged_subbands": res["merged"]["subbands"],
               "merged_peak": round(res["merged"]["peak_jy_beam"], 4)}
    return elapsed, startup, out, n_tasks


def bench_pipeline(base: Path, *, quick: bool, reps: int, cold: bool = False) -> dict[str, Any]:
    sim = simulate_observation(base / "data", "nenu0001", 1, nan_subband=1, empty_subband=2,
                               **({"n_times": 3} if quick else {}))
    print(f"pipeline: simulated nenu0001 ({sim['n_ant']} mini-arrays, {sim['n_rows']} rows x {sim['n_chan']} "
          f"channels, 4 sub-bands, 1 with NaNs, 1 flagged); {WORKERS} workers; {reps} repetition(s); "
          f"workflow parameters {PARAMS}")
    sources = pipeline_sources()
    modes = ["plain", "skyweave"] + (["skyweave-cold"] if cold else [])
    times: dict[str, list[float]] = {m: [] for m in modes}
    startups: dict[str, list[float]] = {m: [] for m in modes if m != "plain"}
    outs: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    mismatches: list[str] = []
    for rep in range(reps):
        order = modes if rep % 2 == 0 else modes[::-1]
        for mode in order:
            if mode == "plain":
                t, outs[mode], counts[mode] = run_plain(sim, base / f"plain{rep}")
                extra = ""
            else:
                t, s, outs[mode], counts[mode] = run_skyweave(sim, base / f"{mode}{rep}",
                                                              preload=mode == "skyweave")
                startups[mode].append(s)
                extra = f"   (client start-up {s:.2f} s)"
            times[mode].append(t)
            print(f"  rep {rep} {mode:13s} {t:7.2f} s   rounds {outs[mode]['rounds']}{extra}")
        if pipeline_sources() != sources:
            sources = pipeline_sources()
            mismatches.append(f"rep {rep}: pipeline source files changed")
            print("  WARNING: the pipeline's source files changed during this repetition: the two sides "
                  "may have run different code (run again when nobody is editing pipelines/)")
        for mode in modes[1:]:
            if outs[mode] != outs["plain"]:
                mismatches.append(f"rep {rep}: plain {outs['plain']} {mode} {outs[mode]}")
                print(f"  WARNING: different work: plain {outs['plain']} {mode} {outs[mode]}")
    if not mismatches:
        print(f"  same results on every side and repetition: {outs['plain']}")
    med = {m: statistics.median(v) for m, v in times.items()}
    p, s = med["plain"], med["skyweave"]
    print(f"  plain ProcessPoolExecutor({WORKERS}): {p:.2f} s ({counts['plain']} calls)   skyweave (local, "
          f"workers={WORKERS}, preload): {s:.2f} s ({counts['skyweave']} activities)   ratio {s / p:.3f} "
          f"({100 * (s / p - 1):+.1f} %, target <= +10 %)   "
          f"[client start-up {statistics.median(startups['skyweave']):.2f} s, not included]")
    out: dict[str, Any] = {
        "plain_pool_s": p, "skyweave_s": s, "ratio": s / p, "overhead_pct": 100 * (s / p - 1),
        "skyweave_startup_s": statistics.median(startups["skyweave"]), "plain_runs": times["plain"],
        "skyweave_runs": times["skyweave"], "plain_calls": counts["plain"],
        "skyweave_activities": counts["skyweave"], "params": PARAMS, "pipeline_sources": sources,
        "same_work": not mismatches, "mismatches": mismatches, "results": outs}
    if cold:
        c = med["skyweave-cold"]
        print(f"  skyweave without preload (each worker imports the pipeline on first use): {c:.2f} s   "
              f"ratio {c / p:.3f}   [client start-up {statistics.median(startups['skyweave-cold']):.2f} s]")
        out.update(skyweave_cold_s=c, ratio_cold=c / p, skyweave_cold_runs=times["skyweave-cold"])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller data, fewer repetitions")
    ap.add_argument("--reps", type=int, default=None, help="pipeline repetitions (default 3, --quick 1)")
    ap.add_argument("--cold", action="store_true",
                    help="also run skyweave without preload (workers import the pipeline on the clock)")
    ap.add_argument("--pipeline-only", action="store_true", help="skip the imaging throughput part")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    reps = args.reps or (1 if args.quick else 3)
    with tempfile.TemporaryDirectory(prefix="radio-bench-") as tmp:
        base = Path(tmp)
        result: dict[str, Any] = {}
        if not args.pipeline_only:
            result["imaging"] = bench_imaging(base, quick=args.quick, reps=3 if args.quick else 5)
        result["pipeline"] = bench_pipeline(base, quick=args.quick, reps=reps, cold=args.cold)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
