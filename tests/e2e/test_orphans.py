"""A ``skyweave worker`` killed with -9 leaves nothing running that it started: its activity's
process (``subprocess`` executor), its container (docker, podman) or its Slurm job is stopped, the activity runs again on another worker, and it
runs to its end exactly once — counted by the task itself in a ledger (``workflows/once.py``)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from tests.e2e.chaos import Chaos, read_ledger
from tests.e2e.helpers import CLI, poll
from tests.services import DOCKER_BIN, docker_image, docker_setting, podman_image, podman_setting, service_url

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _engine(engine: str, mount: str) -> tuple[str, list[str]]:
    """The executor setting for the test daemon of ``engine`` and its client's command line."""
    if engine == "docker":
        return docker_setting(mount=mount), [DOCKER_BIN, "-H", docker_image("skyweave:local")]
    return podman_setting(mount=mount), [podman_image("skyweave:local")]


def _containers(client: list[str], name: str) -> list[str]:
    done = subprocess.run([*client, "ps", "-a", "--filter", f"name=^{name}$", "--format", "{{.Names}}"],
                          capture_output=True, text=True, check=True)
    return done.stdout.split()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")


def test_kill_9_of_a_subprocess_worker_stops_its_activity_process_and_the_activity_runs_once(cli: CLI) -> None:
    chaos = Chaos(cli, heartbeat_s=0.2, worker_timeout_s=1.0, slots=1, env={"SKYWEAVE_EXECUTOR": "subprocess"})
    try:
        chaos.start_controller()
        first = chaos.start_worker()
        run_id = chaos.submit(1, 8.0)
        chaos.wait_for_starts(1)
        ((aid, (execution,)),) = read_ledger(chaos.ledger).items()
        chaos.kill_worker(first)
        poll(lambda: not _alive(execution.pid), deadline=30, interval=0.1,
             what=f"the dead worker's activity process {execution.pid} to stop")
        chaos.start_worker()
        assert chaos.wait_for_end(run_id, deadline=120) == "succeeded", chaos.logs()
    finally:
        chaos.close()
    runs = read_ledger(chaos.ledger)[aid]
    assert [e.attempt for e in runs] == [1, 2], runs
    assert [e.ended is not None for e in runs] == [False, True], "attempt 1 died with its worker"


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_kill_9_of_a_container_worker_removes_its_container_and_the_activity_runs_once(
        cli: CLI, engine: str) -> None:
    setting, client = _engine(engine, str(cli.cwd))  # the ledger is written from inside the container
    chaos = Chaos(cli, heartbeat_s=0.2, worker_timeout_s=1.0, slots=1, env={"SKYWEAVE_EXECUTOR": setting})
    try:
        chaos.start_controller()
        first = chaos.start_worker()
        run_id = chaos.submit(1, 8.0)
        chaos.wait_for_starts(1)
        (aid,) = read_ledger(chaos.ledger)
        name = f"skyweave-{aid}-1"
        assert _containers(client, name) == [name]
        chaos.kill_worker(first)
        poll(lambda: not _containers(client, name), deadline=30, interval=0.1,
             what=f"the dead worker's container {name} to be removed")
        chaos.start_worker()
        assert chaos.wait_for_end(run_id, deadline=120) == "succeeded", chaos.logs()
    finally:
        chaos.close()
    runs = read_ledger(chaos.ledger)[aid]
    assert [e.attempt for e in runs] == [1, 2], runs
    assert [e.ended is not None for e in runs] == [False, True], "attempt 1 died with its worker"


def test_kill_9_of_a_slurm_worker_cancels_its_job_and_the_activity_runs_once(cli: CLI) -> None:
    setting = service_url("slurm") + "&poll_s=0.5"
    conf = {**os.environ, "SLURM_CONF": parse_qs(setting.partition("?")[2])["conf"][0]}
    chaos = Chaos(cli, heartbeat_s=0.2, worker_timeout_s=1.0, slots=1, env={"SKYWEAVE_EXECUTOR": setting})
    try:
        chaos.start_controller()
        first = chaos.start_worker()
        run_id = chaos.submit(1, 8.0)
        chaos.wait_for_starts(1)
        (aid,) = read_ledger(chaos.ledger)
        chaos.kill_worker(first)
        chaos.start_worker()
        assert chaos.wait_for_end(run_id, deadline=120) == "succeeded", chaos.logs()
        states = subprocess.run(["squeue", "--noheader", "--array", "--states=all", "--format=%T|%o"],
                                env=conf, capture_output=True, text=True, check=True).stdout.splitlines()
    finally:
        chaos.close()
    runs = read_ledger(chaos.ledger)[aid]
    assert [e.attempt for e in runs] == [1, 2], runs
    assert [e.ended is not None for e in runs] == [False, True], "attempt 1's job was cancelled"
    first_job = [s.partition("|")[0] for s in states
                 if f"skyweave-activity 0 {aid} 1\n" in _read(s.partition("|")[2])]
    assert first_job == ["CANCELLED"], states


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
