"""``skyweave workflows register|list|show`` and ``skyweave run/submit NAME@VERSION`` as a user
types them: the run uses the registered snapshot after the file changed, and mistakes (another
code under a registered version, an unknown version, a bad name) end with one clear message."""

from __future__ import annotations

from pathlib import Path

from .helpers import CLI, flat

FLOW = """
from skyweave import task, workflow

FACTOR = {factor}


@task
def scale(x: int) -> int:
    return x * FACTOR


@workflow
def scaling(x: int = 1) -> int:
    return scale(x=x)
"""


def test_register_list_show_and_run_by_name_and_version(tmp_path: Path) -> None:
    cli = CLI(tmp_path, tmp_path / "store")
    flow = tmp_path / "flow.py"
    flow.write_text(FLOW.format(factor=2))
    one = cli.json("workflows", "register", "flow.py:scaling", "--version", "1")
    assert (one["name"], one["version"], one["new"]) == ("scaling", "1", True)
    flow.write_text(FLOW.format(factor=3))
    said = cli("workflows", "register", "flow.py:scaling", "--version", "2").ok().out
    assert "registered scaling@2" in flat(said) and "skyweave submit scaling@2" in flat(said)

    conflict = cli("workflows", "register", "flow.py:scaling", "--version", "1")
    assert conflict.code != 0 and "already registered with different code" in flat(conflict.err)
    assert [(w["name"], w["version"]) for w in cli.json("workflows", "list")] == [("scaling", "1"), ("scaling", "2")]
    assert "FACTOR = 2" in cli.json("workflows", "show", "scaling@1")["source"]

    flow.unlink()
    ran = cli.json("run", "scaling@1", "--param", "x=5", "--executor", "threads", "--workers", "1")
    assert ran["status"] == "succeeded"
    submitted = cli.json("submit", "scaling", "--version", "2", "--param", "x=1")
    assert submitted["status"] == "submitted"

    unknown = cli("submit", "scaling@7")
    assert unknown.code == 3 and "registered versions of 'scaling': scaling@1, scaling@2" in flat(unknown.err)
    bad = cli("workflows", "register", "anything.py:scaling", "--name", "../etc")
    assert bad.code == 2 and "is not a workflow name" in flat(bad.err)
