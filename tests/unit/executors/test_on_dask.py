"""What the Dask executor does beyond the contract suite (which it passes on a LocalCluster and on
real ``dask scheduler`` + ``dask worker`` processes): priorities reach Dask, resources map to Dask
worker resources (or fail clearly when no worker can hold them), a killed worker's activity is
reported lost once, never run a second time under the same attempt, and its process dies with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
import psutil
import pytest

pytest.importorskip("distributed")

from distributed import LocalCluster

from skyweave.executors.base import ExecutionEnv, Outcome
from skyweave.executors.on_dask import DaskExecutor, demanded
from skyweave.model.messages import ActivityFailed, ActivityFinished, ActivityStarted, DispatchActivity
from skyweave.model.specs import Resources
from tests.unit.executors.helpers import dispatch, run_until, wait_gone, wait_started

TASKS = Path(__file__).with_name("dask_tasks.py")
THREAD_TASKS = Path(__file__).with_name("dask_thread_tasks.py")


def task(name: str, tasks: Path = TASKS) -> str:
    return f"{tasks}:{name}"


def lineage(ledger: Path) -> list[tuple[int, int, int]]:
    """(importer of the task module, activity process, its parent) per line of ``note_lineage``."""
    return [tuple(map(int, line.split())) for line in ledger.read_text().splitlines()]  # type: ignore[misc]


def with_resources(d: DispatchActivity, **resources: float) -> DispatchActivity:
    return msgspec.structs.replace(d, task=msgspec.structs.replace(d.task, resources=Resources(**resources)))


@pytest.fixture
def release(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "release"
    yield path
    path.touch()


def noted_pid(ledger: Path) -> int:
    """The pid of the first ``note`` line, once written (a start is reported before the task runs)."""
    for _ in range(3000):
        if ledger.exists() and (lines := ledger.read_text().splitlines()):
            return int(lines[0].split()[1])
        time.sleep(0.01)
    raise AssertionError(f"nothing was noted in {ledger}")


def _known(dask_scheduler: Any, prefixes: list[str]) -> bool:
    return all(any(str(key).startswith(p) for key in dask_scheduler.tasks) for p in prefixes)


def wait_on_scheduler(executor: DaskExecutor, activity_ids: list[str]) -> None:
    """Until the scheduler holds a task of each of these activities."""
    prefixes = [f"skyweave-{a}-" for a in activity_ids]
    for _ in range(3000):
        if executor.client.run_on_scheduler(_known, prefixes=prefixes):
            return
        time.sleep(0.01)
    raise AssertionError(f"the scheduler never had all of {activity_ids}")


def executor_on(env: ExecutionEnv, **cluster: object) -> DaskExecutor:
    made = DaskExecutor(env, cluster=LocalCluster(dashboard_address=":0", **cluster),  # type: ignore[arg-type]
                        slots=2, owns_cluster=True)
    made.start()
    return made


def test_demanded_maps_task_resources_to_dask_resource_names() -> None:
    assert demanded(Resources(cpus=2, gpus=1, memory_mb=512), {"cpus": "CPU", "gpus": "GPU", "memory_mb": "MEMORY"}) \
        == {"CPU": 2.0, "GPU": 1.0, "MEMORY": 512 * 2**20}
    assert demanded(Resources(gpus=0), {"gpus": "GPU"}) == {}


def test_priority_decides_which_waiting_activity_runs_first(env: ExecutionEnv, tmp_path: Path,
                                                            release: Path) -> None:
    """One worker thread, busy: of the activities waiting on the scheduler, the urgent one submitted
    last runs first."""
    ledger = tmp_path / "ledger"
    executor = executor_on(env, n_workers=1, threads_per_worker=1, processes=False)
    try:
        blocker = dispatch(task("note_then_wait"), {"ledger": str(ledger), "name": "blocker", "path": str(release)})
        executor.submit([blocker])
        wait_started(executor, blocker.activity_id, [])
        waiting = [dispatch(task("note"), {"ledger": str(ledger), "name": f"low{i}"}, priority=0) for i in range(3)]
        urgent = dispatch(task("note"), {"ledger": str(ledger), "name": "urgent"}, priority=10)
        executor.submit([*waiting, urgent])
        wait_on_scheduler(executor, [d.activity_id for d in (*waiting, urgent)])  # all queued before the
        release.touch()  # blocker ends (submissions travel apart from what the scheduler is asked)
        run_until(executor, [d.activity_id for d in (blocker, *waiting, urgent)])
        order = [line.split()[0] for line in ledger.read_text().splitlines()]
        # Dask hands a busy worker one task ahead (worker-saturation 1.1 of one thread, rounded up):
        # that one may run before; every activity still waiting on the scheduler runs after it
        assert order[0] == "blocker" and order.index("urgent") <= 2, order
        assert sum(order.index("urgent") < order.index(f"low{i}") for i in range(3)) >= 2, order
    finally:
        executor.close()


@pytest.mark.parametrize(("declared", "gpus", "expected"), [
    ({"CPU": 2, "GPU": 1}, 1, "finished"),
    ({"CPU": 2, "GPU": 1}, 2, "more than any Dask worker has"),
    ({"CPU": 2}, 1, "no Dask worker declares a GPU resource"),
])
def test_resources_map_to_dask_worker_resources(env: ExecutionEnv, tmp_path: Path, declared: dict[str, float],
                                                gpus: int, expected: str) -> None:
    executor = executor_on(env, n_workers=1, threads_per_worker=2, processes=False, resources=declared)
    try:
        d = with_resources(dispatch(task("note"), {"ledger": str(tmp_path / "l"), "name": "gpu"}), gpus=gpus,
                           memory_mb=100)  # MEMORY is declared by no worker: Dask's own slots apply
        executor.submit([d])
        outcome = run_until(executor, [d.activity_id])[d.activity_id]
        if expected == "finished":
            assert isinstance(outcome, ActivityFinished), outcome
        else:
            assert isinstance(outcome, ActivityFailed), outcome
            assert outcome.error_type == "skyweave.ResourcesUnavailable" and not outcome.retryable
            assert expected in outcome.message and "--resources" in outcome.message
    finally:
        executor.close()


def test_activities_are_forked_from_a_warm_process_that_imported_their_task(env: ExecutionEnv,
                                                                            tmp_path: Path) -> None:
    """No interpreter start-up per activity: each runs in a process forked from one warm process
    (reused from one activity to the next) that had imported the task's module before forking."""
    ledger = tmp_path / "ledger"
    executor = executor_on(env, n_workers=1, threads_per_worker=1, processes=False)
    try:
        for _ in range(3):
            d = dispatch(task("note_lineage"), {"ledger": str(ledger)})
            executor.submit([d])
            assert isinstance(run_until(executor, [d.activity_id])[d.activity_id], ActivityFinished)
        rows = lineage(ledger)
        warm = {parent for _, _, parent in rows}
        assert len(warm) == 1 and os.getpid() not in warm, rows  # one warm process, not the Dask worker
        assert all(importer == parent != pid for importer, pid, parent in rows), rows
        assert len({pid for _, pid, _ in rows}) == 3, rows  # a process of its own each
    finally:
        executor.close()


