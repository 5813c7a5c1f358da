"""Through the server vs the embedded Client, on a store already holding many activities:

* **submit -> first activity running**: from the moment ``submit`` is called to the ``started_at``
  the worker records for the run's first activity (``skyweave.examples.mini_xray:backlog`` with
  ``n=1``: an ``indices`` activity, then one ``quicklook``);
* **run status**: one ``summary(run_id)`` (state, activities by state, failures) of a finished
  1,000-activity run, embedded (store queries in-process) vs remote (``GET /api/v1/runs/{id}``).

The store is first filled with ``--activities`` synthetic activities (runs of 1,000, succeeded),
written the way the controller writes them.  Embedded: ``Client(store, executor="threads")``.
Server: ``skyweave server --controller`` and a ``skyweave worker --executor threads`` in processes
of their own, the remote ``skyweave.Client(URL, token=...)`` here.  Not a test: figures depend on
the machine and its load (printed with them).

    .venv/bin/python bench/server_bench.py [--activities 100000] [--submits 30] [--status 300]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2

from skyweave.client import Client
from skyweave.model.ids import ACTIVITY, RUN, new_id
from skyweave.model.records import ActivityRecord, Changeset, RunRecord
from skyweave.server.tokens import create_token
from skyweave.store import open_store

WORKFLOW = "skyweave.examples.mini_xray:backlog"
RUN_SIZE = 1000


def fill(store_dir: Path, total: int) -> str:
    """``total`` succeeded activities in runs of ``RUN_SIZE``; the id of the last run."""
    store = open_store(str(store_dir))
    now = time.time()
    run_id = ""
    try:
        for start in range(0, total, RUN_SIZE):
            run_id = new_id(RUN)
            acts = [ActivityRecord(id=new_id(ACTIVITY), run_id=run_id, node="quicklook",
                                   task_name="quicklook", task_version="1.0", state="succeeded",
                                   key=str(i), code_hash="c0ffee" * 10,
                                   arguments={"index": i, "seconds": 0.0}, result=i, attempt=1,
                                   created_at=now, queued_at=now, started_at=now, ended_at=now)
                    for i in range(min(RUN_SIZE, total - start))]
            run = RunRecord(id=run_id, workflow="backlog", state="succeeded", created_at=now, ended_at=now)
            store.apply(Changeset(runs=[run], activities=acts))
    finally:
        store.close()
    return run_id


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def figures(name: str, values_s: list[float]) -> dict[str, Any]:
    ms = [v * 1000 for v in values_s]
    return {"what": name, "n": len(ms), "p50_ms": round(statistics.median(ms), 2),
            "p99_ms": round(pct(ms, 0.99), 2), "max_ms": round(max(ms), 2)}


def first_started(client: Any, run_id: str, submitted: float, store: Any) -> float:
    """Seconds from ``submitted`` to the first activity's recorded start (read from the store)."""
    while True:
        acts = store.list_activities(run_id=run_id, limit=5)
        started = [a.started_at for a in acts if a.started_at is not None]
        if started:
            return min(started) - submitted
        time.sleep(0.001)


def measure(client: Any, store: Any, big_run: str, submits: int, status: int) -> list[dict[str, Any]]:
    latencies = []
    for _ in range(submits):
        t0 = time.time()
        run_id = client.submit(WORKFLOW, {"n": 1, "seconds": 0.0}).id
        latencies.append(first_started(client, run_id, t0, store))
        client.wait(run_id, timeout=120)
    timings = []
    for _ in range(status):
        t0 = time.perf_counter()
        client.summary(big_run)
        timings.append(time.perf_counter() - t0)
    return [figures("submit -> first activity running", latencies), figures("run status", timings)]


def serve(store_dir: Path) -> tuple[str, str, list[subprocess.Popen[bytes]]]:
    store = open_store(str(store_dir))
    token, _ = create_token(store, "bench", ["write"])
    store.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cli = [sys.executable, "-m", "skyweave.cli.main"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYWEAVE_")}
    quiet = {"env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen([*cli, "server", "--store", str(store_dir), "--port", str(port),
                               "--controller"], **quiet),  # type: ignore[call-overload]
             subprocess.Popen([*cli, "worker", "--store", str(store_dir), "--executor", "threads",
                               "--slots", "2"], **quiet)]  # type: ignore[call-overload]
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx2.get(f"{url}/api/v1/health", headers={"Authorization": f"Bearer {token}"}).is_success:
                break
        except httpx2.TransportError:
            time.sleep(0.1)
    return url, token, procs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activities", type=int, default=100_000)
    parser.add_argument("--submits", type=int, default=30)
    parser.add_argument("--status", type=int, default=300)
    args = parser.parse_args()
    results: dict[str, Any] = {"activities_in_store": args.activities, "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        store_dir = Path(tmp) / "store"
        t0 = time.perf_counter()
        big_run = fill(store_dir, args.activities)
        results["fill_s"] = round(time.perf_counter() - t0, 1)
        with Client(str(store_dir), executor="threads", workers=2) as embedded:
            client_store = embedded.store
            results["embedded"] = measure(embedded, client_store, big_run, args.submits, args.status)
        url, token, procs = serve(store_dir)
        try:
            store = open_store(str(store_dir))
            with Client(url, token=token) as remote:
                results["server"] = measure(remote, store, big_run, args.submits, args.status)
            store.close()
        finally:
            for p in procs:
                p.terminate()
                p.wait(30)
    results["load_after"] = os.getloadavg()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
