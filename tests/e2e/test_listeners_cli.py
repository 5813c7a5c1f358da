"""`skyweave run` with listeners, through the installed script: a listener that never returns
neither delays the others nor holds the command at exit beyond ``listener_drain_s``, and what it
missed is said."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

from tests.e2e.helpers import cli_env, installed_skyweave

LISTENERS = textwrap.dedent('''
    import threading
    from pathlib import Path
    from skyweave.listeners import listener

    @listener("run.*")
    def stuck(topic, event, ctx):
        threading.Event().wait()  # never returns

    @listener("run.succeeded", "activity.succeeded")
    def quick(topic, event, ctx):
        with Path("quick.log").open("a") as fh:
            fh.write(f"{topic} {event.run_id}\\n")
''')

FLOW = textwrap.dedent('''
    from typing import Any
    from skyweave import task, workflow

    @task(version="1")
    def one(x: int) -> int:
        return x + 1

    @workflow
    def flow(x: int = 1) -> Any:
        return one(x=one(x=x))
''')


def test_a_stuck_listener_does_not_hold_skyweave_run_and_its_misses_are_said(tmp_path: Path) -> None:
    (tmp_path / "alerts.py").write_text(LISTENERS)
    (tmp_path / "flow.py").write_text(FLOW)
    (tmp_path / "skyweave.toml").write_text(
        'listeners = ["alerts:stuck", "alerts:quick"]\nlistener_drain_s = 3\nexecutor = "threads"\n')
    proc = subprocess.run([str(installed_skyweave()), "run", "flow.py:flow", "--store", str(tmp_path / "st")],
                          cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.split()[1]
    assert (tmp_path / "quick.log").read_text().splitlines() == [
        f"activity.succeeded {run_id}", f"activity.succeeded {run_id}", f"run.succeeded {run_id}"]
    assert "listener stuck was still handling run.running after 3 s" in proc.stderr
    assert "1 event(s) not delivered (run.succeeded x1)" in proc.stderr
