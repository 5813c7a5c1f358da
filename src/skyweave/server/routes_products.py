"""Products (list, show, download, upload), activities and their logs, tasks, lineage, impact,
reprocess and provenance exports."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Header, HTTPException, Query, Request, UploadFile
from fastapi.responses import PlainTextResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from skyweave import reprocess as rp
from skyweave.cli.catalogue import describe, list_filters, pinned_among, product_json
from skyweave.cli.reprocess import plan_json
from skyweave.errors import ParameterError
from skyweave.logs import log_parts
from skyweave.model.records import ProductRecord
from skyweave.provenance.export import FORMATS, export
from skyweave.provenance.provsap import provsap
from skyweave.server.models import PriorityRequest, ReprocessRequest
from skyweave.server.routes_runs import jsonable
from skyweave.server.safety import PathRefused, safe_name
from skyweave.server.state import Read, ServerState, State, Write
from skyweave.storage import locate

router = APIRouter(prefix="/api/v1")
CHUNK = 1 << 20


# -- products -----------------------------------------------------------------------------------------
@router.get("/products", tags=["products"], dependencies=[Read])
def list_products(
    state: State, type: str | None = None, obs_id: str | None = None, detector: str | None = None,
    run: str | None = None, version: str | None = None, name: str | None = None,
    since: str | None = None, until: str | None = None, pinned: bool | None = None,
    status: Literal["available", "deleted", "all"] = "all",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
) -> list[dict[str, Any]]:
    """Products, newest first (the filters of `skyweave products list`)."""
    match = {k: v for k, v in {"obs_id": obs_id, "detector": detector}.items() if v is not None}
    store = state.client.store
    found = store.find_products(type=type, match=match or None, run_id=run, limit=limit, version=version,
                                name=name, pinned=pinned, **list_filters(status, since, until))
    pins = pinned_among(store, found)
    return [product_json(p, p.id in pins) for p in found]


@router.get("/products/{product_id}", tags=["products"], dependencies=[Read])
def show_product(state: State, product_id: str) -> dict[str, Any]:
    """A product, the activity that made it and how to make it again (`skyweave products show`)."""
    return describe(state.client.store, product_id)


def _readable(state: ServerState, product: ProductRecord) -> tuple[Any, str]:
    """The storage and key of a product this server may hand out: one in a storage it writes
    (its ``products/`` folder, or a non-local storage), never a file named in place elsewhere
    (not even elsewhere in the store's directory: its database, logs, bus)."""
    if product.state != "available":
        raise HTTPException(410, f"product {product.id} was deleted (its provenance stays); make it "
                                 f"again with `skyweave products recompute {product.id}`")
    if product.uri.startswith("file://"):
        root = (state.client.settings.store_dir / "products").resolve()
        path = product.local_path.resolve()
        if not path.is_relative_to(root):
            raise PathRefused(f"product {product.id} is a file named in place outside the server's "
                              "product storage; the server does not hand it out",
                              hint="read it where it is")
    return locate(product.uri)


@router.get("/products/{product_id}/content", tags=["products"], dependencies=[Read],
            response_class=StreamingResponse,
            responses={200: {"content": {"application/octet-stream": {}}, "description": "The bytes."}})
def download_product(state: State, product_id: str,
                     range: Annotated[str | None, Header(description="bytes=START-END (one range)")] = None,
                     ) -> StreamingResponse:
    """The product's bytes, streamed from its storage (its checksum in ``X-Checksum``); with a
    ``Range`` header, that slice only (206), for readers that seek."""
    product = state.client.store.get_product(product_id)
    storage, key = _readable(state, product)
    start, length = _range(range, product.size)
    reader = storage.open(key)
    if start:
        reader.seek(start)

    def chunks() -> Iterator[bytes]:
        left = length
        with reader:
            while left is None or left > 0:
                block = reader.read(CHUNK if left is None else min(CHUNK, left))
                if not block:
                    return
                if left is not None:
                    left -= len(block)
                yield block

    headers = {"Content-Disposition": f"attachment; filename*=UTF-8''{_quote(product.name or product.id)}",
               "Accept-Ranges": "bytes"}
    if product.checksum:
        headers["X-Checksum"] = product.checksum
    if length is not None:
        headers["Content-Length"] = str(length)
        if range is not None:
            headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{product.size}"
    return StreamingResponse(chunks(), status_code=206 if range is not None else 200,
                             media_type="application/octet-stream", headers=headers)


def _range(header: str | None, size: int | None) -> tuple[int, int | None]:
    """``(start, length)`` of a ``Range: bytes=A-B`` header (the whole product without one)."""
    if header is None:
        return 0, size
    unit, _, spec = header.partition("=")
    first, dash, last = spec.partition("-")
    if unit.strip() != "bytes" or not dash or not first.strip().isdigit() or "," in spec or size is None:
        raise HTTPException(416, "give one range as 'bytes=START-END' (or 'bytes=START-')")
    start = int(first)
    end = int(last) if last.strip().isdigit() else size - 1
    if start >= size or end < start:
        raise HTTPException(416, f"the range {spec!r} is outside the product's {size} bytes",
                            headers={"Content-Range": f"bytes */{size}"})
    return start, min(end, size - 1) - start + 1


def _quote(name: str) -> str:
    return quote(name, safe="")


@router.post("/products", tags=["products"], status_code=201, dependencies=[Write])
async def upload_product(
    state: State,
    file: Annotated[UploadFile, File(description="The file; its name becomes the product's name.")],
    type: Annotated[str, Form(min_length=1, max_length=200)] = "file",
    obs_id: Annotated[str | None, Form(max_length=200)] = None,
    detector: Annotated[str | None, Form(max_length=200)] = None,
    version: Annotated[str | None, Form(max_length=200)] = None,
    attributes: Annotated[str, Form(max_length=100_000, description="A JSON object.")] = "{}",
) -> dict[str, Any]:
    """Register an uploaded file as a product (copied into the product storage, checksummed);
    activities parked waiting for one like it wake up."""
    name = safe_name(file.filename or "", "upload name")
    try:
        attrs = json.loads(attributes)
    except json.JSONDecodeError as exc:
        raise ParameterError(f"attributes is not JSON: {exc}", hint='send a JSON object') from None
    if not isinstance(attrs, dict):
        raise ParameterError("attributes must be a JSON object", hint='send {"band": "L"}')
    state.uploads_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=state.uploads_dir, prefix=".upload-") as tmp:
        path = Path(tmp) / name
        with path.open("wb") as out:
            while block := await file.read(CHUNK):
                out.write(block)
        record = await run_in_threadpool(state.client.add_product, path, type=type, obs_id=obs_id,
                                         detector=detector, version=version, attributes=attrs)
    return product_json(record, False)


