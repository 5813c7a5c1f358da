"""``skyweave export argo PATH.py:WORKFLOW``: the statically known part of a workflow as an Argo
Workflow manifest (plain data, checked against Argo's own JSON schema, vendored in
``schemas/argo-workflows/`` with its licence).

What translates, node by node of the workflow graph (``authoring/graph.py``):

* a task call -> a DAG task of the template of its task; its upstream nodes -> ``dependencies``;
* a ``.map`` over another task's list (``each``), and a map over a map (``zip`` of one source) ->
  ``withParam`` on the upstream task's result, the item as ``{{item}}``; a ``gather`` of a
  fanned-out node -> that node's result, which Argo aggregates into a JSON list;
* retries -> ``retryStrategy`` (limit = attempts - 1, ``retryPolicy: Always``, the backoff);
  a timeout -> ``activeDeadlineSeconds``; resources -> the container's requests and limits
  (``nvidia.com/gpu``);
* priority -> ``spec.priority`` (the highest in the workflow), and per template a
  ``priorityClassName`` of ``PREFIX<priority>`` when a prefix is given (Argo orders only
  workflows by priority; pods are ordered by Kubernetes priority classes, which a cluster admin
  creates);
* a container task (``command(image=...)``) -> that image, its command template as ``sh -c``;
  a Python task -> ``python -m skyweave.stage MODULE:TASK --PARAM VALUE ...`` in ``--image``
  (an image holding skyweave and the workflow's code), its result written for Argo to read.

What does not translate, and is left out (named in the manifest's ``skyweave.io/not-translated``
annotation and returned to the caller): conditions (``when=``) and bounded loops, fan-out nested
more than one level, products from skyweave's store as arguments, and everything the controller
decides while a run goes: backtracking to a provider, parking until data arrives, aging and
priority changes of queued work, new task versions injected while running, cache reuse.
A node left out takes every node that uses it with it.
"""

from __future__ import annotations

import json
import math
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from skyweave.authoring.graph import topological_order, upstream
from skyweave.authoring.task import Task
from skyweave.errors import SkyweaveError
from skyweave.model.specs import TaskKind, TaskSpec

RESULT_PATH = "/tmp/skyweave/result.json"
"""Where a step writes its result (JSON) for Argo to read as the output parameter ``result``."""
DATA_DIR = "/skyweave/data"
"""Where ``--volume-claim`` mounts the volume the steps share (their products live there)."""
OUT_DIR = "/tmp/skyweave/out"
SHARED_OUT_DIR = f"{DATA_DIR}/{{{{workflow.name}}}}/{{{{pod.name}}}}"
WORK_DIR = "/tmp/skyweave/work"
SCHEMA_PACKAGE = "skyweave.schemas"
SCHEMA_FILE = "argo-workflows/schema.json"
WORKFLOW_DEFINITION = "io.argoproj.workflow.v1alpha1.Workflow"


class ArgoExportError(SkyweaveError):
    """A workflow that cannot be exported at all (nothing static), or a manifest Argo would refuse."""


