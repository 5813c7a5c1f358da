"""The Slurm executor on the one-node cluster ``scripts/services.sh start slurm`` runs (issue 14).

1. **Throughput**: N short activities (W1: a fan-out of N no-op tasks + a sum) through skyweave with
   ``--executor slurm`` (``max_jobs=N``: a fan-out handed over together is one job array), against a
   raw ``sbatch --array=0-(N-1)`` whose elements each start Python and write their result file (the
   same work without skyweave).  Both walls are from submission until every element has ended; the
   ratio is skyweave / raw.
2. **Polling load**: K jobs submitted through the executor (tasks that wait for a file), the executor
   collecting as a worker does for ``--window`` seconds: ``squeue`` calls per minute and the time
   one call takes, at K = 10 and K = 1,000.  The node has 64 CPUs, so at K = 1,000 64 jobs run and
   the rest are pending: ``squeue`` lists (and the executor follows) all of them either way.

    python bench/slurm_bench.py [--n 1000] [--jobs 10,1000] [--window 60] [--skip-throughput]

The cluster's executor setting is read from ``SKYWEAVE_TEST_SLURM_URL`` or ``.services/env``.
Results are printed and written to ``bench/results-slurm.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from workloads.skyweave_wl import w1_fanout

from skyweave import Client
from skyweave.executors.base import ExecutionEnv
from skyweave.executors.slurm import SlurmExecutor
from skyweave.executors.slurm_commands import JobState, SlurmCommands, parse_options
from skyweave.model.messages import DispatchActivity
from skyweave.model.specs import TaskSpec

ROOT = Path(__file__).resolve().parents[1]


def cluster_setting() -> str:
    url = os.environ.get("SKYWEAVE_TEST_SLURM_URL", "")
    env_file = ROOT / ".services" / "env"
    if not url and env_file.is_file():
        for line in env_file.read_text().splitlines():
            if line.startswith("SKYWEAVE_TEST_SLURM_URL="):
                url = line.partition("=")[2].strip()
    if not url:
        sys.exit("no Slurm cluster: run `scripts/services.sh start slurm` first")
    return url


def raw_array(setting: str, n: int, tmp: Path) -> float:
    """``sbatch --array`` of n elements, each a Python process writing its result file."""
    slurm = SlurmCommands(parse_options(setting).conf)
    out = tmp / "raw"
    out.mkdir()
    script = tmp / "raw.sh"
    work = "import sys; open(sys.argv[1], 'w').write(str(int(sys.argv[2])))"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "{work}" '
                      f'"{out}/$SLURM_ARRAY_TASK_ID" "$SLURM_ARRAY_TASK_ID"\n')
    started = time.perf_counter()
    slurm.sbatch(str(script), ["--job-name=raw-bench", f"--array=0-{n - 1}", "--output=/dev/null"], {})
    while True:
        states = slurm.squeue("raw-bench") or {}
        if len(list(out.iterdir())) == n and not [s for s in states.values() if s.active]:
            break
        time.sleep(0.2)
    wall = time.perf_counter() - started
    assert sum(int(p.read_text()) for p in out.iterdir()) == n * (n - 1) // 2
    return wall


class Longest:
    """The longest call of each SlurmExecutor method the worker loop makes (it sends the heartbeats
    between them, so a call that lasts seconds would make the worker look dead)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        for name in ("submit", "collect"):
            original = getattr(SlurmExecutor, name)

            def timed(executor: SlurmExecutor, *args: Any, _name: str = name, _f: Any = original) -> Any:
                t0 = time.perf_counter()
                try:
                    return _f(executor, *args)
                finally:
                    wait = args[0] if _name == "collect" else 0.0  # collect's own timeout is not a stall
                    spent = time.perf_counter() - t0 - wait
                    self.seconds[_name] = max(self.seconds.get(_name, 0.0), spent)

            setattr(SlurmExecutor, name, timed)


def skyweave_array(setting: str, n: int, tmp: Path) -> tuple[float, dict[str, Any]]:
    longest = Longest()
    # 64 Python jobs at once on 2 cores starve the worker's thread of CPU for seconds: a long
    # liveness timeout keeps the controller from taking it for dead (which would redo the work)
    client = Client(str(tmp / "store"), workers=n, executor=f"{setting}&max_jobs={n}&poll_s=1",
                    worker_timeout_s=300, lease_s=600)
    try:
        started = time.perf_counter()
        handle = client.run(w1_fanout, {"n": n}, timeout=3600)
        wall = time.perf_counter() - started
        summary = handle.summary()
        assert summary["status"] == "succeeded", summary
        assert handle.results() == n * (n - 1) // 2
        assert client.engine is not None
        assert client.engine.worker is not None
        executor = client.engine.worker.executor
        assert isinstance(executor, SlurmExecutor)
        assert isinstance(executor.slurm, SlurmCommands)
        return wall, {"activities": summary["activities"], "calls": dict(executor.slurm.calls),
                      "longest_call_s": {k: round(v, 3) for k, v in longest.seconds.items()}}
    finally:
        client.close()


