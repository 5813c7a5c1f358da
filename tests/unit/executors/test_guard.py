"""The guard a container's launcher runs under (``executors/guard.py``): when the worker that holds
its pipe dies, the launcher is killed and its container removed by name; otherwise the launcher's
exit status passes through unchanged.  A fake ``docker`` client (a script logging its arguments)
stands in for the engine here; tests/e2e/test_orphans.py kills a real worker on a real daemon."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from skyweave.executors.base import ExecutionEnv
from skyweave.executors.container import ContainerExecutor
from skyweave.executors.guard import guard_argv

from .helpers import by_path, dispatch


def _guarded(cleanup: list[str], command: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(guard_argv(cleanup, command), stdin=subprocess.PIPE, start_new_session=True)


def test_the_commands_exit_status_passes_through() -> None:
    with _guarded([], ["sh", "-c", "exit 7"]) as ok:
        assert ok.wait(timeout=30) == 7
    with _guarded([], ["sh", "-c", "kill -9 $$"]) as killed:
        assert killed.wait(timeout=30) == -signal.SIGKILL


def test_a_hang_up_kills_the_command_then_runs_the_cleanup(tmp_path: Path) -> None:
    pid_file, cleaned = tmp_path / "pid", tmp_path / "cleaned"
    proc = _guarded(["sh", "-c", f"cat {pid_file} > {cleaned}"],
                    ["sh", "-c", f"echo $$ > {pid_file}; exec sleep 300"])
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert proc.poll() is None
        time.sleep(0.01)
    assert proc.stdin is not None
    proc.stdin.close()  # what the worker's death does to the pipe
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert cleaned.read_text() == pid_file.read_text()  # the cleanup ran, after the command started
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)  # and the command is gone


def test_a_guard_refuses_a_cleanup_it_could_not_tell_from_the_command() -> None:
    with pytest.raises(ValueError, match="cannot contain '--'"):
        guard_argv(["rm", "--", "x"], ["true"])


@pytest.fixture
def fake_docker(tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "docker.log"
    script = tmp_path / "docker"
    script.write_text("#!/bin/sh\n"
                      f'echo "$*" >> {log}\n'
                      'case "$1" in\n'
                      "  image) echo sha256:" + "0" * 64 + " ;;\n"
                      "  run) exec sleep 300 ;;\n"
                      "esac\n")
    script.chmod(0o755)
    return script, log


def test_a_dead_workers_container_is_removed_by_name(env: ExecutionEnv, fake_docker: tuple[Path, Path]) -> None:
    binary, log = fake_docker
    executor = ContainerExecutor(f"docker://?binary={binary}&image=sw:1", env, processes=1)
    executor.start()
    d = dispatch(by_path("noop"))
    executor.submit([d])
    (running,) = executor._running.values()
    name = f"skyweave-{d.activity_id}-1"
    while f"--name {name}" not in (log.read_text() if log.exists() else ""):
        assert running.process.poll() is None
        time.sleep(0.01)
    assert running.process.stdin is not None
    running.process.stdin.close()  # the worker dies: its end of every guard's pipe closes
    assert running.process.wait(timeout=30) == -signal.SIGKILL
    assert log.read_text().splitlines()[-1] == f"rm -f {name}"
    executor.close()


def test_a_later_attempt_first_removes_the_earlier_attempts_containers(
        env: ExecutionEnv, fake_docker: tuple[Path, Path]) -> None:
    binary, log = fake_docker
    executor = ContainerExecutor(f"docker://?binary={binary}&image=sw:1", env, processes=1)
    d = dispatch(by_path("noop"), attempt=3)
    argv = executor._command(d, env.work_root / "j.job.json", env.work_root / "j.outcome.json",
                             env.work_root / "j.started")
    assert f"rm -f skyweave-{d.activity_id}-1 skyweave-{d.activity_id}-2" in log.read_text().splitlines()
    cleanup = argv[argv.index("-S") + 2:argv.index("--")]
    assert cleanup == [str(binary), "rm", "-f", f"skyweave-{d.activity_id}-3"]
    first = dispatch(by_path("noop"))
    executor._command(first, env.work_root / "k.job.json", env.work_root / "k.outcome.json",
                      env.work_root / "k.started")
    assert sum(line.startswith("rm") for line in log.read_text().splitlines()) == 1  # attempt 1: nothing to remove
