"""A script or notebook that never calls ``Client.close()`` still exits: the engine is stopped by an
exit hook before multiprocessing joins the worker processes (it used to wait for them forever)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent('''
    from skyweave import Client, task, workflow

    @task(version="1")
    def double(x: int) -> int:
        return 2 * x

    @workflow
    def flow(x: int = 21) -> int:
        return double(x=x)

    def forgotten(store):
        Client(store, workers=1)          # dropped without close(): its engine keeps running

    if __name__ == "__main__":
        forgotten("st-dropped")
        client = Client("st-kept", workers=2)
        print(client.run(flow, {"x": 21}, timeout=60).results())
''')


def test_a_script_that_never_closes_its_client_exits(tmp_path: Path) -> None:
    (tmp_path / "script.py").write_text(SCRIPT)
    done = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "42"
