"""Triggers: runs that start themselves when files or objects arrive, a message or VOEvent packet
comes in on the bus, or a schedule ticks - one run per event (``skyweave triggers``,
docs/triggers.md)."""

from skyweave.model.triggers import FiringState, PausePolicy, TriggerKind, TriggerSpec, TriggerState
from skyweave.triggers.declare import (
    load_triggers,
    make_trigger,
    on_files,
    on_messages,
    on_objects,
    on_schedule,
    on_voevents,
    parse_triggers,
)

__all__ = [
    "FiringState",
    "PausePolicy",
    "TriggerKind",
    "TriggerSpec",
    "TriggerState",
    "load_triggers",
    "make_trigger",
    "on_files",
    "on_messages",
    "on_objects",
    "on_schedule",
    "on_voevents",
    "parse_triggers",
]
