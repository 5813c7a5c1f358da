"""What a request may name on the server's disk, and how much it may send.

* ``safe_name``: an upload's file name is one plain path component (no ``/``, ``\\``, NUL, control
  characters, ``.``/``..`` or leading dot), at most 200 characters.
* ``confined``: a workflow path is relative, without ``..``, and once symlinks are resolved still
  inside its root.
* ``BodyLimit``: an ASGI middleware refusing (413) a request whose body is larger than its
  route's limit, whether it says so in ``Content-Length`` or streams past it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path, PurePosixPath
from typing import Any

from starlette.exceptions import HTTPException

from skyweave.errors import ParameterError

MAX_NAME = 200

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class PathRefused(ParameterError):
    """A name or path that would reach outside where it belongs (403)."""


def safe_name(name: str, what: str = "file name") -> str:
    bad = ("/" in name or "\\" in name or "\x00" in name or name in ("", ".", "..")
           or name.startswith(".") or any(ord(c) < 32 or ord(c) == 127 for c in name))
    if bad or len(name) > MAX_NAME or name != name.strip():
        raise PathRefused(f"{what} {name[:80]!r} is refused: it must be one plain name",
                          hint="no '/', '\\', NUL or control characters, not '.', '..' nor starting "
                               f"with '.', at most {MAX_NAME} characters")
    return name


def confined(root: Path, relative: str, what: str = "workflow path") -> Path:
    """``root / relative`` when it stays inside ``root`` (symlinks resolved); else ``PathRefused``."""
    pure = PurePosixPath(relative)
    if (not relative or "\x00" in relative or "\\" in relative or pure.is_absolute()
            or ".." in pure.parts or relative.startswith("~")):
        raise PathRefused(f"{what} {relative[:80]!r} is refused: it must be relative to the "
                          "server's directory, without '..'", hint="e.g. pipelines/radio.py:imaging")
    base = root.resolve()
    target = (base / pure).resolve()
    if not target.is_relative_to(base):
        raise PathRefused(f"{what} {relative[:80]!r} leads outside the server's directory "
                          "(a symbolic link)", hint="name a file inside it")
    return target


class BodyTooLarge(HTTPException):
    """Raised while the body is read (an ``HTTPException``: FastAPI passes it on as it is)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body passed {limit} bytes, the most this server takes here")


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes (``upload_limit`` on ``upload_paths``) with 413."""

    def __init__(self, app: ASGIApp, *, limit: int, upload_limit: int,
                 is_upload: Callable[[str, str], bool]) -> None:
        self.app = app
        self.limit = limit
        self.upload_limit = upload_limit
        self.is_upload = is_upload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_limit if self.is_upload(scope["method"], scope["path"]) else self.limit
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _reply(send, 400, "the Content-Length header is not a number")
                return
            if int(declared) > limit:
                await _reply(send, 413, f"the request body is {int(declared)} bytes; this server "
                                        f"takes at most {limit} here")
                return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if not started:
                await _reply(send, 413, f"the request body passed {limit} bytes, the most this "
                                        "server takes here")


async def _reply(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message, "hint": "send less, or ask the server's operator to raise "
                                                 "its limits" if status == 413 else ""}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
