"""The same workloads on skyweave's peers: Dask, Prefect 3, Luigi, Parsl, Ray, and a serial loop.

Every tool runs the functions of ``workloads.common``.  Each ``run_<tool>(workload, n)`` returns
``{"walls": [...], "result": ..., "setup_s": ..., "notes": [...]}``; W4 returns two walls (first
and second run).  A tool whose import fails raises ``NotInstalled`` and is reported as such.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workloads import common


class NotInstalled(Exception):
    pass


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _shape(workload: str, n: int) -> tuple[int, int]:
    """(number of tasks of the fan-out, FFT repetitions) for W1/W3/W4."""
    if workload == "W1":
        return n, 0
    if workload == "W3":
        return common.W3_TASKS, common.W3_REPS
    return common.W4_TASKS, common.W4_REPS


# -- serial ---------------------------------------------------------------------------------------
def run_serial(workload: str, n: int) -> dict[str, Any]:
    walls, result = [], None
    for _ in range(2 if workload == "W4" else 1):
        wall, result = _timed(lambda: common.serial(workload, n))
        walls.append(wall)
    return {"walls": walls, "result": result, "setup_s": 0.0, "notes": []}


# -- dask -----------------------------------------------------------------------------------------
def _dask_graph(workload: str, n: int) -> Any:
    import dask

    if workload == "W2":
        x: Any = 0
        for _ in range(common.W2_LENGTH):
            x = dask.delayed(common.step, pure=False)(x)
        return x
    count, reps = _shape(workload, n)
    if workload == "W1":
        parts = [dask.delayed(common.noop, pure=False)(i) for i in range(count)]
        return dask.delayed(common.total, pure=False)(parts)
    parts = [dask.delayed(common.numpy_work, pure=False)(i, reps) for i in range(count)]
    return dask.delayed(common.merge, pure=False)(parts)


def _dask_runs(workload: str, n: int, compute: Callable[[Any], Any]) -> tuple[list[float], Any, str]:
    walls, builds, result = [], [], None
    for _ in range(2 if workload == "W4" else 1):
        # graph construction is part of the run, as a skyweave run includes building its graph
        build, graph = _timed(lambda: _dask_graph(workload, n))
        wall, result = _timed(lambda g=graph: compute(g))
        walls.append(build + wall)
        builds.append(build)
    return walls, result, f"of which graph build {max(builds):.3f} s"


def run_dask_threads(workload: str, n: int) -> dict[str, Any]:
    try:
        import dask
    except ImportError as exc:
        raise NotInstalled(str(exc)) from exc
    t0 = time.perf_counter()
    dask.compute(dask.delayed(common.noop)(0), scheduler="threads")  # warm-up
    setup = time.perf_counter() - t0
    walls, result, build = _dask_runs(
        workload, n, lambda g: dask.compute(g, scheduler="threads", num_workers=2)[0])
    return {"walls": walls, "result": result, "setup_s": setup,
            "notes": [build, "threaded scheduler, num_workers=2; W4 second run recomputes (no cache)"]}


def run_dask_distributed(workload: str, n: int) -> dict[str, Any]:
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise NotInstalled(str(exc)) from exc
    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    dask.compute(dask.delayed(common.noop)(0))  # warm-up
    setup = time.perf_counter() - t0
    try:
        walls, result, build = _dask_runs(workload, n, lambda g: dask.compute(g)[0])
    finally:
        client.close()
        cluster.close()
    return {"walls": walls, "result": result, "setup_s": setup,
            "notes": [build, "LocalCluster(2 procs x 1 thread); W4 second run recomputes (no cache)"]}


# -- prefect --------------------------------------------------------------------------------------
def run_prefect(workload: str, n: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="prefect-bench-"))
    os.environ.update({
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": "",
        "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "true",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_LOGGING_TO_API_ENABLED": "false",
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
        "DO_NOT_TRACK": "1",
    })
    try:
        from prefect import flow, task
        from prefect.cache_policies import INPUTS, NO_CACHE
        from prefect.client.orchestration import get_client
    except ImportError as exc:
        raise NotInstalled(str(exc)) from exc
    try:
        t0 = time.perf_counter()
        with get_client(sync_client=True) as c:  # starts the ephemeral server (sqlite in PREFECT_HOME)
            c.hello()

        noop = task(common.noop, cache_policy=NO_CACHE)
        total = task(common.total, cache_policy=NO_CACHE)
        step = task(common.step, cache_policy=NO_CACHE)
        work = task(common.numpy_work, cache_policy=NO_CACHE)
        merge = task(common.merge, cache_policy=NO_CACHE)
        cached_work = task(common.numpy_work, cache_policy=INPUTS, persist_result=True)
        cached_merge = task(common.merge, cache_policy=INPUTS, persist_result=True)

        @flow(log_prints=False)
        def w1(n: int) -> int:
            return total.submit(noop.map(list(range(n)))).result()

        @flow(log_prints=False)
        def w2(length: int) -> int:
            x = step.submit(0)
            for _ in range(length - 1):
                x = step.submit(x)
            return x.result()

        @flow(log_prints=False)
        def w3(count: int, reps: int) -> float:
            return merge.submit(work.map(list(range(count)), reps=reps)).result()

        @flow(log_prints=False)
        def w4(count: int, reps: int) -> float:
            return cached_merge.submit(cached_work.map(list(range(count)), reps=reps)).result()

        w2(2)  # warm-up
        setup = time.perf_counter() - t0
        count, reps = _shape(workload, n)
        runs: dict[str, Callable[[], Any]] = {
            "W1": lambda: w1(count), "W2": lambda: w2(common.W2_LENGTH),
            "W3": lambda: w3(count, reps), "W4": lambda: w4(count, reps),
        }
        walls, result = [], None
        for _ in range(2 if workload == "W4" else 1):
            wall, result = _timed(runs[workload])
            walls.append(wall)
        notes = ["default task runner (threads); ephemeral local server, sqlite"]
        if workload == "W4":
            notes.append("cache_policy=INPUTS on both runs: second run reads cached results")
        return {"walls": walls, "result": result, "setup_s": setup, "notes": notes}
    finally:
        shutil.rmtree(home, ignore_errors=True)


# -- luigi ----------------------------------------------------------------------------------------
def run_luigi(workload: str, n: int) -> dict[str, Any]:
    try:
        import luigi
    except ImportError as exc:
        raise NotInstalled(str(exc)) from exc
    import json
    import logging

    logging.getLogger("luigi-interface").setLevel(logging.WARNING)
    logging.getLogger("luigi").setLevel(logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="luigi-bench-"))
    count, reps = _shape(workload, n)

    class Item(luigi.Task):
        i = luigi.IntParameter()
        reps = luigi.IntParameter(default=0)

        def output(self) -> Any:
            return luigi.LocalTarget(str(root / f"item-{self.i}-{self.reps}.json"))

        def run(self) -> None:
            value = common.numpy_work(self.i, self.reps) if self.reps else common.noop(self.i)
            with self.output().open("w") as f:
                json.dump(value, f)

    class Gather(luigi.Task):
        count = luigi.IntParameter()
        reps = luigi.IntParameter(default=0)

        def requires(self) -> Any:
            return [Item(i=i, reps=self.reps) for i in range(self.count)]

        def output(self) -> Any:
            return luigi.LocalTarget(str(root / f"gather-{self.count}-{self.reps}.json"))

        def run(self) -> None:
            xs = []
            for target in self.input():
                with target.open() as f:
                    xs.append(json.load(f))
            value = common.merge(xs) if self.reps else common.total(xs)
            with self.output().open("w") as f:
                json.dump(value, f)

    class Step(luigi.Task):
        k = luigi.IntParameter()

        def requires(self) -> Any:
            return Step(k=self.k - 1) if self.k > 1 else []

        def output(self) -> Any:
            return luigi.LocalTarget(str(root / f"step-{self.k}.json"))

        def run(self) -> None:
            x = 0
            if self.k > 1:
                with self.input().open() as f:
                    x = json.load(f)
            with self.output().open("w") as f:
                json.dump(common.step(x), f)

    final = Step(k=common.W2_LENGTH) if workload == "W2" else Gather(count=count, reps=reps)
    try:
        walls, result = [], None
        for attempt in range(2 if workload == "W4" else 1):
            if attempt:
                Path(final.output().path).unlink()  # W4: only the final output is rebuilt
            wall, ok = _timed(lambda: luigi.build([final], workers=2, local_scheduler=True,
                                                  log_level="WARNING"))
            if not ok:
                raise RuntimeError("luigi.build reported failure")
            walls.append(wall)
            with final.output().open() as f:
                result = json.load(f)
        notes = ["local scheduler, workers=2 (processes), JSON targets in a temp dir"]
        if workload == "W4":
            notes.append("second run: only the final output deleted, items reused from targets")
        return {"walls": walls, "result": result, "setup_s": 0.0, "notes": notes}
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- parsl ----------------------------------------------------------------------------------------
def _parsl(workload: str, n: int, executor: Any, label: str) -> dict[str, Any]:
    import parsl
    from parsl.app.app import python_app
    from parsl.config import Config

    run_dir = tempfile.mkdtemp(prefix="parsl-bench-")
    t0 = time.perf_counter()
    dfk = parsl.load(Config(executors=[executor], run_dir=run_dir,
                            initialize_logging=False))
    try:
        noop = python_app(common.noop, executors=[label])
        step = python_app(common.step, executors=[label])
        work = python_app(common.numpy_work, executors=[label], cache=workload == "W4")

        def _total(inputs: tuple[Any, ...] = ()) -> int:
            return common.total(list(inputs))

        def _merge(inputs: tuple[Any, ...] = ()) -> float:
            return common.merge(list(inputs))

        total = python_app(_total, executors=[label])
        merge = python_app(_merge, executors=[label], cache=workload == "W4")
        noop(0).result()  # warm-up
        setup = time.perf_counter() - t0
        count, reps = _shape(workload, n)

        def once() -> Any:
            if workload == "W1":
                return total(inputs=[noop(i) for i in range(count)]).result()
            if workload == "W2":
                x = step(0)
                for _ in range(common.W2_LENGTH - 1):
                    x = step(x)
                return x.result()
            return merge(inputs=[work(i, reps) for i in range(count)]).result()

        walls, result = [], None
        for _ in range(2 if workload == "W4" else 1):
            wall, result = _timed(once)
            walls.append(wall)
        notes = [f"{label}"]
        if workload == "W4":
            notes.append("app cache=True (in-memory memoization within one DFK): second run reuses")
        return {"walls": walls, "result": result, "setup_s": setup, "notes": notes}
    finally:
        dfk.cleanup()
        parsl.clear()
        shutil.rmtree(run_dir, ignore_errors=True)


def run_parsl_threads(workload: str, n: int) -> dict[str, Any]:
    try:
        from parsl.executors.threads import ThreadPoolExecutor
    except ImportError as exc:
        raise NotInstalled(str(exc)) from exc
    return _parsl(workload, n, ThreadPoolExecutor(label="threads", max_threads=2), "threads")


def run_parsl_htex(workload: str, n: int) -> dict[str, Any]:
    try:
        from parsl.executors import HighThroughputExecutor
        from parsl.providers import LocalProvider
    except ImportError as exc:
        raise NotInstalled(str(exc)) from exc
    executor = HighThroughputExecutor(
        label="htex", address="127.0.0.1", max_workers_per_node=2, cores_per_worker=1,
        provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1))
    return _parsl(workload, n, executor, "htex")


# -- ray ------------------------------------------------------------------------------------------
def run_ray(workload: str, n: int) -> dict[str, Any]:
    """Ray's local cluster started by ``ray.init(num_cpus=2)``: a raylet, two worker processes;
    W1 is ``total.remote(*[noop.remote(i) ...])`` (the references are resolved as arguments)."""
    try:
        import ray
    except ImportError as exc:
        raise NotInstalled(str(exc)) from exc
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        noop = ray.remote(num_cpus=1)(common.noop)
        step = ray.remote(num_cpus=1)(common.step)
        work = ray.remote(num_cpus=1)(common.numpy_work)

        @ray.remote(num_cpus=1)
        def total(*xs: int) -> int:
            return common.total(list(xs))

        @ray.remote(num_cpus=1)
        def merge(*xs: float) -> float:
            return common.merge(list(xs))

        ray.get([noop.remote(i) for i in range(4)])  # warm-up: both workers started
        setup = time.perf_counter() - t0
        count, reps = _shape(workload, n)

        def once() -> Any:
            if workload == "W1":
                return ray.get(total.remote(*[noop.remote(i) for i in range(count)]))
            if workload == "W2":
                x: Any = 0
                for _ in range(common.W2_LENGTH):
                    x = step.remote(x)
                return ray.get(x)
            return ray.get(merge.remote(*[work.remote(i, reps) for i in range(count)]))

        walls, result = [], None
        for _ in range(2 if workload == "W4" else 1):
            wall, result = _timed(once)
            walls.append(wall)
        return {"walls": walls, "result": result, "setup_s": setup,
                "notes": ["ray.init(num_cpus=2), tasks num_cpus=1; W4 second run recomputes (no cache)"]}
    finally:
        ray.shutdown()


TOOLS: dict[str, Callable[[str, int], dict[str, Any]]] = {
    "serial": run_serial,
    "dask-threads": run_dask_threads,
    "dask-distributed": run_dask_distributed,
    "prefect": run_prefect,
    "luigi": run_luigi,
    "parsl-threads": run_parsl_threads,
    "parsl-htex": run_parsl_htex,
    "ray": run_ray,
}
