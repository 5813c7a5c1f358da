"""skyweave's Dask executor against plain Dask distributed on the same cluster (issue 14).

    .venv/bin/python bench/dask_bench.py [--workloads W1,W3] [--n 1000] [--json FILE]

One ``LocalCluster`` of two one-thread worker processes serves both sides in turn:

* plain Dask: the workload as a ``dask.delayed`` graph (``workloads/peers.py``), computed on the
  cluster: no persistence, no process per task;
* skyweave: the same workload as a workflow (``workloads/skyweave_wl.py``) run by the embedded
  engine with ``--executor dask://<the cluster's scheduler>``: every activity persisted to SQLite
  twice, dispatched over the bus, and run on a Dask worker in a process of its own, forked from
  a warm process that has imported skyweave and the task (what lets skyweave stop it, bound its
  memory and survive a worker's death).

Reports wall times and the ratio skyweave / Dask.  W1: ``n`` no-op tasks and a sum; W3: 64
numpy tasks of ~50 ms and a merge.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from distributed import Client as DaskClient
from distributed import LocalCluster
from workloads import common
from workloads.peers import _dask_graph
from workloads.skyweave_wl import WORKFLOWS, warmup

from skyweave import Client


def plain_dask(dask_client: DaskClient, workload: str, n: int) -> tuple[float, Any]:
    graph = _dask_graph(workload, n)
    started = time.perf_counter()
    result = dask_client.compute(graph).result()
    return time.perf_counter() - started, result


def through_skyweave(address: str, workload: str, n: int) -> tuple[float, Any, int]:
    tmp = Path(tempfile.mkdtemp(prefix="skyweave-dask-bench-"))
    try:
        client = Client(str(tmp / "store"), workers=2, executor=f"dask://{address}")
        try:
            client.run(warmup, {}, timeout=600)
            wf, params = WORKFLOWS[workload](n)
            started = time.perf_counter()
            handle = client.run(wf, params, timeout=3600)
            wall = time.perf_counter() - started
            summary = handle.summary()
            if summary["status"] != "succeeded":
                raise RuntimeError(f"run ended {summary['status']}: {summary['error']}")
            return wall, handle.results(), summary["activities"]
        finally:
            client.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workloads", default="W1,W3")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    dask_client = DaskClient(cluster)
    dask_client.submit(common.noop, 0).result()  # warm-up
    address = cluster.scheduler_address.removeprefix("tcp://")
    try:
        for workload in args.workloads.split(","):
            dask_wall, dask_result = plain_dask(dask_client, workload, args.n)
            sw_wall, sw_result, activities = through_skyweave(address, workload, args.n)
            if workload == "W1":
                assert dask_result == sw_result == common.expected("W1", args.n), (dask_result, sw_result)
            row = {"workload": workload, "n": args.n if workload == "W1" else common.W3_TASKS,
                   "activities": activities, "dask_s": round(dask_wall, 3),
                   "skyweave_dask_s": round(sw_wall, 3),
                   "ratio": round(sw_wall / dask_wall, 1),
                   "skyweave_ms_per_activity": round(1000 * sw_wall / activities, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        dask_client.close()
        cluster.close()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
