"""The workflow registry over HTTP: register a workflow version (an uploaded file, or a workflow
the server may load by name), list the registered versions, read one with its code snapshot.
Runs of a registered workflow are submitted with ``POST /runs`` ``{"workflow": NAME, "version": V}``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile
from starlette.concurrency import run_in_threadpool

from skyweave import workflows as registry
from skyweave.errors import ParameterError
from skyweave.model.records import WorkflowRecord
from skyweave.server.routes_runs import WORKFLOW_MAX_BYTES, WORKFLOW_SUFFIXES, workflow_target
from skyweave.server.safety import safe_name
from skyweave.server.state import Read, ServerState, State, Write

router = APIRouter(prefix="/api/v1", tags=["workflows"])


def as_json(record: WorkflowRecord, *, source: bool = False) -> dict[str, Any]:
    fields = {"name": record.name, "version": record.version, "kind": record.kind,
              "code_hash": record.code_hash, "filename": record.filename, "entry": record.entry,
              "origin": record.origin, "registered_at": record.registered_at}
    return {**fields, "source": record.source} if source else fields


def _folder(state: ServerState) -> Path:
    return state.client.settings.store_dir / "workflows"


@router.post("/workflows", status_code=201, dependencies=[Write])
async def register_workflow(
    state: State,
    file: Annotated[UploadFile | None, File(description="The workflow file (.py, .yaml, .yml, .json); "
                                                         "or leave it out and give `target`.")] = None,
    target: Annotated[str, Form(max_length=500, description="A workflow the server can load "
                                                            "(`module:NAME`, a path in its workflow "
                                                            "directory), when no file is sent.")] = "",
    workflow: Annotated[str, Form(max_length=200, description="The @workflow's name in the "
                                                               "uploaded file (optional for "
                                                               "declarative files).")] = "",
    name: Annotated[str, Form(max_length=200, description="Register under this name (default: the "
                                                           "workflow's own).")] = "",
    version: Annotated[str, Form(max_length=200, description="Version label (default: from the "
                                                              "code).")] = "",
) -> dict[str, Any]:
    """Register a workflow version with its code snapshot (``new``: false when that code was
    registered already); other code under a registered version is refused (409)."""
    if name:
        registry.check_name(name)
    if version:
        registry.check_version(version)
    if file is not None:
        if target:
            raise ParameterError("send a workflow file or name a target, not both",
                                 hint="leave `target` out when uploading a file")
        filename = safe_name(file.filename or "", "workflow file name")
        if not filename.lower().endswith(WORKFLOW_SUFFIXES):
            raise ParameterError(f"{filename!r} is not a workflow file",
                                 hint="send a .py, .yaml, .yml or .json file")
        if workflow and not workflow.isidentifier():
            raise ParameterError(f"workflow name {workflow[:80]!r} is not a Python name",
                                 hint="give the name of the @workflow function")
        if filename.lower().endswith(".py") and not workflow:
            raise ParameterError(f"say which workflow of {filename} to register",
                                 hint="send the @workflow function's name as `workflow`")
        data = await file.read(WORKFLOW_MAX_BYTES + 1)
        if len(data) > WORKFLOW_MAX_BYTES:
            raise HTTPException(413, f"a workflow file may be at most {WORKFLOW_MAX_BYTES} bytes")
        try:
            text = data.decode()
        except UnicodeDecodeError:
            raise ParameterError(f"{filename} is not UTF-8 text", hint="send a Python or YAML file") from None
        kind = "python" if filename.lower().endswith(".py") else "declarative"
        snap = registry.Snapshot(kind, filename, workflow, text, f"upload {filename}")
        record, new = await run_in_threadpool(registry.register, state.client.store, filename, _folder(state),
                                              version=version or None, name=name or None, source=snap)
    else:
        if not target:
            raise ParameterError("nothing to register", hint="upload a workflow `file` or name a `target` "
                                                             "the server can load (module:NAME)")
        resolved = workflow_target(state, target)
        if isinstance(resolved, registry.Registered):
            raise ParameterError(f"{target[:80]!r} is already a registered workflow's name",
                                 hint="register a file or a module:NAME the server can load")
        record, new = await run_in_threadpool(registry.register, state.client.store, resolved, _folder(state),
                                              version=version or None, name=name or None)
    return {**as_json(record), "new": new}


@router.get("/workflows", dependencies=[Read])
def list_workflows(state: State, name: Annotated[str | None, Query(max_length=200)] = None
                   ) -> list[dict[str, Any]]:
    """Registered workflow versions (of ``name``), by name then registration order; the last of
    a name is what ``{"workflow": NAME}`` submits."""
    if name is not None:
        registry.check_name(name)
    return [as_json(r) for r in state.client.workflows(name)]


@router.get("/workflows/{name}", dependencies=[Read])
def show_workflow(state: State, name: str, version: Annotated[str | None, Query(max_length=200)] = None
                  ) -> dict[str, Any]:
    """A registered workflow version (default: the latest) with its code snapshot (``source``)."""
    chosen = registry.Registered(name, version)
    return as_json(state.client.store.get_workflow(chosen.name, chosen.version), source=True)
