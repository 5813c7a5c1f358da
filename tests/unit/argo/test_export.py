"""``skyweave export argo``: what translates (fan-out as withParam, gather, retries, timeout,
resources, priority, container tasks), what is left out and said, and every manifest checked
against Argo's published JSON schema (vendored), made strict so a misspelt field is caught."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from skyweave.argo import argo_schema, export_workflow, validate
from skyweave.authoring.targets import load_workflow
from skyweave.cli.main import app

HERE = Path(__file__).parent
SURVEY = f"{HERE / 'workflows_for_export.py'}:survey"
DEMO = f"{Path(__file__).parents[3] / 'src/skyweave/examples/mini_xray.py'}:observation"


def export(target: str, **options: Any) -> tuple[dict[str, Any], list[str]]:
    workflow = load_workflow(target)
    graph, tasks = workflow.build({})
    return export_workflow(workflow.name, graph, tasks, **options)


def steps(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in manifest["spec"]["templates"][0]["dag"]["tasks"]}


def templates(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in manifest["spec"]["templates"][1:]}


def test_the_vendored_schema_is_argos_with_its_licence() -> None:
    schema = argo_schema()
    assert "io.argoproj.workflow.v1alpha1.Workflow" in schema["definitions"]
    folder = Path(__file__).parents[3] / "src/skyweave/schemas/argo-workflows"
    assert "Apache License" in (folder / "LICENSE").read_text()


def test_fan_out_gather_retries_resources_priority_and_container_tasks(tmp_path: Path) -> None:
    manifest, notes = export(SURVEY, image="example/survey:1", priority_class_prefix="skyweave-p")
    assert validate(manifest) == []
    dag = steps(manifest)
    assert dag["reproject"]["withParam"] == "{{tasks.bands.outputs.parameters.result}}"
    assert dag["reproject"]["arguments"]["parameters"] == [{"name": "band", "value": "{{item}}"}]
    assert dag["total"]["arguments"]["parameters"][0]["value"] == "{{tasks.reproject.outputs.parameters.result}}"
    assert dag["total"]["dependencies"] == ["reproject"]
    assert dag["bands"]["arguments"]["parameters"] == [{"name": "n", "value": "3"}]
    image_step = templates(manifest)["reproject-2"]
    assert image_step["container"]["image"] == "registry.example/reproject:2.1"
    assert "reproject --band {{inputs.parameters.band}} --out /tmp/skyweave/out/image" in \
        image_step["container"]["args"][0]
    assert image_step["retryStrategy"] == {"limit": "3", "retryPolicy": "Always",
                                           "backoff": {"duration": "5s", "factor": "2", "cap": "300s"}}
    assert image_step["activeDeadlineSeconds"] == "601"
    assert image_step["container"]["resources"] == {
        "requests": {"cpu": "2", "memory": "4096Mi", "nvidia.com/gpu": "1"},
        "limits": {"memory": "4096Mi", "nvidia.com/gpu": "1"}}
    assert image_step["priorityClassName"] == "skyweave-p7"
    assert manifest["spec"]["priority"] == 7
    python_step = templates(manifest)["bands-1"]
    assert python_step["container"]["command"] == ["python", "-m", "skyweave.stage"]
    assert python_step["container"]["args"][:3] == ["workflows_for_export:bands", "--n", "{{inputs.parameters.n}}"]
    # the condition and what uses it are left out, and said
    assert "alert" not in dag and "after-alert" not in dag
    left = json.loads(manifest["metadata"]["annotations"]["skyweave.io/not-translated"])
    assert "condition" in left["alert"] and "left out" in left["after_alert"]
    assert any(n.startswith("alert: left out") for n in notes)


def test_backtracking_is_exported_without_it_and_said() -> None:
    manifest, notes = export(DEMO, image="skyweave-demo:1", volume_claim="data")
    assert validate(manifest) == []
    assert any(n.startswith("calibrate:") and "backtracking" in n for n in notes)
    assert manifest["spec"]["volumes"] == [{"name": "skyweave-data", "persistentVolumeClaim": {"claimName": "data"}}]
    # a map over a map: one withParam over the previous step's aggregated results
    assert steps(manifest)["calibrate"]["withParam"] == "{{tasks.decode-events.outputs.parameters.result}}"


def test_the_strict_schema_catches_a_misspelt_field() -> None:
    manifest, _ = export(SURVEY, image="example/survey:1")
    broken = copy.deepcopy(manifest)
    broken["spec"]["templates"][1]["retryStrategi"] = {"limit": 1}
    assert any("retryStrategi" in p for p in validate(broken))
    wrong_type = copy.deepcopy(manifest)
    wrong_type["spec"]["priority"] = "high"
    assert any("priority" in p for p in validate(wrong_type))


def test_the_cli_writes_a_valid_manifest_and_lists_what_it_left_out(tmp_path: Path) -> None:
    out = tmp_path / "survey.yaml"
    result = CliRunner().invoke(app, ["export", "argo", SURVEY, "--image", "example/survey:1",
                                      "--param", "n=5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = yaml.safe_load(out.read_text())
    assert validate(manifest) == []
    assert steps(manifest)["bands"]["arguments"]["parameters"] == [{"name": "n", "value": "5"}]
    assert "not translated: alert: left out" in result.output


@pytest.mark.parametrize("target", [SURVEY, DEMO])
def test_nothing_exportable_is_a_clear_error(target: str) -> None:
    result = CliRunner().invoke(app, ["export", "argo", target])  # no --image: no Python task can go
    assert result.exit_code != 0
    assert "can be exported to Argo" in result.output and "needs --image" in result.output
