"""The embedded engine: a controller and a worker in background threads of this process.

Used by ``skyweave run``, by ``Client()`` in a script or notebook, and by ``skyweave controller
--workers N``.  The same services run as separate OS processes (``skyweave controller``,
``skyweave worker``) over the SQLite bus; nothing here is special to embedding but the threads.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from skyweave.aspects.base import AspectSettings
from skyweave.bus import open_bus
from skyweave.bus.base import Bus
from skyweave.config.settings import Settings
from skyweave.controller.placement import Sites
from skyweave.controller.prune import PeriodicPrune
from skyweave.controller.service import ControllerService
from skyweave.errors import SkyweaveError
from skyweave.executors import open_executor
from skyweave.executors.base import ExecutionEnv, Executor
from skyweave.executors.resolve import use_import_path
from skyweave.executors.transfers import transfer_target
from skyweave.executors.worker import WorkerService, new_worker_id
from skyweave.listeners import Listener, ListenerHost, load_listener
from skyweave.listeners.base import Submit
from skyweave.storage import Storage, open_storage
from skyweave.store import open_store
from skyweave.store.base import Store

log = logging.getLogger(__name__)


def started_in() -> tuple[str, ...]:
    """Where user modules named in the settings (``module:Class`` aspects, ``module:name``
    listeners, preload modules) are looked for first: the current directory, where the settings
    were read (docs/operations.md)."""
    return (str(Path.cwd()),)


def make_env(settings: Settings, worker: str) -> ExecutionEnv:
    """Where a worker on this host puts things: work directories and logs being captured in the
    local ``store_dir``; products (and copies of the logs) in the ``storage`` when it is remote."""
    root = settings.store_dir
    return ExecutionEnv(worker=worker, storage_root=root / "products", work_root=root / "work",
                        log_root=root / "logs", aspects=tuple(settings.aspects),
                        aspect_settings=AspectSettings(authority=settings.authority),
                        builtin_aspects=settings.provenance, preload=tuple(settings.preload),
                        import_path=started_in(),
                        storage=settings.storage_location if settings.remote_storage else "")


def _logs_storage(settings: Settings) -> Storage | None:
    """The storage's ``logs/`` for the periodic prune; ``None`` (logs not pruned) when there is none."""
    try:
        return open_storage(settings.storage_location).within("logs")
    except SkyweaveError as exc:
        log.warning("activity logs are not pruned: %s", exc.message)
        return None


def make_executor(settings: Settings, env: ExecutionEnv) -> Executor:
    """The executor the settings name (``executors.EXECUTORS``: by name or URL scheme)."""
    return open_executor(settings.executor, env, slots=settings.workers or os.cpu_count() or 1)


class _Loop(threading.Thread):
    def __init__(self, name: str, step: Callable[[], object], stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self._step = step
        self._stop_event = stop
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                self._step()
        except BaseException as exc:  # reported by Engine.check(); the thread must not die silently
            log.exception("%s stopped", self.name)
            self.error = exc


class Engine:
    """Controller + one worker in threads, sharing a store and a bus."""

    def __init__(self, settings: Settings, *, store: Store | None = None, bus: Bus | None = None,
                 control_bus: Bus | None = None,
                 controller: bool = True, worker: bool = True,
                 listeners: list[Listener] | None = None, submit: Submit | None = None) -> None:
        self.settings = settings
        self.store = store or open_store(settings.store, pool_size=settings.store_pool_size,
                                         retry_s=settings.store_retry_s)
        self.bus = bus or open_bus(settings.bus_url(shared=not controller or not worker),
                                   aging_s=settings.aging_s, max_deliveries=settings.max_deliveries)
        self._stop = threading.Event()
        self._threads: list[_Loop] = []
        self.controller: ControllerService | None = None
        self.worker: WorkerService | None = None
        if controller:
            self.controller = ControllerService(self.store, self.bus, aging_s=settings.aging_s,
                                                window=settings.window, batch=settings.batch,
                                                control_bus=control_bus,
                                                worker_timeout_s=settings.worker_timeout_s,
                                                lease_ttl_s=settings.controller_lease_s,
                                                lease_renew_s=settings.controller_renew_s)
            self.controller.core.record_usages = settings.provenance
            self.controller.core.sites = Sites(home=settings.site, roots=dict(settings.sites),
                                               grace_s=settings.site_grace_s)
        self.pruner: PeriodicPrune | None = None
        if controller and settings.prune.every_s > 0:
            buses = [self.bus]
            if control_bus is not None and control_bus is not self.bus:
                buses.append(control_bus)
            self.pruner = PeriodicPrune(self.store, buses, lambda: _logs_storage(settings), settings.prune,
                                        self._stop)
        if settings.listeners and controller:
            use_import_path(started_in())
        chosen = list(listeners or []) + [load_listener(ref) for ref in settings.listeners]
        self.listeners: ListenerHost | None = None
        if chosen and controller:
            self.listeners = ListenerHost(self.bus, chosen, submit=submit, drain_s=settings.listener_drain_s)
        if worker:
            worker_id = new_worker_id()
            env = make_env(settings, worker_id)
            self.worker = WorkerService(self.bus, make_executor(settings, env), worker_id=worker_id,
                                        lease_s=settings.lease_s, heartbeat_s=settings.heartbeat_s,
                                        site=settings.site, sites=settings.sites,
                                        transfer_root=transfer_target(env) if settings.site and settings.sites
                                        else None)

    def start(self) -> Engine:
        # the controller first: if another one holds the store, nothing else has been started
        if self.controller is not None:
            self.controller.start()
            self._threads.append(_Loop("skyweave-controller", self.controller.step, self._stop))
        if self.worker is not None:
            try:
                self.worker.start()
            except BaseException:
                if self.controller is not None:
                    self.controller.stop()
                raise
            self._threads.append(_Loop("skyweave-worker", self.worker.step, self._stop))
        for t in self._threads:
            t.start()
        if self.listeners is not None:
            self.listeners.start()
        if self.pruner is not None:  # last: it prunes only beside a controller that started
            self.pruner.start()
        return self

    def check(self) -> None:
        for t in self._threads:
            if t.error is not None:
                raise t.error

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            if t.ident is not None:  # started
                t.join(timeout=10)
        if self.pruner is not None and self.pruner.ident is not None:
            self.pruner.join(timeout=10)  # a prune under way ends its batch (short transactions)
        if self.listeners is not None:
            self.listeners.stop()  # after the controller: listeners hear its last announcements
        if self.worker is not None:
            self.worker.close()
        if self.controller is not None:
            self.controller.stop()

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
