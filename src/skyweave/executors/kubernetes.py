"""``KubernetesExecutor`` (``kubernetes://?namespace=NS&image=IMAGE``): a Kubernetes Job per activity.

Each dispatch becomes one Job (``job_manifest``: plain data, validated in the tests against the
official schemas of Kubernetes 1.37 with ``kubernetes-validate``) whose one container runs
``python -m skyweave.execute`` on the job (``executors/job.py``) handed in the environment variable
``SKYWEAVE_JOB``, writing the outcome as the last line of its standard output:

* ``backoffLimit: 0`` and ``restartPolicy: Never``: retrying is the controller's, so every attempt
  is recorded; ``activeDeadlineSeconds`` from the task's timeout;
* resources: ``cpu`` and ``memory`` requests, ``memory`` and ``nvidia.com/gpu`` limits;
* labels ``skyweave.io/executor`` (this executor), ``skyweave.io/activity``, ``skyweave.io/attempt``.

State is followed by **one** ``list`` of this executor's Jobs per poll (``poll_s``), not one call
per Job.  A Job with an active pod is reported started; a finished one has its pod's log read
(``read_namespaced_pod_log``) for the outcome, and is then deleted.  When the pod wrote no outcome
the pod's status says why: ``Evicted`` (node pressure, preemption) is ``skyweave.WorkerDied``
(retryable), a container ``OOMKilled`` is ``skyweave.MemoryLimit`` (not retryable: the same limit
would kill it again), a Job past its ``activeDeadlineSeconds`` is ``skyweave.TaskTimeout``.
Cancel deletes the Job with its pods (``propagationPolicy: Background``).

The pods must reach the execution environment's storage: a volume mounted at the same paths, or a
storage URL (``ExecutionEnv.storage``) they can open.  No Kubernetes cluster runs on the machines
skyweave is developed on: the executor is tested against a fake API server that implements the
endpoints above and runs each Job's command as a local process (``tests/unit/executors/k8s_fake.py``).
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec

from skyweave.errors import SkyweaveError
from skyweave.executors.base import Capabilities, ExecutionEnv, Executor, Outcome
from skyweave.executors.boundary import HOST
from skyweave.executors.job import decode_outcome, encode_job
from skyweave.model.messages import ActivityFailed, ActivityStarted, DispatchActivity

DEFAULT_IMAGE = "skyweave:latest"
JOB_ENV = "SKYWEAVE_JOB"
COMMAND = ["sh", "-c", f'printf %s "${JOB_ENV}" | python -m skyweave.execute - --outcome -']


@dataclass(frozen=True)
class KubernetesOptions:
    namespace: str = "default"
    image: str = DEFAULT_IMAGE
    poll_s: float = 1.0
    host: str | None = None
    """The API server's URL; ``None``: from the kubeconfig (or the pod's service account)."""
    context: str | None = None
    service_account: str | None = None


def parse_options(setting: str) -> KubernetesOptions:
    """``kubernetes://?namespace=NS&image=IMAGE&poll_s=1&context=CTX&host=URL&service_account=SA``."""
    query = {k: v[-1] for k, v in parse_qs(urlsplit(setting).query).items()}
    unknown = set(query) - {"namespace", "image", "poll_s", "host", "context", "service_account"}
    if unknown:
        raise SkyweaveError(f"unknown kubernetes executor option(s): {', '.join(sorted(unknown))}",
                            hint="use namespace, image, poll_s, host, context, service_account")
    return KubernetesOptions(namespace=query.get("namespace", "default"),
                             image=query.get("image", DEFAULT_IMAGE),
                             poll_s=float(query.get("poll_s", 1.0)), host=query.get("host"),
                             context=query.get("context"), service_account=query.get("service_account"))


def job_name(d: DispatchActivity) -> str:
    """A DNS-1123 name unique per attempt."""
    return re.sub(r"[^a-z0-9-]+", "-", f"sw-{d.activity_id}-{d.attempt}".lower())[:63].strip("-")


