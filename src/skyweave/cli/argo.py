"""``skyweave export argo PATH.py:WORKFLOW [--param K=V] [--image IMAGE] [--out FILE]``: the
statically known part of a workflow as an Argo Workflow manifest (``argo.py`` says what translates)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml  # type: ignore[import-untyped,unused-ignore]

from skyweave.argo import ArgoExportError, export_workflow, validate
from skyweave.authoring.targets import load_workflow
from skyweave.cli import output
from skyweave.cli.common import friendly
from skyweave.errors import ParameterError

export_app = typer.Typer(no_args_is_help=True, help="Workflows for other engines (Argo Workflows).")


def _params(values: list[str] | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ParameterError(f"--param {item!r} is not KEY=VALUE", hint="write --param n=10")
        params[key.strip()] = value
    return params


@export_app.command("argo")
@friendly
def export_argo(
    target: Annotated[str, typer.Argument(help="PATH.py:WORKFLOW (or a declarative FILE.yaml)")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE (repeatable).")] = None,
    image: Annotated[str | None, typer.Option(help="The image Python tasks run in (skyweave and the "
                                              "workflow's code installed).")] = None,
    priority_class_prefix: Annotated[str | None, typer.Option(
        help="Give each step of priority N the Kubernetes priorityClassName PREFIX<N>.")] = None,
    volume_claim: Annotated[str | None, typer.Option(
        help="A PersistentVolumeClaim every step mounts: products pass between steps through it.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the manifest here (default: stdout).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="yaml or json.")] = "yaml",
) -> None:
    """Write an Argo Workflow manifest of the part of a workflow known before it runs (fan-out as
    withParam, retries as retryStrategy, priority, container tasks), checked against Argo's schema.
    What only skyweave's controller can decide (conditions, loops, backtracking, parking, versions
    injected while running) is left out and listed on stderr."""
    if fmt not in ("yaml", "json"):
        raise ParameterError(f"--format {fmt!r} is not yaml or json", hint="use --format yaml")
    workflow = load_workflow(target)
    graph, tasks = workflow.build(_params(param))
    manifest, left_out = export_workflow(workflow.name, graph, tasks, image=image,
                                         priority_class_prefix=priority_class_prefix,
                                         volume_claim=volume_claim)
    problems = validate(manifest)
    if problems:
        raise ArgoExportError("the exported manifest does not pass Argo's schema (a skyweave bug)",
                              hint="; ".join(problems[:5]))
    text = (yaml.safe_dump(manifest, sort_keys=False) if fmt == "yaml"
            else json.dumps(manifest, indent=2) + "\n")
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
    for line in left_out:
        output.err_console.print(f"not translated: {line}", highlight=False)
