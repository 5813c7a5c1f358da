"""The image digest that ran, not the tag, on each activity and attempt, in every provenance export
and in the cache key (issue 14, point 1), with docker and podman (real engines, local images).

A Python task without an image of its own runs in the worker's default image, whose digest is known
only where it ran: it is recorded from the run (the task version pins none).  An image rebuilt under
the same tag is new content: never reused for it — a task declared without ``version=`` becomes a
new version by itself, one with an explicit version is refused until it is bumped."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from skyweave.store import open_store
from tests.services import container_setting, docker_setting

from .helpers import CLI, flat

pytestmark = pytest.mark.integration

PIPELINE = textwrap.dedent('''
    from pathlib import Path
    from typing import Any

    from skyweave import task, workflow


    @task(version="1")
    def release() -> str:
        return Path("/etc/debian_version").read_text().strip()


    @workflow
    def where() -> Any:
        return release()
''')


def _client(setting: str) -> list[str]:
    """The engine's client as the setting names it (docker -H HOST, or the podman wrapper)."""
    from skyweave.executors.containers import ContainerRuntime

    return ContainerRuntime.parse(setting).client


def _digest(setting: str, image: str) -> str:
    from skyweave.executors.containers import ContainerRuntime

    return ContainerRuntime.parse(setting).digest(image)


def _activities(cli: CLI, run_id: str) -> list[Any]:
    store = open_store(str(cli.store))
    try:
        return store.list_activities(run_id=run_id)
    finally:
        store.close()


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_the_digest_that_ran_is_on_the_activity_its_attempt_and_every_export(cli: CLI, engine: str) -> None:
    setting = container_setting(engine)
    (cli.cwd / "wf.py").write_text(PIPELINE)
    run = cli("run", "wf.py:where", "--executor", setting, "--json").ok().json()
    assert run["status"] == "succeeded", run
    ran = _digest(setting, "skyweave:local")
    (task,) = cli.json("tasks", "list")
    assert task["image_digest"] == ""                      # the version pins no image ...
    (act,) = cli.json("status", run["run_id"])["activities_detail"]
    assert act["image_digest"] == ran                      # ... the run recorded the one it ran in
    assert f"image: {ran}" in cli("logs", act["id"]).ok().out
    store = open_store(str(cli.store))
    try:
        (attempt,) = store.list_attempts(act["id"])
    finally:
        store.close()
    assert (attempt.state, attempt.image_digest) == ("succeeded", ran)

    for fmt in ("provjson", "provdm", "voprov"):
        doc = json.loads(cli("prov", "export", run["run_id"], "--format", fmt).ok().out)
        acts = doc.get("activity", {})
        tagged = {k: v for k, v in acts.items() if ran in json.dumps(v)}
        assert any(k.endswith(act["id"]) for k in tagged), (fmt, acts)              # the activity
        assert any(k.endswith(f"{act['id']}.attempt.1") for k in tagged), (fmt, acts)  # its attempt
        (image,) = [k for k, a in doc["agent"].items() if ran in json.dumps(a)]     # the image
        with_image = [r["prov:activity"] for r in doc["wasAssociatedWith"].values() if r["prov:agent"] == image]
        for who in (act["id"], f"{act['id']}.attempt.1"):
            assert any(w.endswith(who) for w in with_image), (fmt, who, with_image)
    provn = cli("prov", "export", run["run_id"], "--format", "provn").ok().out
    assert f'sw:imageDigest="{ran}"' in provn


def _build(setting: str, tag: str, base: str, label: str, context: Path) -> str:
    """``tag`` made FROM ``base`` with one more label (new content, no registry); its digest."""
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text(f"FROM {base}\nLABEL skyweave.test.build={label}\n")
    client = _client(setting)
    subprocess.run([*client, "build", "-q", "-t", tag, str(context)], check=True, capture_output=True,
                   env={"DOCKER_BUILDKIT": "0", "PATH": "/usr/bin:/bin"})
    return _digest(setting, tag)


IMAGE_TASKS = textwrap.dedent('''
    from typing import Any

    from skyweave import command, task, workflow


    @task(image="digest-e2e:t")
    def py_step(word: str) -> str:
        return word.upper()


    @workflow
    def python_wf(word: str) -> Any:
        return py_step(word=word)


    cmd_step = command("cmd_step", "sh -c 'echo {params.word} > {outputs.out}'", version="VERSION",
                       parameters={"word": "str"}, outputs={"out": "out.txt"}, image="digest-e2e:t")


    @workflow
    def command_wf(word: str) -> Any:
        return cmd_step(word=word)
''')


def _reused(cli: CLI, run_id: str) -> bool:
    (act,) = _activities(cli, run_id)
    return any(d.kind == "reused" for d in act.detours)


def test_an_image_rebuilt_under_the_same_tag_is_never_reused(cli: CLI, tmp_path: Path) -> None:
    setting = docker_setting()
    (cli.cwd / "skyweave.toml").write_text(f'container = "{setting}"\n')
    first = _build(setting, "digest-e2e:t", "skyweave:local", "1", tmp_path / "ctx")
    (cli.cwd / "wf.py").write_text(IMAGE_TASKS.replace("VERSION", "1"))

    def run(workflow: str) -> dict[str, Any]:
        out: dict[str, Any] = cli("run", f"wf.py:{workflow}", "--param", "word=hi", "--executor", setting,
                                  "--json").ok().json()
        assert out["status"] == "succeeded", out
        return out

    # the same tag and content: reused (so the check below can see a reuse)
    a, b = run("python_wf"), run("python_wf")
    assert not _reused(cli, a["run_id"]) and _reused(cli, b["run_id"])
    c1 = run("command_wf")
    (act_a,), (act_c1,) = _activities(cli, a["run_id"]), _activities(cli, c1["run_id"])
    assert act_a.image_digest == act_c1.image_digest == first

    second = _build(setting, "digest-e2e:t", "skyweave:local", "2", tmp_path / "ctx")
    assert second != first
    # a Python task without version=: a new version of its own, run again in the new content
    c = run("python_wf")
    assert not _reused(cli, c["run_id"])
    (act_c,) = _activities(cli, c["run_id"])
    assert act_c.image_digest == second and act_c.task_version != act_a.task_version
    assert act_c.cache_key != act_a.cache_key
    # an explicit version: refused until bumped, then run again, not reused
    refused = cli("run", "wf.py:command_wf", "--param", "word=hi", "--executor", setting)
    assert refused.code == 2 and "already registered with different code" in flat(refused.err)
    (cli.cwd / "wf.py").write_text(IMAGE_TASKS.replace("VERSION", "2"))
    c2 = run("command_wf")
    assert not _reused(cli, c2["run_id"])
    (act_c2,) = _activities(cli, c2["run_id"])
    assert act_c2.image_digest == second and act_c2.cache_key != act_c1.cache_key
    versions = {(t["name"], t["version"]): t["image_digest"] for t in cli.json("tasks", "list")}
    assert sorted(versions.values()) == sorted([first, first, second, second])
