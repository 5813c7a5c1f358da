"""End-to-end: declarative (YAML) workflows of command-line tools through the ``skyweave`` CLI."""

from __future__ import annotations

import textwrap
from pathlib import Path
from urllib.parse import unquote, urlparse

from skyweave.client import Client

from .helpers import CLI, flat

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pipeline.yaml"

PIPELINE = """
workflow: sizes
params:
  obs_id: {type: str}
  words: {type: int, default: 3}
tasks:
  items: "tasks.py:items"
  write:
    command: "python3 -c \\"import sys; open(sys.argv[2], 'w').write(sys.argv[1] * 2)\\" {params.item} {outputs.out}"
    parameters: {item: str}
    outputs: {out: {path: "{params.item}.txt", type: e2e.piece}}
  concat:
    command: "sh -c 'out=$1; shift; cat \\"$@\\" > \\"$out\\"' sh {outputs.all} {inputs.parts}"
    outputs: {all: {path: all.txt, type: e2e.all}}
  count: "tasks.py:count"
steps:
  report: {task: count, args: {n: $params.words, tag: $params.obs_id}, when: "$merged.all != null and $params.words > 2"}
  merged: {task: concat, args: {parts: $pieces.out}}
  pieces: {task: write, map: {item: $names}}
  names:  {task: items, args: {n: $params.words}}
output: {all: $merged.all, report: $report}
"""

TASKS = '''
from skyweave import task

@task(version="1")
def items(n: int) -> list[str]:
    return [chr(ord("a") + i) for i in range(n)]

@task(version="1")
def count(n: int, tag: str) -> dict:
    return {"n": n, "tag": tag}
'''


def test_yaml_pipeline_runs_and_registers_products(cli: CLI) -> None:
    (cli.cwd / "tasks.py").write_text(TASKS)
    (cli.cwd / "pipeline.yaml").write_text(textwrap.dedent(PIPELINE))
    summary = cli("run", "pipeline.yaml", "--param", "obs_id=ep7", "--param", "words=4", "--json").ok().json()
    assert summary["status"] == "succeeded", summary
    assert summary["workflow"] == "sizes" and summary["params"] == {"obs_id": "ep7", "words": 4}
    assert summary["by_state"] == {"succeeded": 7}  # items, write x4, concat, count
    products = cli.json("products", "list", "--run", summary["run_id"])
    assert sorted(p["type"] for p in products) == ["e2e.all"] + ["e2e.piece"] * 4
    merged = next(p for p in products if p["type"] == "e2e.all")
    assert Path(unquote(urlparse(merged["uri"]).path)).read_text() == "aabbccdd"

    with Client(str(cli.store), engine=False) as client:
        results = client.results(summary["run_id"])
    assert results["report"] == {"n": 4, "tag": "ep7"}
    assert results["all"].type == "e2e.all"

    # the condition is false with words=2: report is skipped, the run still succeeds
    summary = cli("run", "pipeline.yaml:sizes", "--param", "obs_id=ep8", "--param", "words=2", "--json").ok().json()
    assert summary["status"] == "succeeded"
    detail = cli.status(summary["run_id"])["activities_detail"]
    assert {a["task"] for a in detail if a["state"] == "succeeded"} == {"items", "write", "concat"}


def test_example_pipeline(cli: CLI) -> None:
    summary = cli("run", str(EXAMPLE), "--param", "obs_id=ep0042", "--json").ok().json()
    assert summary["status"] == "succeeded" and summary["workflow"] == "chips_l1"
    products = cli.json("products", "list", "--run", summary["run_id"])
    merged = next(p for p in products if p["type"] == "demo.l1.merged")
    lines = Path(unquote(urlparse(merged["uri"]).path)).read_text().splitlines()
    assert lines and all(line.startswith("ep0042 ") for line in lines)
    assert len(products) == len(lines) + 1


def test_cycle_and_syntax_errors_are_one_clear_message(cli: CLI) -> None:
    (cli.cwd / "cycle.yaml").write_text(textwrap.dedent("""
        workflow: loopy
        tasks: {t: {command: "echo {params.x}"}}
        steps:
          a: {task: t, args: {x: $b}}
          b: {task: t, args: {x: $a}}
    """))
    for verb in ("run", "submit"):
        res = cli(verb, "cycle.yaml")
        assert res.code == 2, res.err
        assert "Traceback" not in res.err + res.out and res.err.count("error:") == 1, res.err
        assert "cycle: a -> b -> a" in flat(res.err) and "hint:" in res.err

    (cli.cwd / "broken.yaml").write_text("workflow: w\nsteps:\n  a: {task: t\n")
    res = cli("run", "broken.yaml")
    assert res.code == 2 and "Traceback" not in res.err
    assert "broken.yaml:4" in flat(res.err) and "invalid YAML" in flat(res.err)
