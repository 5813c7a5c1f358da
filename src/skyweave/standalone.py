"""Run one task on files, outside any workflow: the command line of a pipeline's container.

A pipeline lists its tasks and gets a command line with one sub-command per task::

    # xray_ep/stage.py
    STAGES = stages(l1.decode_cmos, l2.calibrate, ...)
    if __name__ == "__main__":
        sys.exit(stage_main(STAGES, prog="python -m xray_ep.stage", description="..."))

    python -m xray_ep.stage decode_cmos --l0 ep0001.l0 --cmos cmos04 --out DIR

Each task parameter is an option of the same name (``--threshold-sigma`` or ``--threshold_sigma``):

* product parameters take file paths (several for a list) or ``@FILE`` holding a product as a
  stage prints it, which keeps its type, obs_id, detector, version and attributes (``@FILE#KEY``
  picks one entry of a result that is a dict, e.g. ``--model @train.json#model``);
* dict and list parameters take JSON or ``@FILE`` holding JSON (products in it written as a stage
  prints them become products again, so one stage's output is the next one's input);
* numbers, booleans and strings take their value.

Output files go to ``--out``; ``--task-version V`` runs the task as version V (what
``context().task.version`` says, e.g. a detector whose version names its model).  What the task
returns is printed on stdout as JSON (products as ``{"path", "type", "obs_id", "detector",
"version", "attributes"}``) and written to ``--result FILE`` if given.
Exit status 0 on success, 2 on a ``Fatal`` error (bad input: message and hint on stderr), 3 when
the task asks for an input it was not given (``MissingInput``/``InsufficientInput``: in a workflow
the controller would run its provider or wait), 1 on anything else (the traceback on stderr).
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import sys
import traceback
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from skyweave.authoring.external import File, Folder
from skyweave.authoring.task import Task
from skyweave.errors import Fatal
from skyweave.model.context import ActivityContext, reset_context, set_context
from skyweave.model.product import Product
from skyweave.model.signals import MissingInput


def stages(*tasks: Task) -> dict[str, Task]:
    """The tasks a stage command line offers, by name."""
    return {t.name: t for t in tasks}


def _kind(annotation: Any) -> str:
    """``product``, ``products``, ``file``, ``folder``, ``json``, ``int``, ``float``, ``bool`` or
    ``str``."""
    text = annotation if isinstance(annotation, str) else repr(annotation)
    if "list[Product]" in text or "list[skyweave" in text:
        return "products"
    for name in ("Folder", "File"):
        if text.rpartition(".")[2].strip("'>") == name or text == name:
            return name.lower()
    if "Product" in text:
        return "product"
    if "dict" in text or "list" in text:
        return "json"
    for name in ("float", "int", "bool"):
        if text.startswith(name) or text == f"<class '{name}'>":
            return name
    return "str"


def parameters(task: Task) -> dict[str, tuple[str, inspect.Parameter]]:
    """Each parameter of the task's function with its kind (see ``_kind``)."""
    fn = task.fn
    if fn is None:
        raise ValueError(f"task {task.name} has no Python function to run here")
    hints = typing.get_type_hints(fn, globalns={**vars(sys.modules[fn.__module__]), "Product": Product})
    return {name: (_kind(hints.get(name, str)), p) for name, p in inspect.signature(fn).parameters.items()
            if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)}


_PRODUCT_KEYS = frozenset({"path", "type", "obs_id", "detector", "version", "attributes"})


