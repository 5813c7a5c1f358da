"""Typed request bodies of the API (responses are the store's records as JSON)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubmitRequest(Body):
    workflow: str = Field(..., min_length=1, max_length=500,
                          description="A registered workflow's name (`NAME` or `NAME@VERSION`; "
                                      "GET /api/v1/workflows), or a workflow the server can load: "
                                      "`module:NAME` (an installed package) or `PATH.py:NAME` / "
                                      "`PATH.yaml` relative to the server's workflow directory "
                                      "(`--workflows`).")
    version: str | None = Field(None, min_length=1, max_length=64,
                                description="The registered workflow's version (default: the latest).")
    params: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(0, ge=-1_000_000, le=1_000_000)
    labels: dict[str, str] = Field(default_factory=dict)


class PriorityRequest(Body):
    priority: int = Field(..., ge=-1_000_000, le=1_000_000)


class ReprocessRequest(Body):
    run: str | None = None
    product: str | None = None
    task: str | None = None
    version: str | None = None
