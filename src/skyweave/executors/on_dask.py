"""``DaskExecutor`` (``dask://HOST:PORT`` or ``dask`` for a LocalCluster): activities as Dask tasks.

The controller keeps deciding; Dask only places and runs.  Each dispatch becomes one Dask task
(``executors/on_dask_worker.py: run_activity``) with

* the key ``skyweave-<activity>-<attempt>-<executor>`` (``pure=False``, no Dask retries: retrying is the
  controller's, so that every attempt is recorded);
* Dask's ``priority=`` set to the activity's priority (both: higher runs first);
* Dask worker *resources* from the task's resources (``RESOURCE_NAMES``: ``cpus`` -> ``CPU``,
  ``gpus`` -> ``GPU``, ``memory_mb`` -> ``MEMORY`` in bytes), for the names the cluster's workers
  declare (``dask worker --resources "GPU=1 MEMORY=16e9"``).  A task that needs GPUs when no
  worker has any, or more of a resource than any worker has, would wait forever: it fails at once,
  not retryable, saying which workers to start.  With no worker yet (an adaptive or jobqueue
  cluster still scaling up) only a GPU demand is passed on (the task waits for a GPU worker); CPU
  and memory demands, which workers rarely declare, are not (they would stall the task).

On the worker the activity runs as ``python -m skyweave.execute`` would (job file in the worker's
scratch space) in a process of its own, forked from a warm process that has already imported
skyweave and the task (no interpreter start-up per activity), which is what lets a timeout, a
memory limit and a cancel stop it, and what keeps a worker's death from duplicating it (the
worker-side module says how).
The execution environment's storage and work folders must be reachable from the workers: one
shared file system, or a storage URL (``ExecutionEnv.storage``) they can all open.

Worker death: Dask reschedules the task; its second run reports ``skyweave.WorkerDied``
(retryable) without running, and a task whose workers keep dying (``KilledWorker``) reports the
same.  Cancel: a queued task is cancelled in Dask; a running one is killed by
``cancel_tasks`` run on every worker.  Starts come back as Dask structured events on a topic
of this executor's own (``Client.subscribe_topic``: pushed by the scheduler, nothing polls).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from distributed import Client, Future, KilledWorker

from skyweave.errors import SkyweaveError
from skyweave.executors.base import Capabilities, ExecutionEnv, Executor, Outcome
from skyweave.executors.boundary import HOST
from skyweave.executors.job import decode_outcome, encode_job
from skyweave.executors.on_dask_worker import begun_mark, cancel_tasks, run_activity
from skyweave.model.messages import ActivityFailed, ActivityStarted, DispatchActivity
from skyweave.model.specs import Resources

log = logging.getLogger(__name__)

RESOURCE_NAMES: Mapping[str, str] = {"cpus": "CPU", "gpus": "GPU", "memory_mb": "MEMORY"}
"""Task resource -> the Dask worker resource it is asked as (memory in bytes)."""
WORKERS_TTL_S = 2.0
"""How long the workers' declared resources are taken as known before asking the scheduler again."""


@dataclass(eq=False)
class _Entry:
    dispatch: DispatchActivity
    key: str
    future: Future[bytes] | None = None
    started: bool = False