def job_manifest(d: DispatchActivity, env: ExecutionEnv, options: KubernetesOptions,
                 owner: str) -> dict[str, Any]:
    """The Job that runs ``d`` (plain data, as the API takes it)."""
    resources = d.task.resources
    requests: dict[str, str] = {"cpu": f"{resources.cpus:g}"}
    limits: dict[str, str] = {}
    if resources.memory_mb:
        requests["memory"] = limits["memory"] = f"{resources.memory_mb}Mi"
    if resources.gpus:
        limits["nvidia.com/gpu"] = str(resources.gpus)
    labels = {"app.kubernetes.io/managed-by": "skyweave", "skyweave.io/executor": owner,
              "skyweave.io/activity": d.activity_id.lower()[:63], "skyweave.io/attempt": str(d.attempt)}
    container: dict[str, Any] = {
        "name": "activity", "image": d.task.image or options.image, "command": COMMAND,
        "env": [{"name": JOB_ENV, "value": encode_job(d, env).decode()}],
        "resources": {"requests": requests, **({"limits": limits} if limits else {})},
    }
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if options.service_account:
        pod["serviceAccountName"] = options.service_account
    spec: dict[str, Any] = {"backoffLimit": 0, "ttlSecondsAfterFinished": 3600,
                            "template": {"metadata": {"labels": labels}, "spec": pod}}
    if d.task.timeout_s is not None:
        spec["activeDeadlineSeconds"] = max(1, math.ceil(d.task.timeout_s))
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job_name(d), "namespace": options.namespace, "labels": labels,
                         "annotations": {"skyweave.io/task": d.task.name, "skyweave.io/run": d.run_id}},
            "spec": spec}


@dataclass(eq=False)
class _Entry:
    dispatch: DispatchActivity
    name: str
    started: bool = False


