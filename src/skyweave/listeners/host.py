"""Runs listeners on their own thread, each with its own bus consumer group.

A listener that raises is logged and counted, never propagated; a slow listener only delays its
own group (the controller reads the same events through its own group).
"""

from __future__ import annotations

import logging
import threading

from skyweave.bus.base import Bus
from skyweave.errors import MessageError
from skyweave.listeners.base import Listener, ListenerContext, Submit
from skyweave.model.messages import decode_message, topic_of

log = logging.getLogger(__name__)


class ListenerHost:
    def __init__(self, bus: Bus, listeners: list[Listener], *, submit: Submit | None = None) -> None:
        self.bus = bus
        self.listeners = listeners
        self.errors: dict[str, int] = {}
        self.delivered: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ctx = {lst.name: ListenerContext(log=logging.getLogger(f"skyweave.listener.{lst.name}"),
                                               submit=submit) for lst in listeners}

    def group(self, lst: Listener) -> str:
        return f"listener:{lst.name}"

    def step(self, wait: float = 0.1) -> int:
        handled = 0
        for lst in self.listeners:
            items = self.bus.read(self.group(lst), 256)
            for item in items:
                try:
                    body = decode_message(item.data).body
                except MessageError:
                    continue  # the controller dead-letters it
                topic = topic_of(body)
                if not lst.wants(topic):
                    continue
                try:
                    lst.on_event(topic, body, self._ctx[lst.name])
                    self.delivered[lst.name] = self.delivered.get(lst.name, 0) + 1
                except Exception:
                    self.errors[lst.name] = self.errors.get(lst.name, 0) + 1
                    log.exception("listener %s failed on %s (the controller goes on)", lst.name, topic)
                handled += 1
            if items:
                self.bus.commit(self.group(lst), items[-1].offset)
        if not handled:
            self.bus.wait(wait)
        return handled

    def start(self) -> None:
        for lst in self.listeners:
            self.bus.read(self.group(lst), 0)  # make the group known before events flow

        def loop() -> None:
            while not self._stop.is_set():
                self.step()

        self._thread = threading.Thread(target=loop, name="skyweave-listeners", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after delivering what is already on the bus (bounded, so a flood cannot hang it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for _ in range(100):
            if not self.step(0.0):
                break