class DaskExecutor(Executor):
    """Runs activities on a Dask cluster: a scheduler address, or a cluster object (``LocalCluster``,
    a dask-jobqueue ``SLURMCluster``…) passed as ``cluster``."""

    name = "dask"
    capabilities = Capabilities(stops_running_work=True, enforces_memory=True)

    def __init__(self, env: ExecutionEnv, *, address: str | None = None, cluster: Any = None,
                 slots: int = 2, resource_names: Mapping[str, str] = RESOURCE_NAMES,
                 owns_cluster: bool = False) -> None:
        if (address is None) == (cluster is None):
            raise SkyweaveError("the Dask executor needs a scheduler address or a cluster, not both",
                                hint="use --executor dask://HOST:PORT (or `dask` for a LocalCluster)")
        self.env = env
        self.address = address
        self.cluster = cluster
        self._slots = slots
        self._names = dict(resource_names)
        self._client: Client | None = None
        self._entries: dict[str, _Entry] = {}
        self._arrived: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self._reports: list[Outcome] = []
        self._token = uuid.uuid4().hex[:12]
        """In every key: two executors (or test runs) on one cluster never share a task or a mark."""
        self._topic = f"skyweave-started-{self._token}"
        self._workers: tuple[float, dict[str, float]] | None = None
        self._owns_cluster = owns_cluster
        """Close ``cluster`` with the executor (one it made itself)."""

    @property
    def slots(self) -> int:
        return self._slots

    @property
    def active(self) -> int:
        return len(self._entries)

    @property
    def client(self) -> Client:
        self.start()
        assert self._client is not None
        return self._client

    def start(self) -> None:
        if self._client is not None:
            return
        target = self.cluster if self.cluster is not None else self.address
        try:
            self._client = Client(target, set_as_default=False, timeout=30)
        except OSError as exc:
            raise SkyweaveError(f"cannot reach the Dask scheduler at {self.address}: {exc}",
                                hint="start it (`dask scheduler`, and `dask worker ADDRESS`) or fix "
                                     "--executor dask://HOST:PORT") from exc
        self._client.subscribe_topic(self._topic, self._on_start)

    def _on_start(self, event: tuple[float, Any]) -> None:
        """A worker's start report (on the client's event loop): handed to ``collect``."""
        self._arrived.put(("started", tuple(event[1])))

    # -- submit -------------------------------------------------------------------------------------

    def submit(self, batch: Sequence[DispatchActivity]) -> None:
        client = self.client
        for d in batch:
            if d.activity_id in self._entries:
                continue
            key = f"skyweave-{d.activity_id}-{d.attempt}-{self._token}"
            entry = _Entry(d, key)
            resources = self._resources(d)
            if isinstance(resources, str):
                self._reports.append(self._failure(d, "skyweave.ResourcesUnavailable", resources,
                                                   retryable=False))
                continue
            self._entries[d.activity_id] = entry
            entry.future = client.submit(
                run_activity, encode_job(d, self.env), key, self._topic, key=key, pure=False,
                priority=d.priority, resources=resources or None, retries=0)
            entry.future.add_done_callback(
                lambda _f, a=d.activity_id, k=key: self._arrived.put(("done", (a, k))))

    def _declared(self) -> dict[str, float] | None:
        """The most of each resource any worker declares; ``None`` when there is no worker yet."""
        now = time.monotonic()
        if self._workers is None or now - self._workers[0] > WORKERS_TTL_S:
            workers = self.client.scheduler_info(n_workers=-1)["workers"]
            if not workers:
                return None
            most: dict[str, float] = {}
            for worker in workers.values():
                for name, amount in (worker.get("resources") or {}).items():
                    most[name] = max(most.get(name, 0.0), float(amount))
            self._workers = (now, most)
        return self._workers[1]

    def _resources(self, d: DispatchActivity) -> dict[str, float] | str:
        """Dask resources for ``d``, or why no worker of the cluster can run it."""
        wanted = demanded(d.task.resources, self._names)
        if not wanted:
            return {}
        declared = self._declared()
        if declared is None:
            # no worker yet (jobqueue, adaptive): a GPU task waits for a GPU worker; cpus and
            # memory, which workers rarely declare, are not asked (they would stall the task)
            gpu = self._names.get("gpus")
            return {gpu: wanted[gpu]} if gpu in wanted else {}
        asked: dict[str, float] = {}
        for name, amount in wanted.items():
            most = declared.get(name)
            if most is None:
                if name == self._names.get("gpus"):
                    return (f"task {d.task.name!r} needs {amount:g} GPU, and no Dask worker declares a "
                            f"{name} resource: start workers with `dask worker ... --resources "
                            f"\"{name}=N\"`")
                continue  # cpus and memory the workers do not account for: Dask's own slots apply
            if amount > most:
                return (f"task {d.task.name!r} needs {name}={amount:g}, more than any Dask worker has "
                        f"(the most is {most:g}): start a worker with --resources \"{name}={amount:g}\"")
            asked[name] = amount
        return asked

    # -- collect ------------------------------------------------------------------------------------

    def collect(self, timeout: float) -> list[Outcome]:
        out, self._reports = self._reports, []
        ended: list[_Entry] = []
        deadline = time.monotonic() + timeout
        while True:
            wait = 0.0 if out else deadline - time.monotonic()
            try:
                item = self._arrived.get(timeout=wait) if wait > 0 else self._arrived.get_nowait()
            except queue.Empty:
                break
            if item is None:  # wake(): return now, with what has already arrived
                if not out:
                    break
                continue
            self._take(item, out, ended)
        if ended:
            self._finish(ended, out)
        return out

    def _finish(self, ended: list[_Entry], out: list[Outcome]) -> None:
        """The outcomes of tasks that ended: the results of those that finished fetched in one
        gather, and their begun marks cleared without waiting (a round trip per activity would
        hold up the worker's loop, and its heartbeat, when many end at once)."""
        finished = [e for e in ended if e.future is not None and e.future.status == "finished"]
        results: dict[str, bytes] = {}
        if finished:
            with contextlib.suppress(Exception):  # one of them lost meanwhile: each is asked alone below
                fetched = self.client.gather([e.future for e in finished])
                results = {e.key: data for e, data in zip(finished, fetched, strict=True)}
        for entry in ended:
            assert entry.future is not None
            outcome = self._outcome(entry, entry.future, results.get(entry.key))
            if outcome is not None:
                out.append(outcome)
        self._forget_marks([e.key for e in ended])

    def _forget_marks(self, keys: list[str]) -> None:
        """Clear these keys' begun marks in the background (on the client's event loop)."""
        loop = self.client.loop
        assert loop is not None
        loop.add_callback(_clear_marks, self.client, keys)

    def _take(self, item: tuple[str, Any], out: list[Outcome], ended: list[_Entry]) -> None:
        kind, body = item
        if kind == "started":
            activity_id, attempt, pid, host, at = body
            entry = self._entries.get(activity_id)
            if entry is None or entry.started or entry.dispatch.attempt != attempt:
                return  # ended, cancelled, or a stale attempt: never a start after an end
            entry.started = True
            out.append(ActivityStarted(activity_id=activity_id, attempt=attempt, worker=self.env.worker,
                                       host=host, pid=pid, at=at))
            return
        activity_id, key = body
        entry = self._entries.get(activity_id)
        if entry is None or entry.key != key or entry.future is None:
            return  # cancelled: already reported
        del self._entries[activity_id]
        ended.append(entry)

    def _outcome(self, entry: _Entry, future: Future[bytes], data: bytes | None) -> Outcome | None:
        """The outcome of an ended task from its result (``data``, if already fetched)."""
        if data is not None:
            return decode_outcome(data) if data else None
        d = entry.dispatch
        if future.cancelled():
            return self._failure(d, "skyweave.WorkerDied", "the Dask scheduler dropped the task",
                                 retryable=True)
        error = future.exception()
        if isinstance(error, KilledWorker):
            return self._failure(d, "skyweave.WorkerDied",
                                 f"the Dask workers running task {d.task.name!r} died: {error}",
                                 retryable=True)
        if error is not None:
            return self._failure(d, "skyweave.WorkerError",
                                 f"the Dask task of {d.task.name!r} failed outside the activity: "
                                 f"{type(error).__name__}: {error}", retryable=True)
        data = future.result()
        return decode_outcome(data) if data else None

    def _failure(self, d: DispatchActivity, error_type: str, message: str, *,
                 retryable: bool) -> ActivityFailed:
        return ActivityFailed(activity_id=d.activity_id, attempt=d.attempt, worker=self.env.worker,
                              error_type=error_type, message=message, retryable=retryable, host=HOST,
                              at=time.time())

    def wake(self) -> None:
        self._arrived.put(None)

    # -- cancel, close ------------------------------------------------------------------------------

    def cancel(self, activity_ids: Sequence[str]) -> None:
        chosen = [self._entries.pop(a) for a in activity_ids if a in self._entries]
        if not chosen:
            return
        client = self.client
        client.run(cancel_tasks, [e.key for e in chosen], on_error="ignore")
        self._forget_marks([e.key for e in chosen])
        for entry in chosen:
            if entry.future is not None:
                entry.future.cancel()
            self._reports.append(self._failure(
                entry.dispatch, "skyweave.Cancelled",
                f"activity {entry.dispatch.activity_id} was cancelled"
                + (" and stopped" if entry.started else ""),
                retryable=False))

    def close(self) -> None:
        if self._client is None:
            return
        if self._entries:
            keys = [entry.key for entry in self._entries.values()]
            self._client.run(cancel_tasks, keys, on_error="ignore")
            for entry in self._entries.values():
                if entry.future is not None:
                    entry.future.cancel()
            self._client.sync(_clear_marks, self._client, keys)
            self._entries.clear()
        self._client.unsubscribe_topic(self._topic)
        self._client.close()
        self._client = None
        if self._owns_cluster:
            self.cluster.close()


