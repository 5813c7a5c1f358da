"""Runs: submit (a workflow the server knows, or an uploaded file), list, status, activities,
results, control, and their live events (SSE)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from skyweave.authoring.loader import split_target
from skyweave.errors import ParameterError
from skyweave.model.records import ProductRecord
from skyweave.model.states import RUN_TERMINAL
from skyweave.server.events import run_progress
from skyweave.server.models import PriorityRequest, SubmitRequest
from skyweave.server.safety import PathRefused, confined, safe_name
from skyweave.server.state import Read, ServerState, State, Write
from skyweave.workflows import Registered, parse

router = APIRouter(prefix="/api/v1", tags=["runs"])
KEEPALIVE_S = 15.0
WORKFLOW_SUFFIXES = (".py", ".yaml", ".yml", ".json")
WORKFLOW_MAX_BYTES = 4 << 20


def jsonable(value: Any) -> Any:
    return msgspec.to_builtins(value)


def workflow_target(state: ServerState, workflow: str, version: str | None = None) -> str | Registered:
    """The load target of a workflow named in a request: a registered workflow (``NAME``,
    ``NAME@VERSION``, or any name with ``version``), ``module:NAME`` as it is, a file path only
    inside the server's workflow directory."""
    if "\x00" in workflow:
        raise PathRefused("the workflow name holds a NUL character", hint="send a plain name")
    registered = parse(workflow)
    if registered is not None:
        return Registered(registered.name, version) if version is not None else registered
    if version is not None:
        raise ParameterError(f"{workflow[:80]!r} is a file or module, not a registered workflow: "
                             "a version does not apply",
                             hint="GET /api/v1/workflows lists the registered ones")
    where, attr = split_target(workflow)
    if not where.lower().endswith(WORKFLOW_SUFFIXES) and "/" not in where and "\\" not in where:
        # module:NAME, imported from what the server has installed, if the operator allowed it
        if not (attr and all(p.isidentifier() for p in where.split("."))):
            raise ParameterError(f"workflow {workflow[:80]!r} is not module:NAME nor a file",
                                 hint="e.g. radio_nenufar.workflows:imaging")
        if not any(where == m or where.startswith(m + ".") for m in state.workflow_modules):
            raise PathRefused(f"this server does not load workflows from module {where!r}",
                              hint="allowed: " + (", ".join(state.workflow_modules) or "none") +
                                   " (the operator adds more with --module)")
        return workflow
    if state.workflows_dir is None:
        raise PathRefused(f"this server loads no workflow files by path ({workflow[:80]!r})",
                          hint="name an installed module (module:NAME), upload the file "
                               "(POST /api/v1/runs/upload), or start the server with --workflows DIR")
    path = confined(state.workflows_dir, where)
    return f"{path}:{attr}" if attr else str(path)


@router.post("/runs", status_code=201, dependencies=[Write])
def submit(state: State, body: SubmitRequest) -> dict[str, Any]:
    """Submit a run of a registered workflow (``workflow``: its name, ``version``: default the
    latest) or of a workflow the server can load; returns at once with its id."""
    handle = state.client.submit(workflow_target(state, body.workflow, body.version), body.params,
                                 priority=body.priority, labels=body.labels)
    return {"run_id": handle.id, "status": "submitted"}


@router.post("/runs/upload", status_code=201, dependencies=[Write])
async def submit_file(
    state: State,
    file: Annotated[UploadFile, File(description="The workflow file (.py, .yaml, .yml, .json).")],
    workflow: Annotated[str, Form(max_length=200, description="The @workflow's name in the file "
                                                               "(optional for declarative files).")] = "",
    params: Annotated[str, Form(max_length=1_000_000, description="Parameters as a JSON object.")] = "{}",
    priority: Annotated[int, Form(ge=-1_000_000, le=1_000_000)] = 0,
) -> dict[str, Any]:
    """Submit a run of an uploaded workflow file.  The file is kept under the store's
    ``uploads/<sha256>/`` (the code of each run stays as it was) and runs with the server's rights."""
    name = safe_name(file.filename or "", "workflow file name")
    if not name.lower().endswith(WORKFLOW_SUFFIXES):
        raise ParameterError(f"{name!r} is not a workflow file", hint="send a .py, .yaml, .yml or .json file")
    if workflow and not workflow.isidentifier():
        raise ParameterError(f"workflow name {workflow[:80]!r} is not a Python name",
                             hint="give the name of the @workflow function")
    try:
        values = json.loads(params)
    except json.JSONDecodeError as exc:
        raise ParameterError(f"params is not JSON: {exc}", hint='send a JSON object: {"n": 3}') from None
    if not isinstance(values, dict):
        raise ParameterError("params must be a JSON object", hint='send {"n": 3}')
    data = await file.read(WORKFLOW_MAX_BYTES + 1)
    if len(data) > WORKFLOW_MAX_BYTES:
        raise HTTPException(413, f"a workflow file may be at most {WORKFLOW_MAX_BYTES} bytes")
    folder = state.uploads_dir / hashlib.sha256(data).hexdigest()[:24]
    target = folder / name
    new = not folder.exists()
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{name}.part"
        partial.write_bytes(data)
        partial.replace(target)
    try:
        handle = await run_in_threadpool(state.client.submit,
                                         f"{target}:{workflow}" if workflow else str(target), values,
                                         priority=priority)
    except BaseException:
        if new:  # a file that defines no runnable workflow is not kept
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return {"run_id": handle.id, "status": "submitted"}


