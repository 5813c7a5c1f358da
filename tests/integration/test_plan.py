"""``Client.plan`` (issue 11, point 3): what a submission would reuse and what it would run, and why,
before anything runs; steps that depend on work still to run are decided at run time."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from skyweave import Client
from skyweave.plan import RunPlan
from tests.integration import files_flow as flow
from tests.integration.test_files import ran, write


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    folder = tmp_path / "raw"
    folder.mkdir()
    for i in range(3):
        write(folder / f"exp{i:02d}.txt", f"{i} 5 6")
    return folder


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    with Client(str(tmp_path / "store"), executor="threads", workers=2) as c:
        yield c


def actions(plan: RunPlan) -> dict[str, str]:
    return {s.step: s.action for s in plan.steps}


def test_a_first_plan_runs_the_known_part_and_defers_the_rest_writing_nothing(client: Client, raw: Path
                                                                              ) -> None:
    plan = client.plan(flow.reduce, {"raw_dir": str(raw)})
    assert actions(plan) == {"find_exposures": "run", "calibrate": "later", "measure": "later",
                             "summarise": "later"}
    by_step = {s.step: s for s in plan.steps}
    assert by_step["find_exposures"].reasons == ["no earlier run of find_exposures at this step"]
    assert "waits for find_exposures (runs)" in by_step["calibrate"].reasons[0]
    assert "how many activities it makes is known then" in by_step["calibrate"].reasons[0]
    assert "waits for measure (decided at run time)" in by_step["summarise"].reasons[0]
    assert client.store.list_runs() == [] and client.store.list_tasks() == []
    assert client.store.find_products(state=None) == [], "File/Folder are not registered by a plan"


def test_after_a_run_everything_is_reused_and_an_edit_reruns_what_the_plan_said(client: Client, raw: Path
                                                                               ) -> None:
    client.run(flow.one_file, {"raw": str(raw / "exp01.txt")}, timeout=60)
    assert set(actions(client.plan(flow.one_file, {"raw": str(raw / "exp01.txt")})).values()) == {"reuse"}

    write(raw / "exp01.txt", "9 9 9", later=5)
    plan = client.plan(flow.one_file, {"raw": str(raw / "exp01.txt")})
    assert actions(plan) == {"calibrate": "run", "measure": "later"}
    (why,) = plan.steps[0].reasons
    assert why == f"input 'raw_file': file {raw / 'exp01.txt'} changed or is new"
    run = client.run(flow.one_file, {"raw": str(raw / "exp01.txt")}, timeout=60)
    assert ran(run.activities()) == ["calibrate[]", "measure[]"]


def test_a_reused_fan_out_is_planned_through_and_a_parameter_change_is_named(client: Client, raw: Path
                                                                            ) -> None:
    client.run(flow.reduce, {"raw_dir": str(raw)}, timeout=60)
    plan = client.plan(flow.reduce, {"raw_dir": str(raw)})
    assert plan.counts == {"reuse": 8}, "the fan-out is known from the reused find_exposures"

    plan = client.plan(flow.reduce, {"raw_dir": str(raw), "bias": 2.0})
    assert actions(plan) == {"find_exposures": "reuse", "calibrate[0]": "run", "calibrate[1]": "run",
                             "calibrate[2]": "run", "measure": "later", "summarise": "later"}
    assert {s.reasons[0] for s in plan.of("run")} == {"parameter 'bias' changed: 1.0 -> 2.0"}
    run = client.run(flow.reduce, {"raw_dir": str(raw), "bias": 2.0}, timeout=60)
    assert [r for r in ran(run.activities()) if r.startswith(("find", "calibrate"))] == [
        "calibrate[0]", "calibrate[1]", "calibrate[2]"]


def test_a_task_version_change_is_the_reason(client: Client, raw: Path, tmp_path: Path) -> None:
    client.run(flow.one_file, {"raw": str(raw / "exp00.txt")}, timeout=60)
    source = Path(flow.__file__).read_text().replace('@task(version="1")\ndef calibrate',
                                                      '@task(version="2")\ndef calibrate')
    (tmp_path / "flow_v2.py").write_text(source)
    plan = client.plan(f"{tmp_path / 'flow_v2.py'}:one_file", {"raw": str(raw / "exp00.txt")})
    calibrate = next(s for s in plan.steps if s.task == "calibrate")
    assert calibrate.action == "run"
    assert calibrate.reasons == ["task calibrate is at version 2 (last run: 1)"]
    assert os.path.exists(raw / "exp00.txt")
