"""Run the API: ``serve`` opens the store and bus, starts the event hub (and, asked to, a
controller and a worker in this process), serves with uvicorn until stopped, then closes all."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import uvicorn

from skyweave.bus import open_bus
from skyweave.client import Client
from skyweave.config.settings import Settings
from skyweave.engine import Engine
from skyweave.server.app import create_app
from skyweave.server.events import EventHub
from skyweave.server.state import Limits, ServerState

log = logging.getLogger(__name__)


def serve(settings: Settings, *, host: str, port: int, controller: bool = False, workers: int = 0,
          workflows_dir: Path | None = None, modules: tuple[str, ...] = (), limits: Limits | None = None,
          group: str | None = None) -> None:
    """``group``: the bus consumer group of the event hub; default ``server:<host>:<port>``, so
    servers sharing a bus each hear every event (one group per server, kept across restarts)."""
    settings = settings.model_copy(update={"bus": settings.bus_url(shared=True)})
    client = Client(settings=settings, engine=False)
    engine: Engine | None = None
    hub_bus = open_bus(settings.bus, aging_s=settings.aging_s)
    hub = EventHub(hub_bus, client.store, group=group or f"server:{socket.gethostname()}:{port}")
    try:
        if controller:
            engine = Engine(settings, store=client.store, worker=workers > 0).start()
        hub.start()
        state = ServerState(client=client, hub=hub, limits=limits or Limits(),
                            workflows_dir=workflows_dir.resolve() if workflows_dir else None,
                            workflow_modules=("skyweave.examples", *modules))
        config = uvicorn.Config(create_app(state), host=host, port=port, log_level="info",
                                timeout_graceful_shutdown=2, access_log=False)
        uvicorn.Server(config).run()
    finally:
        hub.stop()
        hub_bus.close()
        if engine is not None:
            engine.stop()
        client.close()