# -- activities and tasks ----------------------------------------------------------------------------
@router.get("/activities/{activity_id}", tags=["activities"], dependencies=[Read])
def show_activity(state: State, activity_id: str) -> Any:
    store = state.client.store
    return {**jsonable(store.get_activity(activity_id)),
            "attempts": jsonable(store.list_attempts(activity_id) or [])}


@router.get("/activities/{activity_id}/logs", tags=["activities"], dependencies=[Read],
            response_class=PlainTextResponse)
def activity_logs(state: State, activity_id: str) -> PlainTextResponse:
    """What the activity left: command line, each attempt's output, error, detours (text)."""
    act = state.client.store.get_activity(activity_id)
    parts = log_parts(state.client.store, state.client.settings.store_dir, act)
    text = "".join((f"--- {rule} ---\n" if rule else "") + body for rule, body in parts)
    return PlainTextResponse(text)


@router.post("/activities/{activity_id}/retry", tags=["activities"], dependencies=[Write])
def retry(state: State, activity_id: str) -> dict[str, Any]:
    """Run a failed or cancelled activity again (its run reopens)."""
    state.client.retry(activity_id)
    return {"activity_id": activity_id, "requested": "retry"}


@router.put("/activities/{activity_id}/priority", tags=["activities"], dependencies=[Write])
def activity_priority(state: State, activity_id: str, body: PriorityRequest) -> dict[str, Any]:
    state.client.set_priority(body.priority, activity_id=activity_id)
    return {"activity_id": activity_id, "priority": body.priority}


