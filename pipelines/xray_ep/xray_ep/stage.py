"""Run one stage of the pipeline on its own, outside any workflow (e.g. in a container).

    python -m xray_ep.stage decode_cmos --l0 ep0001.l0 --cmos cmos04 --out DIR
    python -m xray_ep.stage calibrate --events DIR/ep0001_cmos04_l1.fits --attitude att.fits \\
        --orbit orb.fits --out DIR
    python -m xray_ep.stage detect_sources --image IMG --events EVT --expmap EXP --out DIR
    python -m xray_ep.stage light_curve --events EVT --source @source.json --out DIR

Each task parameter is an option of the same name (``--threshold-sigma`` or ``--threshold_sigma``):
product parameters take file paths (several for a list), dict parameters take JSON or ``@FILE``
holding JSON, numbers and strings their value.  Output files go to ``--out``; what the stage
returns is printed on stdout as JSON (products as ``{"path", "type", "obs_id", "detector",
"attributes"}``).  Exit status 0 on success, 2 on a ``Fatal`` error (bad input: message and hint
on stderr), 1 on anything else.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import sys
import typing
from pathlib import Path
from typing import Any

from skyweave import ActivityContext, Fatal, Product
from skyweave.authoring.task import Task
from skyweave.model.context import reset_context, set_context
from xray_ep import alert, l1, l2, l3_image, l3_products

STAGES: dict[str, Task] = {t.name: t for t in (
    l1.list_cmos, l1.decode_cmos, l2.calibrate, l2.fetch_attitude, l2.fetch_orbit, l2.merge_events,
    l3_image.make_image, l2.exposure_map, l3_image.detect_sources, l3_products.light_curve,
    l3_products.spectrum, l3_products.transient_test, alert.make_voevent)}


def _kind(annotation: Any) -> str:
    """``product``, ``products``, ``json``, ``int``, ``float`` or ``str`` for a parameter annotation."""
    text = annotation if isinstance(annotation, str) else repr(annotation)
    if "list[Product]" in text:
        return "products"
    if "Product" in text:
        return "product"
    if "dict" in text:
        return "json"
    for name in ("float", "int", "bool"):
        if text.startswith(name) or text == f"<class '{name}'>":
            return name
    return "str"


def _parameters(task: Task) -> dict[str, tuple[str, inspect.Parameter]]:
    fn = task.fn
    assert fn is not None
    hints = typing.get_type_hints(fn, globalns={**vars(sys.modules[fn.__module__]), "Product": Product})
    return {name: (_kind(hints.get(name, str)), p) for name, p in inspect.signature(fn).parameters.items()}


def _json(text: str) -> Any:
    return json.loads(Path(text[1:]).read_text() if text.startswith("@") else text)


def _convert(kind: str, value: Any) -> Any:
    if kind == "product":
        return Product(Path(value).resolve())
    if kind == "products":
        return [Product(Path(v).resolve()) for v in value]
    if kind == "json":
        return _json(value)
    if kind == "bool":
        return str(value).lower() in ("1", "true", "yes")
    return {"int": int, "float": float}.get(kind, str)(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Product):
        return {"path": str(value.local_path), "type": value.type, "obs_id": value.obs_id,
                "detector": value.detector, "attributes": value.attributes}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m xray_ep.stage",
                                  description="Run one stage of the EP-like X-ray pipeline on files.")
    sub = top.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, task in STAGES.items():
        doc = (task.fn.__doc__ or "").strip().splitlines()[0] if task.fn else ""
        p = sub.add_parser(name, help=doc, description=doc)
        for pname, (kind, param) in _parameters(task).items():
            required = param.default is inspect.Parameter.empty
            meta = {"product": "FILE", "products": "FILE", "json": "JSON|@FILE"}.get(kind, kind.upper())
            flags = dict.fromkeys([f"--{pname.replace('_', '-')}", f"--{pname}"])  # one if no "_"
            p.add_argument(*flags, dest=pname, required=required,
                           nargs="+" if kind == "products" else None, metavar=meta,
                           help=f"{kind}" + ("" if required else f" (default {param.default!r})"))
        p.add_argument("--out", required=True, type=Path, metavar="DIR", help="directory for the outputs")
    return top


def run(stage: str, out: Path, **arguments: Any) -> Any:
    """Call one stage's task function with converted ``arguments``, outputs in ``out``."""
    task = STAGES[stage]
    params = _parameters(task)
    kwargs = {k: _convert(params[k][0], v) for k, v in arguments.items() if v is not None}
    out.mkdir(parents=True, exist_ok=True)
    ctx = ActivityContext(activity_id=f"standalone-{stage}", run_id="standalone", attempt=1, task=task.spec,
                          workdir=out, log=logging.getLogger(f"xray_ep.stage.{stage}"))
    token = set_context(ctx)
    try:
        assert task.fn is not None
        return task.fn(**kwargs)
    finally:
        reset_context(token)


def main(argv: list[str] | None = None) -> int:
    args = vars(parser().parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    stage, out = args.pop("stage"), args.pop("out")
    try:
        result = run(stage, out, **args)
    except Fatal as exc:
        hint = getattr(exc, "hint", None)
        message = str(exc)
        extra = f"hint: {hint}\n" if hint and hint not in message else ""
        sys.stderr.write(f"{stage}: {message}\n{extra}")
        return 2
    sys.stdout.write(json.dumps(_jsonable(result), indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
