"""Listeners shipped with skyweave."""

from __future__ import annotations

from typing import Any

from skyweave.listeners.base import Listener, ListenerContext


class LogListener(Listener):
    """Logs failures and finished runs to the framework log (entry point ``log``)."""

    name = "log"
    patterns = ("activity.failed", "run.succeeded", "run.failed", "run.cancelled")

    def on_event(self, topic: str, event: Any, ctx: ListenerContext) -> None:
        ctx.log.info("%s %s", topic, event)