async def _clear_marks(client: Client, keys: list[str]) -> None:
    """Clear the begun marks of these task keys on the scheduler (they would stay there otherwise);
    run on the client's event loop."""
    scheduler = client.scheduler
    for key in keys:
        with contextlib.suppress(Exception):  # a scheduler gone: its marks went with it
            if scheduler is not None:
                await scheduler.event_clear(name=begun_mark(key))


def demanded(resources: Resources, names: Mapping[str, str]) -> dict[str, float]:
    """The Dask resources a task's resources ask for, under ``names`` (memory in bytes)."""
    wanted: dict[str, float] = {}
    if "cpus" in names and resources.cpus:
        wanted[names["cpus"]] = float(resources.cpus)
    if "gpus" in names and resources.gpus:
        wanted[names["gpus"]] = float(resources.gpus)
    if "memory_mb" in names and resources.memory_mb:
        wanted[names["memory_mb"]] = float(resources.memory_mb) * 2**20
    return wanted


def local_cluster_executor(env: ExecutionEnv, *, slots: int) -> DaskExecutor:
    """``dask`` (or ``dask://local``): a ``LocalCluster`` of ``slots`` one-thread worker processes,
    closed with the executor."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=slots, threads_per_worker=1, processes=True, dashboard_address=":0")
    return DaskExecutor(env, cluster=cluster, slots=slots, owns_cluster=True)