@router.get("/runs", dependencies=[Read])
def list_runs(state: State, status: str | None = None,
              limit: Annotated[int, Query(ge=1, le=10_000)] = 50) -> list[dict[str, Any]]:
    """Recent runs, newest first."""
    records = state.client.store.list_runs(states=[status] if status else None, limit=limit, graph=False)
    return [{"run_id": r.id, "workflow": r.workflow, "status": r.state, "priority": r.priority,
             "created_at": r.created_at, "ended_at": r.ended_at} for r in records]


@router.get("/runs/{run_id}", dependencies=[Read])
def run_status(state: State, run_id: str) -> dict[str, Any]:
    """A run's summary: state, activities counted by state, failures."""
    return state.client.summary(run_id)


@router.get("/runs/{run_id}/activities", dependencies=[Read])
def run_activities(state: State, run_id: str, status: str | None = None,
                   limit: Annotated[int, Query(ge=1, le=100_000)] = 1000) -> list[Any]:
    state.client.store.get_run_head(run_id)
    acts = state.client.store.list_activities(run_id=run_id, states=[status] if status else None,
                                              limit=limit)
    return [jsonable(a) for a in acts]


@router.get("/runs/{run_id}/results", dependencies=[Read])
def run_results(state: State, run_id: str) -> Any:
    """The workflow's return value; products as their records (409 unless the run succeeded)."""
    return _with_products(state.client.results(run_id))


def _with_products(value: Any) -> Any:
    """Results as JSON, each product as ``{"$product": its record}``."""
    if isinstance(value, ProductRecord):
        return {"$product": jsonable(value)}
    if isinstance(value, dict):
        return {k: _with_products(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_with_products(v) for v in value]
    return jsonable(value)


@router.post("/runs/{run_id}/cancel", dependencies=[Write])
def cancel(state: State, run_id: str) -> dict[str, Any]:
    """Cancel a run: queued work is dropped, running activities are stopped."""
    state.client.cancel(run_id)
    return {"run_id": run_id, "requested": "cancel"}


@router.post("/runs/{run_id}/pause", dependencies=[Write])
def pause(state: State, run_id: str) -> dict[str, Any]:
    """Pause a run; returns once the controller has applied it (``status``: paused, how the run
    ended, or ``requested`` when no controller runs)."""
    return {"run_id": run_id, "requested": "pause", "status": state.client.pause(run_id)}


@router.post("/runs/{run_id}/resume", dependencies=[Write])
def resume(state: State, run_id: str) -> dict[str, Any]:
    state.client.resume(run_id)
    return {"run_id": run_id, "requested": "resume"}


@router.put("/runs/{run_id}/priority", dependencies=[Write])
def run_priority(state: State, run_id: str, body: PriorityRequest) -> dict[str, Any]:
    """Change the priority of a run and of its queued work."""
    state.client.set_priority(body.priority, run_id=run_id)
    return {"run_id": run_id, "priority": body.priority}


# -- live events ------------------------------------------------------------------------------------

def _sse(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _stream(request: Request, state: ServerState, run_id: str | None) -> AsyncIterator[str]:
    sub = state.hub.subscribe(run_id)  # before the snapshot: nothing between them is missed
    try:
        while True:
            if run_id is not None:
                snapshot = await run_in_threadpool(run_progress, state.client.store, run_id)
                yield _sse("progress", snapshot)
                if snapshot["status"] in RUN_TERMINAL:
                    yield _sse("end", {"run_id": run_id, "status": snapshot["status"]})
                    return
            sub.lagged = False
            while not sub.lagged or not sub.queue.empty():
                try:
                    name, data = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield ": keep-alive\n\n"
                    continue
                yield _sse(name, data)
                if run_id is not None and name == "run" and data["status"] in RUN_TERMINAL:
                    yield _sse("end", {"run_id": run_id, "status": data["status"]})
                    return
            if run_id is None:
                yield _sse("lagged", {"note": "events were dropped: this client did not keep up"})
    finally:
        state.hub.unsubscribe(sub)


_SSE_DOC = {"content": {"text/event-stream": {}}, "description": "Server-sent events."}


@router.get("/runs/{run_id}/events", dependencies=[Read], response_class=StreamingResponse,
            responses={200: _SSE_DOC})
def run_events(request: Request, state: State, run_id: str) -> StreamingResponse:
    """A run's live events: ``progress`` (activities by state; first a snapshot), ``activity``,
    ``product`` and ``run``; ``end`` when the run has ended, then the stream closes."""
    state.client.store.get_run_head(run_id)  # 404 for an unknown run
    return StreamingResponse(_stream(request, state, run_id), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.get("/events", dependencies=[Read], response_class=StreamingResponse, responses={200: _SSE_DOC})
def all_events(request: Request, state: State) -> StreamingResponse:
    """Every run's ``run``, ``activity`` and ``product`` events from now on (a dashboard's feed)."""
    return StreamingResponse(_stream(request, state, None), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
