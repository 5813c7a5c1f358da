"""Declarative workflow files: same graph as the Python builder, and one clear error per mistake."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from skyweave import command, each, gather, loop, result, workflow
from skyweave.authoring.declarative_expr import parse_condition
from skyweave.authoring.targets import load_workflow
from skyweave.errors import DefinitionError, ParameterError, WorkflowLoadError

TASKS_PY = '''
from skyweave import task

@task(version="1")
def list_chips(obs_id: str) -> list[str]:
    return ["a", "b"]

@task(version="1")
def merge(parts: list) -> dict:
    return {"snr": 6.0}

@task(version="1")
def alert(x: dict, level: int = 1) -> None:
    return None

@task(version="1")
def refine(state: dict | None, step: float) -> dict:
    return {"delta": 0.0}
'''

PIPELINE = """
workflow: l1
params:
  obs_id: {type: str}
  n: {type: int, default: 3}
  threshold: float?
tasks:
  list_chips: {python: "tasks.py:list_chips"}
  merge: "tasks.py:merge"
  decode:
    command: "decode_l0 --obs {params.obs_id} --chip {params.chip} --out {outputs.events}"
    version: "2.1"
    parameters: {obs_id: str, chip: str}
    outputs: {events: {path: "{params.chip}.fits", type: ep.l1.events}}
    retries: 2
    timeout: 600
steps:
  big:    {task: "tasks.py:alert", args: {x: $merged, level: $params.n}, when: "$merged.snr > 5 and not ($merged.snr >= 100)", priority: 7}
  merged: {task: merge, args: {parts: $events}}
  events: {task: decode, map: {chip: $chips}, args: {obs_id: $params.obs_id}}
  chips:  {task: list_chips, args: {obs_id: $params.obs_id}}