def test_a_task_module_that_starts_threads_is_imported_after_the_fork(env: ExecutionEnv,
                                                                       tmp_path: Path) -> None:
    """Forking a process that has threads is unsafe: a warm process whose import of the task's
    module started one does not fork; the activity runs from a fresh warm process that leaves the
    import to the activity's own process (and so do the task's next activities)."""
    ledger = tmp_path / "ledger"
    executor = executor_on(env, n_workers=1, threads_per_worker=1, processes=False)
    try:
        for _ in range(2):
            d = dispatch(task("note_lineage", THREAD_TASKS), {"ledger": str(ledger)})
            executor.submit([d])
            assert isinstance(run_until(executor, [d.activity_id])[d.activity_id], ActivityFinished)
        rows = lineage(ledger)
        assert all(importer == pid for importer, pid, _ in rows), rows
    finally:
        executor.close()


def test_preload_modules_that_start_threads_leave_each_activity_a_fresh_interpreter(
        env: ExecutionEnv, tmp_path: Path) -> None:
    """Nothing is forked from a process with threads: when the preload modules start one, the warm
    process starts each activity as a fresh ``python -m skyweave.execute`` instead."""
    ledger = tmp_path / "ledger"
    root = str(Path(__file__).resolve().parents[3])
    env = replace(env, preload=("tests.unit.executors.dask_thread_tasks",), import_path=(root, *env.import_path))
    executor = executor_on(env, n_workers=1, threads_per_worker=1, processes=False)
    try:
        for _ in range(2):
            d = dispatch(task("note_lineage"), {"ledger": str(ledger)})
            executor.submit([d])
            assert isinstance(run_until(executor, [d.activity_id])[d.activity_id], ActivityFinished)
        rows = lineage(ledger)
        assert all(importer == pid for importer, pid, _ in rows), rows
        assert len({parent for _, _, parent in rows}) == 1, rows  # one warm process spawned both
    finally:
        executor.close()


def test_a_killed_warm_process_loses_its_activity_and_the_activity_dies(env: ExecutionEnv, tmp_path: Path,
                                                                         release: Path) -> None:
    ledger = tmp_path / "ledger"
    executor = executor_on(env, n_workers=1, threads_per_worker=1, processes=False)
    try:
        d = dispatch(task("note_then_wait"), {"ledger": str(ledger), "name": "victim", "path": str(release)})
        executor.submit([d])
        wait_started(executor, d.activity_id, [])
        activity_pid = noted_pid(ledger)
        warm = psutil.Process(activity_pid).ppid()
        assert warm != os.getpid()  # its parent is a warm process, not the Dask worker (this process)
        os.kill(warm, signal.SIGKILL)
        outcome = run_until(executor, [d.activity_id])[d.activity_id]
        assert isinstance(outcome, ActivityFailed), outcome
        assert outcome.error_type == "skyweave.WorkerDied" and outcome.retryable and "warm process" in outcome.message
        wait_gone(activity_pid)
        after = dispatch(task("note"), {"ledger": str(ledger), "name": "after"})
        executor.submit([after])
        assert isinstance(run_until(executor, [after.activity_id])[after.activity_id], ActivityFinished)
    finally:
        executor.close()


