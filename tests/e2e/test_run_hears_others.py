"""`skyweave run` is the store's controller while it runs: requests from other processes reach it,
and a second engine on the same store is refused cleanly."""

from __future__ import annotations

from tests.e2e.helpers import CLI, WORKFLOWS, poll, stop

PARKING = WORKFLOWS / "parking.py"


def test_products_added_elsewhere_wake_a_parked_activity_of_skyweave_run(cli: CLI) -> None:
    proc = cli.popen("run", f"{PARKING}:wait_long", "--param", "obs_id=obs9", "--json",
                     log=cli.cwd / "run.log")
    try:
        def parked() -> bool:
            runs = cli.json("runs")
            if not runs:
                return False
            acts = cli.status(runs[0]["run_id"])["activities_detail"]
            return bool(acts) and acts[0]["state"] == "parked"

        poll(parked, deadline=30, what="the activity to park")
        # a second engine on this store is refused with one clear message, and exits
        res = cli("resume", timeout=30)
        assert res.code == 5, res.err
        assert "another controller" in res.err
        assert "Traceback" not in res.err

        attitude = cli.cwd / "att.txt"
        attitude.write_text("ra=1 dec=2\n")
        cli.json("products", "add", str(attitude), "--type", "e2e.aux.attitude", "--obs-id", "obs9")
        assert proc.wait(timeout=30) == 0, (cli.cwd / "run.log").read_text()
    finally:
        stop(proc)
    run_id = cli.json("runs")[0]["run_id"]
    assert cli.status(run_id)["status"] == "succeeded"