def dns_name(text: str) -> str:
    """A Kubernetes/Argo name (DNS-1123 label: lowercase letters, digits, '-', at most 63)."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].strip("-")
    return name or "step"


def export_workflow(name: str, graph: dict[str, Any], tasks: dict[str, Task], *, image: str | None = None,
                    priority_class_prefix: str | None = None,
                    volume_claim: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """The Argo Workflow manifest of ``graph`` and what was left out (one line per node, why).

    Products pass from step to step as file paths: with ``volume_claim`` (a PersistentVolumeClaim
    every step mounts at ``DATA_DIR``) each step writes its outputs there and the next one reads
    them; without it only plain values (numbers, strings, lists, dicts) cross steps."""
    nodes = graph["nodes"]
    left_out: dict[str, str] = {}
    caveats: dict[str, str] = {}
    dag_tasks: list[dict[str, Any]] = []
    templates: dict[str, dict[str, Any]] = {}
    names = {node_id: dns_name(node_id) for node_id in nodes}
    priorities: list[int] = []
    for node_id in topological_order(graph):
        node = nodes[node_id]
        spec = tasks[node["task"]].spec
        why = _untranslatable(node, spec, nodes, left_out, image)
        if why:
            left_out[node_id] = why
            continue
        backtrack = spec.backtrack
        if backtrack.providers or backtrack.park_s:
            caveats[node_id] = ("exported without its backtracking (providers "
                                f"{sorted(backtrack.providers.values())}, park {backtrack.park_s:g} s): in "
                                "Argo the step fails when its input is missing")
        template = dns_name(f"{spec.name}-{spec.version}")
        templates.setdefault(template, _template(template, spec, image, priority_class_prefix, node,
                                                 shared=volume_claim is not None))
        priority = node.get("priority") if node.get("priority") is not None else spec.priority
        priorities.append(int(priority))
        dag_tasks.append(_dag_task(node, names, template))
    if not dag_tasks:
        raise ArgoExportError(f"nothing of workflow {name!r} can be exported to Argo",
                              hint="; ".join(f"{n}: {w}" for n, w in left_out.items()))
    manifest: dict[str, Any] = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "generateName": f"{dns_name(name)[:56]}-",
            "labels": {"skyweave.io/workflow": dns_name(name)},
            "annotations": {
                "skyweave.io/exported-by": "skyweave export argo",
                "skyweave.io/not-translated": json.dumps({**caveats, **left_out}, sort_keys=True),
            },
        },
        "spec": {
            "entrypoint": "main",
            "priority": max(priorities),
            "templates": [{"name": "main", "dag": {"tasks": dag_tasks}}, *templates.values()],
        },
    }
    if volume_claim is not None:
        manifest["spec"]["volumes"] = [{"name": "skyweave-data",
                                        "persistentVolumeClaim": {"claimName": volume_claim}}]
    return manifest, [f"{node}: left out: {why}" for node, why in left_out.items()] + [
        f"{node}: {why}" for node, why in caveats.items()]


def _untranslatable(node: dict[str, Any], spec: TaskSpec, nodes: dict[str, Any], left_out: dict[str, str],
                    image: str | None) -> str | None:
    for ref in upstream(node):
        if ref in left_out:
            return f"uses {ref!r}, which was left out"
    if node.get("when") is not None:
        return "a condition (when=) is decided by skyweave's controller on results"
    if node.get("loop"):
        return "a bounded loop (until=) is decided by skyweave's controller on results"
    if int(node["depth"]) > 1:
        return "a fan-out nested more than one level has no Argo withParam form"
    iterating = [a for a in node["args"].values() if isinstance(a, dict) and a.get("iter") in ("each", "zip")]
    if len(iterating) > 1:
        return "a map over several fanned-out sources (zip) has no Argo withParam form"
    for pname, arg in node["args"].items():
        if _has(arg, "product") or _has(arg, "in_place"):
            return f"argument {pname!r} is a product of skyweave's store"
        if isinstance(arg, dict) and "ref" not in arg and "lit" not in arg and _has(arg, "ref"):
            return f"argument {pname!r} nests another task's result in a list or dict"
        if isinstance(arg, dict) and arg.get("iter") == "zip" and int(nodes[arg["ref"]]["depth"]) != 1:
            return f"argument {pname!r} iterates a nested fan-out"
    if spec.kind is TaskKind.PYTHON and not image:
        return "a Python task needs --image (an image with skyweave and the workflow's code)"
    if spec.kind is TaskKind.COMMAND:
        return "a command task runs on a host, not in an image: give it image= to export it"
    return None


def _has(data: Any, key: str) -> bool:
    if isinstance(data, dict):
        return key in data or any(_has(v, key) for v in data.values())
    if isinstance(data, list):
        return any(_has(v, key) for v in data)
    return False


def _result(names: dict[str, str], ref: dict[str, Any]) -> str:
    source = names[ref["ref"]]
    if not ref.get("path"):
        return f"{{{{tasks.{source}.outputs.parameters.result}}}}"
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in ref["path"])
    return f"{{{{=jsonpath(tasks['{source}'].outputs.parameters.result, '${path}')}}}}"


def _literal(arg: Any) -> Any:
    if isinstance(arg, dict):
        if "lit" in arg:
            return arg["lit"]
        if "list" in arg:
            return [_literal(v) for v in arg["list"]]
        if "dict" in arg:
            return {k: _literal(v) for k, v in arg["dict"].items()}
    return arg


def _dag_task(node: dict[str, Any], names: dict[str, str], template: str) -> dict[str, Any]:
    parameters: list[dict[str, str]] = []
    step: dict[str, Any] = {"name": names[node["id"]], "template": template}
    for pname, arg in node["args"].items():
        if isinstance(arg, dict) and "ref" in arg:
            if arg["iter"] in ("each", "zip"):
                step["withParam"] = _result(names, arg)
                value = "{{item}}"
            else:
                value = _result(names, arg)
        else:
            literal = _literal(arg)
            value = literal if isinstance(literal, str) else json.dumps(literal)
        parameters.append({"name": pname, "value": value})
    dependencies = sorted({names[ref] for ref in upstream(node)})
    if dependencies:
        step["dependencies"] = dependencies
    if parameters:
        step["arguments"] = {"parameters": parameters}
    return step


def _template(name: str, spec: TaskSpec, image: str | None, priority_class_prefix: str | None,
              node: dict[str, Any], *, shared: bool) -> dict[str, Any]:
    params = list(spec.parameters)
    template: dict[str, Any] = {
        "name": name,
        "metadata": {"labels": {"skyweave.io/task": dns_name(spec.name)},
                     "annotations": {"skyweave.io/task": spec.name, "skyweave.io/version": spec.version,
                                     "skyweave.io/code-hash": spec.code_hash}},
        "container": _container(spec, image, SHARED_OUT_DIR if shared else OUT_DIR),
        "outputs": {"parameters": [
            {"name": "result", "valueFrom": {"path": RESULT_PATH, "default": "null"}}]},
    }
    if params:
        template["inputs"] = {"parameters": [
            {"name": p, **({"default": _default(spec.defaults[p])} if p in spec.defaults else {})}
            for p in params]}
    retry = spec.retry
    # limit, factor and activeDeadlineSeconds are IntOrString, which Argo's schema gives as strings
    if retry.max_attempts > 1:
        template["retryStrategy"] = {
            "limit": str(retry.max_attempts - 1), "retryPolicy": "Always",
            "backoff": {"duration": f"{retry.backoff_s:g}s", "factor": str(max(1, round(retry.factor))),
                        "cap": f"{retry.max_backoff_s:g}s"}}
    if spec.timeout_s is not None:
        template["activeDeadlineSeconds"] = str(max(1, math.ceil(spec.timeout_s)))
    priority = node.get("priority") if node.get("priority") is not None else spec.priority
    if priority_class_prefix and priority:
        template["priorityClassName"] = f"{priority_class_prefix}{priority}"
    return template


def _default(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _container(spec: TaskSpec, image: str | None, out_dir: str) -> dict[str, Any]:
    resources = spec.resources
    requests: dict[str, str] = {"cpu": f"{resources.cpus:g}"}
    limits: dict[str, str] = {}
    if resources.memory_mb:
        requests["memory"] = limits["memory"] = f"{resources.memory_mb}Mi"
    if resources.gpus:
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(resources.gpus)
    sizes: dict[str, Any] = {"requests": requests, **({"limits": limits} if limits else {})}
    container: dict[str, Any] = {"resources": sizes}
    if out_dir != OUT_DIR:
        container["volumeMounts"] = [{"name": "skyweave-data", "mountPath": DATA_DIR}]
    if spec.kind is TaskKind.IMAGE:
        assert spec.image is not None
        command = _command_template(spec.ref, out_dir)
        script = (f"mkdir -p {out_dir} {WORK_DIR} $(dirname {RESULT_PATH}) && cd {WORK_DIR} && {command} "
                  f"&& echo null > {RESULT_PATH}")
        container.update(image=spec.image, command=["sh", "-c"], args=[script])
        return container
    assert image is not None
    module, _, qualname = spec.ref.partition(":")
    if module.endswith(".py"):  # a task defined in a file: the image holds it on its PYTHONPATH
        module = Path(module).stem
    args = [f"{module}:{qualname}"]
    for p in spec.parameters:
        args += [f"--{p}", f"{{{{inputs.parameters.{p}}}}}"]
    args += ["--out", out_dir, "--result", RESULT_PATH]
    container.update(image=image, command=["python", "-m", "skyweave.stage"], args=args)
    return container


def _command_template(template: str, out_dir: str) -> str:
    """A command task's template with Argo's parameters: ``{params.X}``/``{inputs.X}`` -> the input
    parameter, ``{outputs.X}`` -> a file under the step's output folder, ``{workdir}``."""
    text = re.sub(r"\{(?:params|inputs)\.(\w+)\}", r"{{inputs.parameters.\1}}", template)
    text = re.sub(r"\{outputs\.(\w+)\}", lambda m: f"{out_dir}/{m.group(1)}", text)
    return text.replace("{workdir}", WORK_DIR)


# -- validation ----------------------------------------------------------------------------------


@cache
def argo_schema() -> dict[str, Any]:
    """Argo Workflows' published JSON schema (``api/jsonschema/schema.json``, vendored)."""
    text = resources.files(SCHEMA_PACKAGE).joinpath(SCHEMA_FILE).read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def strict(schema: Any) -> Any:
    """``schema`` with unknown fields refused wherever it lists the fields of an object (Argo's
    schema allows any extra field, so a misspelt one would pass unseen)."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def validate(manifest: dict[str, Any]) -> list[str]:
    """What Argo's JSON schema (made strict) finds wrong with a Workflow manifest ([] if nothing)."""
    try:
        from jsonschema import Draft202012Validator  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:
        raise ArgoExportError("checking the manifest needs jsonschema",
                              hint="pip install 'skyweave[argo]'") from exc
    schema = {"$ref": f"#/definitions/{WORKFLOW_DEFINITION}",
              "definitions": strict(argo_schema()["definitions"])}
    validator = Draft202012Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in sorted(validator.iter_errors(manifest), key=lambda e: list(map(str, e.absolute_path)))]
