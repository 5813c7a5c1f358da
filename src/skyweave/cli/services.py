"""The long-lived services and crash recovery: ``skyweave controller``, ``skyweave worker`` and
``skyweave resume``.

A controller decides (it never imports user code), a worker runs activities; both stop cleanly on
SIGTERM or Ctrl-C and log to stderr.  ``resume`` finishes what a killed run left, as the store's
controller for as long as that takes (refused, exit 5, while another controller runs).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Annotated

import typer

from skyweave.bus import open_bus
from skyweave.bus.base import CONTROLLER_GROUP
from skyweave.cli import output
from skyweave.cli.common import EXECUTOR_HELP, StoreOpt, friendly
from skyweave.client import Client
from skyweave.config.settings import load_settings
from skyweave.engine import Engine, make_env, make_executor
from skyweave.executors.transfers import transfer_target
from skyweave.executors.worker import WorkerService, new_worker_id


@friendly
def resume(
    run_id: Annotated[str | None, typer.Argument(help="A paused run; omit to finish every "
                                                  "unfinished run after a crash.")] = None,
    store: StoreOpt = None,
    workers: Annotated[int | None, typer.Option(help="Parallel activities.")] = None,
) -> None:
    """Resume a paused run, or (no id) finish every unfinished run after a crash or kill."""
    settings = load_settings(store=store, workers=workers)
    if run_id:
        with Client(settings=settings, engine=False) as client:
            if client.store.get_run_head(run_id).state == "paused":
                client.resume(run_id)
                output.console.print(f"resume requested for {run_id}")
                return
    settings = settings.model_copy(update={"bus": settings.bus_url(shared=True)})
    engine = Engine(settings)
    try:
        engine.start()
        began = time.time()
        pending = [r.id for r in engine.store.list_runs(states=["running", "paused", "submitted"],
                                                        graph=False)]
        output.console.print(f"resuming {len(pending)} unfinished run(s) and any queued requests")
        quiet = 0
        while quiet < 3:  # three calm looks in a row: nothing unread on the bus, nothing running
            engine.check()
            unread = engine.bus.read(CONTROLLER_GROUP, 1)
            active = engine.store.list_runs(states=["running", "submitted"], limit=1, graph=False)
            quiet = 0 if unread or active else quiet + 1
            time.sleep(0.1)
        for run in engine.store.list_runs(limit=20, graph=False):
            if run.id in pending or (run.ended_at or 0) >= began:
                output.console.print(f"{run.id}: {run.state}")
    finally:
        engine.stop()


def _serve(stop: threading.Event) -> None:
    def handler(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def service_logging() -> None:
    """INFO logs of a long-lived service on stderr; the store's schema migrations say nothing."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)


@friendly
def controller(
    store: StoreOpt = None,
    bus: Annotated[str | None, typer.Option(help="Bus URL (default <store>/bus.db).")] = None,
    workers: Annotated[int, typer.Option(help="Also run an in-process worker with this many slots.")] = 0,
) -> None:
    """Run the controller (decides only) until stopped; workers connect over the bus."""
    service_logging()
    settings = load_settings(store=store, bus=bus, workers=workers or None)
    settings = settings.model_copy(update={"bus": settings.bus_url(shared=True)})
    engine = Engine(settings, worker=workers > 0)
    stop = threading.Event()
    _serve(stop)
    assert engine.controller is not None
    if not engine.controller.stand_by(stop):  # another controller is active: wait to take over
        engine.stop()
        return
    engine.start()
    output.err_console.print(f"controller on store {settings.store_dir}, bus {settings.bus}")
    try:
        while not stop.wait(0.5):
            engine.check()
    finally:
        engine.stop()


@friendly
def worker(
    store: StoreOpt = None,
    bus: Annotated[str | None, typer.Option(help="Bus URL (default <store>/bus.db).")] = None,
    slots: Annotated[int, typer.Option(help="Parallel activities (default: CPU cores).")] = 0,
    executor: Annotated[str | None, typer.Option(help=EXECUTOR_HELP)] = None,
    site: Annotated[str | None, typer.Option(help="Claim only the work placed at this site "
                                             "(docs/operations.md, \"Several sites\").")] = None,
    storage: Annotated[str | None, typer.Option(help="Directory this worker writes products to "
                                                "(its site's storage root).")] = None,
) -> None:
    """Run a worker: claims dispatches from the bus and runs them."""
    service_logging()
    settings = load_settings(store=store, bus=bus, workers=slots or None, executor=executor, site=site,
                             storage=storage)
    worker_id = new_worker_id()
    env = make_env(settings, worker_id)
    service = WorkerService(open_bus(settings.bus_url(shared=True), aging_s=settings.aging_s,
                                     max_deliveries=settings.max_deliveries),
                            make_executor(settings, env), worker_id=worker_id,
                            lease_s=settings.lease_s, heartbeat_s=settings.heartbeat_s, site=settings.site,
                            sites=settings.sites,
                            transfer_root=transfer_target(env) if settings.site and settings.sites else None)
    stop = threading.Event()
    _serve(stop)
    service.start()
    output.err_console.print(f"worker {service.id} with {service.executor.slots} slots"
                             + (f" at site {settings.site}" if settings.site else ""))
    try:
        while not stop.is_set():
            service.step(0.2)
    finally:
        service.close()
