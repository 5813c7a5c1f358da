"""Everyday use of results: ``status`` and ``logs`` of the newest run by default, start and end
times per activity, ``products export`` to a folder of the user's."""

from __future__ import annotations

from pathlib import Path

from .helpers import CLI, WORKFLOWS, flat

BASIC = WORKFLOWS / "basic.py"


def test_status_and_logs_look_at_the_newest_run_by_default(cli: CLI) -> None:
    res = cli("status")
    assert res.code == 3 and "has no runs yet" in flat(res.err) and "skyweave run" in res.err
    older = cli("run", f"{BASIC}:failing", "--json").json()["run_id"]
    newest = cli("run", f"{BASIC}:simple", "--param", "n=2", "--json").ok().json()["run_id"]
    assert older != newest
    status = cli.json("status")
    assert status["run_id"] == newest
    for act in status["activities_detail"]:
        assert act["started_at"] is not None and act["ended_at"] is not None
        assert act["started_at"] <= act["ended_at"]
    table = cli("status").ok().out
    assert newest in table and "started" in table and "ended" in table
    logs = cli("logs").ok().out
    assert "hello from shout 0" in logs and "hello from shout 1" in logs   # every activity of the run
    assert "boom-7" not in logs                                             # not the older run's
    assert "boom-7: the detector is on fire" in cli("logs", older).ok().out


def test_products_export_copies_or_links_a_runs_files_and_never_overwrites(cli: CLI, tmp_path: Path) -> None:
    run_id = cli("run", f"{BASIC}:simple", "--param", "n=3", "--json").ok().json()["run_id"]
    out = tmp_path / "results"
    exported = cli.json("products", "export", "--run", run_id, "--to", str(out))
    assert sorted(Path(e["path"]).name for e in exported["exported"]) == ["item0.txt", "item1.txt", "item2.txt"]
    assert {e["action"] for e in exported["exported"]} == {"copied"}
    assert (out / "item2.txt").read_text() == "item 2\n"
    listed = cli.json("products", "list", "--run", run_id)
    assert {p["uri"] for p in listed} == {e["uri"] for e in exported["exported"]}  # full URIs, never cut
    again = cli("products", "export", "--run", run_id, "--to", str(out)).ok().out
    assert "3 product(s) in" in again and "(0 copied now)" in again

    one = listed[0]["id"]
    links = tmp_path / "links"
    cli("products", "export", one, "--to", str(links), "--link").ok()
    (link,) = links.iterdir()
    assert link.is_symlink() and link.read_text().startswith("item ")

    (out / "item0.txt").write_text("my edit")
    res = cli("products", "export", "--run", run_id, "--to", str(out))
    assert res.code == 1 and "names already taken" in res.err and "nothing was written" in flat(res.err)
    assert (out / "item0.txt").read_text() == "my edit"

    res = cli("products", "export", one, "--run", run_id, "--to", str(out))
    assert res.code == 2 and "either products by id or the products of one run" in res.err