class KubernetesExecutor(Executor):
    """Runs each activity as a Kubernetes Job; see the module docstring."""

    name = "kubernetes"
    capabilities = Capabilities(stops_running_work=True, enforces_memory=True, reports_memory_used=False)

    def __init__(self, env: ExecutionEnv, options: KubernetesOptions, *, slots: int = 8,
                 api_client: Any = None) -> None:
        self.env = env
        self.options = options
        self._slots = slots
        self._api_client = api_client
        self._batch: Any = None
        self._core: Any = None
        self._owner = f"sw-{uuid.uuid4().hex[:12]}"
        self._entries: dict[str, _Entry] = {}
        self._reports: list[Outcome] = []
        self._polled = 0.0
        self.list_calls = 0
        """How many times the Jobs were listed (one per poll, whatever their number)."""

    @property
    def slots(self) -> int:
        return self._slots

    @property
    def active(self) -> int:
        return len(self._entries)

    def start(self) -> None:
        if self._batch is not None:
            return
        from kubernetes import client, config

        api_client = self._api_client
        if api_client is None:
            if self.options.host is not None:
                configuration = client.Configuration()
                configuration.host = self.options.host
                api_client = client.ApiClient(configuration)
            else:
                try:
                    config.load_kube_config(context=self.options.context)  # type: ignore[no-untyped-call]
                except config.ConfigException:
                    config.load_incluster_config()  # type: ignore[no-untyped-call]
                api_client = client.ApiClient()
        self._batch = client.BatchV1Api(api_client)
        self._core = client.CoreV1Api(api_client)

    def submit(self, batch: Sequence[DispatchActivity]) -> None:
        self.start()
        for d in batch:
            if d.activity_id in self._entries:
                continue
            manifest = job_manifest(d, self.env, self.options, self._owner)
            self._batch.create_namespaced_job(self.options.namespace, manifest)
            self._entries[d.activity_id] = _Entry(d, manifest["metadata"]["name"])

    def collect(self, timeout: float) -> list[Outcome]:
        out, self._reports = self._reports, []
        deadline = time.monotonic() + timeout
        while True:
            due = self._polled + self.options.poll_s
            if time.monotonic() >= due:
                self._poll(out)
                due = self._polled + self.options.poll_s
            if out or time.monotonic() >= deadline or not self._entries:
                return out
            time.sleep(max(0.0, min(due, deadline) - time.monotonic()))

    def _poll(self, out: list[Outcome]) -> None:
        self._polled = time.monotonic()
        if not self._entries:
            return
        self.list_calls += 1
        jobs = self._batch.list_namespaced_job(self.options.namespace,
                                               label_selector=f"skyweave.io/executor={self._owner}")
        by_name = {job.metadata.name: job for job in jobs.items}
        for activity_id, entry in list(self._entries.items()):
            job = by_name.get(entry.name)
            if job is None:
                continue  # not listed yet (or deleted by someone): still unknown, never assumed done
            status = job.status
            if (status.active or status.succeeded or status.failed) and not entry.started:
                entry.started = True
                # when seen (within a poll of it): the Job's startTime has whole seconds only
                out.append(ActivityStarted(activity_id=activity_id, attempt=entry.dispatch.attempt,
                                           worker=self.env.worker, host=HOST, at=time.time()))
            if status.succeeded or status.failed or _condition(job, "Failed"):
                del self._entries[activity_id]
                out.append(self._ended(entry, job))
                self._delete(entry.name)

    def _ended(self, entry: _Entry, job: Any) -> Outcome:
        d = entry.dispatch
        pods = self._core.list_namespaced_pod(self.options.namespace,
                                              label_selector=f"job-name={entry.name}").items
        pod = pods[0] if pods else None
        if pod is not None:
            log = self._core.read_namespaced_pod_log(pod.metadata.name, self.options.namespace)
            for line in reversed(log.splitlines()):
                if line.startswith('{"type":"activity.'):
                    try:
                        return decode_outcome(line.encode())
                    except msgspec.DecodeError:
                        break
        deadline = _condition(job, "Failed")
        if deadline is not None and deadline.reason == "DeadlineExceeded":
            return self._failure(d, "skyweave.TaskTimeout",
                                 f"task {d.task.name!r} exceeded its timeout of {d.task.timeout_s:g} s; "
                                 f"its Job {entry.name} was stopped", retryable=True)
        if pod is not None and pod.status.reason == "Evicted":
            return self._failure(d, "skyweave.WorkerDied",
                                 f"the pod of Job {entry.name} was evicted: {pod.status.message or ''}",
                                 retryable=True)
        terminated = _terminated(pod)
        if terminated is not None and terminated.reason == "OOMKilled":
            limit = d.task.resources.memory_mb
            return self._failure(d, "skyweave.MemoryLimit",
                                 f"task {d.task.name!r} went over its memory limit of {limit} MB: "
                                 f"Kubernetes killed its container (OOMKilled)", retryable=False)
        how = (f"its container ended with {terminated.reason or 'exit'} code {terminated.exit_code}"
               if terminated is not None else "it has no pod")
        return self._failure(d, "skyweave.WorkerDied", f"Job {entry.name} failed without an outcome: {how}",
                             retryable=True)

    def _failure(self, d: DispatchActivity, error_type: str, message: str, *,
                 retryable: bool) -> ActivityFailed:
        return ActivityFailed(activity_id=d.activity_id, attempt=d.attempt, worker=self.env.worker,
                              error_type=error_type, message=message, retryable=retryable, host=HOST,
                              at=time.time())

    def _delete(self, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self._batch.delete_namespaced_job(name, self.options.namespace, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise

    def cancel(self, activity_ids: Sequence[str]) -> None:
        for activity_id in activity_ids:
            entry = self._entries.pop(activity_id, None)
            if entry is None:
                continue
            self._delete(entry.name)
            self._reports.append(self._failure(
                entry.dispatch, "skyweave.Cancelled",
                f"activity {activity_id} was cancelled: its Job {entry.name} was deleted", retryable=False))

    def close(self) -> None:
        if self._batch is None:
            return
        for entry in list(self._entries.values()):
            self._delete(entry.name)
        self._entries.clear()


def _condition(job: Any, kind: str) -> Any:
    for condition in job.status.conditions or []:
        if condition.type == kind and condition.status == "True":
            return condition
    return None


def _terminated(pod: Any) -> Any:
    if pod is None:
        return None
    for status in pod.status.container_statuses or []:
        if status.state is not None and status.state.terminated is not None:
            return status.state.terminated
    return None
