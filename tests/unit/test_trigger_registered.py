"""``triggers.registered.declare``: a bare name the registry does not know is still a module to import
(``workflow: mypkg.flows``, as before the registry), and one that is neither is refused with both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skyweave.client import Client
from skyweave.errors import NotFoundError
from skyweave.triggers import on_messages
from skyweave.triggers.registered import by_name, declare

MODULE = """
from skyweave import task, workflow


@task
def echo(text: str) -> str:
    return text


@workflow
def only(text: str = "") -> str:
    return echo(text=text)
"""


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    with Client(str(tmp_path / "store"), engine=False) as c:
        yield c


def test_a_bare_module_name_not_registered_stays_a_module(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "trig_reg_flows.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = on_messages("notes", topic="notes", workflow="trig_reg_flows")
    assert by_name(spec) and declare(client.store, spec) == spec
    run = client.prepare_run(spec.workflow, {"text": "hi"})
    assert (run.workflow_ref, run.workflow_hash) == ("trig_reg_flows", "")


def test_a_name_neither_registered_nor_importable_is_refused_with_both(client: Client) -> None:
    with pytest.raises(NotFoundError) as caught:
        declare(client.store, on_messages("notes", topic="notes", workflow="imaging"))
    assert "no registered workflow 'imaging'" in caught.value.message
    assert "nor a workflow to import" in caught.value.message
    assert "workflows register" in (caught.value.hint or "")


def test_files_and_module_targets_are_not_names(client: Client) -> None:
    spec = on_messages("notes", topic="notes", workflow="mypkg.flows:ingest")
    assert not by_name(spec) and declare(client.store, spec) == spec
