"""Rows of the store as plain structs: runs, activities, attempts, products, usages, events.

Times are float seconds since the Unix epoch (UTC) inside the engine, because the hot path writes
hundreds of thousands of them; ``utc()`` turns one into an aware ``datetime`` at the edges (CLI,
API, provenance exports).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import msgspec


def utc(ts: float | None) -> datetime | None:
    """An aware UTC datetime for an engine timestamp (``None`` stays ``None``)."""
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC)


class RunRecord(msgspec.Struct, kw_only=True):
    id: str
    workflow: str
    state: str
    workflow_ref: str = ""
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    priority: int = 0
    graph: dict[str, Any] = msgspec.field(default_factory=dict)
    """The workflow's node graph as built at submission (JSON); the controller needs only this."""
    pins: dict[str, str] = msgspec.field(default_factory=dict)
    """Task name -> version pinned for this run; unpinned tasks use the registry's current version."""
    parent_run: str | None = None
    parent_activity: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    workflow_hash: str = ""
    """``sha256:<hex>`` of the registered workflow version's code snapshot when the run was
    submitted by name (``workflow_ref`` is then ``NAME@VERSION``); empty otherwise."""


class Detour(msgspec.Struct, kw_only=True):
    """One backtrack or wait taken by an activity, recorded on it."""

    kind: str
    """``lookup`` (searched the store), ``found`` (an existing product was bound), ``provide`` (a
    provider activity ran), ``park`` (waited for a product), ``deadline`` (gave up waiting)."""
    product_type: str
    param: str
    reason: str = ""
    at: float = 0.0
    provider_activity: str | None = None
    product_id: str | None = None
    ended_at: float | None = None
    match: dict[str, Any] = msgspec.field(default_factory=dict)
    provider_params: dict[str, Any] = msgspec.field(default_factory=dict)
    until: float | None = None
    """For ``park``: the deadline."""


class ActivityRecord(msgspec.Struct, kw_only=True):
    id: str
    run_id: str
    node: str
    task_name: str
    task_version: str
    state: str
    key: str = ""
    """Position in a fan-out: ``""`` for a single activity, ``"3"`` or ``"3.1"`` inside maps."""
    code_hash: str = ""
    priority: int = 0
    arguments: dict[str, Any] = msgspec.field(default_factory=dict)
    result: Any = None
    attempt: int = 0
    max_attempts: int = 1
    created_at: float = 0.0
    queued_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    worker: str | None = None
    host: str | None = None
    exit_code: int | None = None
    """Command and image tasks: the exit status of the last attempt's process (0 included)."""
    command: str | None = None
    """Command and image tasks: the rendered command line of the last attempt."""
    image_digest: str | None = None
    """The content digest (``sha256:…``) of the container image the last attempt ran in, as the
    engine resolved it when it started the container (``None``: not in a container)."""
    error: dict[str, Any] | None = None
    log_uri: str | None = None
    usage: dict[str, Any] | None = None
    aspects: list[str] = msgspec.field(default_factory=list)
    detours: list[Detour] = msgspec.field(default_factory=list)
    parent_activity: str | None = None
    iteration: int = 0
    cache_key: str | None = None


class AttemptRecord(msgspec.Struct, kw_only=True):
    activity_id: str
    attempt: int
    state: str
    worker: str | None = None
    host: str | None = None
    pid: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    error: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    image_digest: str | None = None
    """The content digest of the container image this attempt ran in (``None``: none)."""


class ProductRecord(msgspec.Struct, kw_only=True):
    id: str
    uri: str
    type: str = "file"
    name: str = ""
    obs_id: str | None = None
    detector: str | None = None
    version: str | None = None
    checksum: str | None = None
    size: int | None = None
    created_at: float = 0.0
    activity_id: str | None = None
    """The activity that generated it; ``None`` for products added from outside."""
    run_id: str | None = None
    attributes: dict[str, Any] = msgspec.field(default_factory=dict)
    state: str = "available"
    """``available`` or ``deleted`` (the file is gone; the row and its provenance stay)."""

    @property
    def local_path(self) -> Path:
        """The file on this machine, for ``file://`` products."""
        if not self.uri.startswith("file://"):
            raise ValueError(f"product {self.id} is at {self.uri}, not a local file")
        return Path(unquote(urlparse(self.uri).path))


class UsageRecord(msgspec.Struct, kw_only=True):
    """An activity used a product in a role (the parameter name)."""

    activity_id: str
    product_id: str
    role: str


class TokenRecord(msgspec.Struct, kw_only=True):
    """An API token of the server (``skyweave tokens``): only the sha256 of its secret is kept."""

    id: str
    name: str
    scopes: list[str]
    """``read`` (look), ``write`` (submit, control, upload; implies read)."""
    secret_hash: str
    created_at: float
    revoked_at: float | None = None


class WorkflowRecord(msgspec.Struct, kw_only=True):
    """A registered workflow version (``skyweave workflows register``): submitted by name and
    version, it runs from ``source``, the code snapshot taken when it was registered."""

    name: str
    version: str
    kind: str
    """``python`` (a ``@workflow`` in a ``.py`` file) or ``declarative`` (``.yaml``/``.yml``/``.json``)."""
    filename: str
    """The snapshot's file name (``pipeline.py``, ``flow.yaml``)."""
    entry: str
    """The ``@workflow`` attribute in the file (a declarative file's ``workflow:`` name)."""
    source: str
    """The code snapshot: the file's text when it was registered."""
    code_hash: str
    """``sha256:<hex>`` of ``source`` (UTF-8): what a run of this version ran."""
    origin: str
    """Where it was registered from (a path, ``module:NAME``, an upload), for people."""
    registered_at: float


class Changeset(msgspec.Struct, kw_only=True):
    """Everything one batch of controller decisions writes, applied in one transaction."""

    runs: list[RunRecord] = msgspec.field(default_factory=list)
    activities: list[ActivityRecord] = msgspec.field(default_factory=list)
    attempts: list[AttemptRecord] = msgspec.field(default_factory=list)
    products: list[ProductRecord] = msgspec.field(default_factory=list)
    usages: list[UsageRecord] = msgspec.field(default_factory=list)
    lease_owner: str = ""
    """Fencing: when set, the transaction commits only while this owner holds a live controller
    lease (checked inside it); otherwise nothing is written and ``LeaseLostError`` is raised."""

    def __bool__(self) -> bool:
        return bool(self.runs or self.activities or self.attempts or self.products or self.usages)
