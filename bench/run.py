"""Benchmark harness: skyweave against Dask, Prefect 3, Luigi, Parsl and a serial loop.

    python3 bench/run.py                  # everything, 3 repetitions (make bench)
    python3 bench/run.py --quick          # 1 repetition, N=1,000 only, slow peers skipped
    python3 bench/run.py --tools skyweave,dask-threads --workloads W1,W3
    python3 bench/run.py --big            # also: peak controller RSS for a 100,000-task fan-out

Creates or refreshes ``.venv-bench`` (skyweave editable + the peers pinned in
``bench/requirements.txt``), runs every tool x workload x repetition in a fresh interpreter,
and writes ``bench/results.json``.  See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENV = REPO / ".venv-bench"
VPY = VENV / "bin" / "python"
STAMP = VENV / ".installed"
REQUIREMENTS = BENCH / "requirements.txt"

ALL_TOOLS = ["serial", "skyweave", "dask-threads", "dask-distributed", "prefect", "luigi",
             "parsl-threads", "parsl-htex", "ray"]
SLOW_TOOLS = {"luigi", "parsl-htex", "dask-distributed", "ray"}   # skipped by --quick
ALL_WORKLOADS = ["W1", "W2", "W3", "W4"]
W1_SIZES = [1_000, 10_000]
BIG_N = 100_000
CORES = 2  # the workers every tool gets; the ideal parallel time of W3/W4 is serial / CORES


# -- environment ----------------------------------------------------------------------------------
def ensure_venv(force: bool) -> None:
    inputs = [REQUIREMENTS, REPO / "pyproject.toml"]
    if not force and STAMP.exists() and all(p.stat().st_mtime <= STAMP.stat().st_mtime for p in inputs):
        return
    print(f"creating/refreshing {VENV} ...", flush=True)
    if not VPY.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(VPY), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", str(REPO), "-r", str(REQUIREMENTS)], check=True)
    STAMP.touch()


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(BENCH) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"  # one core per task for every tool
    for var in [k for k in env if k.startswith(("SKYWEAVE_", "PREFECT_"))]:
        del env[var]
    env["PYTHONWARNINGS"] = "ignore"
    env["PATH"] = str(VENV / "bin") + os.pathsep + env.get("PATH", "")  # parsl's interchange script
    return env


# -- one measurement (in a fresh interpreter) -----------------------------------------------------
def child(tool: str, workload: str, n: int) -> None:
    """Runs inside .venv-bench; prints one JSON line prefixed with ``@@RESULT``."""
    os.chdir(tempfile_dir())
    try:
        if tool == "skyweave":
            from workloads import skyweave_wl

            out = skyweave_wl.run(workload, n)
        else:
            from workloads import peers

            out = peers.TOOLS[tool](workload, n)
        from workloads import common

        want = common.expected(workload, n)
        if want is not None and out["result"] != want:
            raise RuntimeError(f"wrong result {out['result']!r}, expected {want!r}")
        if want is None and not isinstance(out["result"], float | int):
            raise RuntimeError(f"result is not a number: {out['result']!r}")
        record: dict[str, Any] = {"ok": True, **out}
    except Exception as exc:
        installed = type(exc).__name__ == "NotInstalled"
        record = {"ok": False, "not_installed": installed, "error": f"{type(exc).__name__}: {exc}",
                  "trace": "" if installed else traceback.format_exc(limit=6)}
    record.pop("result", None)
    print("@@RESULT " + json.dumps(record, default=str), flush=True)


def tempfile_dir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="bench-cwd-")


def measure(tool: str, workload: str, n: int, timeout: float) -> dict[str, Any]:
    cmd = [str(VPY), str(Path(__file__).resolve()), "--child", tool, workload, str(n)]
    load = os.getloadavg()[0]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=child_env(),
                              check=False)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timeout after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("@@RESULT "):
            return {**json.loads(line.removeprefix("@@RESULT ")), "load_before": load}
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return {"ok": False, "error": f"exit {proc.returncode}: " + " | ".join(tail)}


# -- the plan and the report ----------------------------------------------------------------------
def tasks_of(workload: str, n: int) -> int:
    """Tasks in the workload's definition (fan-out + reduce), the same for every tool."""
    return {"W1": n + 1, "W2": 200, "W3": 65, "W4": 201}[workload]


