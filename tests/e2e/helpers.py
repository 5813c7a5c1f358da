"""Helpers for the end-to-end tests: run the ``skyweave`` CLI as a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

WORKFLOWS = Path(__file__).parent / "workflows"
T = TypeVar("T")


def cli_env() -> dict[str, str]:
    """The environment for a CLI subprocess: no inherited SKYWEAVE_* settings, wide, colourless."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYWEAVE_")}
    env.update({"COLUMNS": "2000", "NO_COLOR": "1", "TERM": "dumb", "PYTHONUNBUFFERED": "1"})
    return env


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "skyweave.cli.main", *args]


def installed_skyweave() -> Path:
    """The ``skyweave`` console script of this environment, the command users type (unlike
    ``python -m skyweave.cli.main``, it does not put the current directory on ``sys.path``)."""
    script = Path(sys.executable).parent / "skyweave"
    assert script.is_file(), f"no installed skyweave script beside {sys.executable}: run `make dev` (pip install -e .)"
    return script


def flat(text: str) -> str:
    """Collapse whitespace (rich may wrap long lines)."""
    return " ".join(text.split())


@dataclass
class Result:
    argv: list[str]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        try:
            return json.loads(self.out)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"not JSON from {self.argv}:\n{self.out}\nstderr:\n{self.err}") from exc

    def ok(self) -> Result:
        assert self.code == 0, f"{self.argv} exited {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}"
        return self


class CLI:
    """Runs ``skyweave`` against one store, with ``tmp_path`` as the working directory."""

    def __init__(self, cwd: Path, store: Path) -> None:
        self.cwd = cwd
        self.store = store

    def __call__(self, *args: str, store: bool = True, timeout: float = 60.0) -> Result:
        argv = cli_argv(*args, *(["--store", str(self.store)] if store else []))
        proc = subprocess.run(argv, cwd=self.cwd, env=cli_env(), capture_output=True, text=True,
                              timeout=timeout, check=False)
        return Result(argv, proc.returncode, proc.stdout, proc.stderr)

    def json(self, *args: str) -> Any:
        return self(*args, "--json").ok().json()

    def status(self, run_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self.json("status", run_id)
        return data

    def popen(self, *args: str, log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as fh:
            return subprocess.Popen(cli_argv(*args, "--store", str(self.store)), cwd=self.cwd, env=cli_env(),
                                    stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def poll(probe: Callable[[], T | None], *, deadline: float, what: str, interval: float = 0.2) -> T:
    """Call ``probe`` until it returns something truthy, or fail after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline} s waiting for {what}")
        time.sleep(interval)


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it does not exit in ``grace`` seconds."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(grace)


@contextmanager
def services(cli: CLI, slots: int = 2) -> Iterator[tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]]:
    """A ``skyweave controller`` and a ``skyweave worker`` on ``cli.store``, stopped on exit."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(cli.popen("controller", log=cli.cwd / "controller.log"))
        procs.append(cli.popen("worker", "--slots", str(slots), log=cli.cwd / "worker.log"))
        yield procs[0], procs[1]
    finally:
        for p in procs:
            stop(p)


def service_logs(cli: CLI) -> str:
    parts = []
    for name in ("controller.log", "worker.log"):
        path = cli.cwd / name
        if path.is_file():
            parts.append(f"--- {name}\n{path.read_text(errors='replace')[-4000:]}")
    return "\n".join(parts)
