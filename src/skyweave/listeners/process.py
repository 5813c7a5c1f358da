"""A private listener in its own process (``skyweave listen``), reading its own bus consumer group.

Another team runs it on another host with nothing but the bus URL::

    skyweave listen 'activity.failed,run.*' --exec 'notify-duty' --group duty-pager --bus URL

* **What it hears**: the controller's announcements (``run.<state>``, ``activity.<state>``,
  ``product.created``) whose topic matches one of the patterns (``fnmatch``), in bus order.
* **At least once**: an event is committed for the group only after its handler has returned
  (whatever it returned), so a listener killed and started again with the same group resumes
  after the last event it finished: the one in its hands when it died comes again.
* **Cannot slow the controller**: it only reads the event log and moves its own group's offset;
  the controller never waits for it.  A handler that fails (raises, exits non-zero, runs past
  ``timeout_s``) is tried ``retries`` more times with a growing pause, then logged and skipped.
* **A command** (``--exec``) gets the event as one JSON object on stdin (``event_json``) and the
  main fields as environment variables (``event_env``).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shlex
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from skyweave.bus.base import CONTROLLER_GROUP, Bus, Delivered
from skyweave.errors import DefinitionError
from skyweave.listeners.base import Listener, ListenerContext
from skyweave.listeners.host import announcement

log = logging.getLogger(__name__)

_BATCH = 64
_IDLE_WAIT_S = 0.2

Handler = Callable[[str, Any, str], None]
"""``(topic, event, offset)``; raises when the event was not handled."""


def split_patterns(text: str) -> tuple[str, ...]:
    patterns = tuple(p.strip() for p in text.split(",") if p.strip())
    if not patterns:
        raise DefinitionError("no topic pattern given",
                              hint="e.g. skyweave listen 'activity.failed,run.*' --exec CMD")
    return patterns


def check_group(group: str) -> str:
    if not group.strip():
        raise DefinitionError("the consumer group name is empty", hint="pass --group NAME")
    if group == CONTROLLER_GROUP:
        raise DefinitionError(f"the group {CONTROLLER_GROUP!r} is the controller's own",
                              hint="give your listener a group of its own: --group NAME")
    return group


def event_json(topic: str, event: Any, offset: str) -> dict[str, Any]:
    """What a command reads on stdin: ``{"topic", "offset", "event": {fields...}}``."""
    fields = msgspec.to_builtins(event)
    assert isinstance(fields, dict)
    return {"topic": topic, "offset": offset, "event": fields}


def event_env(topic: str, event: Any, offset: str) -> dict[str, str]:
    """``SKYWEAVE_TOPIC``, ``SKYWEAVE_OFFSET`` and, when the event has them, ``SKYWEAVE_RUN_ID``,
    ``SKYWEAVE_ACTIVITY_ID``, ``SKYWEAVE_TASK``, ``SKYWEAVE_STATE``, ``SKYWEAVE_PRODUCT_ID``."""
    env = {"SKYWEAVE_TOPIC": topic, "SKYWEAVE_OFFSET": str(offset)}
    for name, var in (("run_id", "RUN_ID"), ("activity_id", "ACTIVITY_ID"), ("task", "TASK"),
                      ("state", "STATE")):
        value = getattr(event, name, None)
        if value is not None:
            env[f"SKYWEAVE_{var}"] = str(value)
    product = getattr(event, "product", None)
    if product is not None:
        env["SKYWEAVE_PRODUCT_ID"] = str(product.id)
    return env


@dataclass
class CommandHandler:
    """Runs ``command`` once per event (not through a shell: ``sh -c '...'`` for pipes)."""

    command: str
    timeout_s: float | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    def __post_init__(self) -> None:
        self.argv = shlex.split(self.command)
        if not self.argv:
            raise DefinitionError("--exec was given an empty command", hint="e.g. --exec './notify.sh'")

    def __call__(self, topic: str, event: Any, offset: str) -> None:
        data = json.dumps(event_json(topic, event, offset)).encode()
        try:
            env = {**self.environ, **event_env(topic, event, offset)}
            done = subprocess.run(self.argv, input=data, env=env, timeout=self.timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"{self.command!r} ran past {self.timeout_s} s on {topic}") from exc
        except OSError as exc:
            raise RuntimeError(f"cannot run {self.command!r}: {exc.strerror or exc}") from exc
        if done.returncode != 0:
            raise RuntimeError(f"{self.command!r} exited {done.returncode} on {topic}")


def listener_handler(lst: Listener) -> Handler:
    ctx = ListenerContext(log=logging.getLogger(f"skyweave.listener.{lst.name}"))

    def handle(topic: str, event: Any, _offset: str) -> None:
        if lst.wants(topic):
            lst.on_event(topic, event, ctx)

    return handle


class ListenLoop:
    """Reads ``group`` on ``bus`` and hands each matching announcement to ``handler``, in order,
    committing after each one (see the module docstring)."""

    def __init__(self, bus: Bus, group: str, patterns: Sequence[str], handler: Handler, *,
                 retries: int = 3, backoff_s: float = 1.0) -> None:
        self.bus = bus
        self.group = check_group(group)
        self.patterns = tuple(patterns)
        self.handler = handler
        self.retries = retries
        self.backoff_s = backoff_s
        self.stop = threading.Event()
        self.handled = 0
        self.failed = 0

    def wants(self, topic: str) -> bool:
        return any(fnmatch.fnmatchcase(topic, p) for p in self.patterns)

    def join(self) -> None:
        """Make the group known to the bus: events from now on are kept until it has read them."""
        self.bus.read(self.group, 1)  # reads, never commits (0 is refused by the Redis bus)

    def run(self) -> None:
        """Until ``stop`` is set: an event in hand is finished (and committed) first."""
        self.join()
        while not self.stop.is_set():
            try:
                items = self.bus.read(self.group, _BATCH)
            except Exception:
                log.exception("cannot read the bus (group %s); trying again", self.group)
                self.stop.wait(1.0)
                continue
            if not items:
                self.bus.wait(_IDLE_WAIT_S)
                continue
            try:
                self.step(items)
            except Exception:  # e.g. the commit failed: what was not committed comes again
                log.exception("cannot commit for group %s; reading again", self.group)
                self.stop.wait(1.0)

    def step(self, items: Sequence[Delivered]) -> None:
        skipped: str | None = None
        for item in items:
            if self.stop.is_set():
                break
            event = announcement(item)
            if event is None or not self.wants(event[0]):
                skipped = item.offset
                continue
            if not self._handle(event[0], event[1], item.offset):
                break  # stopped while it failed: not committed, it comes again
            self.bus.commit(self.group, item.offset)
            skipped = None
        if skipped is not None:
            self.bus.commit(self.group, skipped)

    def _handle(self, topic: str, event: Any, offset: str) -> bool:
        """Handle one event; False if stopped before it was handled or given up on."""
        pause = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                self.handler(topic, event, offset)
            except Exception as exc:
                if self.stop.is_set():
                    log.warning("stopped while handling %s (offset %s) failed: %s; it comes again "
                                "when the group %s is read next", topic, offset, exc, self.group)
                    return False
                if attempt < self.retries:
                    log.warning("handling %s (offset %s) failed: %s; trying again in %.3g s",
                                topic, offset, exc, pause)
                    self.stop.wait(pause)
                    pause *= 2
                    continue
                self.failed += 1
                log.error("handling %s (offset %s) failed %d time(s); skipped: %s",
                          topic, offset, attempt + 1, exc)
                return True
            self.handled += 1
            return True
        return True
