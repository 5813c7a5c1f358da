"""Reading a run's server-sent events (they feed ``progress.CountsBar``: a widget in Jupyter, a
text bar in a terminal)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx

from skyweave.remote.http import raise_for

Event = tuple[str, dict[str, Any]]


def parse_sse(lines: Iterator[str]) -> Iterator[Event]:
    """``(event, data)`` of each message of an SSE stream (comments and keep-alives skipped)."""
    name, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", list[str]()
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)


def run_events(http: httpx.Client, run_id: str, *, read_timeout: float) -> Iterator[Event]:
    """The events of one connection to ``/runs/{run_id}/events`` (until ``end`` or a cut)."""
    timeout = httpx.Timeout(10.0, read=read_timeout)
    with http.stream("GET", f"/api/v1/runs/{run_id}/events", timeout=timeout) as response:
        if response.status_code != 200:
            response.read()
            raise_for(response)
        yield from parse_sse(response.iter_lines())