def plan(args: argparse.Namespace) -> list[tuple[str, str, int]]:
    tools = args.tools.split(",") if args.tools else list(ALL_TOOLS)
    unknown = [t for t in tools if t not in ALL_TOOLS]
    if unknown:
        sys.exit(f"unknown tool {unknown[0]!r}; choose from {','.join(ALL_TOOLS)}")
    if args.quick and not args.tools:
        tools = [t for t in tools if t not in SLOW_TOOLS]
    workloads = args.workloads.split(",") if args.workloads else list(ALL_WORKLOADS)
    if "serial" not in tools and {"W3", "W4"} & set(workloads):
        tools.insert(0, "serial")  # W3/W4 overheads need the serial time
    sizes = W1_SIZES[:1] if args.quick else W1_SIZES
    jobs = []
    for tool in tools:
        for wl in workloads:
            for n in sizes if wl == "W1" else [0]:
                jobs.append((tool, wl, n))
    if args.big:
        jobs.append(("skyweave", "W1", BIG_N))
    return jobs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 repetition, N=1,000 only, skip slow peers")
    ap.add_argument("--tools", help=f"comma-separated subset of {','.join(ALL_TOOLS)}")
    ap.add_argument("--workloads", help="comma-separated subset of W1,W2,W3,W4")
    ap.add_argument("--reps", type=int, help="repetitions (default 3, 1 with --quick)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per subprocess")
    ap.add_argument("--big", action="store_true", help="peak RSS of a 100,000-task skyweave fan-out")
    ap.add_argument("--reinstall", action="store_true", help="refresh .venv-bench even if up to date")
    ap.add_argument("--no-install", action="store_true", help="use .venv-bench as it is")
    ap.add_argument("--out", default=str(BENCH / "results.json"))
    ap.add_argument("--child", nargs=3, metavar=("TOOL", "WORKLOAD", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    if not args.no_install:
        ensure_venv(args.reinstall)
    reps = args.reps or (1 if args.quick else 3)
    jobs = plan(args)
    records: list[dict[str, Any]] = []
    serial_wall: dict[str, float] = {}
    started = time.perf_counter()
    for tool, wl, n in jobs:
        runs = []
        for _ in range(1 if (tool, n) == ("skyweave", BIG_N) else reps):
            r = measure(tool, wl, n, args.timeout * (3 if n == BIG_N else 1))
            runs.append(r)
            if not r["ok"]:
                break
        records.extend(summarise(tool, wl, n, runs, serial_wall))
        last = records[-1]
        print(f"  {tool:17s} {last['workload']:7s} n={n or tasks_of(wl, n):<7d} "
              f"{_fmt(last['wall_s_median'], '.3f')} s  {last['notes'][:90]}", flush=True)
    Path(args.out).write_text(json.dumps(records, indent=1) + "\n")
    print(f"\n{len(jobs)} measurements in {time.perf_counter() - started:.0f} s -> {args.out}\n")
    report(records)


def summarise(tool: str, wl: str, n: int, runs: list[dict[str, Any]],
              serial_wall: dict[str, float]) -> list[dict[str, Any]]:
    n_tasks = tasks_of(wl, n)
    ok = [r for r in runs if r["ok"]]
    if len(ok) < len(runs) or not ok:
        bad = runs[-1]
        note = "not installed" if bad.get("not_installed") else f"FAILED: {bad['error']}"
        names = [f"{wl}-run1", f"{wl}-run2"] if wl == "W4" else [wl]
        return [{"tool": tool, "workload": name, "n": n or n_tasks, "tasks": n_tasks, "wall_s_median": None,
                 "wall_s_all": [], "per_task_overhead_ms": None, "notes": note,
                 "trace": bad.get("trace", "")} for name in names]
    out = []
    for i in range(len(ok[0]["walls"])):
        walls = [r["walls"][i] for r in ok]
        med = statistics.median(walls)
        name = f"{wl}-run{i + 1}" if wl == "W4" else wl
        if tool == "serial":
            serial_wall[name] = med
        ideal = 0.0
        if wl in ("W3", "W4"):
            ideal = serial_wall.get(name, serial_wall.get(wl + "-run1", 0.0)) / CORES
        if wl == "W4" and i == 1 and tool in ("prefect", "luigi", "parsl-threads", "parsl-htex"):
            ideal = 0.0  # these reuse the first run's results, so the second run has no work to do
        notes = "; ".join(ok[0].get("notes", []))
        extra = {"setup_s_median": statistics.median(r.get("setup_s", 0.0) for r in ok),
                 "load_before_max": max(r.get("load_before", 0.0) for r in ok)}
        if extra["load_before_max"] > CORES * 0.75:
            notes = f"NOISY (load {extra['load_before_max']:.1f} on {CORES} cores); {notes}"
        if "maxrss_mb" in ok[0]:
            extra["peak_rss_mb"] = max(r["maxrss_mb"] for r in ok)
        out.append({"tool": tool, "workload": "W1-big" if n == BIG_N else name, "n": n or n_tasks,
                    "tasks": n_tasks, "wall_s_median": med, "wall_s_all": walls,
                    "per_task_overhead_ms": (med - ideal) / n_tasks * 1000, "ideal_work_s": ideal,
                    "notes": notes, **extra})
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(records: list[dict[str, Any]]) -> None:
    print(f"{'tool':17s} {'workload':9s} {'n':>7s} {'wall s (median)':>16s} {'overhead ms/task':>17s} "
          f"{'tasks/s':>9s}  notes")
    for r in records:
        tps = r["tasks"] / r["wall_s_median"] if r["wall_s_median"] else None
        rss = ""
        if r.get("peak_rss_mb") and r["tool"] == "skyweave":
            rss = f" peak RSS {r['peak_rss_mb']:.0f} MB;"
        print(f"{r['tool']:17s} {r['workload']:9s} {r['n']:>7d} {_fmt(r['wall_s_median'], '.3f'):>16s} "
              f"{_fmt(r['per_task_overhead_ms'], '.3f'):>17s} {_fmt(tps, ',.0f'):>9s} "
              f"{rss} {r['notes'][:70]}")
    by = {(r["tool"], r["workload"], r["n"]): r for r in records}
    print("\nratios (skyweave / peer; > 1 means skyweave is slower):")
    for r in records:
        if r["tool"] != "skyweave" or r["per_task_overhead_ms"] is None or r["workload"] == "W1-big":
            continue
        parts = []
        for peer in ("prefect", "dask-threads"):
            p = by.get((peer, r["workload"], r["n"]))
            if p and p["per_task_overhead_ms"]:
                ratio = r["per_task_overhead_ms"] / p["per_task_overhead_ms"]
                parts.append(f"overhead vs {peer}: {ratio:.2f}x")
        s = by.get(("serial", r["workload"], r["n"]))
        if r["workload"] in ("W3", "W4-run1") and s and s["wall_s_median"]:
            parts.append(f"wall / serial loop: {r['wall_s_median'] / s['wall_s_median']:.2f}x "
                         f"(ideal {1 / CORES:.2f}x)")
        if r["workload"] == "W1":
            parts.append(f"{r['tasks'] / r['wall_s_median']:,.0f} tasks/s")
        print(f"  {r['workload']:8s} n={r['n']:<6d} " + "; ".join(parts))
    big = by.get(("skyweave", "W1-big", BIG_N))
    if big:
        print(f"\nskyweave W1 fan-out of {BIG_N:,}: wall {_fmt(big['wall_s_median'], '.1f')} s, "
              f"controller peak RSS {big.get('peak_rss_mb', 0):.0f} MB {big['notes'][:80]}")


if __name__ == "__main__":
    main()
