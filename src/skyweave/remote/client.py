"""``RemoteClient``: what ``skyweave.Client("http://host:port", token=...)`` returns.

The methods of the embedded ``Client`` over the server's API: ``submit`` (a workflow the server
knows by ``module:NAME``, or a local workflow file or ``@workflow`` object, uploaded), ``run``,
``wait``, ``results``, ``status``/``summary``, ``cancel``/``pause``/``resume``/``retry``/
``set_priority``, ``products``, ``add_product``, ``lineage``, ``impact``; plus ``attach(run_id)``.
Waiting follows the run's event stream (no polling); a lost connection is opened again, and the
run goes on on the server whatever happens to this process.
"""

from __future__ import annotations

import inspect
import json
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx2 as httpx
import msgspec

from skyweave.authoring.interactive import assemble, defined_interactively
from skyweave.authoring.workflow import Workflow
from skyweave.errors import ParameterError, SkyweaveError
from skyweave.model.lineage import LineageGraph
from skyweave.model.records import ActivityRecord, ProductRecord, WorkflowRecord
from skyweave.model.states import RUN_TERMINAL
from skyweave.progress import CountsBar
from skyweave.remote.events import run_events
from skyweave.remote.http import RemoteError, raise_for
from skyweave.remote.product import RemoteProduct

RECONNECT_S = 1.0
CELL_FOLDER = "skyweave-cell-"
"""Where the module assembled from a notebook-defined workflow waits for its upload."""
READ_TIMEOUT_S = 60.0
"""The server sends a keep-alive every 15 s: a stream silent this long is taken for cut."""


class RemoteRunHandle:
    """A run on the server: watch it, wait for it, read its results (as ``RunHandle``)."""

    def __init__(self, client: RemoteClient, run_id: str) -> None:
        self.client = client
        self.id = run_id

    def __repr__(self) -> str:
        return f"<run {self.id} {self.status}>"

    @property
    def status(self) -> str:
        return str(self.client.summary(self.id)["status"])

    def wait(self, timeout: float | None = None, *, progress: bool = False) -> RemoteRunHandle:
        self.client.wait(self.id, timeout=timeout, progress=progress)
        return self

    def results(self) -> Any:
        return self.client.results(self.id)

    def activities(self) -> list[ActivityRecord]:
        return self.client.activities(self.id)

    def products(self) -> list[RemoteProduct]:
        return self.client.products(run=self.id)

    def summary(self) -> dict[str, Any]:
        return self.client.summary(self.id)

    def cancel(self) -> None:
        self.client.cancel(self.id)


