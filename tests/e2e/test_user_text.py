"""User text is printed as it is: paths, parameters and names holding rich markup (``[/]``,
``[bold]``) neither crash the CLI nor lose characters (issue 11, point 13)."""

from __future__ import annotations

import shutil
from pathlib import Path

from .helpers import CLI, WORKFLOWS, Result, flat

OBS = "obs[bold]1[/]"


def readable(res: Result, *fragments: str) -> str:
    res.ok()
    assert "Traceback" not in res.out + res.err and "MarkupError" not in res.out + res.err
    text = flat(res.out)
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in:\n{res.out}"
    return text


def test_paths_and_names_with_markup_print_as_they_are(tmp_path: Path) -> None:
    folder = tmp_path / "pipe[" / "]line [red]x"  # the path holds "[/]"
    folder.mkdir(parents=True)
    shutil.copy(WORKFLOWS / "basic.py", folder / "wf.py")
    store = tmp_path / "st[/]ore"
    cli = CLI(tmp_path, store)

    run = readable(cli("run", f"{folder / 'wf.py'}:simple", "-p", "n=1", "-p", f"obs_id={OBS}"),
                   f"store {store}")
    run_id = run.split("run ", 1)[1].split()[0]
    readable(cli("runs"), run_id)
    readable(cli("status", run_id), run_id, "write_product")
    product = cli.json("products", "list", "--run", run_id)[0]
    readable(cli("products", "list", "--run", run_id), OBS)
    readable(cli("products", "show", product["id"]), f"obs_id: {OBS}", product["uri"])
    readable(cli("lineage", product["id"]), f"{OBS} {product['id']}")

    missing = f"{folder / 'nope[/].py'}:simple"
    res = cli("run", missing)
    assert res.code != 0 and "Traceback" not in res.err and "MarkupError" not in res.err
    assert f"error: workflow file '{folder / 'nope[/].py'}' does not exist" in flat(res.err)
