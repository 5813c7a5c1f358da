"""The user documentation runs: every example in docs/ is executed, so the docs cannot drift.

Conventions in the Markdown pages (see docs/index.md, "About the examples"):

* every fenced ``python`` block must compile;
* a ``python`` (or ``yaml``, ``toml``) block whose first line is ``# file: NAME`` is written to NAME in the page's
  working directory when the reader reaches it (a later block with the same name replaces it);
* in a ``console`` block, each line starting with ``$ `` is a command; other lines are sample output
  and are ignored.  Commands run in order, in one fresh temporary directory per page, with
  ``--store`` pointing into it.  ``skyweave`` is the installed console script (``skyweave`` beside
  ``sys.executable``, the command users type) and ``python`` is ``sys.executable``; anything else
  runs under ``bash``;
* a command must exit 0, unless it ends with ``# exits N``;
* ``... &`` starts a command in the background (like a second terminal); ``wait`` waits for the
  background commands that end on their own (not ``controller``/``worker``) and checks they exit 0;
  background services are stopped at the end of the page;
* ``RUN_ID`` stands for the newest run, ``ACTIVITY_ID`` for an activity of it (a failed one if
  any, else one that wrote a log, else the first);
* a block preceded by ``<!-- test: skip -->`` is not run (its Python is still compiled);
* a page that needs a real service (``NEEDS``: e.g. ``sites.md`` the Slurm cluster of
  ``scripts/services.sh``) gets its URL in the environment as ``scripts/services.sh env`` exports
  it (``SKYWEAVE_TEST_SLURM_URL``), skipped when it is not running (failed under
  ``SKYWEAVE_REQUIRE_SERVICES``, as every test that needs a service); ``$NAME`` in a ``skyweave``
  command is taken from that environment, as the reader's shell would.

At the end of a page every run in its store must have finished, with the number of failed runs
listed in ``FAILED_RUNS``.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import string
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.services import VARIABLES, service_url

from .helpers import cli_env, installed_skyweave

DOCS = Path(__file__).resolve().parents[2] / "docs"
RUN_PAGES = ["index.md", "tutorial.md", "dynamic.md", "operations.md", "commands.md", "triggers.md",
             "sites.md"]
"""Pages whose files and commands are executed, in order."""
NEEDS = {"sites.md": ("slurm",)}
"""Pages whose commands need a real service (``tests/services.py``), by name."""
FAILED_RUNS = {"tutorial.md": 1, "dynamic.md": 1, "operations.md": 1}
"""How many runs each page fails on purpose (to show errors, retries and deadlines)."""
SERVICES = ("controller", "worker", "listen")
TERMINAL = {"succeeded", "failed", "cancelled"}


@dataclass
class Block:
    lang: str
    text: str
    line: int
    skip: bool = False


@dataclass
class Page:
    path: Path
    blocks: list[Block] = field(default_factory=list)


def parse(path: Path) -> Page:
    page = Page(path)
    lines = path.read_text().splitlines()
    i = 0
    previous = ""
    while i < len(lines):
        line = lines[i]
        fence = re.match(r"^```(\w*)\s*$", line)
        if fence is None:
            if line.strip():
                previous = line.strip()
            i += 1
            continue
        start = i + 1
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        page.blocks.append(Block(fence.group(1), "\n".join(body) + "\n", start,
                                 skip=previous == "<!-- test: skip -->"))
        previous = ""
        i += 1
    return page


def all_pages() -> list[Path]:
    return sorted(p for p in DOCS.glob("*.md") if p.name != "declarative.md")


@pytest.mark.parametrize("path", all_pages(), ids=lambda p: p.name)
def test_python_blocks_compile(path: Path) -> None:
    for block in parse(path).blocks:
        if block.lang == "python":
            compile(block.text, f"{path.name}:{block.line}", "exec")


class Session:
    """One page's working directory, store and background processes."""

    def __init__(self, page: Page, cwd: Path) -> None:
        self.page = page
        self.cwd = cwd
        self.store = cwd / ".skyweave"
        self.env = {**cli_env(), "SKYWEAVE_STORE": str(self.store)}
        self.env.update({VARIABLES[name]: service_url(name) for name in NEEDS.get(page.path.name, ())})
        self.background: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    # -- placeholders ----------------------------------------------------------------------------
    def _newest_run(self) -> str:
        from skyweave.store import open_store

        store = open_store(str(self.store))
        try:
            runs = store.list_runs(limit=1)
            assert runs, "RUN_ID used before any run exists"
            return runs[0].id
        finally:
            store.close()

    def _an_activity(self) -> str:
        from skyweave.store import open_store

        run_id = self._newest_run()
        store = open_store(str(self.store))
        try:
            acts = store.list_activities(run_id=run_id)
        finally:
            store.close()
        assert acts, f"ACTIVITY_ID used but run {run_id} has no activities"
        failed = [a for a in acts if a.state == "failed"]
        logged = [a for a in acts if any((self.store / "logs").glob(f"{a.id}.*.log"))]
        return (failed or logged or acts)[0].id

    def expand(self, command: str) -> str:
        if "RUN_ID" in command:
            command = command.replace("RUN_ID", self._newest_run())
        if "ACTIVITY_ID" in command:
            command = command.replace("ACTIVITY_ID", self._an_activity())
        words = [string.Template(word).safe_substitute(self.env) for word in shlex.split(command)]
        if words[0] == "skyweave":
            extra = [] if "--help" in words else ["--store", str(self.store)]
            words = [str(installed_skyweave()), *words[1:], *extra]
        elif words[0] == "python":
            words = [sys.executable, *words[1:]]
        else:
            return command
        return shlex.join(words)

    # -- running -----------------------------------------------------------------------------------
    def run(self, raw: str, where: str) -> None:
        command, _, comment = raw.partition("  # ")
        command = command.strip()
        expect = 0
        found = re.match(r"exits (\d+)", comment.strip())
        if found:
            expect = int(found.group(1))
        if command == "wait":
            self.wait(where)
            return
        if command.endswith("&"):
            command = command[:-1].strip()
            log = self.cwd / f".bg{len(self.background)}.log"
            with log.open("wb") as fh:
                proc = subprocess.Popen(["bash", "-c", self.expand(command)], cwd=self.cwd, env=self.env,
                                        stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
            self.background.append((command, proc, log))
            if command.split()[:2][-1] in SERVICES:
                time.sleep(0.3)  # let the service take its lease before the next command
            return
        proc2 = subprocess.run(["bash", "-c", self.expand(command)], cwd=self.cwd, env=self.env,
                               capture_output=True, text=True, timeout=90, check=False)
        assert proc2.returncode == expect, (
            f"{where}: `{command}` exited {proc2.returncode}, the docs say {expect}\n"
            f"stdout:\n{proc2.stdout}\nstderr:\n{proc2.stderr}")

    def wait(self, where: str) -> None:
        for command, proc, log in self.background:
            if command.split()[:2][-1] in SERVICES:
                continue
            code = proc.wait(timeout=90)
            assert code == 0, f"{where}: background `{command}` exited {code}\n{log.read_text()}"

    def finish(self) -> None:
        """Every run ends (services still up), then the services stop."""
        from skyweave.store import open_store

        try:
            deadline = time.monotonic() + 30
            while True:
                store = open_store(str(self.store))
                try:
                    runs = store.list_runs(limit=1000)
                finally:
                    store.close()
                open_runs = [r.id for r in runs if r.state not in TERMINAL]
                if not open_runs or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert not open_runs, f"{self.page.path.name}: runs never finished: {open_runs}\n{self.logs()}"
            failed = [r.id for r in runs if r.state != "succeeded"]
            assert len(failed) == FAILED_RUNS.get(self.page.path.name, 0), (
                f"{self.page.path.name}: runs not succeeded: {failed}\n{self.logs()}")
        finally:
            self.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {c}\n{log.read_text(errors='replace')[-3000:]}"
                         for c, _, log in self.background if log.exists())

    def stop(self) -> None:
        for _, proc, _ in self.background:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)


@pytest.mark.parametrize("name", RUN_PAGES)
def test_page_runs(name: str, tmp_path: Path) -> None:
    page = parse(DOCS / name)
    session = Session(page, tmp_path)
    ran = 0
    try:
        for block in page.blocks:
            if block.skip:
                continue
            first = block.text.split("\n", 1)[0]
            if block.lang in ("python", "yaml", "toml") and first.startswith("# file: "):
                target = tmp_path / first.removeprefix("# file: ").strip()
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(block.text)
            elif block.lang == "console":
                for offset, line in enumerate(block.text.splitlines(), start=1):
                    if line.startswith("$ "):
                        session.run(line[2:], f"{name}:{block.line + offset - 1}")
                        ran += 1
    except BaseException:
        session.stop()
        raise
    session.finish()
    assert ran, f"{name} has no commands to run"
