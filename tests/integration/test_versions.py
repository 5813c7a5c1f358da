"""A new task version registered while a run is going is used by the activities created after it,
its own code runs (the old version's code is kept for the old activities), and every activity
records the version it ran."""

from __future__ import annotations

import textwrap
import time
import warnings
from pathlib import Path

import pytest

from skyweave import Client
from skyweave.errors import TaskVersionWarning

FLOW = textwrap.dedent('''
    import time
    from typing import Any
    from skyweave import task, workflow

    @task(version="1")
    def items(n: int) -> list[int]:
        return list(range(n))

    @task(version="1")
    def slow(i: int) -> int:
        end = time.perf_counter() + 0.15
        while time.perf_counter() < end:
            pass
        return i

    @task(version="1")
    def label(x: int) -> str:
        return f"v1:{x}"

    @workflow
    def flow(n: int = 12) -> Any:
        return label.map(x=slow.map(i=items(n=n)))
''')

V2 = textwrap.dedent('''
    from skyweave import task

    @task(version="2")
    def label(x: int) -> str:
        return f"v2:{x}"
''')


def test_version_injected_while_running(tmp_path: Path) -> None:
    flow = tmp_path / "flow.py"
    flow.write_text(FLOW)
    v2 = tmp_path / "label_v2.py"
    v2.write_text(V2)
    with Client(str(tmp_path / "st"), workers=1) as client:
        run = client.submit(f"{flow}:flow", {"n": 12})
        deadline = time.monotonic() + 60
        while sum(1 for a in run.activities() if a.task_name == "label") < 3:
            assert time.monotonic() < deadline, "the run did not progress"
            time.sleep(0.02)
        # the original file is edited too: old activities must keep the code they were made with
        flow.write_text(FLOW.replace('f"v1:{x}"', 'f"edited:{x}"'))
        spec = client.register_task(f"{v2}:label")
        assert spec.version == "2"
        run.wait(timeout=120)
        assert run.status == "succeeded"
        labels = sorted((a for a in run.activities() if a.task_name == "label"), key=lambda a: a.created_at)
        versions = [a.task_version for a in labels]
        assert versions[0] == "1"
        assert versions[-1] == "2", versions
        assert versions == sorted(versions), "once switched, later activities stay on the new version"
        for act in labels:
            assert act.result.startswith(f"v{act.task_version}:"), (act.task_version, act.result)
        listed = {(s.name, s.version): current for s, current in client.store.list_tasks()}
        assert listed[("label", "2")] is True
        assert listed[("label", "1")] is False


def test_same_version_with_different_code_is_refused(tmp_path: Path) -> None:
    from skyweave.errors import DefinitionError

    flow = tmp_path / "flow.py"
    flow.write_text(FLOW)
    with Client(str(tmp_path / "st"), workers=1) as client:
        assert client.run(f"{flow}:flow", {"n": 1}, timeout=60).status == "succeeded"
        flow.write_text(FLOW.replace('f"v1:{x}"', 'f"changed:{x}"'))  # edited, version still "1"
        with pytest.raises(DefinitionError, match="'label' version '1' is already registered with "
                                                  "different code") as info:
            client.submit(f"{flow}:flow", {"n": 1})
        assert "bump version=" in (info.value.hint or "")
        assert len(client.store.list_runs()) == 1, "nothing was submitted"


def test_submitting_again_does_not_undo_a_registered_switch_over(tmp_path: Path) -> None:
    flow = tmp_path / "flow.py"
    flow.write_text(FLOW)
    v2 = tmp_path / "label_v2.py"
    v2.write_text(V2)
    with Client(str(tmp_path / "st"), workers=1) as client:
        assert client.run(f"{flow}:flow", {"n": 1}, timeout=60).results() == ["v1:0"]
        client.register_task(f"{v2}:label")
        with pytest.warns(TaskVersionWarning) as warned:           # its file still says version 1
            again = client.run(f"{flow}:flow", {"n": 1}, timeout=60)
        assert again.results() == ["v2:0"]
        assert {a.task_version for a in again.activities() if a.task_name == "label"} == {"2"}
        (message,) = [str(w.message) for w in warned]
        assert f"task 'label': the submitted workflow defines version '1' (Python task {flow}:label)" in message
        assert "but this run uses version '2' (Python task " in message and "label_v2.py:label)" in message
        assert f"`skyweave tasks register {flow}:label`" in message
        with warnings.catch_warnings():
            warnings.simplefilter("error")                         # pinned: the file's version runs
            assert client.submit(f"{flow}:flow", {"n": 1}, pin=True).wait(timeout=60).results() == ["v1:0"]


YAML_TOTAL = """
workflow: sums
tasks:
  label: {command: "echo {params.x}", version: "cmd-1"}
steps:
  one: {task: label, args: {x: 1}}
output: $one
"""


def test_a_yaml_command_task_taking_a_python_tasks_name_is_named_with_it(tmp_path: Path) -> None:
    flow = tmp_path / "flow.py"
    flow.write_text(FLOW)
    (tmp_path / "sums.yaml").write_text(YAML_TOTAL)
    with Client(str(tmp_path / "st"), workers=1) as client:
        assert client.run(f"{flow}:flow", {"n": 1}, timeout=60).status == "succeeded"
        with pytest.warns(TaskVersionWarning) as warned:
            client.submit(str(tmp_path / "sums.yaml"))
        (message,) = [str(w.message) for w in warned]
        assert "task 'label': version 'cmd-1' of this submission (command task `echo {params.x}`)" in message
        assert f"replaces version '1' (Python task {tmp_path / 'st'}" in message
        assert "different names" in message
