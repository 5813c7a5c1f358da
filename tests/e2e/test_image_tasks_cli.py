"""``image:`` in a YAML task: the command runs in that image under a container executor, the image
pinned to its digest at submission (issue 14, point 1); never on the host in its place."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.services import docker_setting

from .helpers import CLI, flat

pytestmark = pytest.mark.integration

BASE = "skyweave-base:py3.11"

PIPELINE = """
workflow: boxed
params:
  word: {type: str}
tasks:
  echo_it:
    command: "sh -c 'echo {params.word} from $(cat /etc/debian_version) > {outputs.said}; echo logged'"
    outputs: {said: said.txt}
    image: "IMAGE"
steps:
  said: {task: echo_it, args: {word: $params.word}}
"""


def _write(cli: CLI, image: str, setting: str) -> None:
    (cli.cwd / "boxed.yaml").write_text(PIPELINE.replace("IMAGE", image))
    (cli.cwd / "skyweave.toml").write_text(f'container = "{setting}"\n')


def test_a_yaml_image_task_runs_its_command_in_the_image_pinned_by_digest(cli: CLI) -> None:
    setting = docker_setting(BASE)
    _write(cli, BASE, setting)
    res = cli("run", "boxed.yaml", "--param", "word=hello", "--executor", setting, "--json").ok()
    run = res.json()
    assert run["status"] == "succeeded", run
    (act,) = cli.json("status", run["run_id"])["activities_detail"]
    assert act["exit_code"] == 0
    assert act["command"].startswith("sh -c")             # the task's own command, not docker's
    (task,) = cli.json("tasks", "list")
    assert task["image"] == BASE and task["image_digest"].startswith("sha256:")
    assert act["image_digest"] == task["image_digest"]
    (product,) = cli.json("products", "list", "--run", run["run_id"])
    text = Path(product["uri"].removeprefix("file://")).read_text()
    assert text.startswith("hello from 12.")              # written by bookworm's sh, in the image
    made_by = cli.json("products", "show", product["id"])["activity"]
    assert made_by["image_digest"] == task["image_digest"]
    assert "logged" in cli("logs", act["id"]).ok().out     # the command's output was captured
    prov = cli("prov", "export", run["run_id"], "--format", "provn").ok().out
    assert task["image_digest"] in prov                    # provenance names the digest that ran


def test_an_image_the_engine_does_not_have_is_refused_at_submission(cli: CLI) -> None:
    _write(cli, "busybox:1.36", docker_setting(BASE))
    res = cli("run", "boxed.yaml", "--param", "word=hello")
    assert res.code == 2, (res.out, res.err)
    assert "Traceback" not in res.err and res.err.count("error:") == 1
    text = flat(res.err)
    assert "image 'busybox:1.36' is not in docker" in text
    assert "hint: build it first" in text and "never pulls from a registry" in text
    assert cli.json("runs") == []


def test_a_worker_that_runs_no_containers_refuses_the_task(cli: CLI) -> None:
    _write(cli, BASE, docker_setting(BASE))
    res = cli("run", "boxed.yaml", "--param", "word=hello", "--executor", "subprocess", "--json")
    run = res.json()
    assert run["status"] == "failed", run
    (act,) = cli.json("status", run["run_id"])["activities_detail"]
    assert "this worker's executor runs no containers" in act["error"]
    assert act["exit_code"] is None                         # nothing ran on the host
