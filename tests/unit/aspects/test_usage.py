"""Usage figures an aspect writes to ``outcome.usage`` (the docs' ``files_written``) are kept, typed,
in the activity record, its attempts and its provenance; a value that cannot be a figure fails
the activity naming the key instead of vanishing (or breaking the bus message)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from skyweave import Client, Product, context, task, workflow
from skyweave.aspects import Aspect, AspectOutcome, usage_from
from skyweave.executors.base import ExecutionEnv
from skyweave.executors.boundary import execute
from skyweave.model.context import ActivityContext
from skyweave.model.messages import (
    ActivityFailed,
    ActivityFinished,
    DispatchActivity,
    decode_message,
    encode_message,
)
from skyweave.model.specs import TaskSpec
from skyweave.provenance.export import export


class CountFiles(Aspect):
    """The docs' example (docs/operations.md), plus figures of every kind a figure may be."""

    name = "count-files"

    def after(self, ctx: ActivityContext, outcome: AspectOutcome) -> None:
        if outcome.ok:
            outcome.usage["files_written"] = len(outcome.products)
            outcome.usage["bytes_written"] = np.int64(1 << 40)
            outcome.usage["mean_snr"] = np.float32(7.5)
            outcome.usage["calibrated"] = True
            outcome.usage["calibrator"] = "3C 48"


class WritesAList(Aspect):
    name = "writes-a-list"

    def after(self, ctx: ActivityContext, outcome: AspectOutcome) -> None:
        outcome.usage["bands"] = ["u", "g"]


@task(version="1")
def make_two() -> list[Product]:
    out = []
    for name in ("a.txt", "b.txt"):
        path = context().output(name)
        path.write_text(name)
        out.append(Product(path, type="test.file"))
    return out


@workflow
def two_files() -> Any:
    return make_two()


def noop_task() -> int:
    return 7


def test_usage_from_keeps_numbers_text_and_booleans_typed_and_names_what_it_cannot_keep() -> None:
    usage, problems = usage_from({"wall_s": 1, "max_rss_kb": np.int32(12), "files_written": np.int64(3),
                                  "snr": np.float64(2.5), "ok": True, "band": "u"})
    assert problems == []
    assert usage.wall_s == 1.0
    assert usage.max_rss_kb == 12
    assert usage.custom == {"files_written": 3, "snr": 2.5, "ok": True, "band": "u"}
    assert [type(v) for v in usage.custom.values()] == [int, float, bool, str]
    assert usage.as_dict()["files_written"] == 3

    usage, problems = usage_from({"bands": ["u"], "snr": float("nan"), "wall_s": "slow", "n": 2})
    assert usage.custom == {"n": 2}
    assert problems == ["usage 'bands' is a list (['u']), not a number, text or true/false",
                        "usage 'snr' is a float (nan), not a number, text or true/false",
                        "usage 'wall_s' is a str ('slow'), not a number"]


def test_custom_figures_travel_on_the_bus(tmp_path: Path) -> None:
    env = ExecutionEnv(worker="w", storage_root=tmp_path / "s", work_root=tmp_path / "w",
                       log_root=tmp_path / "l", aspects=(f"{__name__}:CountFiles",), builtin_aspects=True)
    task_spec = TaskSpec(name="noop", version="1", ref=f"{__name__}:noop_task")
    outcome = execute(DispatchActivity(activity_id="act-1", attempt=1, run_id="run-1", task=task_spec,
                                       arguments={}), env)
    assert isinstance(outcome, ActivityFinished)
    back = decode_message(encode_message("m", outcome)).body
    assert isinstance(back, ActivityFinished)
    assert back.usage.custom == {"files_written": 0, "bytes_written": 1 << 40, "mean_snr": 7.5,
                                 "calibrated": True, "calibrator": "3C 48"}
    assert back.usage.wall_s > 0


def test_a_value_that_is_no_figure_fails_the_activity_naming_the_key(tmp_path: Path) -> None:
    env = ExecutionEnv(worker="w", storage_root=tmp_path / "s", work_root=tmp_path / "w",
                       log_root=tmp_path / "l", aspects=(f"{__name__}:WritesAList",), builtin_aspects=False)
    task_spec = TaskSpec(name="noop", version="1", ref=f"{__name__}:noop_task")
    outcome = execute(DispatchActivity(activity_id="act-1", attempt=1, run_id="run-1", task=task_spec,
                                       arguments={}), env)
    assert isinstance(outcome, ActivityFailed)
    assert outcome.error_type == "skyweave.InvalidUsage"
    assert outcome.retryable is False
    assert "usage 'bands' is a list" in outcome.message
    assert decode_message(encode_message("m", outcome)).body == outcome


def test_custom_figures_are_in_the_activity_record_and_its_provenance(tmp_path: Path) -> None:
    with Client(str(tmp_path / "st"), executor="threads", workers=1,
                aspects=[f"{__name__}:CountFiles"]) as client:
        run = client.run(two_files, timeout=30)
        assert run.status == "succeeded"
        (act,) = run.activities()
        attempts = client.store.list_attempts(act.id)
        prov = json.loads(export(client.store, fmt="provjson", run_id=run.id))
    assert act.usage is not None
    assert act.usage["files_written"] == 2
    assert act.usage["bytes_written"] == 1 << 40
    assert act.usage["calibrated"] is True
    assert act.usage["wall_s"] > 0
    assert attempts[-1].usage == act.usage
    (record,) = [a for a in prov["activity"].values() if a.get("sw:task") == "make_two"]
    assert json.loads(record["sw:usage"])["files_written"] == 2
