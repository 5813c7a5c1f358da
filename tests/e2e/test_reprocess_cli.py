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


def test_a_deleted_product_is_recomputed_from_its_provenance(cli: CLI) -> None:
    import skyweave.examples.mini_xray as mini

    run_id = cli.json("run", f"{mini.__file__}:observation", "--param", "seed=6")["run_id"]
    events = next(p for p in cli.json("products", "list", "--run", run_id) if p["type"] == "demo.l2.events")
    path = LocalStorage.local_path(events["uri"])
    content = path.read_bytes()
    path.unlink()  # as cleanup would, then:
    cli("products", "pin", events["id"]).ok()  # (pinning does not bring it back)
    made = cli.json("products", "recompute", events["id"])
    assert made["status"] == "succeeded"
    (new_id,) = made["new"]
    new = next(p for p in cli.json("products", "list", "--state", "all") if p["id"] == new_id)
    assert LocalStorage.local_path(new["uri"]).read_bytes() == content, "same bytes as before"
    assert new["checksum"] == events["checksum"]