class TimedCommands(SlurmCommands):
    """Slurm's commands, each squeue timed."""

    def __init__(self, conf: str) -> None:
        super().__init__(conf)
        self.squeue_s: list[float] = []
        self.listed: list[int] = []

    def squeue(self, name: str) -> dict[str, JobState] | None:
        t0 = time.perf_counter()
        states = super().squeue(name)
        self.squeue_s.append(time.perf_counter() - t0)
        self.listed.append(len(states or {}))
        return states


def polling_load(setting: str, jobs: int, window_s: float, tmp: Path) -> dict[str, Any]:
    tasks = tmp / f"wait{jobs}.py"
    tasks.write_text("import time\nfrom pathlib import Path\n\n\n"
                     "def wait(path: str) -> str:\n"
                     "    while not Path(path).exists():\n"
                     "        time.sleep(0.5)\n"
                     "    return 'released'\n")
    release = tmp / f"release{jobs}"
    env = ExecutionEnv(worker="wrk-bench", storage_root=tmp / "storage", work_root=tmp / "work",
                       log_root=tmp / "logs")
    options = parse_options(setting)
    commands = TimedCommands(options.conf)
    executor = SlurmExecutor(env, options, max_jobs=jobs, slurm=commands)
    executor.start()
    spec = TaskSpec(name="wait", version="1", ref=f"{tasks}:wait")
    executor.submit([DispatchActivity(activity_id=f"act-wait{i:05d}", attempt=1, run_id="run-bench",
                                      task=spec, arguments={"path": str(release)}) for i in range(jobs)])
    try:
        started = time.perf_counter()
        began = commands.calls["squeue"]
        seen_started = 0
        while time.perf_counter() - started < window_s:
            seen_started += sum(1 for o in executor.collect(0.05) if type(o).__name__ == "ActivityStarted")
        elapsed = time.perf_counter() - started
        calls = commands.calls["squeue"] - began
        running = sum(1 for s in (commands.squeue(executor.job_name) or {}).values() if s.state == "RUNNING")
    finally:
        release.touch()
        executor.close()
    timings = sorted(commands.squeue_s)
    return {"jobs": jobs, "running": running, "window_s": round(elapsed, 1),
            "squeue_calls": calls, "squeue_per_min": round(calls * 60 / elapsed, 1),
            "squeue_ms_median": round(1000 * timings[len(timings) // 2], 1),
            "jobs_listed_max": max(commands.listed), "started_reported": seen_started,
            "sbatch_calls": commands.calls["sbatch"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="activities in the throughput comparison")
    parser.add_argument("--jobs", default="10,1000", help="job counts of the polling-load measurement")
    parser.add_argument("--window", type=float, default=60.0, help="seconds each polling measurement lasts")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-polling", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results-slurm.json"))
    args = parser.parse_args()
    setting = cluster_setting()
    results: dict[str, Any] = {"load_before": os.getloadavg()[0], "cpus": os.cpu_count()}
    tmp = Path(tempfile.mkdtemp(prefix="skyweave-slurm-bench-"))
    try:
        if not args.skip_throughput:
            raw = raw_array(setting, args.n, tmp)
            print(f"raw sbatch --array of {args.n}: {raw:.1f} s", flush=True)
            sw, info = skyweave_array(setting, args.n, tmp)
            print(f"skyweave --executor slurm, W1 n={args.n} ({info['activities']} activities, "
                  f"{info['calls']['sbatch']} sbatch, {info['calls']['squeue']} squeue): {sw:.1f} s; "
                  f"ratio {sw / raw:.2f}", flush=True)
            results["throughput"] = {"n": args.n, "raw_s": round(raw, 2), "skyweave_s": round(sw, 2),
                                     "ratio": round(sw / raw, 2), **info}
        if not args.skip_polling:
            results["polling"] = []
            for jobs in (int(j) for j in args.jobs.split(",")):
                row = polling_load(setting, jobs, args.window, tmp)
                print(f"polling at {jobs} jobs ({row['running']} running): "
                      f"{row['squeue_per_min']} squeue/min, "
                      f"{row['squeue_ms_median']} ms each (median), {row['jobs_listed_max']} jobs listed",
                      flush=True)
                results["polling"].append(row)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["load_after"] = os.getloadavg()[0]
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
