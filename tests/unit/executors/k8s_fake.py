"""A fake Kubernetes API server for the Kubernetes executor's tests (no cluster runs here).

It implements only the endpoints the executor uses — create/list/delete Jobs (batch/v1), list
Pods by label, read a Pod's log (core/v1) — and plays the kubelet: every Job created is first
checked against the official Kubernetes 1.37 schemas (``kubernetes-validate``, strict: a field
Kubernetes does not know is refused with 422, as the API server would), then its container's
command runs as a local process (the image is not pulled: the command runs with this Python on
the PATH), its output kept as the Pod's log.  Like a kubelet it kills the process past the Job's
``activeDeadlineSeconds`` (condition ``DeadlineExceeded``) and over its memory limit (container
``OOMKilled``); ``evict(name)`` does what node pressure does (pod ``Evicted``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate

from skyweave.executors.limits import tree_rss

KUBERNETES_VERSION = "1.37.0"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(eq=False)
class FakeJob:
    manifest: dict[str, Any]
    log: Path
    process: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)
    start_time: str = field(default_factory=_now)
    ended: bool = False
    exit_code: int | None = None
    reason: str = ""
    """Why the container ended: Completed, Error, OOMKilled."""
    job_reason: str = ""
    """DeadlineExceeded, BackoffLimitExceeded."""
    evicted: bool = False

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])


class FakeKubernetes:
    """Start with ``start()``; ``url`` is its address; ``created`` every manifest it accepted."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.jobs: dict[str, FakeJob] = {}
        self.created: list[dict[str, Any]] = []
        self.refused: list[str] = []
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_DELETE(self) -> None:
                fake._handle(self, "DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeKubernetes:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        threading.Thread(target=self._kubelet, daemon=True).start()
        return self

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
        for job in list(self.jobs.values()):
            self._kill(job)

    # -- the API ----------------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(request.path)
        parts = url.path.strip("/").split("/")
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.requests.append(f"{method} {url.path}")
        length = int(request.headers.get("Content-Length") or 0)
        body = json.loads(request.rfile.read(length)) if length else None
        with self._lock:
            status, answer = self._route(method, parts, query, body)
        data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
        request.send_response(status)
        request.send_header("Content-Type", "text/plain" if isinstance(answer, str) else "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def _route(self, method: str, parts: list[str], query: dict[str, str], body: Any) -> tuple[int, Any]:
        if parts[:2] == ["apis", "batch"] and parts[3:4] == ["namespaces"] and parts[5:6] == ["jobs"]:
            name = parts[6] if len(parts) > 6 else None
            if method == "POST":
                return self._create(body)
            if method == "GET" and name is None:
                selected = [j for j in self.jobs.values() if _selects(query.get("labelSelector", ""),
                                                                       j.manifest["metadata"]["labels"])]
                return 200, {"apiVersion": "batch/v1", "kind": "JobList", "metadata": {},
                             "items": [self._job(j) for j in selected]}
            if method == "DELETE" and name is not None:
                job = self.jobs.pop(name, None)
                if job is None:
                    return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                                 "reason": "NotFound", "message": f'jobs.batch "{name}" not found'}
                self._kill(job)
                return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
        if parts[:2] == ["api", "v1"] and parts[2:3] == ["namespaces"] and parts[4:5] == ["pods"]:
            if len(parts) == 5:
                selector = query.get("labelSelector", "")
                pods = [self._pod(j) for j in self.jobs.values() if _selects(selector, {"job-name": j.name})]
                return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": pods}
            if len(parts) == 7 and parts[6] == "log":
                job = self.jobs.get(parts[5].removesuffix("-pod"))
                if job is None:
                    return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404}
                return 200, job.log.read_text(errors="replace")
        return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                     "message": f"the fake does not implement {method} /{'/'.join(parts)}"}

    def _create(self, manifest: dict[str, Any]) -> tuple[int, Any]:
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except Exception as exc:
            self.refused.append(str(exc))
            return 422, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 422,
                         "reason": "Invalid", "message": str(exc)}
        self.created.append(manifest)
        container = manifest["spec"]["template"]["spec"]["containers"][0]
        env = {**os.environ, **{e["name"]: e["value"] for e in container.get("env", [])},
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               "PYTHONPATH": os.pathsep.join(sys.path)}
        log = self.root / f"{manifest['metadata']['name']}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(container["command"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        self.jobs[manifest["metadata"]["name"]] = FakeJob(manifest, log, process)
        return 201, {**manifest, "status": {}}

    # -- the kubelet ------------------------------------------------------------------------------

    def _kubelet(self) -> None:
        while not self._stop.wait(0.02):
            with self._lock:
                for job in list(self.jobs.values()):
                    if not job.ended:
                        self._look_at(job)

    def _look_at(self, job: FakeJob) -> None:
        code = job.process.poll()
        if code is not None:
            self._end(job, code, "Completed" if code == 0 else "Error",
                      "" if code == 0 else "BackoffLimitExceeded")
            return
        deadline = job.manifest["spec"].get("activeDeadlineSeconds")
        if deadline is not None and time.monotonic() - job.started > deadline:
            self._kill(job)
            self._end(job, 137, "Error", "DeadlineExceeded")
            return
        limit = job.manifest["spec"]["template"]["spec"]["containers"][0]["resources"].get("limits", {})
        memory = limit.get("memory")
        if memory is not None and tree_rss(job.process.pid) > int(memory.removesuffix("Mi")) * 2**20:
            self._kill(job)
            self._end(job, 137, "OOMKilled", "BackoffLimitExceeded")

    def evict(self, name: str) -> None:
        """Do what node pressure does to a running pod."""
        with self._lock:
            job = self.jobs[name]
            self._kill(job)
            job.evicted = True
            self._end(job, 137, "Error", "BackoffLimitExceeded")

    def _end(self, job: FakeJob, code: int, reason: str, job_reason: str) -> None:
        job.ended, job.exit_code, job.reason, job.job_reason = True, code, reason, job_reason

    def _kill(self, job: FakeJob) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(job.process.pid, signal.SIGKILL)
        job.process.wait()

    def _job(self, job: FakeJob) -> dict[str, Any]:
        status: dict[str, Any] = {"startTime": job.start_time}
        if not job.ended:
            status["active"] = 1
        elif job.exit_code == 0:
            status["succeeded"] = 1
            status["conditions"] = [{"type": "Complete", "status": "True"}]
        else:
            status["failed"] = 1
            status["conditions"] = [{"type": "Failed", "status": "True", "reason": job.job_reason}]
        return {**job.manifest, "status": status}

    def _pod(self, job: FakeJob) -> dict[str, Any]:
        state: dict[str, Any] = ({"running": {"startedAt": job.start_time}} if not job.ended else
                                 {"terminated": {"exitCode": job.exit_code, "reason": job.reason}})
        status: dict[str, Any] = {
            "phase": "Running" if not job.ended else ("Succeeded" if job.exit_code == 0 else "Failed"),
            "containerStatuses": [{"name": "activity", "image": "fake", "imageID": "", "ready": not job.ended,
                                   "restartCount": 0, "state": state}]}
        if job.evicted:
            status.update(reason="Evicted", message="The node was low on resource: memory.")
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"{job.name}-pod", "labels": {"job-name": job.name}},
                "spec": {"containers": [{"name": "activity"}]}, "status": status}


def _selects(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def executor_on_fake(env: Any, *, slots: int = 2) -> Any:
    """A ``KubernetesExecutor`` talking to a fake API server of its own, closed with it."""
    from skyweave.executors.kubernetes import KubernetesExecutor, KubernetesOptions

    class OnFake(KubernetesExecutor):
        def __init__(self) -> None:
            self.fake = FakeKubernetes(Path(env.work_root).parent).start()
            super().__init__(env, KubernetesOptions(host=self.fake.url, poll_s=0.05), slots=slots)

        def close(self) -> None:
            super().close()
            self.fake.close()

    return OnFake()