def test_a_cancel_refuses_that_executors_task_not_the_same_activity_sent_by_another(
        env: ExecutionEnv, tmp_path: Path, release: Path) -> None:
    """Workers remember cancels by Dask task key (attempt and executor), not by activity id: the same
    activity sent again by another controller's executor on the cluster still runs."""
    ledger = tmp_path / "ledger"
    first = executor_on(env, n_workers=1, threads_per_worker=2, processes=False)
    second = DaskExecutor(env, cluster=first.cluster, slots=2)
    try:
        d = dispatch(task("note_then_wait"), {"ledger": str(ledger), "name": "twice", "path": str(release)})
        first.submit([d])
        wait_started(first, d.activity_id, [])
        first.cancel([d.activity_id])
        release.touch()
        second.submit([d])
        assert isinstance(run_until(second, [d.activity_id])[d.activity_id], ActivityFinished)
    finally:
        second.close()
        first.close()


@pytest.mark.slow
def test_a_killed_worker_loses_its_activity_once_and_its_process_dies(env: ExecutionEnv, tmp_path: Path,
                                                                      release: Path) -> None:
    """kill -9 of the Dask worker running an activity: the activity's process dies with it, Dask's
    rescheduled copy does not run it again under the same attempt, and the executor reports one
    retryable ``skyweave.WorkerDied`` (the controller then runs the next attempt)."""
    ledger = tmp_path / "ledger"
    executor = executor_on(env, n_workers=2, threads_per_worker=1, processes=True)
    try:
        d = dispatch(task("note_then_wait"), {"ledger": str(ledger), "name": "victim", "path": str(release)})
        events: list[Outcome] = []
        executor.submit([d])
        wait_started(executor, d.activity_id, events)
        activity_pid = noted_pid(ledger)
        prefix = f"skyweave-{d.activity_id}-{d.attempt}-"
        holder = next(address for address, keys in executor.client.processing().items()
                      if any(k.startswith(prefix) for k in keys))
        worker_pid = executor.client.run(os.getpid, workers=[holder])[holder]
        os.kill(worker_pid, signal.SIGKILL)
        outcome = run_until(executor, [d.activity_id], events=events)[d.activity_id]
        assert isinstance(outcome, ActivityFailed), outcome
        assert outcome.error_type == "skyweave.WorkerDied" and outcome.retryable
        wait_gone(activity_pid)
        assert len(ledger.read_text().splitlines()) == 1  # ran once: the rescheduled copy did not run it
        assert sum(isinstance(e, ActivityStarted) for e in events) == 1
        after = dispatch(task("note"), {"ledger": str(ledger), "name": "after"})
        executor.submit([after])
        assert isinstance(run_until(executor, [after.activity_id])[after.activity_id], ActivityFinished)
    finally:
        executor.close()


@pytest.mark.slow
def test_a_dask_jobqueue_cluster_runs_activities_through_the_executor(env: ExecutionEnv, tmp_path: Path) -> None:
    """dask-jobqueue for HPC users: a ``SLURMCluster`` object (no batch system needed to build it)
    is the executor's cluster; with no worker yet a GPU task is passed on, not refused; the batch
    script jobqueue would hand to ``sbatch`` is then run by hand (as Slurm would run it), its worker
    joins with ``GPU=1`` and runs the activity."""
    jobqueue = pytest.importorskip("dask_jobqueue")
    cluster = jobqueue.SLURMCluster(
        cores=1, processes=1, memory="1GB", walltime="00:10:00", python=sys.executable,
        worker_extra_args=["--resources", "GPU=1"], local_directory=str(tmp_path / "jq"),
        scheduler_options={"dashboard_address": ":0", "host": "127.0.0.1"})
    script = cluster.job_script()
    assert "#SBATCH" in script and "--resources GPU=1" in script
    executor = DaskExecutor(env, cluster=cluster, slots=2, owns_cluster=True)
    executor.start()
    batch_job = None
    try:
        d = with_resources(dispatch(task("note"), {"ledger": str(tmp_path / "l"), "name": "gpu"}), gpus=1)
        executor.submit([d])
        assert executor.active == 1 and not [o for o in executor.collect(0.2) if o.activity_id == d.activity_id]
        with open(tmp_path / "job.log", "wb") as log:
            batch_job = subprocess.Popen(["bash", "-c", script], start_new_session=True,
                                         stdout=subprocess.DEVNULL, stderr=log)
        outcome = run_until(executor, [d.activity_id])[d.activity_id]
        assert isinstance(outcome, ActivityFinished), outcome
    finally:
        executor.close()
        if batch_job is not None:
            os.killpg(batch_job.pid, signal.SIGKILL)
            batch_job.wait()
