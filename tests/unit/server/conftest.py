"""A server app over a store holding one finished run, driven in-process (``TestClient``), with a
read token and a write token."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from skyweave.bus import open_bus
from skyweave.client import Client
from skyweave.server.app import create_app
from skyweave.server.events import EventHub
from skyweave.server.state import Limits, ServerState
from skyweave.server.tokens import create_token

FLOW = Path(__file__).resolve().parents[2] / "e2e" / "workflows" / "remote.py"
LIMITS = Limits(body_bytes=64 * 1024, upload_bytes=256 * 1024)


@dataclass
class Served:
    http: TestClient
    client: Client
    read: dict[str, str]
    write: dict[str, str]
    root: Path
    run_id: str
    product_id: str


@pytest.fixture(scope="session")
def finished_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("server")
    with Client(str(root / "st"), workers=1, executor="threads") as client:
        run = client.run(f"{FLOW}:imaging", {"n": 2})
        assert run.status == "succeeded"
        return root, run.id


@pytest.fixture
def served(finished_store: tuple[Path, str]) -> Iterator[Served]:
    root, run_id = finished_store
    (root / "workflows").mkdir(exist_ok=True)
    client = Client(str(root / "st"), engine=False)
    bus = open_bus(client.settings.bus_url(shared=True))
    hub = EventHub(bus, client.store)  # not started: no stream is followed in these tests
    state = ServerState(client=client, hub=hub, limits=LIMITS, workflows_dir=root / "workflows")
    read, _ = create_token(client.store, "reader", ["read"])
    write, _ = create_token(client.store, "writer", ["write"])
    product_id = client.store.find_products(run_id=run_id, type="test.merged")[0].id
    try:
        with TestClient(create_app(state), raise_server_exceptions=False) as http:
            yield Served(http, client, {"Authorization": f"Bearer {read}"},
                         {"Authorization": f"Bearer {write}"}, root, run_id, product_id)
    finally:
        bus.close()
        client.close()
