"""The HTTP side of the remote client: a server's error replies as skyweave errors."""

from __future__ import annotations

import httpx2 as httpx

from skyweave.errors import (
    ControlError,
    DefinitionError,
    NotFoundError,
    ParameterError,
    RunFailedError,
    SkyweaveError,
)


class RemoteError(SkyweaveError):
    """The server refused or failed a request (``status``: its HTTP status)."""


class AuthError(RemoteError):
    """The token is missing, unknown, revoked, or lacks the scope."""


_BY_TYPE: dict[str, type[SkyweaveError]] = {
    "NotFoundError": NotFoundError, "ControlError": ControlError, "RunFailedError": RunFailedError,
    "ParameterError": ParameterError, "DefinitionError": DefinitionError,
    "WorkflowLoadError": DefinitionError, "UnknownTaskError": DefinitionError,
}


def raise_for(response: httpx.Response) -> None:
    """Raise the skyweave error a non-2xx reply stands for (its message and hint as sent)."""
    if response.is_success:
        return
    try:
        body = response.json()
        message, hint, kind = str(body.get("error")), body.get("hint"), str(body.get("type", ""))
    except ValueError:
        message, hint, kind = response.text[:500] or response.reason_phrase, None, ""
    where = f"{response.request.method} {response.request.url.path}"
    if response.status_code in (401, 403) and kind == "HTTPException":
        raise AuthError(message, hint=hint, status=response.status_code, request=where)
    error = _BY_TYPE.get(kind)
    if error is None and response.status_code == 404:
        error = NotFoundError
    raise (error or RemoteError)(message, hint=hint, status=response.status_code, request=where)
