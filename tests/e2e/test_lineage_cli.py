"""End-to-end: ``skyweave lineage`` and ``skyweave impact`` on a store filled by real runs of the
mini X-ray pipeline (``skyweave.examples.mini_xray:observation``), CLI as subprocesses.

The first run backtracks for the attitude file (the ``fetch_attitude`` provider makes it); the
second run, same observation with another seed, finds that attitude product and uses it: one
product used across two runs.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from skyweave.examples import mini_xray

from .helpers import CLI, flat

OBSERVATION = f"{Path(mini_xray.__file__)}:observation"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[CLI, list[str]]:
    """Two runs of the same observation on one store; returns the CLI and the run ids."""
    tmp = tmp_path_factory.mktemp("lineage")
    cli = CLI(tmp, tmp / "store")
    ids = [cli("run", OBSERVATION, "--param", f"seed={seed}", "--json", timeout=120).ok().json()["run_id"]
           for seed in (7, 8)]
    return cli, ids


def products(cli: CLI, **filters: str) -> list[dict[str, Any]]:
    args = [a for k, v in filters.items() for a in (f"--{k.replace('_', '-')}", v)]
    found: list[dict[str, Any]] = cli.json("products", "list", *args)
    return found


def final_product(cli: CLI, run_id: str) -> dict[str, Any]:
    return products(cli, type="demo.l2.events", run=run_id)[0]


def test_upstream_lineage_reaches_the_events_and_the_provider_made_attitude(runs: tuple[CLI, list[str]]
                                                                            ) -> None:
    cli, (first, _) = runs
    final = final_product(cli, first)
    graph = cli.json("lineage", final["id"], "--direction", "up")
    by_id = {p["id"]: p for p in graph["products"]}
    acts = {a["id"]: a for a in graph["activities"]}
    types = {p["type"]: p for p in graph["products"]}
    assert set(types) == {"demo.l2.events", "demo.l1.events", "demo.aux.attitude"}
    assert types["demo.l1.events"]["detector"] == final["detector"]
    assert {a["task_name"] for a in acts.values()} == {"calibrate", "decode_events", "fetch_attitude"}
    attitude = types["demo.aux.attitude"]
    assert acts[attitude["activity_id"]]["task_name"] == "fetch_attitude"  # made by the provider
    roles = {(e["kind"], e["role"], by_id[e["product_id"]]["type"]) for e in graph["edges"]}
    assert ("used", "attitude", "demo.aux.attitude") in roles
    assert ("used", "events", "demo.l1.events") in roles
    assert ("wasGeneratedBy", None, "demo.aux.attitude") in roles
    assert (graph["roots"], graph["depth"], graph["cycle_detected"]) == ([final["id"]], 2, False)

    tree = flat(cli("lineage", final["id"]).ok().out)
    for text in ("calibrate@1.0", "decode_events@1.0", "fetch_attitude@1.0", "attitude:", "events:",
                 "3 products, 3 activities, depth 2"):
        assert text in tree, tree


def test_downstream_of_the_attitude_crosses_both_runs(runs: tuple[CLI, list[str]]) -> None:
    cli, ids = runs
    (attitude,) = products(cli, type="demo.aux.attitude")
    graph = cli.json("lineage", attitude["id"], "--direction", "down")
    assert {a["run_id"] for a in graph["activities"]} == set(ids)
    assert {a["task_name"] for a in graph["activities"]} == {"calibrate", "detect_sources"}
    assert {p["type"] for p in graph["products"]} == {"demo.aux.attitude", "demo.l2.events"}
    one = cli.json("lineage", attitude["id"], "--direction", "down", "--depth", "1")
    assert {a["task_name"] for a in one["activities"]} == {"calibrate"}
    assert one["truncated"] is True


def test_impact_of_a_task_version(runs: tuple[CLI, list[str]]) -> None:
    cli, _ = runs
    graph = cli.json("impact", "--task", "calibrate", "--version", "1.0")
    l2 = {p["id"] for p in products(cli, type="demo.l2.events")}
    assert set(graph["roots"]) == l2
    assert {a["task_name"] for a in graph["activities"]} == {"calibrate", "detect_sources"}
    assert "calibrate@1.0" in cli("impact", "--task", "calibrate").ok().out


def test_dot_declares_every_edge_endpoint(runs: tuple[CLI, list[str]]) -> None:
    cli, (first, _) = runs
    dot = cli("lineage", final_product(cli, first)["id"], "--dot").ok().out
    assert dot.startswith("digraph")
    assert dot.rstrip().endswith("}")
    declared = set(re.findall(r'^\s*"([^"]+)" \[shape=(?:ellipse|box)', dot, re.MULTILINE))
    edges = re.findall(r'^\s*"([^"]+)" -> "([^"]+)"', dot, re.MULTILINE)
    assert len(declared) == 6
    assert len(edges) == 5
    assert {n for edge in edges for n in edge} <= declared


def test_svg_is_well_formed(runs: tuple[CLI, list[str]]) -> None:
    cli, (first, _) = runs
    for direction in ("up", "down"):
        svg = cli("lineage", final_product(cli, first)["id"], "--svg", "--direction", direction).ok().out
        root = ET.fromstring(svg)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert len(root.findall("{http://www.w3.org/2000/svg}g")) >= 2


def test_bad_input_is_a_clear_error(runs: tuple[CLI, list[str]]) -> None:
    cli, _ = runs
    res = cli("lineage", "prd-nope")
    assert res.code == 3
    assert "no product 'prd-nope'" in flat(res.err)
    assert "skyweave products list" in flat(res.err)
    assert "Traceback" not in res.err
    both = cli("lineage", "prd-nope", "--json", "--svg")
    assert both.code == 2
    assert "one output format" in flat(both.err)
    assert cli("lineage", "prd-nope", "--depth", "-1").code == 2
    assert cli("impact", "--task", "no_such_task").code == 2
