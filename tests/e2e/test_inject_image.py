"""Injecting a new algorithm as a container image while a run is in progress (issue 14, point 3):
``skyweave tasks register NAME --image IMAGE --version V`` with a controller and a ``docker`` worker
running; the activities created afterwards run the new image, each product says which image digest
made it, and ``skyweave reprocess --task NAME --version OLD`` redoes what the old version made."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.services import DOCKER_BIN, docker_image, docker_setting

from .helpers import CLI, poll, service_logs, services

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BASE = "skyweave-base:py3.11"

# ``start`` and ``hold`` run on the host (no image) and wait for a file; ``algo`` runs in its image,
# whose ALGO variable says which algorithm it is.  algo's second activity is created only once
# ``hold`` has finished: after the new version is registered.
PIPELINE = """
workflow: inject
params:
  go: {type: str}
  again: {type: str}
tasks:
  start:
    command: "sh -c 'while [ ! -e {params.go} ]; do sleep 0.05; done; echo start > {outputs.out}'"
    outputs: {out: start.txt}
  hold:
    command: "sh -c 'while [ ! -e {params.again} ]; do sleep 0.05; done; cat {inputs.prev} > {outputs.out}'"
    outputs: {out: hold.txt}
  algo:
    command: "sh -c 'cat {inputs.prev} > {outputs.out}; echo $ALGO >> {outputs.out}'"
    outputs: {out: {path: algo.txt, type: e2e.algo}}
    image: "algo:v1"
steps:
  first: {task: start, args: {go: $params.go}}
  a1: {task: algo, args: {prev: $first.out}}
  held: {task: hold, args: {again: $params.again, prev: $a1.out}}
  a2: {task: algo, args: {prev: $held.out}}
"""


def _image(host: str, tag: str, algo: str, context: Path) -> str:
    """A tiny image FROM the local base (no registry): only its ALGO differs; returns its digest."""
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text(f"FROM {BASE}\nENV ALGO={algo}\n")
    env = {"DOCKER_HOST": host, "DOCKER_BUILDKIT": "0", "PATH": "/usr/bin:/bin"}
    subprocess.run([DOCKER_BIN, "build", "-q", "-t", tag, str(context)], env=env, check=True,
                   capture_output=True)
    return subprocess.run([DOCKER_BIN, "image", "inspect", "--format", "{{.Id}}", tag], env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


def _algo_products(cli: CLI, run_id: str) -> list[dict[str, Any]]:
    found = [cli.json("products", "show", p["id"]) for p in cli.json("products", "list", "--run", run_id)
             if p["type"] == "e2e.algo"]
    return sorted(found, key=lambda p: p["activity"]["node"])


def test_a_new_image_registered_mid_run_makes_the_later_products(cli: CLI) -> None:
    host = docker_image(BASE)
    v1 = _image(host, "algo:v1", "one", cli.cwd / "v1")
    v2 = _image(host, "algo:v2", "two", cli.cwd / "v2")
    setting = docker_setting(BASE)
    (cli.cwd / "skyweave.toml").write_text(f'executor = "{setting}"\ncontainer = "{setting}"\n')
    (cli.cwd / "inject.yaml").write_text(textwrap.dedent(PIPELINE))
    go, again = cli.cwd / "go", cli.cwd / "again"
    with services(cli, slots=2):
        try:
            run_id = cli("submit", "inject.yaml", "--param", f"go={go}", "--param", f"again={again}",
                         "--json").ok().json()["run_id"]
            go.touch()
            poll(lambda: any(a["node"] == "held" and a["state"] == "running"
                             for a in cli.status(run_id)["activities_detail"]),
                 deadline=120, what="a1 to finish and `held` to wait")
            out = cli("tasks", "register", "algo", "--image", "algo:v2", "--version", "2").ok().out
            assert "registered algo@2 in algo:v2" in out and v2 in out
            again.touch()
            poll(lambda: cli.status(run_id)["status"] in ("succeeded", "failed"), deadline=120,
                 what="the run to end")
            assert cli.status(run_id)["status"] == "succeeded"
            a1, a2 = _algo_products(cli, run_id)
            assert (a1["activity"]["task_version"], a1["activity"]["image_digest"]) == ("1", v1)
            assert (a2["activity"]["task_version"], a2["activity"]["image_digest"]) == ("2", v2)
            assert Path(a1["product"]["uri"].removeprefix("file://")).read_text() == "start\none\n"
            assert Path(a2["product"]["uri"].removeprefix("file://")).read_text() == "start\none\ntwo\n"

            # redo what version 1 made: the run again, algo now at version 2 everywhere
            redo = cli("reprocess", "--task", "algo", "--version", "1", "--json").ok().json()
            (new_run,) = redo["plan"]["runs"]
            assert new_run == run_id
            poll(lambda: [r for r in cli.json("runs") if r["run_id"] != run_id
                          and r["status"] in ("succeeded", "failed")], deadline=120, what="the reprocessing")
            (again_run,) = [r["run_id"] for r in cli.json("runs") if r["run_id"] != run_id]
            assert cli.status(again_run)["status"] == "succeeded"
            b1, b2 = _algo_products(cli, again_run)
            assert {b1["activity"]["image_digest"], b2["activity"]["image_digest"]} == {v2}
            assert Path(b1["product"]["uri"].removeprefix("file://")).read_text() == "start\ntwo\n"
            assert Path(b2["product"]["uri"].removeprefix("file://")).read_text() == "start\ntwo\ntwo\n"
        except BaseException:
            print(service_logs(cli))
            raise
