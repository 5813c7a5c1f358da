"""Every execution of an activity is in its provenance: an attempt sub-activity with its reason.

The store rows are those the controller writes for an activity whose first worker died (a ``lost``
attempt, ``controller/liveness.py``), whose second attempt failed and was retried, and whose third
succeeded (``controller/core.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prov.model import PROV_ROLE, PROV_TYPE, ProvActivity, ProvAssociation, ProvDocument, ProvStart

from skyweave.model.records import ActivityRecord, AttemptRecord, Changeset, RunRecord
from skyweave.provenance import export
from skyweave.provenance.w3c import SW
from skyweave.store import open_store
from skyweave.store.base import Store

LOST = ("attempt 1 lost: worker wrk-a sent no heartbeat for 5.0 s; "
        "it may have run; it runs again as the next attempt")
FAILED = "ValueError: calibration table is empty"
READ = {"provjson": "json", "provn": "provn", "provxml": "xml", "provdm": "json"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    st = open_store(str(tmp_path / "st"))
    run = RunRecord(id="run-1", workflow="reduce", state="succeeded", started_at=100.0, ended_at=200.0)
    act = ActivityRecord(id="act-1", run_id="run-1", node="calibrate", task_name="calibrate", task_version="2",
                         state="succeeded", attempt=3, max_attempts=3, started_at=150.0, ended_at=160.0,
                         worker="wrk-c", host="node9", exit_code=0)
    attempts = [
        AttemptRecord(activity_id="act-1", attempt=1, state="lost", worker="wrk-a", host="node7",
                      started_at=101.0, ended_at=120.0,
                      error={"type": "skyweave.WorkerLost", "message": LOST, "retryable": True}),
        AttemptRecord(activity_id="act-1", attempt=2, state="failed", worker="wrk-b", host="node8", pid=77,
                      started_at=121.0, ended_at=130.0, exit_code=1,
                      error={"type": "ValueError", "message": FAILED, "traceback": "…", "retryable": True}),
        AttemptRecord(activity_id="act-1", attempt=3, state="succeeded", worker="wrk-c", host="node9", pid=78,
                      started_at=150.0, ended_at=160.0, exit_code=0),
    ]
    st.apply(Changeset(runs=[run], activities=[act], attempts=attempts))
    yield st
    st.close()


def _one(record: Any, attr: Any) -> Any:
    values = record.get_attribute(attr)
    assert len(values) == 1, (attr, values)
    return next(iter(values))


@pytest.mark.parametrize("fmt", list(READ))
def test_every_attempt_is_a_sub_activity_with_its_reason(store: Store, fmt: str) -> None:
    text = export(store, run_id="run-1", fmt=fmt)
    doc = ProvDocument.deserialize(content=text, format=READ[fmt])

    attempts = sorted((r for r in doc.get_records(ProvActivity) if SW["Attempt"] in r.get_attribute(PROV_TYPE)),
                      key=lambda r: _one(r, SW["attempt"]))
    got = [(_one(a, SW["attempt"]), _one(a, SW["state"]), _one(a, SW["worker"]), _one(a, SW["host"]),
            a.get_startTime().timestamp(), a.get_endTime().timestamp()) for a in attempts]
    assert got == [(1, "lost", "wrk-a", "node7", 101.0, 120.0), (2, "failed", "wrk-b", "node8", 121.0, 130.0),
                   (3, "succeeded", "wrk-c", "node9", 150.0, 160.0)]
    lost, failed, ok = attempts
    assert _one(lost, SW["reason"]) == LOST and _one(lost, SW["errorType"]) == "skyweave.WorkerLost"
    assert not lost.get_attribute(SW["exitCode"])
    assert _one(failed, SW["reason"]) == FAILED and _one(failed, SW["exitCode"]) == 1
    assert _one(failed, SW["retryable"]) is True
    assert _one(ok, SW["exitCode"]) == 0 and not ok.get_attribute(SW["reason"])
    for a in attempts:  # each names its activity, was started by it, and ran on its own worker
        assert str(_one(a, SW["attemptOf"]).localpart) == "act-1"
        assert str(a.identifier.localpart) == f"act-1.attempt.{_one(a, SW['attempt'])}"
    starts = {str(_one(s, "prov:activity").localpart): str(_one(s, "prov:starter").localpart)
              for s in doc.get_records(ProvStart)}
    assert {k: v for k, v in starts.items() if ".attempt." in k} == {
        f"act-1.attempt.{n}": "act-1" for n in (1, 2, 3)}
    executors = {(str(_one(r, "prov:activity").localpart), str(_one(r, "prov:agent").localpart))
                 for r in doc.get_records(ProvAssociation) if _one(r, PROV_ROLE) == "executor"}
    assert {e for e in executors if ".attempt." in e[0]} == {
        ("act-1.attempt.1", "wrk-a@node7"), ("act-1.attempt.2", "wrk-b@node8"), ("act-1.attempt.3", "wrk-c@node9")}
    # the activity itself still carries the last attempt's facts and how many there were
    act = doc.get_record("swact:act-1")[0]
    assert _one(act, SW["attempts"]) == 3 and _one(act, SW["worker"]) == "wrk-c"


@pytest.mark.parametrize("fmt", ["provjson", "provdm"])
def test_export_with_attempts_round_trips(store: Store, fmt: str) -> None:
    text = export(store, run_id="run-1", fmt=fmt)
    doc = ProvDocument.deserialize(content=text)
    assert doc.serialize(format="json", indent=2) == text
    assert ProvDocument.deserialize(content=doc.serialize(format="provn"), format="provn") == doc
