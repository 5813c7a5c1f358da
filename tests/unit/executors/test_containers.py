"""The container engine's settings and command lines (``executors/containers.py``), without an
engine: what a task's resources become (``--cpus``, ``--memory``, ``--gpus``), what is mounted
where, and settings that are refused with what to do.  Runs on a real daemon: the contract suite
(``docker``), tests/e2e/test_image_tasks_cli.py, tests/pipelines/test_in_containers.py."""

from __future__ import annotations

import os

import pytest

from skyweave.executors import executor_key, open_executor
from skyweave.executors.base import ExecutionEnv
from skyweave.executors.container import ContainerExecutor
from skyweave.executors.containers import ContainerError, ContainerRuntime, container_name, kernel_memory_mb
from skyweave.model.specs import Resources, TaskSpec


def test_a_setting_names_the_engine_and_its_options() -> None:
    plain = ContainerRuntime.parse("docker")
    assert (plain.engine, plain.client, plain.image, plain.pid_host) == ("docker", ["docker"], "", False)
    full = ContainerRuntime.parse("podman://?host=unix:///run/p.sock&binary=/opt/podman&image=sw:1"
                                  "&network=none&pid=host&mount=/data&mount=/cal")
    assert full.client == ["/opt/podman", "--url", "unix:///run/p.sock"]
    assert (full.image, full.network, full.pid_host, full.mounts) == ("sw:1", "none", True, ("/data", "/cal"))
    assert ContainerRuntime.parse("docker://?host=tcp://h:2375").client == ["docker", "-H", "tcp://h:2375"]
    assert executor_key("docker://?host=x") == "docker"


@pytest.mark.parametrize(("setting", "message"), [
    ("kubernetes", "names no container engine"),
    ("docker://?imgae=x", "unknown container option(s) imgae"),
])
def test_a_bad_setting_is_refused_with_what_to_write(setting: str, message: str) -> None:
    with pytest.raises(ContainerError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        ContainerRuntime.parse(setting)
    assert caught.value.hint


def test_resources_map_to_cpus_memory_and_gpus() -> None:
    runtime = ContainerRuntime.parse("docker://?network=none&mount=/shared")
    argv = runtime.run_argv("skyweave-act-1-2", "sha256:abc", ["echo", "hi"],
                            mounts=[("/store/work", False), ("/raw/a.fits", True), ("/store/work", False)],
                            resources=Resources(cpus=2.5, memory_mb=300, gpus=1), workdir="/store/work",
                            env={"SKYWEAVE_ATTEMPT": "2"})
    line = " ".join(argv)
    assert argv[:4] == ["docker", "run", "--name", "skyweave-act-1-2"]
    assert f"--user {os.getuid()}:{os.getgid()}" in line and "--network none" in line
    assert "--cpus 2.5 --memory 300m --memory-swap 300m --gpus 1" in line
    assert line.count("-v /store/work:/store/work ") == 1               # each path mounted once
    assert "-v /raw/a.fits:/raw/a.fits:ro" in line and "-v /shared:/shared " in line
    assert "-w /store/work" in line and "-e SKYWEAVE_ATTEMPT=2" in line
    assert argv[-3:] == ["sha256:abc", "echo", "hi"]                  # the image by digest, then the command
    headroom = runtime.run_argv("n", "i", [], mounts=[], resources=Resources(memory_mb=1000),
                                memory_headroom=True)
    assert f"--memory {kernel_memory_mb(1000)}m" in " ".join(headroom) and kernel_memory_mb(1000) == 1250
    assert "--gpus" not in " ".join(headroom)


def test_the_executor_is_registered_and_names_its_containers(env: ExecutionEnv) -> None:
    made = open_executor("podman://?image=sw:1", env, slots=3)
    assert isinstance(made, ContainerExecutor)
    assert (made.name, made.slots, made.env.container) == ("podman", 3, "podman://?image=sw:1")
    assert container_name("act-x", 3) == "skyweave-act-x-3"


def test_pinning_an_image_needs_an_engine_that_has_it(tmp_path: os.PathLike[str]) -> None:
    runtime = ContainerRuntime.parse(f"docker://?binary={tmp_path}/missing-docker")
    from skyweave.executors.containers import pin_image

    plain = TaskSpec(name="t", version="1")
    assert pin_image(plain, runtime) is plain                          # no image: nothing to resolve
    with pytest.raises(ContainerError, match="cannot run") as caught:
        pin_image(TaskSpec(name="t", version="1", image="x:1"), runtime)
    assert "scripts/services.sh start docker" in (caught.value.hint or "")
