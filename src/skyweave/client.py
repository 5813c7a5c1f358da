"""``Client``: the one Python API for scripts, notebooks, the CLI and the dashboard.

    import skyweave
    client = skyweave.Client()                 # embedded: store in ./.skyweave, engine in-process
    run = client.submit("pipeline.py:l0_to_l3", params={"obs_id": "ep01"}, priority=5)
    run.wait(progress=True)
    run.results()

``Client(engine=False)`` only talks to the store and bus, for a separately running
``skyweave controller`` and ``skyweave worker``.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from skyweave import images
from skyweave import workflows as registry
from skyweave.authoring.interactive import on_file
from skyweave.authoring.loader import load_task
from skyweave.authoring.task import Task
from skyweave.authoring.versions import routing_warnings
from skyweave.authoring.workflow import Workflow
from skyweave.bus import open_bus
from skyweave.bus.base import Bus
from skyweave.config.settings import Settings, load_settings
from skyweave.controller.decisions import graph_products
from skyweave.engine import Engine
from skyweave.errors import (
    DefinitionError,
    NotFoundError,
    SkyweaveError,
    TaskVersionWarning,
)
from skyweave.listeners import Listener
from skyweave.model import messages as m
from skyweave.model.ids import PRODUCT, RUN, new_id
from skyweave.model.lineage import LineageGraph
from skyweave.model.records import ActivityRecord, Changeset, ProductRecord, RunRecord, WorkflowRecord
from skyweave.model.specs import TaskSpec
from skyweave.model.states import RUN_TERMINAL
from skyweave.model.states import RunState as R
from skyweave.plan import RunPlan, plan_run
from skyweave.progress import RunProgress
from skyweave.results import results as run_results
from skyweave.results import summary as run_summary
from skyweave.runcontrol import RunControl
from skyweave.storage import inplace, open_storage, product_key
from skyweave.storage.local import checksum_file, file_uri
from skyweave.store import open_store
from skyweave.store.base import Store
from skyweave.workflows import Registered

WorkflowTarget = Workflow | Registered | str
"""What ``submit`` takes: a ``@workflow``, ``PATH.py:NAME``, ``module:NAME``, ``FILE.yaml``, or a
registered workflow (``NAME``, ``NAME@VERSION``, ``Registered(NAME, VERSION)``)."""


class RunHandle:
    """A submitted run: watch it, wait for it, read its results."""

    def __init__(self, client: Client, run_id: str) -> None:
        self.client = client
        self.id = run_id

    def __repr__(self) -> str:
        return f"<run {self.id} {self.status}>"

    @property
    def record(self) -> RunRecord:
        return self.client.store.get_run(self.id)

    @property
    def status(self) -> str:
        return self.client.store.get_run_head(self.id).state

    def wait(self, timeout: float | None = None, *, progress: bool = False) -> RunHandle:
        self.client.wait(self.id, timeout=timeout, progress=progress)
        return self

    def results(self) -> Any:
        return self.client.results(self.id)

    def activities(self) -> list[ActivityRecord]:
        return self.client.store.list_activities(run_id=self.id)

    def products(self) -> list[ProductRecord]:
        return self.client.store.find_products(run_id=self.id, state=None)

    def summary(self) -> dict[str, Any]:
        return self.client.summary(self.id)


class Client:
    def __new__(cls, store: str | None = None, *args: Any, **kwargs: Any) -> Client:
        """``Client("http://host:port", token=...)`` is a client of a ``skyweave server``
        (``remote.client.RemoteClient``: the same methods over HTTP); anything else is embedded."""
        if isinstance(store, str) and store.startswith(("http://", "https://")):
            from skyweave.remote.client import RemoteClient  # httpx, tqdm: the remote extra

            return RemoteClient(store, *args, **kwargs)  # type: ignore[return-value]
        return super().__new__(cls)

    def __init__(self, store: str | None = None, *, settings: Settings | None = None,
                 engine: bool = True, bus: str | None = None, listeners: list[Listener] | None = None,
                 **overrides: Any) -> None:
        self.settings = settings or load_settings(store=store, bus=bus, **overrides)
        self.store: Store = open_store(self.settings.store, pool_size=self.settings.store_pool_size,
                                       retry_s=self.settings.store_retry_s)
        self.bus: Bus = open_bus(self.settings.bus_url(shared=not engine), aging_s=self.settings.aging_s,
                                 max_deliveries=self.settings.max_deliveries)
        self.control = RunControl(self.store, self.bus)
        """Requests that change runs while they go on (cancel, pause, resume, retry, priority)."""
        self._loaded: dict[str, Workflow] = {}
        """Registered workflows' snapshots loaded so far, by code hash (they never change)."""
        self.engine: Engine | None = None
        self.control_bus: Bus | None = None
        if engine:
            shared = self.settings.bus_url(shared=True)
            if shared != self.bus.url and not shared.startswith("memory"):
                # other processes (`skyweave products add`, `cancel`...) reach this engine here
                self.control_bus = open_bus(shared, aging_s=self.settings.aging_s,
                                            max_deliveries=self.settings.max_deliveries)
            try:
                self.engine = Engine(self.settings, store=self.store, bus=self.bus,
                                     control_bus=self.control_bus, listeners=listeners,
                                     submit=self._submit_for_listener).start()
            except BaseException:
                self.close()
                raise
            # A script or notebook that never calls close(): stop the engine at interpreter exit,
            # before multiprocessing's own exit hook joins the worker processes (atexit runs the
            # newest hook first), which would otherwise wait for them forever.
            # The hook holds the engine, not the client: a client dropped without close() leaves
            # its engine running, and that one must stop too.
            self._exit_hook: functools.partial[None] | None = functools.partial(_stop_at_exit,
                                                                                self.engine)
            atexit.register(self._exit_hook)

    def _submit_for_listener(self, target: str, params: dict[str, Any], priority: int) -> str:
        return self.submit(target, params, priority=priority).id

    def close(self) -> None:
        hook = getattr(self, "_exit_hook", None)
        if hook is not None:
            atexit.unregister(hook)
            self._exit_hook = None
        if self.engine is not None:
            self.engine.stop()
            self.engine = None
        self.bus.close()
        if self.control_bus is not None:
            self.control_bus.close()
        self.store.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tasks -----------------------------------------------------------------------------------
    def _snapshot(self, spec: TaskSpec) -> TaskSpec:
        """Copy a task defined in a file into the storage (``code/<hash>/<file>``), so each version
        keeps its own code; with a remote storage the reference is the copy's URI, which workers
        fetch (``executors/resolve.py``)."""
        if spec.kind != "python" or not spec.ref.startswith("/"):
            return spec
        path_text, _, qualname = spec.ref.rpartition(":")
        path = Path(path_text)
        key = f"{spec.code_hash.split(':')[-1][:16]}/{path.name}"
        if self.settings.remote_storage:
            code = open_storage(self.settings.storage_location).within("code")
            if not code.exists(key):
                code.put_file(path, key)
            ref = code.uri(key)
        else:
            target = self.settings.store_dir / "code" / key
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
            ref = str(target)
        fields = {f: getattr(spec, f) for f in spec.__struct_fields__}
        return TaskSpec(**{**fields, "ref": f"{ref}:{qualname}"})

    def register_task(self, task: Task | str, *, version: str | None = None,
                      make_current: bool = True, image: str | None = None) -> TaskSpec:
        """Register a task version; running controllers route new activations to it.

        ``image``: the new version runs in this container image (pinned to its digest now);
        ``task`` may then be the name of a registered task, whose current version is the rest of
        the new one (``skyweave tasks register NAME --image IMAGE --version V``)."""
        if image is not None:
            task = self._with_image(task, image, version)
        obj = self._pinned(load_task(task) if isinstance(task, str) else task)
        obj.check_cacheable()
        spec = obj.spec
        if version is not None:
            spec = TaskSpec(**{**{f: getattr(spec, f) for f in spec.__struct_fields__}, "version": version})
        with on_file(spec, obj.fn) as where:  # a notebook cell's task: its assembled module
            spec = self._snapshot(where)
        self.store.register_task(spec, make_current=make_current)
        self.bus.publish([m.encode_message(new_id("evt"), m.TaskVersionRegistered(task=spec,
                                                                                   at=time.time()))])
        return spec

    # -- runs --------------------------------------------------------------------------------------
    def submit(self, workflow: WorkflowTarget, params: Mapping[str, Any] | None = None, *,
               priority: int = 0, pin: bool | None = None, labels: Mapping[str, str] | None = None,
               parent_run: str | None = None, version: str | None = None) -> RunHandle:
        """Submit a run and return at once.  ``version``: of the registered workflow ``workflow``
        names (default: the version registered last)."""
        record = self.prepare_run(workflow, params, priority=priority, pin=pin, labels=labels,
                                  parent_run=parent_run, version=version)
        self.store.apply(Changeset(runs=[record]))
        self.announce([record.id])
        return RunHandle(self, record.id)

    def announce(self, run_ids: Sequence[str]) -> None:
        """Tell the controller that these runs are in the store (it also finds them when it starts)."""
        now = time.time()
        self.bus.publish([m.encode_message(new_id("evt"), m.RunSubmitted(run_id=r, at=now)) for r in run_ids])

    def prepare_run(self, workflow: WorkflowTarget, params: Mapping[str, Any] | None = None, *,
                    priority: int = 0, pin: bool | None = None, labels: Mapping[str, str] | None = None,
                    parent_run: str | None = None, workflow_ref: str | None = None,
                    version: str | None = None) -> RunRecord:
        """The record of a new run, checked and ready to store: its tasks registered, its in-place
        files recorded, every product it names found.  ``submit`` stores and announces it; a trigger
        stores it in the same transaction as its ledger row (passing the workflow it loaded once,
        and ``workflow_ref``, the reference it was loaded from)."""
        wf, ref, workflow_hash = self._workflow(workflow, version)
        if pin is None and workflow_hash:  # a registered version runs the task versions it defines
            pin = True
        graph, tasks = wf.build(params or {})
        listing = self.store.list_tasks()  # read once: a trigger prepares thousands of runs
        new = self._new_tasks(tasks, listing)
        graph = _with_versions(graph, tasks)
        before = {spec.name: spec for spec, current in listing if current}
        for t in new:
            # new code is deployed by submitting it; a version already known keeps the routing
            # as it is, so a `skyweave tasks register` switch-over is not undone by the next run
            self.register_task(t)
        for message in routing_warnings({n: t.spec for n, t in tasks.items()}, before,
                                        self._current_specs() if new else before,
                                        pinned=wf.pin if pin is None else pin):
            warnings.warn(TaskVersionWarning(message), stacklevel=2)
        graph, in_place = inplace.resolve_graph(graph, lookup=self._existing_product)
        if in_place:  # File/Folder arguments: registered where they are, never copied
            self.store.apply(Changeset(products=in_place))
        for pid in graph_products(graph):
            self.store.get_product(pid)  # NotFoundError names the id and how to list products
        pins = dict(graph["tasks"]) if (wf.pin if pin is None else pin) else {}
        return RunRecord(
            id=new_id(RUN), workflow=wf.name, state=R.SUBMITTED, workflow_ref=workflow_ref or ref,
            params=graph["params"], priority=priority, graph=graph, pins=pins, parent_run=parent_run,
            created_at=time.time(), labels=dict(labels or {}), workflow_hash=workflow_hash)

    # -- the workflow registry (workflows.py) ------------------------------------------------------
    @property
    def _snapshots(self) -> Path:
        return self.settings.store_dir / "workflows"

    def register_workflow(self, workflow: Workflow | str, *, version: str | None = None,
                          name: str | None = None) -> WorkflowRecord:
        """Register a workflow version (``PATH.py:NAME``, ``FILE.yaml``, ``module:NAME`` or a
        ``@workflow``) with its code snapshot; submit it later as ``NAME@VERSION``.  The same code
        again is a no-op; other code under a registered version is refused."""
        record, _new = registry.register(self.store, workflow, self._snapshots, version=version, name=name)
        return record

    def workflows(self, name: str | None = None) -> list[WorkflowRecord]:
        """Registered workflow versions (of ``name``), by name then registration order."""
        return self.store.list_workflows(name)

    def _workflow(self, workflow: WorkflowTarget, version: str | None) -> tuple[Workflow, str, str]:
        """``(workflow, reference, code hash)``: the hash only for a registered workflow."""
        return registry.resolve(self.store, self._snapshots, workflow, version, loaded=self._loaded)

    def _with_image(self, task: Task | str, image: str, version: str | None) -> Task:
        current = self._current_specs().get(task) if isinstance(task, str) and ":" not in task else None
        return images.with_image(task, image, version, current)

    def _pinned(self, task: Task) -> Task:
        return images.pinned(task, self.settings)

    def _current_specs(self) -> dict[str, TaskSpec]:
        """The version new activations of each task name use."""
        return {spec.name: spec for spec, current in self.store.list_tasks() if current}

    def _new_tasks(self, tasks: dict[str, Task],
                   listing: Sequence[tuple[TaskSpec, bool]] | None = None) -> list[Task]:
        """The tasks a submission registers (image tasks pinned to their digest, in place in
        ``tasks``); refuses a known version with different code and a provider nobody registered."""
        for name, t in list(tasks.items()):
            tasks[name] = self._pinned(t)
        known = {(s.name, s.version): s for s, _ in (self.store.list_tasks() if listing is None else listing)}
        new = []
        for t in tasks.values():
            previous = known.get((t.spec.name, t.spec.version))
            if previous is not None and previous.code_hash != t.spec.code_hash:
                raise DefinitionError(
                    f"task {t.spec.name!r} version {t.spec.version!r} is already registered with "
                    "different code; this run would silently use the old code",
                    hint=f"bump version= of {t.spec.name!r} (or leave version= out: the default "
                         "version follows the code)", task=t.spec.name, version=t.spec.version)
            if previous is None:
                new.append(t)
        providers = {p for t in tasks.values() for p in t.spec.backtrack.providers.values()}
        missing = [p for p in providers if p not in {n for n, _ in known} | set(tasks)]
        if missing:
            raise SkyweaveError(f"provider task {missing[0]!r} is not registered",
                                hint="register it with `skyweave tasks register FILE.py:TASK`")
        return new

    def plan(self, workflow: WorkflowTarget, params: Mapping[str, Any] | None = None, *,
             priority: int = 0, pin: bool | None = None, version: str | None = None) -> RunPlan:
        """What submitting this would reuse, what it would run and why, before anything runs
        (``skyweave run --dry-run``).  Nothing is registered, written or dispatched."""
        wf, _ref, workflow_hash = self._workflow(workflow, version)
        if pin is None and workflow_hash:
            pin = True
        graph, tasks = wf.build(params or {})
        self._new_tasks(tasks)  # the same refusals as submit
        graph = _with_versions(graph, tasks)
        pins = dict(graph["tasks"]) if (wf.pin if pin is None else pin) else {}
        return plan_run(self.store, graph, tasks, workflow=wf.name, pins=pins, priority=priority)

    def _existing_product(self, product_id: str) -> ProductRecord | None:
        try:
            return self.store.get_product(product_id)
        except NotFoundError:
            return None

    def run(self, workflow: WorkflowTarget, params: Mapping[str, Any] | None = None, *,
            priority: int = 0, progress: bool = False, timeout: float | None = None,
            version: str | None = None) -> RunHandle:
        handle = self.submit(workflow, params, priority=priority, version=version)
        return handle.wait(timeout=timeout, progress=progress)

    def get(self, run_id: str) -> RunHandle:
        self.store.get_run_head(run_id)
        return RunHandle(self, run_id)

    def attach(self, run_id: str, *, progress: bool = False) -> RunHandle:
        """Pick up a run submitted earlier; with ``progress``, follow it until it ends."""
        handle = self.get(run_id)
        return handle.wait(progress=True) if progress else handle

    def products(self, **filters: Any) -> list[ProductRecord]:
        """Products, newest first: ``type``, ``run``, ``version``, ``name``, ``limit``... (the
        filters of ``Store.find_products``; ``run`` for ``run_id``), any state."""
        if "run" in filters:
            filters["run_id"] = filters.pop("run")
        return self.store.find_products(**{"state": None, **filters})

    def lineage(self, product_id: str, *, direction: str = "up", depth: int | None = None) -> LineageGraph:
        return self.store.lineage(product_id, direction=direction, depth=depth)  # type: ignore[arg-type]

    def impact(self, task: str, version: str | None = None) -> LineageGraph:
        return self.store.impact(task, version)

    def wait(self, run_id: str, *, timeout: float | None = None, progress: bool = False) -> RunRecord:
        """Block until the run ends; its record *without the graph* (``Store.get_run_head``): the
        graph of a big run is tens of MB, and waiting looks at the run many times."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = RunProgress(self.store, run_id) if progress else None
        controller = self.engine.controller if self.engine is not None else None
        try:
            delay = 0.005
            seen = -1
            while True:
                if self.engine is not None:
                    self.engine.check()
                record = self.store.get_run_head(run_id)
                if bar is not None:
                    bar.update(record)
                if record.state in RUN_TERMINAL:
                    return record
                if deadline is not None and time.monotonic() > deadline:
                    raise SkyweaveError(f"run {run_id} is still {record.state} after {timeout} s",
                                        hint=f"check it with `skyweave status {run_id}`")
                if controller is not None and bar is None:
                    seen = controller.wait_for_finish(seen, 0.5)  # woken when a run ends
                else:
                    time.sleep(delay)
                    delay = min(0.1, delay * 1.5)
        finally:
            if bar is not None:
                bar.close()

    def status(self, run_id: str) -> dict[str, Any]:
        return self.summary(run_id)

    def summary(self, run_id: str) -> dict[str, Any]:
        return run_summary(self.store, run_id, location=str(self.settings.store_dir))

    def results(self, run_id: str) -> Any:
        """The workflow's return value, with products as ``ProductRecord``s.

        Raises ``RunFailedError`` (naming the first failed activity) unless the run succeeded.
        """
        return run_results(self.store, run_id)

    # -- control (runcontrol.py) -------------------------------------------------------------------
    def cancel(self, run_id: str) -> None:
        self.control.cancel(run_id)

    def pause(self, run_id: str, *, timeout: float = 30.0) -> str:
        """Pause a run and wait until it holds (``RunControl.pause``): ``paused``, how it ended if
        it had nothing left, or ``requested`` with no controller running."""
        return self.control.pause(run_id, timeout=timeout)

    def resume(self, run_id: str) -> None:
        self.control.resume(run_id)

    def retry(self, activity_id: str) -> None:
        self.control.retry(activity_id)

    def set_priority(self, priority: int, *, run_id: str | None = None,
                     activity_id: str | None = None) -> None:
        self.control.set_priority(priority, run_id=run_id, activity_id=activity_id)

    # -- products ----------------------------------------------------------------------------------
    def add_product(self, path: str | Path, *, type: str = "file", obs_id: str | None = None,
                    detector: str | None = None, version: str | None = None,
                    attributes: Mapping[str, Any] | None = None, copy: bool = True) -> ProductRecord:
        """Register a file from outside (wakes activities parked waiting for it)."""
        src = Path(path)
        if not src.is_file():
            raise NotFoundError(f"no file {str(src)!r} to add", hint="give the path of an existing file")
        pid = new_id(PRODUCT)
        if copy:  # streamed into the product storage, checksummed on the way
            storage = open_storage(self.settings.storage_location).within("products")
            uri, checksum, size = storage.put_file(src, product_key("external", pid, src.name))
        else:
            uri, checksum, size = file_uri(src.resolve()), checksum_file(src), src.stat().st_size
        new = m.NewProduct(id=pid, uri=uri, name=src.name, type=type, checksum=checksum, size=size,
                           obs_id=obs_id, detector=detector, version=version,
                           attributes=dict(attributes or {}))
        record = ProductRecord(id=pid, uri=uri, type=type, name=src.name, obs_id=obs_id, detector=detector,
                               version=version, checksum=checksum, size=size, created_at=time.time(),
                               attributes=dict(attributes or {}))
        self.store.apply(Changeset(products=[record]))
        self.control.send(m.ProductRegistered(product=new, at=time.time()))
        return record




def _stop_at_exit(engine: Engine) -> None:
    engine.stop()


def _with_versions(graph: dict[str, Any], tasks: Mapping[str, Task]) -> dict[str, Any]:
    """``graph`` naming the versions of ``tasks`` as registered: pinning an image can give a task
    declared without ``version=`` the version of its image's content (``containers.pin_image``)."""
    versions = {name: t.spec.version for name, t in tasks.items()}
    if all(graph["tasks"].get(name) == version for name, version in versions.items()):
        return graph
    nodes = {node_id: {**n, "version": versions[n["task"]]} if n.get("task") in versions else n
             for node_id, n in graph["nodes"].items()}
    return {**graph, "tasks": {**graph["tasks"], **versions}, "nodes": nodes}
