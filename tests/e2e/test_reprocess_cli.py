"""`skyweave reprocess --dry-run` then `skyweave reprocess` through the CLI."""

from __future__ import annotations

from skyweave.storage.local import LocalStorage
from tests.e2e.helpers import CLI


def test_reprocess_after_a_tampered_output(cli: CLI) -> None:
    import skyweave.examples.mini_xray as mini

    run_id = cli.json("run", f"{mini.__file__}:observation", "--param", "seed=4")["run_id"]
    quiet = cli.json("reprocess", "--run", run_id, "--dry-run")
    assert quiet["rerun"] == 0
    events = next(p for p in cli.json("products", "list", "--run", run_id) if p["type"] == "demo.l1.events")
    LocalStorage.local_path(events["uri"]).write_text("{}")
    plan = cli.json("reprocess", "--run", run_id, "--dry-run")
    assert sorted(a["task"] for a in plan["activities"] if a["action"] == "rerun") == [
        "calibrate", "decode_events", "detect_sources", "merge_counts"]
    done = cli.json("reprocess", "--run", run_id)
    (new,) = done["runs"]
    assert new["status"] == "succeeded"
    assert new["ran"] == 1, "only the tampered decode ran: its output came out as before"
    bad = cli("reprocess", "--dry-run")
    assert bad.code == 2
    assert "give one of --run, --product or --task" in bad.err