output: {merged: $merged, files: $events.events}
"""


def write(tmp_path: Path, text: str, name: str = "pipeline.yaml") -> Path:
    (tmp_path / "tasks.py").write_text(TASKS_PY)
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_same_graph_as_python_builder(tmp_path: Path) -> None:
    wf = load_workflow(str(write(tmp_path, PIPELINE)))
    graph, tasks = wf.build({"obs_id": "ep1"})
    assert wf.name == "l1"
    assert graph["params"] == {"obs_id": "ep1", "n": 3, "threshold": None}
    assert set(tasks) == {"list_chips", "decode", "merge", "alert"}
    assert tasks["decode"].spec.retry.max_attempts == 3 and tasks["decode"].spec.timeout_s == 600
    assert tasks["decode"].spec.outputs["events"].type == "ep.l1.events"

    from skyweave.authoring.loader import load_module
    mod = load_module(tmp_path / "tasks.py")
    decode = tasks["decode"]

    @workflow(name="l1")
    def l1(obs_id: str, n: int = 3, threshold: float | None = None) -> Any:
        chips = mod.list_chips.options(name="chips")(obs_id=obs_id)
        events = decode.map(chip=chips, obs_id=obs_id, name="events")
        merged = mod.merge.options(name="merged")(parts=events)
        mod.alert.options(name="big", priority=7,
                          when=(merged["snr"] > 5) & ~(merged["snr"] >= 100))(x=merged, level=n)
        return {"merged": merged, "files": events["events"]}

    expected, _ = l1.build({"obs_id": "ep1"})
    assert graph["nodes"] == expected["nodes"]
    assert graph["outputs"] == expected["outputs"]
    assert graph["tasks"] == expected["tasks"]
    assert graph["nodes"]["events"]["depth"] == 1
    assert graph["nodes"]["events"]["args"]["chip"]["iter"] == "each"
    assert graph["nodes"]["merged"]["args"]["parts"]["iter"] == "gather"


def test_params_are_coerced_like_workflow_bind(tmp_path: Path) -> None:
    wf = load_workflow(f"{write(tmp_path, PIPELINE)}:l1")
    graph, _ = wf.build({"obs_id": "x", "n": "5", "threshold": "2.5"})
    assert graph["params"] == {"obs_id": "x", "n": 5, "threshold": 2.5}
    assert graph["nodes"]["big"]["args"]["level"] == {"lit": 5}
    with pytest.raises(ParameterError, match="expects int"):
        wf.build({"obs_id": "x", "n": "many"})
    with pytest.raises(ParameterError, match="needs parameter 'obs_id'"):
        wf.build({})


def test_each_gather_zip_and_loop(tmp_path: Path) -> None:
    path = write(tmp_path, """
        workflow: w
        params: {step: {type: float, default: 0.5}}
        tasks:
          refine: "tasks.py:refine"
          merge: "tasks.py:merge"
          pair:
            command: "pair {params.a} {params.b}"
        steps:
          chips: {task: "tasks.py:list_chips", args: {obs_id: "$$literal"}}
          both: {task: pair, map: {a: each($chips), b: $chips}}
          again: {task: pair, map: {a: $both}, args: {b: gather($both)}}
          fit:
            task: refine
            args: {step: $params.step}
            loop: {until: "abs($result.delta) < 0.001", max_iterations: 4, initial: {delta: 1}}
        output: [$again, $fit.delta]
    """)
    graph, _ = load_workflow(str(path)).build({})
    nodes = graph["nodes"]
    assert nodes["chips"]["args"]["obs_id"] == {"lit": "$literal"}
    assert nodes["both"]["args"]["a"]["iter"] == "each" and nodes["both"]["args"]["b"]["iter"] == "each"
    assert nodes["again"]["args"]["a"]["iter"] == "zip" and nodes["again"]["args"]["b"]["iter"] == "gather"
    mod = __import__("skyweave.authoring.loader", fromlist=["load_module"]).load_module(tmp_path / "tasks.py")
    pair = command("pair", "pair {params.a} {params.b}", parameters={"a": "any", "b": "any"})

    @workflow(name="w")
    def w(step: float = 0.5) -> Any:
        chips = mod.list_chips.options(name="chips")(obs_id="$literal")
        both = pair.map(a=each(chips), b=chips, name="both")
        again = pair.map(a=both, b=gather(both), name="again")
        fit = loop(mod.refine, until=abs(result["delta"]) < 0.001, max_iterations=4, initial={"delta": 1},
                   step=step)
        return [again, fit["delta"]]

    expected, _ = w.build({})
    expected["nodes"]["fit"] = {**expected["nodes"].pop("refine"), "id": "fit"}
    assert nodes == expected["nodes"]
    assert graph["outputs"]["list"][1]["path"] == ["delta"]


def test_json_file(tmp_path: Path) -> None:
    path = write(tmp_path, '{"workflow": "j", "tasks": {"t": {"command": "true"}}, '
                           '"steps": {"one": {"task": "t"}}, "output": "$one"}', "wf.json")
    graph, _ = load_workflow(str(path)).build({})
    assert list(graph["nodes"]) == ["one"] and graph["outputs"]["ref"] == "one"


def error_for(tmp_path: Path, text: str) -> str:
    with pytest.raises(DefinitionError) as info:
        load_workflow(str(write(tmp_path, text))).build({})
    return str(info.value)


BASE = """
workflow: w
tasks: {t: {command: "echo {params.x}"}}
steps:
"""


@pytest.mark.parametrize(("steps", "fragments"), [
    ("  a: {task: t, args: {x: $b}}\n  b: {task: t, args: {x: $a}}\n",
     ["cycle: a -> b -> a", "hint:", "loop:"]),
    ("  a: {task: t, args: {x: $a}}\n", ["cycle: a -> a"]),
    ("  a: {task: nope}\n", ["pipeline.yaml:5", "unknown task 'nope'", "known: t"]),
    ("  a: {task: t, args: {x: $bee}}\n  bee2: {task: t}\n", ["$bee, which is not a step", "did you mean 'bee2'"]),
    ("  a: {task: t, args: {x: $params.zz}}\n", ["$params.zz, which is not a parameter"]),
    ("  a: {task: t, args: {y: 1}}\n", ["step 'a'", "has no parameter 'y'"]),
    ("  a: {task: t, wat: 1}\n", ["unknown key 'wat'", "allowed keys"]),
    ("  a: {task: t, when: \"$a.x >> 3\"}\n", ["unexpected '>'", "column"]),
    ("  a: {task: t, when: \"__import__('os')\"}\n", ["unexpected '__import__'"]),
    ("  a: {task: t, map: {x: $params.q}}\n", ["must be a step output"]),
    ("  a: {task: t}\n  b: {task: t, map: {x: $a}, args: {y: $a}}\n", ["would be iterated", "gather($STEP)"]),
    ("  a: {task: t, args: {x: $5bad}}\n", ["not a valid reference", "$$"]),
    ("  a: {task: t, args: {x: 1}}\n  a: {task: t}\n", ["appears twice"]),
])
def test_wiring_errors(tmp_path: Path, steps: str, fragments: list[str]) -> None:
    text = error_for(tmp_path, BASE + steps)
    for fragment in fragments:
        assert fragment in text, text


@pytest.mark.parametrize(("text", "fragments"), [
    ("workflow: w\nsteps:\n  a: {task: t\n", ["pipeline.yaml:", "invalid YAML", "hint:"]),
    ("- just\n- a list\n", ["must be a mapping"]),
    ("workflow: w\ntasks: {t: {version: '1'}}\nsteps: {a: {task: t}}\n", ["has neither command: nor python:"]),
    ("workflow: w\ntasks: {t: {command: 'x', retries: two}}\nsteps: {a: {task: t}}\n",
     ["pipeline.yaml:2", "retries must be a whole number"]),
    ("workflow: w\ntasks: {t: {command: 'x {outputs.o}'}}\nsteps: {a: {task: t}}\n", ["{outputs.o}", "no such output"]),
    ("workflow: w\ntasks: {t: {python: 'tasks.py:nothing'}}\nsteps: {a: {task: t}}\n",
     ["python task 'tasks.py:nothing'", "has no 'nothing'"]),
    ("workflow: w\ntasks: {t: {python: 'no_such_mod_xyz:f'}}\nsteps: {a: {task: t}}\n", ["cannot import module"]),
    ("workflow: w\nparams: {n: {type: integer}}\ntasks: {t: {command: x}}\nsteps: {a: {task: t}}\n",
     ["unknown parameter type 'integer'"]),
    ("workflow: w\nparams: {n: {type: int, default: lots}}\ntasks: {t: {command: x}}\nsteps: {a: {task: t}}\n",
     ["default of parameter 'n'"]),
    ("workflow: w\ntasks: {t: {command: x}}\nsteps: {}\n", ["no steps"]),
    ("workflow: w\nstep: {}\n", ["unknown key 'step'", "did you mean 'steps'"]),
])
def test_file_errors(tmp_path: Path, text: str, fragments: list[str]) -> None:
    with pytest.raises(WorkflowLoadError) as info:
        load_workflow(str(write(tmp_path, text)))
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message


def test_doubled_braces_are_literal_not_placeholders(tmp_path: Path) -> None:
    """``{{outputs.o}}`` is the text ``{outputs.o}`` for the command, not a use of an output."""
    text = ("workflow: w\ntasks: {t: {command: \"awk '{{print $1}}' {{outputs.o}} {params.x}\"}}\n"
            "steps: {a: {task: t, args: {x: 1}}}\n")
    _, tasks = load_workflow(str(write(tmp_path, text))).build({})
    assert tasks["t"].spec.parameters == {"x": "any"} and tasks["t"].spec.outputs == {}


def test_missing_file_and_wrong_name(tmp_path: Path) -> None:
    with pytest.raises(WorkflowLoadError, match="does not exist"):
        load_workflow(str(tmp_path / "nope.yaml"))
    with pytest.raises(WorkflowLoadError, match="defines workflow 'l1', not 'other'"):
        load_workflow(f"{write(tmp_path, PIPELINE)}:other")


def test_condition_grammar() -> None:
    node = parse_condition("$a.x > 1.5e2 or $b == 'x' and not $params.p", "here")
    assert type(node).__name__ == "Op" and node.op == "or"  # type: ignore[union-attr]
    for bad in ("", "$a >", "($a", "$a > 1 > 2", "$a + 1", "lambda: 1"):
        with pytest.raises(DefinitionError, match="condition"):
            parse_condition(bad, "here")
    with pytest.raises(DefinitionError, match=r"\$result is only"):
        parse_condition("$result > 1", "here")



def test_file_and_folder_types_name_data_in_place(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.txt").write_text("1")
    text = """
        workflow: count
        params: {raw_dir: Folder, one: str}
        tasks:
          count:
            command: "wc -c {inputs.raw} {inputs.single} > {outputs.n}"
            parameters: {raw: Folder, single: File}
            outputs: {n: n.txt}
        steps:
          c: {task: count, args: {raw: $params.raw_dir, single: $params.one}}
    """
    graph, _ = load_workflow(f"{write(tmp_path, text)}:count").build(
        {"raw_dir": str(raw), "one": str(raw / "a.txt")})
    args = graph["nodes"]["c"]["args"]
    assert args["raw"]["in_place"]["kind"] == "folder" and args["raw"]["in_place"]["path"] == str(raw)
    assert args["single"]["in_place"]["kind"] == "file", "a path given to a File parameter becomes one"
    assert graph["params"]["raw_dir"] == str(raw)


def test_resources_name_a_slurm_partition(tmp_path: Path) -> None:
    text = ("workflow: w\ntasks: {t: {command: \"image {params.x}\", "
            "resources: {cpus: 8, memory_mb: 16000, gpus: 1, partition: gpu}}}\n"
            "steps: {a: {task: t, args: {x: 1}}}\n")
    _, tasks = load_workflow(str(write(tmp_path, text))).build({})
    resources = tasks["t"].spec.resources
    assert (resources.cpus, resources.memory_mb, resources.gpus, resources.partition) == (8.0, 16000, 1, "gpu")
    bad = text.replace("partition: gpu", "partition: 3")
    with pytest.raises(DefinitionError, match="partition must be a string"):
        load_workflow(str(write(tmp_path, bad))).build({})
