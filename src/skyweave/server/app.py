"""The FastAPI application of ``skyweave server``: every route under ``/api/v1`` (one router per
resource: ``routes_runs``, ``routes_products``), every request authenticated by token
(``state.reader``/``writer``), bodies bounded (``safety.BodyLimit``), and errors mapped in one
place (``_errors``): a skyweave error becomes a 4xx with its message and hint, a malformed request
a 4xx saying what is wrong, anything else a 500 that names no internals (the traceback goes to the
server's log).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from skyweave.errors import (
    ControlError,
    NotFoundError,
    ParameterError,
    RunFailedError,
    SkyweaveError,
    VersionConflictError,
)
from skyweave.server import routes_products, routes_runs, routes_workflows
from skyweave.server.safety import BodyLimit, PathRefused
from skyweave.server.state import Read, ServerState
from skyweave.web import mount as mount_dashboard

log = logging.getLogger(__name__)
API_VERSION = "1"
UPLOAD_ROUTES = {("POST", "/api/v1/products"), ("POST", "/api/v1/runs/upload"), ("POST", "/api/v1/workflows")}


def create_app(state: ServerState) -> FastAPI:
    """The application over ``state``; the caller starts and stops ``state.hub`` (``serve`` does)."""
    app = FastAPI(title="skyweave", version=API_VERSION, openapi_url=None, docs_url=None, redoc_url=None,
                  description="Runs, products and provenance of a skyweave store. Every request needs "
                              "'Authorization: Bearer <token>' (`skyweave tokens create`).")
    app.state.skyweave = state
    app.include_router(routes_runs.router)
    app.include_router(routes_products.router)
    app.include_router(routes_workflows.router)

    @app.get("/api/v1/openapi.json", tags=["meta"], dependencies=[Read], include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/api/v1/health", tags=["meta"], dependencies=[Read])
    def health() -> dict[str, Any]:
        """Whether a controller holds the store's lease (work submitted now will run)."""
        holder = state.client.store.controller_lease_holder()
        return {"api": API_VERSION, "store": state.client.store.url,
                "controller": None if holder is None else holder[0]}

    mount_dashboard(app)
    _errors(app)
    app.add_middleware(BodyLimit, limit=state.limits.body_bytes, upload_limit=state.limits.upload_bytes,
                       is_upload=lambda method, path: (method, path) in UPLOAD_ROUTES)
    return app


def _status(exc: SkyweaveError) -> int:
    if isinstance(exc, PathRefused):
        return 403
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, (ControlError, RunFailedError, VersionConflictError)):
        return 409
    if isinstance(exc, ParameterError):
        return 400
    return 422  # a definition that does not load or build, and any other refusal of the request


def _errors(app: FastAPI) -> None:
    @app.exception_handler(SkyweaveError)
    async def skyweave_error(_request: Request, exc: SkyweaveError) -> JSONResponse:
        body = {"error": exc.message, "hint": exc.hint, "type": type(exc).__name__}
        return JSONResponse(body, status_code=_status(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
                    for e in exc.errors()[:10]]
        return JSONResponse({"error": "the request is malformed: " + "; ".join(problems),
                             "hint": "see /api/v1/openapi.json for what each route takes",
                             "type": "RequestValidationError"}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail, "hint": None, "type": "HTTPException"},
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "the server failed to handle this request; its log says why",
                             "hint": "tell the server's operator the time of the request",
                             "type": "InternalError"}, status_code=500)
