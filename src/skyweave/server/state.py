"""What every route shares: the server's ``Client`` (store, bus, settings), its event hub and its
limits, and the token checks (``read``/``write`` dependencies)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from skyweave.client import Client
from skyweave.model.records import TokenRecord
from skyweave.server.events import EventHub
from skyweave.server.tokens import authenticate

MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    body_bytes: int = 1 * MiB
    """Largest JSON body (submissions, control requests)."""
    upload_bytes: int = 1024 * MiB
    """Largest upload (a product file, a workflow file)."""
    page: int = 10_000
    """Most rows one list request returns."""


@dataclass
class ServerState:
    client: Client
    hub: EventHub
    limits: Limits = field(default_factory=Limits)
    workflows_dir: Path | None = None
    """Workflow files the server may load by relative path (``--workflows DIR``)."""
    workflow_modules: tuple[str, ...] = ("skyweave.examples",)
    """Packages whose ``module:NAME`` workflows the server may import (``--module``)."""

    @property
    def uploads_dir(self) -> Path:
        return self.client.settings.store_dir / "uploads"


def server_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.skyweave
    return state


_bearer = HTTPBearer(auto_error=False, description="A token from `skyweave tokens create`.")


COOKIE = "skyweave_token"
"""The dashboard's cookie: the token a person gave on its login page (HttpOnly, SameSite=Strict)."""
UI_HEADER = "X-Skyweave-UI"
"""A write authenticated by the cookie must carry this header: a form on another site cannot add
it, so a cookie alone never changes anything (cross-site request forgery)."""


def _token(request: Request,
           credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> TokenRecord:
    cookie = request.cookies.get(COOKIE)
    if credentials is None and cookie:
        record = authenticate(server_state(request).client.store, cookie)
        if record is None:
            raise HTTPException(401, "the dashboard's token is unknown or revoked; log in again with a "
                                     "new one (`skyweave tokens create` on the server)")
        request.state.by_cookie = True
        return record
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "this server needs a token: send 'Authorization: Bearer <token>'",
                            headers={"WWW-Authenticate": "Bearer"})
    record = authenticate(server_state(request).client.store, credentials.credentials)
    if record is None:
        raise HTTPException(401, "the token is unknown or revoked; ask for a new one "
                                 "(`skyweave tokens create` on the server)",
                            headers={"WWW-Authenticate": "Bearer"})
    return record


def reader(token: Annotated[TokenRecord, Depends(_token)]) -> TokenRecord:
    return token


def writer(request: Request, token: Annotated[TokenRecord, Depends(_token)]) -> TokenRecord:
    if "write" not in token.scopes:
        raise HTTPException(403, f"token {token.id} ({token.name}) may only read; this needs the "
                                 "write scope (`skyweave tokens create --scope write`)")
    if getattr(request.state, "by_cookie", False) and request.headers.get(UI_HEADER) != "1":
        raise HTTPException(403, f"a change made with the dashboard's cookie needs the {UI_HEADER} header "
                                 "(sent by the dashboard's own buttons)")
    return token


State = Annotated[ServerState, Depends(server_state)]
Read = Depends(reader)
Write = Depends(writer)
