"""A task that declares a container image never runs on the host in its place (issue 11, point 7:
a YAML task with ``image:`` ran its command on the host and exited 0): a worker without a container
executor refuses it, and a submission whose image the container engine cannot resolve to a digest
is refused before anything is stored (the runs in containers: tests/e2e/test_image_tasks_cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from skyweave import command, workflow
from skyweave.client import Client
from skyweave.errors import DefinitionError
from skyweave.executors.base import ExecutionEnv
from skyweave.executors.boundary import execute
from skyweave.model.messages import ActivityFailed
from skyweave.model.specs import TaskKind

from .helpers import dispatch

touch = command("touch_it", "touch {params.marker}", parameters={"marker": "str"}, image="busybox:1.36")


@workflow
def in_a_container(marker: str) -> Any:
    return touch(marker=marker)


@pytest.mark.parametrize("kind", [TaskKind.IMAGE, TaskKind.COMMAND, TaskKind.PYTHON])
def test_the_runner_refuses_an_image_task_a_store_already_holds(env: ExecutionEnv, tmp_path: Path,
                                                                kind: TaskKind) -> None:
    marker = tmp_path / "ran-on-the-host"
    d = dispatch(f"touch {marker}", name="touch_it", kind=kind)
    d = msgspec.structs.replace(d, task=msgspec.structs.replace(d.task, image="busybox:1.36"))
    outcome = execute(d, env)
    assert isinstance(outcome, ActivityFailed), outcome
    assert outcome.error_type == "skyweave.ContainerUnsupported" and outcome.retryable is False
    assert "declares the container image 'busybox:1.36'" in outcome.message
    assert "executor runs no containers" in outcome.message and "--executor docker" in outcome.message
    assert not marker.exists()


def test_an_image_no_engine_can_resolve_is_refused_at_submission_and_registration(tmp_path: Path) -> None:
    marker = tmp_path / "ran-on-the-host"
    missing = tmp_path / "no-docker-here"
    with Client(str(tmp_path / "st"), engine=False, container=f"docker://?binary={missing}") as client:
        with pytest.raises(DefinitionError, match="task 'touch_it': cannot run") as caught:
            client.submit(in_a_container, {"marker": str(marker)})
        assert "install docker and start it" in (caught.value.hint or "")
        with pytest.raises(DefinitionError, match="task 'touch_it': cannot run"):
            client.register_task(touch)
        assert client.store.list_runs() == [] and client.store.list_tasks() == []
    assert not marker.exists()