def _products(value: Any) -> Any:
    """JSON data with products written as ``jsonable`` writes them turned back into products, so a
    stage's printed result can be the input of the next (``--cal @calibrate.json``)."""
    if isinstance(value, dict):
        if {"path", "type"} <= set(value) <= _PRODUCT_KEYS:
            return Product(Path(value["path"]).resolve(), type=value["type"], obs_id=value.get("obs_id"),
                           detector=value.get("detector"), version=value.get("version"),
                           attributes=value.get("attributes") or {})
        return {k: _products(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_products(v) for v in value]
    return value


def _json(text: str) -> Any:
    """JSON text, or ``@FILE`` holding JSON, or ``@FILE#KEY`` (``#a.b``: a key path into it)."""
    if not text.startswith("@"):
        return _products(json.loads(text))
    path, _, keys = text[1:].partition("#")
    value = json.loads(Path(path).read_text())
    for key in filter(None, keys.split(".")):
        if not isinstance(value, dict) or key not in value:
            raise SystemExit(f"{path} has no key {keys!r}")
        value = value[key]
    return _products(value)


def _product(value: str) -> Product:
    """A file path, or ``@FILE`` holding a product as a stage prints it (keeps its metadata)."""
    if not value.startswith("@"):
        return Product(Path(value).resolve())
    got = _json(value)
    if not isinstance(got, Product):
        raise SystemExit(f"{value[1:]} does not hold one product (a JSON object with path and type)")
    return got


def _convert(kind: str, value: Any) -> Any:
    if kind == "product":
        return _product(value)
    if kind in ("file", "folder"):
        return (File if kind == "file" else Folder)(Path(value).resolve())
    if kind == "products":
        return [p for v in value for p in (_json(v) if v.startswith("@") and isinstance(_json(v), list)
                                           else [_product(v)])]
    if kind == "json":
        return _json(value)
    if kind == "bool":
        return str(value).lower() in ("1", "true", "yes")
    return {"int": int, "float": float}.get(kind, str)(value)


def jsonable(value: Any) -> Any:
    """A task result as JSON-able data (products as path + metadata)."""
    if isinstance(value, Product):
        return {"path": str(value.local_path), "type": value.type, "obs_id": value.obs_id,
                "detector": value.detector, "version": value.version, "attributes": value.attributes}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def parser(tasks: dict[str, Task], *, prog: str, description: str = "") -> argparse.ArgumentParser:
    """One sub-command per task, one option per parameter, plus ``--out DIR``."""
    top = argparse.ArgumentParser(prog=prog, description=description)
    sub = top.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, task in tasks.items():
        doc = (task.fn.__doc__ or "").strip().splitlines()[0] if task.fn and task.fn.__doc__ else name
        p = sub.add_parser(name, help=doc, description=doc)
        for pname, (kind, param) in parameters(task).items():
            if pname == "state":
                continue                                   # a loop's carried state: not a file input
            required = param.default is inspect.Parameter.empty
            meta = {"product": "FILE", "products": "FILE", "json": "JSON|@FILE", "folder": "DIR"}.get(
                kind, kind.upper())
            flags = dict.fromkeys([f"--{pname.replace('_', '-')}", f"--{pname}"])  # one if no "_"
            p.add_argument(*flags, dest=pname, required=required,
                           nargs="+" if kind == "products" else None, metavar=meta,
                           help=kind + ("" if required else f" (default {param.default!r})"))
        p.add_argument("--out", required=True, type=Path, metavar="DIR", help="directory for the outputs")
        p.add_argument("--result", type=Path, metavar="FILE",
                       help="also write the JSON result to FILE (a later stage takes it as @FILE)")
        p.add_argument("--task-version", metavar="VERSION",
                       help=f"run as this version of the task (default {task.version})")
    return top


def run_stage(task: Task, out: Path, *, task_version: str | None = None, **arguments: Any) -> Any:
    """Call one task's function with converted ``arguments``; its outputs go to ``out``.
    ``task_version``: what ``context().task.version`` says (default: the task's own)."""
    params = parameters(task)
    unknown = set(arguments) - set(params)
    if unknown:
        raise TypeError(f"{task.name} has no parameter(s) {sorted(unknown)}; it takes {sorted(params)}")
    kwargs = {k: _convert(params[k][0], v) for k, v in arguments.items() if v is not None}
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    spec = task.spec if task_version is None else msgspec.structs.replace(task.spec, version=task_version)
    ctx = ActivityContext(activity_id=f"standalone-{task.name}", run_id="standalone", attempt=1,
                          task=spec, workdir=out, log=logging.getLogger(f"skyweave.stage.{task.name}"))
    token = set_context(ctx)
    try:
        assert task.fn is not None
        return task.fn(**kwargs)
    finally:
        reset_context(token)


def stage_main(tasks: dict[str, Task], *, prog: str, description: str = "",
               argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the chosen task, print its result as JSON; the exit status."""
    args = vars(parser(tasks, prog=prog, description=description).parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    name, out, result_file = args.pop("stage"), args.pop("out"), args.pop("result")
    task_version = args.pop("task_version")
    try:
        result = run_stage(tasks[name], out, task_version=task_version, **args)
    except Fatal as exc:
        hint = getattr(exc, "hint", None)
        message = str(exc)
        extra = f"hint: {hint}\n" if hint and hint not in message else ""
        sys.stderr.write(f"{name}: {message}\n{extra}")
        return 2
    except MissingInput as exc:
        wanted = f"a {exc.product_type!r} product" + (f" matching {exc.match}" if exc.match else "")
        sys.stderr.write(f"{name}: needs {wanted} as --{exc.param.replace('_', '-')}: {exc.reason}\n"
                         "hint: in a workflow the controller would run its provider or wait for it; "
                         "here, pass one (or --task-version if the task version names its input)\n")
        return 3
    except Exception as exc:
        traceback.print_exc()
        sys.stderr.write(f"{name} failed: {type(exc).__name__}: {exc}\n")
        return 1
    text = json.dumps(jsonable(result), indent=1, default=str) + "\n"
    if result_file is not None:
        result_file.parent.mkdir(parents=True, exist_ok=True)
        result_file.write_text(text)
    sys.stdout.write(text)
    return 0
