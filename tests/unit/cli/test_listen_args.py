"""`skyweave listen` refuses what it cannot do, saying what to type instead (and never opens a bus)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from skyweave.cli.main import app


def _listen(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["listen", *args, "--bus", f"sqlite:///{tmp_path / 'bus.db'}"])
    return result.exit_code, " ".join(result.output.split())


def test_listen_needs_exactly_one_handler_and_a_group_of_its_own(tmp_path: Path) -> None:
    code, out = _listen(tmp_path, "run.*")
    assert code != 0 and "give either --exec CMD or a Python listener" in out
    code, out = _listen(tmp_path, "run.*", "x.py:f", "--exec", "true")
    assert code != 0 and "not both or none" in out
    code, out = _listen(tmp_path, "run.*", "--exec", "true", "--group", "controller")
    assert code != 0 and "--group NAME" in out
    code, out = _listen(tmp_path, " , ", "--exec", "true")
    assert code != 0 and "no topic pattern" in out
    assert not (tmp_path / "bus.db").exists()
