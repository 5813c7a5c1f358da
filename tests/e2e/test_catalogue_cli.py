"""End to end: catalogue filters, pinning, retention (``skyweave cleanup``) and ``products show``
on a real run of the miniature X-ray pipeline, through the CLI as a subprocess."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from skyweave.examples import mini_xray

from .helpers import CLI, flat

OBSERVATION = f"{Path(mini_xray.__file__)}:observation"


def path_of(product: dict[str, object]) -> Path:
    return Path(unquote(urlparse(str(product["uri"])).path))


def test_pin_cleanup_and_show(cli: CLI) -> None:
    run_id = cli("run", OBSERVATION, "--param", "obs_id=obs77", "--json").ok().json()["run_id"]
    l1 = cli.json("products", "list", "--type", "demo.l1.events", "--run", run_id)
    l2 = cli.json("products", "list", "--type", "demo.l2.events", "--since", "1h", "--state", "available")
    assert len(l1) == len(l2) >= 3 and not any(p["pinned"] for p in l1 + l2)
    assert cli.json("products", "list", "--until", "2000-01-01") == []
    assert cli.json("products", "list", "--version", "9.9") == []

    final = sorted(l2, key=lambda p: str(p["detector"]))[0]  # one calibrated event list, kept
    cli("products", "pin", str(final["id"])).ok()
    assert [p["id"] for p in cli.json("products", "list", "--pinned")] == [final["id"]]
    made_from = next(p for p in l1 if p["detector"] == final["detector"])

    (cli.cwd / "skyweave.toml").write_text(
        '[[retention]]\ntype = "demo.l1.*"\nolder_than_days = 0\n')
    dry = cli.json("cleanup", "--dry-run")
    assert dry["dry_run"] is True and dry["result"] is None
    planned = {d["id"] for d in dry["plan"]["delete"]}
    assert planned == {p["id"] for p in l1} - {made_from["id"]}
    assert dry["plan"]["kept"] == [{"id": made_from["id"], "type": "demo.l1.events", "rule": 0,
                                    "reason": f"pinned product {final['id']} was made from it",
                                    "pinned_by": [final["id"]]}]
    assert dry["plan"]["totals"]["bytes"] == sum(p["size"] for p in l1 if p["id"] in planned)
    assert all(path_of(p).exists() for p in l1)  # the dry run deleted nothing
    assert cli.json("products", "list", "--state", "deleted") == []

    text = flat(cli("cleanup").ok().out)
    assert f"deleted {len(planned)} file(s)" in text
    assert all(not path_of(p).exists() for p in l1 if p["id"] in planned)
    assert path_of(made_from).exists() and path_of(final).exists()
    deleted = cli.json("products", "list", "--state", "deleted")
    assert {p["id"] for p in deleted} == planned
    assert len(cli.json("products", "list", "--state", "all")) == len(l1) + len(l2) + 1  # + attitude

    gone = deleted[0]
    show = cli.json("products", "show", str(gone["id"]))
    assert show["product"]["state"] == "deleted"
    assert show["activity"]["task"] == "decode_events@1.0"
    assert show["activity"]["parameters"]["detector"] == gone["detector"]
    assert show["recipe"]["argv"] == ["skyweave", "run", OBSERVATION, "--param", "obs_id=obs77",
                                      "--param", "seed=7"]
    human = flat(cli("products", "show", str(gone["id"])).ok().out)
    assert "to make it again:" in human and f"skyweave run {OBSERVATION}" in human

    calibrated = cli.json("products", "show", str(final["id"]))
    assert calibrated["product"]["pinned"] is True
    assert {u["role"]: u["state"] for u in calibrated["activity"]["inputs"]} == {
        "events": "available", "attitude": "available"}

    again = cli.json("cleanup")  # nothing left to do
    assert again["plan"]["totals"]["files"] == 0 and again["result"]["deleted"] == []


def test_catalogue_errors_are_clean(cli: CLI) -> None:
    for args, fragment, code in (
        (("products", "pin", "prd-nope"), "no product 'prd-nope'", 3),
        (("products", "show", "prd-nope"), "no product 'prd-nope'", 3),
        (("products", "list", "--since", "last tuesday"), "neither an ISO date nor an age", 2),
        (("products", "list", "--state", "gone"), "--state 'gone'", 2),
    ):
        res = cli(*args)
        assert res.code == code, (args, res.err)
        assert fragment in flat(res.err) and "Traceback" not in res.err
        assert res.err.count("error:") == 1
    (cli.cwd / "skyweave.toml").write_text('[[retention]]\ntype = "x"\nolder_than_dayz = 3\n')
    res = cli("cleanup", "--dry-run")
    assert res.code != 0 and "older_than" in flat(res.err) and "Traceback" not in res.err
    (cli.cwd / "skyweave.toml").unlink()
    res = cli("cleanup", "--dry-run").ok()
    assert "no retention rules" in flat(res.err)