class RemoteClient:
    def __init__(self, url: str, *, token: str | None = None, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        if token is None:
            raise ParameterError("a remote Client needs a token",
                                 hint="skyweave.Client(URL, token=...) with a token from "
                                      "`skyweave tokens create` on the server")
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"},
                                 timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return f"<skyweave.Client {self.url}>"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RemoteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, f"/api/v1{path}", **kwargs)
        raise_for(response)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    def _products(self, value: Any) -> Any:
        """Products in a server reply (``{"$product": record}``) as ``RemoteProduct``s."""
        if isinstance(value, dict):
            if set(value) == {"$product"}:
                return self._product(value["$product"])
            return {k: self._products(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._products(v) for v in value]
        return value

    def _product(self, data: Mapping[str, Any]) -> RemoteProduct:
        fields = {k: v for k, v in data.items() if k in ProductRecord.__struct_fields__}
        return RemoteProduct(self, msgspec.convert(fields, ProductRecord))

    # -- runs --------------------------------------------------------------------------------------
    def submit(self, workflow: Workflow | str | Path, params: Mapping[str, Any] | None = None, *,
               priority: int = 0, labels: Mapping[str, str] | None = None,
               version: str | None = None) -> RemoteRunHandle:
        """Submit a run and return at once.  ``workflow``: a registered workflow's name
        (``NAME``, ``NAME@VERSION``, or ``NAME`` with ``version``; default the latest), a
        ``module:NAME`` or ``PATH:NAME`` the server knows, or a local ``FILE.py:NAME`` /
        ``FILE.yaml`` / ``@workflow`` object, whose file is uploaded."""
        upload = None if version is not None else _local_file(workflow)
        if upload is None:
            body = {"workflow": str(workflow), "params": dict(params or {}), "priority": priority,
                    "labels": dict(labels or {}), **({"version": version} if version is not None else {})}
            reply = self._call("POST", "/runs", json=body)
        else:
            path, name = upload
            try:
                with path.open("rb") as handle:
                    reply = self._call("POST", "/runs/upload", files={"file": (path.name, handle)},
                                       data={"workflow": name or "",
                                             "params": json.dumps(dict(params or {})),
                                             "priority": str(priority)})
            finally:
                if path.parent.name.startswith(CELL_FOLDER):
                    shutil.rmtree(path.parent, ignore_errors=True)
        return RemoteRunHandle(self, reply["run_id"])

    def run(self, workflow: Workflow | str | Path, params: Mapping[str, Any] | None = None, *,
            priority: int = 0, progress: bool = False, timeout: float | None = None,
            version: str | None = None) -> RemoteRunHandle:
        return self.submit(workflow, params, priority=priority, version=version).wait(timeout=timeout,
                                                                                      progress=progress)

    # -- the workflow registry ---------------------------------------------------------------------
    def register_workflow(self, workflow: Workflow | str | Path, *, version: str | None = None,
                          name: str | None = None) -> WorkflowRecord:
        """Register a workflow version on the server: a local ``FILE.py:NAME`` / ``FILE.yaml`` /
        ``@workflow`` (its file uploaded), or a ``module:NAME`` the server may load.  Submit it
        then as ``submit(NAME, version=...)``."""
        fields = _clean(version=version, name=name)
        upload = _local_file(workflow)
        if upload is None:
            reply = self._call("POST", "/workflows", data={**fields, "target": str(workflow)})
        else:
            path, entry = upload
            try:
                with path.open("rb") as handle:
                    reply = self._call("POST", "/workflows", files={"file": (path.name, handle)},
                                       data={**fields, "workflow": entry or ""})
            finally:
                if path.parent.name.startswith(CELL_FOLDER):
                    shutil.rmtree(path.parent, ignore_errors=True)
        return _workflow(reply)

    def workflows(self, name: str | None = None) -> list[WorkflowRecord]:
        """Registered workflow versions (of ``name``), by name then registration order."""
        return [_workflow(w) for w in self._call("GET", "/workflows", params=_clean(name=name))]

    def get(self, run_id: str) -> RemoteRunHandle:
        self.summary(run_id)
        return RemoteRunHandle(self, run_id)

    def attach(self, run_id: str, *, progress: bool = False) -> RemoteRunHandle:
        """Pick up a run submitted earlier (by this process, another one or another person); with
        ``progress``, follow it with a progress bar until it ends."""
        handle = self.get(run_id)
        return handle.wait(progress=True) if progress else handle

    def wait(self, run_id: str, *, timeout: float | None = None, progress: bool = False) -> dict[str, Any]:
        """Block until the run ends, following its event stream; its summary then."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = CountsBar(run_id) if progress else None
        try:
            while True:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise SkyweaveError(f"run {run_id} has not ended after {timeout} s",
                                        hint=f"it goes on on the server; pick it up again with "
                                             f"client.attach({run_id!r})")
                try:
                    for name, data in run_events(self.http, run_id,
                                                 read_timeout=min(READ_TIMEOUT_S, left or READ_TIMEOUT_S)):
                        if name == "progress" and bar is not None:
                            bar.update(data)
                        if name == "end" or (name == "run" and data.get("status") in RUN_TERMINAL):
                            return self.summary(run_id)
                except (httpx.TransportError, RemoteError) as exc:
                    if isinstance(exc, RemoteError) and exc.details.get("status", 500) < 500:
                        raise
                time.sleep(RECONNECT_S if deadline is None else min(RECONNECT_S, max(0.0, left or 0)))
        finally:
            if bar is not None:
                bar.close()

    def status(self, run_id: str) -> dict[str, Any]:
        return self.summary(run_id)

    def summary(self, run_id: str) -> dict[str, Any]:
        reply: dict[str, Any] = self._call("GET", f"/runs/{run_id}")
        return reply

    def runs(self, *, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        reply: list[dict[str, Any]] = self._call("GET", "/runs", params=_clean(status=status, limit=limit))
        return reply

    def activities(self, run_id: str, *, status: str | None = None) -> list[ActivityRecord]:
        rows = self._call("GET", f"/runs/{run_id}/activities", params=_clean(status=status))
        return [msgspec.convert(r, ActivityRecord) for r in rows]

    def logs(self, activity_id: str) -> str:
        return str(self._call("GET", f"/activities/{activity_id}/logs"))

    def results(self, run_id: str) -> Any:
        """The workflow's return value, products as ``RemoteProduct``s; ``RunFailedError`` unless
        the run succeeded."""
        return self._products(self._call("GET", f"/runs/{run_id}/results"))

    # -- control -----------------------------------------------------------------------------------
    def cancel(self, run_id: str) -> None:
        self._call("POST", f"/runs/{run_id}/cancel")

    def pause(self, run_id: str) -> str:
        return str(self._call("POST", f"/runs/{run_id}/pause")["status"])

    def resume(self, run_id: str) -> None:
        self._call("POST", f"/runs/{run_id}/resume")

    def retry(self, activity_id: str) -> None:
        self._call("POST", f"/activities/{activity_id}/retry")

    def set_priority(self, priority: int, *, run_id: str | None = None,
                     activity_id: str | None = None) -> None:
        if (run_id is None) == (activity_id is None):
            raise ParameterError("say what to change", hint="run_id=... or activity_id=... (one)")
        where = f"/runs/{run_id}" if run_id else f"/activities/{activity_id}"
        self._call("PUT", f"{where}/priority", json={"priority": priority})

    # -- products and provenance -------------------------------------------------------------------
    def products(self, **filters: Any) -> list[RemoteProduct]:
        """Products, newest first: ``type``, ``obs_id``, ``detector``, ``run``, ``version``, ``name``,
        ``since``, ``until``, ``pinned``, ``status``, ``limit`` (as ``skyweave products list``)."""
        return [self._product(p) for p in self._call("GET", "/products", params=_clean(**filters))]

    def product(self, product_id: str) -> RemoteProduct:
        return self._product(self._call("GET", f"/products/{product_id}")["product"])

    def add_product(self, path: str | Path, *, type: str = "file", obs_id: str | None = None,
                    detector: str | None = None, version: str | None = None,
                    attributes: Mapping[str, Any] | None = None) -> RemoteProduct:
        """Upload a file as a product (activities parked waiting for it wake up)."""
        src = Path(path)
        with src.open("rb") as handle:
            reply = self._call("POST", "/products", files={"file": (src.name, handle)},
                               data=_clean(type=type, obs_id=obs_id, detector=detector, version=version,
                                           attributes=json.dumps(dict(attributes or {}))))
        return self._product(reply)

    def lineage(self, product_id: str, *, direction: str = "up", depth: int | None = None) -> LineageGraph:
        data = self._call("GET", f"/products/{product_id}/lineage",
                          params=_clean(direction=direction, depth=depth))
        return msgspec.convert(data, LineageGraph)

    def impact(self, task: str, version: str | None = None) -> LineageGraph:
        return msgspec.convert(self._call("GET", "/impact", params=_clean(task=task, version=version)),
                               LineageGraph)

    def provenance(self, *, run: str | None = None, product: str | None = None, format: str = "provjson",
                   depth: int | None = None) -> str:
        """A W3C PROV or IVOA ProvDM export, as text."""
        response = self.http.get("/api/v1/provenance",
                                 params=_clean(run=run, product=product, format=format, depth=depth))
        raise_for(response)
        return response.text


def _workflow(data: Mapping[str, Any]) -> WorkflowRecord:
    fields = {k: v for k, v in data.items() if k in WorkflowRecord.__struct_fields__}
    return msgspec.convert({"source": "", **fields}, WorkflowRecord)


def _clean(**values: Any) -> dict[str, Any]:
    return {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in values.items() if v is not None}


def _local_file(workflow: Workflow | str | Path) -> tuple[Path, str | None] | None:
    """``(file, workflow name)`` when ``workflow`` is a file on this machine (to upload)."""
    if isinstance(workflow, Workflow):
        if defined_interactively(workflow.fn):  # a notebook cell: its code assembled into a module
            folder = Path(tempfile.mkdtemp(prefix=CELL_FOLDER))
            assembled = folder / f"{workflow.fn.__name__}.py"
            assembled.write_text(assemble(workflow))
            return assembled, workflow.fn.__name__
        source = inspect.getsourcefile(workflow.fn)
        if source is None or not Path(source).is_file():
            raise ParameterError(f"workflow {workflow.name!r} has no source file to send",
                                 hint="define it in a .py file next to the notebook and import it")
        return Path(source), workflow.fn.__name__
    where, _, name = str(workflow).rpartition(":") if ":" in str(workflow) else (str(workflow), "", "")
    path = Path(where).expanduser()
    return (path, name or None) if path.is_file() else None