@router.get("/tasks", tags=["tasks"], dependencies=[Read])
def list_tasks(state: State) -> list[dict[str, Any]]:
    """Every registered task version; ``current``: the one new activations use."""
    return [{"name": s.name, "version": s.version, "kind": s.kind, "current": cur, "code_hash": s.code_hash}
            for s, cur in state.client.store.list_tasks()]


# -- provenance -------------------------------------------------------------------------------------
@router.get("/products/{product_id}/lineage", tags=["provenance"], dependencies=[Read])
def lineage(state: State, product_id: str, direction: Literal["up", "down"] = "up",
            depth: Annotated[int | None, Query(ge=0, le=10_000)] = None) -> Any:
    """What made a product (up) or what depends on it (down), across runs."""
    return jsonable(state.client.store.lineage(product_id, direction=direction, depth=depth))


@router.get("/impact", tags=["provenance"], dependencies=[Read])
def impact(state: State, task: Annotated[str, Query(min_length=1)], version: str | None = None) -> Any:
    """What a task version produced and everything downstream of it."""
    return jsonable(state.client.store.impact(task, version))


@router.get("/provenance", tags=["provenance"], dependencies=[Read], response_class=PlainTextResponse)
def provenance(state: State, run: str | None = None, product: str | None = None,
               format: Annotated[str, Query(description=", ".join(FORMATS))] = "provjson",
               depth: Annotated[int | None, Query(ge=0, le=10_000)] = None) -> PlainTextResponse:
    """A run (or a product's upstream lineage) as W3C PROV-JSON, PROV-N, PROV-XML or IVOA ProvDM."""
    if (run is None) == (product is None):
        raise ParameterError("give run=RUN_ID or product=PRODUCT_ID (one of them)",
                             hint="/api/v1/provenance?run=run-01…&format=provn")
    text = export(state.client.store, fmt=format, run_id=run, product_id=product,
                  authority=state.client.settings.authority, max_depth=depth)
    media = {"provxml": "application/xml"}.get(format, "application/json" if "json" in format
                                                else "text/plain")
    return PlainTextResponse(text, media_type=media)


@router.get("/provsap", tags=["provenance"], dependencies=[Read], response_class=PlainTextResponse)
def provsap_query(state: State, request: Request) -> PlainTextResponse:
    """IVOA ProvSAP: ID (repeatable), DEPTH (n or ALL), DIRECTION (BACK, FORTH or FORWARD), MODEL
    (IVOA or W3C), RESPONSEFORMAT (PROV-JSON, PROV-N, PROV-XML or PROV-SVG); parameter names in any
    case (docs/remote.md)."""
    answer = provsap(state.client.store, request.query_params.multi_items(),
                     authority=state.client.settings.authority)
    return PlainTextResponse(answer.body, media_type=answer.media_type)


def _plan(state: ServerState, body: ReprocessRequest) -> rp.Plan:
    return rp.plan(state.client.store, run_id=body.run, product_id=body.product, task=body.task,
                   version=body.version)


@router.get("/reprocess", tags=["provenance"], dependencies=[Read])
def reprocess_plan(state: State, run: str | None = None, product: str | None = None,
                   task: str | None = None, version: str | None = None) -> dict[str, Any]:
    """What would re-run after a change, and why (`skyweave reprocess --dry-run`)."""
    return plan_json(_plan(state, ReprocessRequest(run=run, product=product, task=task, version=version)))


@router.post("/reprocess", tags=["provenance"], status_code=201, dependencies=[Write])
def reprocess(state: State, body: ReprocessRequest) -> dict[str, Any]:
    """Submit the affected runs again: unchanged activities are reused, changed ones re-run."""
    plan = _plan(state, body)
    new = []
    for run_id in plan.runs if plan.rerun else []:
        record = rp.resubmit(state.client.store, run_id)
        state.client.bus.publish([rp.announce(record)])
        new.append(record.id)
    return {"plan": plan_json(plan), "runs": new}
