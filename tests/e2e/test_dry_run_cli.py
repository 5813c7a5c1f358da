"""`skyweave run --dry-run` says what would be reused and what would run, and why, and runs nothing;
a plain path to raw data gets a warning naming the parameter (issue 11, points 1 and 3)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

from skyweave.store import open_store

from .helpers import CLI, flat

PIPELINE = textwrap.dedent('''
    from pathlib import Path
    from typing import Any

    from skyweave import File, Folder, task, workflow


    @task(version="1")
    def find(raw_dir: Folder) -> list[File]:
        return raw_dir.files()


    @task(version="1")
    def size(raw: File) -> int:
        return len(Path(raw).read_text())


    @task(version="1")
    def total(sizes: list[int]) -> int:
        return sum(sizes)


    @workflow
    def reduce(raw_dir: Folder) -> Any:
        return total(sizes=size.map(raw=find(raw_dir=raw_dir)))


    @task(version="1")
    def peek(path: str) -> int:
        return len(Path(path).read_text())


    @workflow
    def careless(path: str) -> Any:
        return peek(path=path)
''')


def test_dry_run_says_what_would_run_and_why_and_runs_nothing(cli: CLI, tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(PIPELINE)
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("a.txt", "b.txt"):
        (raw / name).write_text(name * 3)
    target = ["run", "pipe.py:reduce", "--param", "raw_dir=raw"]

    first = cli.json(*target, "--dry-run")
    assert first["counts"] == {"run": 1, "later": 2}
    store = open_store(str(cli.store))
    try:
        assert store.list_runs() == [] and store.list_tasks() == [], "a dry run runs nothing"
    finally:
        store.close()

    cli(*target).ok()
    again = cli(*target, "--dry-run").ok()
    assert "nothing was run" in flat(again.out) and "would: 4 reuse" in flat(again.out)

    (raw / "c.txt").write_text("new")
    st = (raw / "a.txt").stat()
    (raw / "a.txt").write_text("edited")
    os.utime(raw / "a.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    plan = cli.json(*target, "--dry-run")
    steps = {s["step"]: s for s in plan["steps"]}
    assert steps["find"]["action"] == "run"
    assert steps["find"]["reasons"] == [f"input 'raw_dir': folder {raw.resolve()} changed or is new"]
    assert steps["size"]["action"] == steps["total"]["action"] == "later"


def test_a_plain_path_to_existing_data_warns_at_submission(cli: CLI, tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(PIPELINE)
    (tmp_path / "scan02.fits").write_text("raw")
    result = cli("run", "pipe.py:careless", "--param", "path=scan02.fits").ok()
    assert "parameter 'path' of task 'peek' names an existing file ('scan02.fits')" in flat(result.err)
    assert "skyweave.File('scan02.fits')" in flat(result.err)
