"""Triggers on registered workflows: ``workflow: ingest@1`` fires runs that record ``NAME@VERSION``
and the snapshot's hash, as ``submit(NAME, version=V)`` does; a bare ``NAME`` is fixed to the version
registered last when the trigger is added; an unknown name or version is refused at ``triggers add``."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from skyweave import Client
from skyweave.cli.main import app
from skyweave.triggers import on_files
from skyweave.triggers.registered import declare
from skyweave.triggers.service import TriggerService

FLOW = Path(__file__).with_name("triggers_flow.py")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    with Client(str(tmp_path / "store"), executor="threads", workers=2) as c:
        yield c


def land(folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(name)
    then = time.time() - 10
    os.utime(folder / name, (then, then))


def test_a_trigger_on_a_registered_workflow_fires_runs_that_record_its_name_version_and_hash(
    client: Client, tmp_path: Path
) -> None:
    v1 = client.register_workflow(f"{FLOW}:ingest", version="1")
    inbox = tmp_path / "inbox"
    spec = declare(client.store, on_files("arrivals", folder=inbox, workflow="ingest", settle_s=0,
                                          params={"path": "{path}"}))
    assert spec.workflow == "ingest@1"  # a bare name: the version registered last, at declaration
    client.store.save_trigger(spec)
    changed = tmp_path / "flow_v2.py"  # a second version registered after the trigger was added
    changed.write_text(FLOW.read_text() + "\n# version 2\n")
    v2 = client.register_workflow(f"{changed}:ingest", version="2")
    assert v2.code_hash != v1.code_hash

    land(inbox, "a.evt")
    land(inbox, "b.evt")
    TriggerService(client).step()
    runs = [r for r in client.store.list_runs(graph=False) if r.labels.get("trigger") == "arrivals"]
    assert len(runs) == 2
    for run in runs:
        assert (run.workflow_ref, run.workflow_hash) == ("ingest@1", v1.code_hash)
        assert run.pins  # pinned to the snapshot's task versions, as a submission by name is
        assert client.wait(run.id, timeout=60).state == "succeeded"

    client.store.save_trigger(declare(client.store, on_files(
        "arrivals", folder=inbox, workflow="ingest@2", settle_s=0, params={"path": "{path}"})), replace=True)
    land(inbox, "c.evt")
    TriggerService(client).step()
    before = {r.id for r in runs}
    newest = [r for r in client.store.list_runs(graph=False) if r.labels.get("trigger") == "arrivals"
              and r.id not in before]
    assert [(r.workflow_ref, r.workflow_hash) for r in newest] == [("ingest@2", v2.code_hash)]


def test_triggers_add_refuses_an_unknown_registered_workflow_and_saves_none(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    with Client(store, engine=False) as c:
        c.register_workflow(f"{FLOW}:ingest", version="1")
    (tmp_path / "t.yaml").write_text(
        "triggers:\n"
        "  good: {messages: {topic: a}, workflow: ingest@1}\n"
        "  typo: {messages: {topic: b}, workflow: ingest@7}\n"
        "  nobody: {messages: {topic: c}, workflow: imaging}\n"
    )
    result = CliRunner().invoke(app, ["triggers", "add", str(tmp_path / "t.yaml"), "--store", store])
    assert result.exit_code != 0
    assert "no registered workflow 'ingest@7'" in result.output
    assert "registered versions of 'ingest': ingest@1" in result.output
    with Client(store, engine=False) as c:
        assert c.store.list_triggers() == []  # checked all before saving any
    (tmp_path / "t.yaml").write_text("triggers:\n  nobody: {messages: {topic: c}, workflow: imaging}\n")
    result = CliRunner().invoke(app, ["triggers", "add", str(tmp_path / "t.yaml"), "--store", store])
    assert result.exit_code != 0
    assert "no registered workflow 'imaging'" in result.output and "registered workflows: ingest" in result.output
