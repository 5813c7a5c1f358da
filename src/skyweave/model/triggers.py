"""Triggers as data: what starts runs by itself, and the ledger of what each one fired.

A ``TriggerSpec`` names a source of events (files arriving in a folder, objects in a bucket,
messages on the bus, VOEvent packets, a cron schedule), the workflow each event starts and the
parameters it fills from the event.  Every event has a natural ``key`` (path + size + mtime,
bucket + key + ETag, message id, schedule tick); a ``Firing`` is the ledger row of one key, and the
store holds at most one per (trigger, key): that is what makes one run per event.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec


class TriggerKind(StrEnum):
    FILES = "files"
    OBJECTS = "objects"
    MESSAGES = "messages"
    VOEVENTS = "voevents"
    SCHEDULE = "schedule"


class TriggerState(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"


class PausePolicy(StrEnum):
    KEEP = "keep"
    """Events that arrive while paused are held, and each starts its own run on resume."""
    COALESCE = "coalesce"
    """Events that arrive while paused are held; on resume the newest starts one run and the others
    are recorded as coalesced into it."""


class FiringState(StrEnum):
    FIRED = "fired"
    """A run was created for the event (``run_id``)."""
    HELD = "held"
    """Waiting: the trigger is paused or at its concurrency limit."""
    COALESCED = "coalesced"
    """Not run: folded into a later event's run (``reason`` names it)."""
    REJECTED = "rejected"
    """Not run: the event was malformed or its parameters could not be filled (``reason``)."""
    IGNORED = "ignored"
    """Not run: the event did not concern this trigger (a test packet, another stream)."""


PRUNABLE_KINDS = frozenset({TriggerKind.SCHEDULE, TriggerKind.MESSAGES, TriggerKind.VOEVENTS})
"""Kinds whose ledger rows retention may delete once old: a schedule resumes from its cursor and a
message is read once by its trigger's consumer group, so an old key never comes back.  A files or
objects trigger rescans its folder or bucket: its ledger is the memory of what it has seen there,
and deleting a row would start a run again for a file still in place."""


class TriggerSpec(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    kind: TriggerKind
    workflow: str
    """What each event starts: ``path.py:workflow``, ``module:workflow`` or a YAML file."""
    source: dict[str, Any] = msgspec.field(default_factory=dict)
    """Kind-specific settings: ``folder``/``glob``/``pattern``/``settle_s`` (files), ``url``/
    ``pattern`` (objects), ``topic`` (messages, voevents), ``streams``/``roles`` (voevents),
    ``cron``/``timezone``/``catchup`` (schedule)."""
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    """Workflow parameters: a string is a template filled from the event's fields (``"{path}"``;
    exactly one ``{field}`` keeps the field's own type), anything else is passed as it is."""
    priority: int = 0
    concurrency: int | None = None
    """At most this many unfinished runs started by this trigger at once (``None``: no limit)."""
    on_pause: PausePolicy = PausePolicy.KEEP
    labels: dict[str, str] = msgspec.field(default_factory=dict)


class TriggerRecord(msgspec.Struct, kw_only=True):
    """A trigger as stored: its spec, whether it is paused, its cursor and counters."""

    spec: TriggerSpec
    state: TriggerState = TriggerState.ACTIVE
    cursor: str | None = None
    """Where a source with an order resumes (the last schedule tick fired)."""
    skipped: int = 0
    """Events seen again after they were already in the ledger (not fired twice)."""
    created_at: float = 0.0
    updated_at: float = 0.0


class TriggerEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One event a source observed: its natural key and the fields parameters are filled from."""

    key: str
    fields: dict[str, Any] = msgspec.field(default_factory=dict)
    at: float = 0.0
    """When it happened (file mtime, message time, tick), epoch seconds."""
    state: FiringState | None = None
    """Set by a source that already knows the event must not run (``rejected``/``ignored``)."""
    reason: str = ""


class Firing(msgspec.Struct, kw_only=True):
    """The ledger row of one event of one trigger."""

    trigger: str
    key: str
    state: FiringState
    at: float
    """When the event happened."""
    recorded_at: float
    fields: dict[str, Any] = msgspec.field(default_factory=dict)
    run_id: str | None = None
    reason: str = ""
    seq: int = 0
