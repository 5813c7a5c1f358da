"""Waiting for a run and asking its status read the run's head, never its graph.

The graph of a big run is tens of MB (21 MB at 100k nodes); reading it at every look made waiting
for a 100k-activity run take longer than the run.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from skyweave import Client
from skyweave.store.base import Store
from tests.unit.listeners import flows


class CountingStore:
    """Forwards to a store and counts the calls by method name."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        self.calls[name] += 1
        return getattr(self.store, name)


def test_wait_status_and_summary_never_read_the_graph(tmp_path: Path) -> None:
    with Client(str(tmp_path / "st"), executor="threads", workers=1) as client:
        handle = client.submit(flows.urgent, {"reason": "r"})
        counting = CountingStore(client.store)
        client.store = counting  # type: ignore[assignment]  # the engine keeps its own handle
        record = client.wait(handle.id, timeout=60)
        assert record.state == "succeeded"
        assert handle.status == "succeeded"
        assert client.summary(handle.id)["status"] == "succeeded"
        client.get(handle.id)
        assert counting.calls["get_run"] == 0, "a look at the run's state read its whole graph"
        assert counting.calls["get_run_head"] >= 4
        assert handle.results() == "followed up: r"  # results need the graph's outputs: one full read
        assert counting.calls["get_run"] == 1
