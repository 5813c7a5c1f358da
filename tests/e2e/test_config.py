"""Settings from skyweave.toml reach every part: user aspects (selected by task-name pattern) run
on the workers, user listeners run beside the controller."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.e2e.helpers import cli_env

ASPECT = textwrap.dedent('''
    from pathlib import Path
    from skyweave.aspects import Aspect

    class Marker(Aspect):
        name = "marker"

        def before(self, ctx):
            Path(ctx.extra.get("marker_dir", "{marks}")).mkdir(exist_ok=True)
            (Path("{marks}") / f"{{ctx.task.name}}-{{ctx.activity_id}}").write_text("before")

        def after(self, ctx, outcome):
            outcome.usage["marked"] = 1
''')

LISTENER = textwrap.dedent('''
    from pathlib import Path
    from skyweave.listeners import listener

    @listener("run.succeeded")
    def note(topic, event, ctx):
        Path("{out}").write_text(event.run_id)
''')

FLOW = textwrap.dedent('''
    from typing import Any
    from skyweave import task, workflow

    @task(version="1")
    def items(n: int) -> list[int]:
        return list(range(n))

    @task(version="1")
    def decode(x: int) -> int:
        return x

    @workflow
    def flow(n: int = 3) -> Any:
        return decode.map(x=items(n=n))
''')


def test_toml_settings_load_aspects_and_listeners(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    heard = tmp_path / "heard.txt"
    (tmp_path / "myaspects.py").write_text(ASPECT.format(marks=marks))
    (tmp_path / "mylisteners.py").write_text(LISTENER.format(out=heard))
    (tmp_path / "flow.py").write_text(FLOW)
    (tmp_path / "skyweave.toml").write_text(textwrap.dedent(f'''
        store = "{tmp_path / 'st'}"
        workers = 2
        aspects = ["myaspects:Marker?pattern=dec*"]
        listeners = ["{tmp_path / 'mylisteners.py'}:note"]
    '''))
    env = {**cli_env(), "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "skyweave.cli.main", "run", "flow.py:flow", "--json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["store"] == str(tmp_path / "st")
    marked = sorted(p.name.split("-")[0] for p in marks.iterdir())
    assert marked == ["decode", "decode", "decode"], "the aspect ran for decode only (pattern dec*)"
    status = subprocess.run([sys.executable, "-m", "skyweave.cli.main", "status", summary["run_id"], "--json"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(status.stdout)["status"] == "succeeded"
    assert heard.read_text() == summary["run_id"], "the listener heard the run succeed"
