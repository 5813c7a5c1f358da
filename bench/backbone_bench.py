"""Issue 13's backbone on PostgreSQL + Redis: W1 against peers, dispatch scaling, a very big run.

Every skyweave measurement starts its own ``skyweave controller`` and ``skyweave worker``
processes (separate interpreters, as on several hosts) on a fresh PostgreSQL schema and a fresh
Redis key prefix, submits one run from this process (``Client(engine=False)``: it only writes the
run and its request), and waits for the run to end reading the run's head (never the graph).
Every activity is persisted by the controller: its row, its attempt, its outcome.

    eval "$(scripts/services.sh env)"   # after: scripts/services.sh start postgres redis
    .venv/bin/python bench/backbone_bench.py w1 --n 10000 --peers dask-distributed,ray,parsl-htex
    .venv/bin/python bench/backbone_bench.py scaling --n 5000 --workers 1,4,16
    .venv/bin/python bench/backbone_bench.py big --n 100000 --shape flat,nested
    .venv/bin/python bench/backbone_bench.py w1 --n 10000 --profile py-spy   # flame data in --out-dir

``w1``       W1 (``total(noop.map(indices(n)))``) with ``--workers`` worker processes (2), then
             each peer of ``--peers`` in a fresh interpreter (``workloads.peers``, same functions)
``scaling``  the same run with 1, 4, 16 worker processes (``--workers``); activities per second
``big``      flat and nested shapes (``workloads.scale_wl``) at ``--n``; the controller's resident
             memory sampled every ``--sample-s`` with the number of activities finished so far,
             and the database's size at the end

Per-activity cost = wall time (submit -> run ended, as the store records it) / activities.
``--executor threads`` (default) runs a task in the worker process itself, as Dask's and Ray's
workers and Parsl's HTEX workers do; ``--executor local`` adds a warm child process per slot.
The load average (``os.getloadavg``) is printed next to every figure: the host is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


PG_VAR, REDIS_VAR = "SKYWEAVE_TEST_POSTGRES_URL", "SKYWEAVE_TEST_REDIS_URL"


def _urls(args: argparse.Namespace) -> tuple[str, str]:
    env_file = ROOT / ".services" / "env"
    found: dict[str, str] = {}
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            key, _, value = line.partition("=")
            found[key.strip()] = value.strip()
    pg = args.postgres or os.environ.get(PG_VAR) or found.get(PG_VAR)
    redis = args.redis or os.environ.get(REDIS_VAR) or found.get(REDIS_VAR)
    if not pg or not redis:
        sys.exit("no PostgreSQL or Redis URL: run `scripts/services.sh start postgres redis` "
                 "(or give --postgres and --redis)")
    return pg, redis


def _admin(url: str) -> Any:
    import psycopg
    from sqlalchemy.engine import make_url

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    return psycopg.connect(conninfo, autocommit=True)


def _cpu_of(pid: int, *, reaped: bool = False) -> float:
    """User + system CPU seconds of a process (``reaped``: plus its waited-for children's)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if reaped else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def _server_pid(port: int, name: str) -> int | None:
    """The pid of the local server listening on ``port`` (PostgreSQL's postmaster, redis-server)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = [c.decode(errors="replace") for c in cmd]
        if text and name in text[0] and (str(port) in text or any(t.endswith(f":{port}") for t in text)):
            return int(entry.name)
    return None


def servers_cpu(pg_pid: int | None, redis_pid: int | None) -> tuple[float, float]:
    """CPU seconds used so far by PostgreSQL (the postmaster, its live backends and those that
    ended) and by Redis."""
    pg = 0.0
    if pg_pid is not None:
        pg = _cpu_of(pg_pid, reaped=True)
        try:
            kids = Path(f"/proc/{pg_pid}/task/{pg_pid}/children").read_text().split()
        except OSError:
            kids = []
        pg += sum(_cpu_of(int(k)) for k in kids)
    return pg, (_cpu_of(redis_pid) if redis_pid is not None else 0.0)


class Backbone:
    """A controller and ``workers`` worker processes on a fresh schema and Redis prefix."""

    def __init__(self, pg: str, redis: str, *, workers: int, slots: int, executor: str,
                 profile: str | None, out_dir: Path, keep: bool = False) -> None:
        from sqlalchemy.engine import make_url

        self.schema = f"bb_{secrets.token_hex(4)}"
        self.pg = pg
        self.keep = keep
        with _admin(pg) as admin:
            admin.execute(f'CREATE SCHEMA "{self.schema}"')
        self.store = (make_url(pg).update_query_dict({"options": f"-csearch_path={self.schema}"})
                      .render_as_string(hide_password=False))
        self.bus = f"{redis}?prefix=bb-{secrets.token_hex(4)}"
        self.tmp = Path(tempfile.mkdtemp(prefix="skyweave-backbone-"))
        self.out_dir = out_dir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SKYWEAVE_")}
        self.env.update({"SKYWEAVE_BUS": self.bus, "SKYWEAVE_STORAGE": str(self.tmp / "files"),
                         "PYTHONPATH": str(BENCH), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
        self.procs: list[subprocess.Popen[bytes]] = []
        self.profile = profile
        from urllib.parse import urlsplit

        self.pg_pid = _server_pid(urlsplit(pg).port or 5432, "postgres")
        self.redis_pid = _server_pid(urlsplit(redis).port or 6379, "redis-server")
        self.controller = self._start("controller", profiled=profile is not None)
        self.workers = [self._start("worker", "--slots", str(slots), "--executor", executor,
                                    profiled=profile is not None and i == 0) for i in range(workers)]
        self._until_logged(self.controller, "controller on store")
        for w in self.workers:
            self._until_logged(w, "slots")

    def _start(self, *args: str, profiled: bool = False) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "skyweave.cli.main", *args, "--store", self.store]
        log = self.tmp / f"{len(self.procs):02d}-{args[0]}.log"
        if profiled and self.profile == "py-spy":
            spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            out = self.out_dir / f"{args[0]}-{self.schema}.speedscope.json"
            self.out_dir.mkdir(parents=True, exist_ok=True)
            argv = [spy, "record", "--format", "speedscope", "--rate", "100", "--threads", "--idle",
                    "--output", str(out), "--", *argv]
        with log.open("wb") as fh:
            proc = subprocess.Popen(argv, cwd=self.tmp, env=self.env, stdout=fh, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        proc.log = log  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def _until_logged(self, proc: subprocess.Popen[bytes], text: str, deadline: float = 120.0) -> None:
        end = time.monotonic() + deadline
        log: Path = proc.log  # type: ignore[attr-defined]
        while text not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"{proc.args} did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)

    def pid_of(self, proc: subprocess.Popen[bytes]) -> int:
        """The skyweave process itself (under py-spy, its child)."""
        if self.profile != "py-spy":
            return proc.pid
        kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        try:
            return int(kids.read_text().split()[0])
        except (OSError, IndexError, ValueError):
            return proc.pid

    def rss_mb(self, proc: subprocess.Popen[bytes]) -> float:
        try:
            for line in Path(f"/proc/{self.pid_of(proc)}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def cpu_s(self, proc: subprocess.Popen[bytes]) -> float:
        return _cpu_of(self.pid_of(proc))

    def db_mb(self) -> float:
        with _admin(self.pg) as admin:
            row = admin.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
                (self.schema,)).fetchone()
        return float(row[0]) / 2**20 if row else 0.0

    def finished(self, run_id: str) -> int:
        with _admin(self.store) as db:
            db.execute(f'SET search_path TO "{self.schema}"')
            row = db.execute("SELECT count(*) FROM activities WHERE run_id = %s AND state = 'succeeded'",
                             (run_id,)).fetchone()
        return int(row[0]) if row else 0

    def executed(self) -> int:
        """Activities that ran on a worker (an attempt row); the others were reused from the cache."""
        with _admin(self.store) as db:
            db.execute(f'SET search_path TO "{self.schema}"')
            row = db.execute("SELECT count(DISTINCT activity_id) FROM attempts").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM) if self.profile != "py-spy" else os.kill(
                    self.pid_of(proc), signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if not self.keep:
            with _admin(self.pg) as admin:
                admin.execute(f'DROP SCHEMA "{self.schema}" CASCADE')
            shutil.rmtree(self.tmp, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(f"--- {p.log.name}\n{p.log.read_text(errors='replace')[-2000:]}"  # type: ignore[attr-defined]
                         for p in self.procs)


def run_once(bb: Backbone, shape: str, n: int, *, group: int, timeout: float, sample_s: float,
             count_every: int = 0) -> dict[str, Any]:
    """Submit one run of ``shape``; wait for its end; the figures."""
    from workloads.scale_wl import SHAPES

    from skyweave import Client

    params: dict[str, Any] = {"n": n, "group": group} if shape.startswith("nested") else {"n": n}
    samples: list[tuple[float, float, int]] = []
    load_begin = _load()
    with Client(bb.store, engine=False, bus=bb.bus, storage=str(bb.tmp / "files")) as client:
        cpu0 = bb.cpu_s(bb.controller)
        wcpu0 = sum(bb.cpu_s(w) for w in bb.workers)
        pg0, redis0 = servers_cpu(bb.pg_pid, bb.redis_pid)
        t0 = time.perf_counter()
        handle = client.submit(SHAPES[shape], params)
        submitted = time.perf_counter() - t0
        stop = threading.Event()
        peak = [bb.rss_mb(bb.controller)]

        def sample() -> None:
            k = 0
            while not stop.wait(sample_s):
                rss = bb.rss_mb(bb.controller)
                peak[0] = max(peak[0], rss)
                k += 1
                if count_every and k % count_every == 0:
                    samples.append((time.perf_counter() - t0, rss, bb.finished(handle.id)))
                    print(f"    t={samples[-1][0]:7.0f} s  controller RSS {rss:7.1f} MB  "
                          f"{samples[-1][2]:>9} succeeded  load {_load()}", flush=True)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        head = client.store.get_run_head(handle.id)
        while head.state not in ("succeeded", "failed", "cancelled"):
            if time.perf_counter() - t0 > timeout:
                stop.set()
                raise RuntimeError(f"run {handle.id} still {head.state} after {timeout} s\n{bb.logs()}")
            for p in bb.procs:
                if p.poll() is not None:
                    stop.set()
                    raise RuntimeError(f"{p.args} exited {p.returncode}\n{bb.logs()}")
            time.sleep(0.2)
            head = client.store.get_run_head(handle.id)
        wall = time.perf_counter() - t0
        stop.set()
        sampler.join()
        ctl_cpu = bb.cpu_s(bb.controller) - cpu0
        workers_cpu = sum(bb.cpu_s(w) for w in bb.workers) - wcpu0
        pg1, redis1 = servers_cpu(bb.pg_pid, bb.redis_pid)
        summary = client.summary(handle.id)
        if summary["status"] != "succeeded":
            raise RuntimeError(f"run ended {summary['status']}: {summary['error']}\n{bb.logs()}")
        want = n // group * sum(range(group)) if shape == "nested" else sum(range(n))
        if (got := client.results(handle.id)) != want:
            raise RuntimeError(f"{shape} n={n}: result {got!r}, expected {want}")
    acts = int(summary["activities"])
    stored = float(summary["ended_at"] - summary["created_at"])
    rec = {"shape": shape, "n": n, "activities": acts, "workers": len(bb.workers),
           "wall_s": round(wall, 2), "stored_s": round(stored, 2), "submit_s": round(submitted, 3),
           "ms_per_activity": round(stored / acts * 1e3, 3), "activities_per_s": round(acts / stored, 1),
           "controller_cpu_s": round(ctl_cpu, 1),
           "controller_cpu_ms_per_activity": round(ctl_cpu / acts * 1e3, 3),
           "workers_cpu_ms_per_activity": round(workers_cpu / acts * 1e3, 3),
           "postgres_cpu_ms_per_activity": round((pg1 - pg0) / acts * 1e3, 3),
           "redis_cpu_ms_per_activity": round((redis1 - redis0) / acts * 1e3, 3),
           "controller_peak_rss_mb": round(peak[0], 1),
           "controller_end_rss_mb": round(bb.rss_mb(bb.controller), 1),
           "load_begin": load_begin, "load_end": _load()}
    if samples:
        rec["samples"] = samples
        if len(samples) >= 2 and samples[-1][2] > samples[0][2]:
            rec["rss_kb_per_activity"] = round((samples[-1][1] - samples[0][1]) * 1024
                                               / (samples[-1][2] - samples[0][2]), 3)
    return rec


def _fmt(rec: dict[str, Any]) -> str:
    return (f"{rec['shape']:<7} n={rec['n']:<8} workers={rec['workers']:<3} "
            f"{rec['activities']:>8} activities "
            f"{rec['stored_s']:>8.1f} s  {rec['ms_per_activity']:>7.3f} ms/activity  "
            f"{rec['activities_per_s']:>7.0f}/s  "
            f"CPU ms/act: controller {rec['controller_cpu_ms_per_activity']:.3f}, "
            f"workers {rec['workers_cpu_ms_per_activity']:.3f}, "
            f"PostgreSQL {rec['postgres_cpu_ms_per_activity']:.3f}, "
            f"Redis {rec['redis_cpu_ms_per_activity']:.3f}; "
            f"RSS peak {rec['controller_peak_rss_mb']:.0f} MB  "
            f"(load {rec['load_begin']} -> {rec['load_end']})")


def skyweave_run(args: argparse.Namespace, shape: str, n: int, workers: int, *,
                 count_every: int = 0) -> dict[str, Any]:
    pg, redis = _urls(args)
    bb = Backbone(pg, redis, workers=workers, slots=args.slots, executor=args.executor,
                  profile=args.profile, out_dir=Path(args.out_dir), keep=args.keep)
    try:
        rec = run_once(bb, shape, n, group=args.group, timeout=args.timeout, sample_s=args.sample_s,
                       count_every=count_every)
        rec["db_mb"] = round(bb.db_mb(), 1)
        rec["executed"] = bb.executed()
        rec["executor"] = args.executor
        return rec
    finally:
        bb.close()


# -- peers, each in a fresh interpreter -----------------------------------------------------------------
def peer_child(tool: str, n: int) -> None:
    from workloads import common, peers

    out = peers.TOOLS[tool]("W1", n)
    if out["result"] != common.expected("W1", n):
        raise SystemExit(f"{tool}: wrong result {out['result']!r}")
    out.pop("result")
    print("@@RESULT " + json.dumps(out, default=str), flush=True)


def peer_run(tool: str, n: int, timeout: float) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYWEAVE_")}
    env.update({"PYTHONPATH": str(BENCH), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
                "PATH": str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
                "RAY_USAGE_STATS_ENABLED": "0"})
    load = _load()
    cwd = tempfile.mkdtemp(prefix="bench-peer-")
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "peer-child", tool, str(n)],
                              capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, check=False)
    except subprocess.TimeoutExpired:
        return {"tool": tool, "error": f"timeout after {timeout:.0f} s", "load_begin": load}
    finally:
        shutil.rmtree(cwd, ignore_errors=True)
    for line in proc.stdout.splitlines():
        if line.startswith("@@RESULT "):
            out = json.loads(line.removeprefix("@@RESULT "))
            wall = float(out["walls"][0])
            return {"tool": tool, "n": n, "tasks": n + 1, "wall_s": round(wall, 3),
                    "ms_per_activity": round(wall / (n + 1) * 1e3, 3), "setup_s": round(out["setup_s"], 2),
                    "notes": out.get("notes", []), "load_begin": load, "load_end": _load()}
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
    return {"tool": tool, "error": f"exit {proc.returncode}: " + " | ".join(tail), "load_begin": load}


# -- the commands ---------------------------------------------------------------------------------------
def cmd_w1(args: argparse.Namespace) -> list[dict[str, Any]]:
    records = []
    for workers in (int(w) for w in str(args.workers).split(",")):
        rec = skyweave_run(args, "flat", args.n, workers)
        print("skyweave " + _fmt(rec), flush=True)
        records.append({"tool": "skyweave", **rec})
    for tool in [t for t in args.peers.split(",") if t]:
        rec = peer_run(tool, args.n, args.timeout)
        if "error" in rec:
            print(f"{tool:<17} FAILED {rec['error']}", flush=True)
        else:
            print(f"{tool:<17} n={args.n} {rec['wall_s']:>8.2f} s  {rec['ms_per_activity']:>7.3f} ms/task  "
                  f"(setup {rec['setup_s']} s; load {rec['load_begin']} -> {rec['load_end']})", flush=True)
        records.append(rec)
    return records


def cmd_scaling(args: argparse.Namespace) -> list[dict[str, Any]]:
    records = []
    for workers in (int(w) for w in str(args.workers).split(",")):
        rec = skyweave_run(args, "flat", args.n, workers)
        print(_fmt(rec), flush=True)
        records.append(rec)
    return records


def cmd_big(args: argparse.Namespace) -> list[dict[str, Any]]:
    records = []
    for shape in args.shape.split(","):
        for n in (int(x) for x in str(args.n).split(",")):
            rec = skyweave_run(args, shape, n, int(args.workers), count_every=args.count_every)
            print(_fmt(rec) + f"  DB {rec['db_mb']:.0f} MB, {rec['executed']} executed"
                  + (f"  RSS growth {rec['rss_kb_per_activity']} kB/activity" if "rss_kb_per_activity" in rec
                     else ""), flush=True)
            records.append(rec)
    return records


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["peer-child"]:
        peer_child(argv[1], int(argv[2]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["w1", "scaling", "big"])
    ap.add_argument("--n", default="10000", help="activities of the fan-out (big: a comma list)")
    ap.add_argument("--workers", default=None, help="worker processes (scaling: a comma list; w1: 2)")
    ap.add_argument("--slots", type=int, default=1, help="slots per worker process")
    ap.add_argument("--executor", default="threads", help="the workers' executor (threads or local)")
    ap.add_argument("--peers", default="dask-distributed,ray,parsl-htex")
    ap.add_argument("--shape", default="flat,nested-distinct",
                    help="big: flat, nested (leaves repeat per group: reused from the cache) or "
                         "nested-distinct")
    ap.add_argument("--group", type=int, default=100, help="leaves per group of the nested shape")
    ap.add_argument("--timeout", type=float, default=3600.0)
    ap.add_argument("--sample-s", type=float, default=1.0, help="controller RSS sampling period")
    ap.add_argument("--count-every", type=int, default=10,
                    help="big: count finished activities every this many samples")
    ap.add_argument("--profile", choices=["py-spy"], help="record the controller and one worker with py-spy")
    ap.add_argument("--out-dir", default=tempfile.gettempdir(), help="where profiles go")
    ap.add_argument("--keep", action="store_true", help="keep the schema and the logs")
    ap.add_argument("--postgres", help="server URL (default: scripts/services.sh's)")
    ap.add_argument("--redis", help="server URL (default: scripts/services.sh's)")
    ap.add_argument("--json", help="also write the records to this file")
    args = ap.parse_args(argv)
    if args.workers is None:
        args.workers = {"w1": "2", "scaling": "1,4,16", "big": "2"}[args.what]
    if args.what != "big":
        args.n = int(args.n)
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {_load()}, {os.cpu_count()} cores",
          flush=True)
    records = {"w1": cmd_w1, "scaling": cmd_scaling, "big": cmd_big}[args.what](args)
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
