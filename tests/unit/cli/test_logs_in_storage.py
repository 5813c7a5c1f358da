"""``skyweave logs`` shows a log a worker wrote to the product storage (a worker that does not
share this host's disk), not only the files under the local ``logs/`` folder."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from skyweave import logs
from skyweave.cli import output, runview
from skyweave.model.records import ActivityRecord, AttemptRecord
from skyweave.storage import open_storage


def test_a_log_in_the_storage_is_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    storage = open_storage(f"memory://{uuid.uuid4().hex}/")
    uri = storage.put("logs/act-1.2.log", io.BytesIO(b"hello from a remote worker\n")).uri
    act = ActivityRecord(id="act-1", run_id="run-1", node="t", task_name="t", task_version="1",
                         state="succeeded", arguments={}, attempt=2, log_uri=uri)
    attempts = [AttemptRecord(activity_id="act-1", attempt=1, state="failed"),
                AttemptRecord(activity_id="act-1", attempt=2, state="succeeded")]
    client = SimpleNamespace(store=SimpleNamespace(list_attempts=lambda _id: attempts),
                             settings=SimpleNamespace(store_dir=tmp_path))
    shown = io.StringIO()
    monkeypatch.setattr(output, "console", Console(file=shown, width=100))
    assert runview._show_activity(client, act, heading=False)  # type: ignore[arg-type]
    printed = shown.getvalue() + capsys.readouterr().out  # the log's text goes to stdout as it is
    assert "attempt 2" in printed and "hello from a remote worker" in printed
    assert "attempt 1" not in printed, "an attempt without a log shows nothing"


def test_an_unreadable_stored_log_says_why() -> None:
    assert "cannot be read here" in logs.stored_log("gopher://host/logs/x.log")
