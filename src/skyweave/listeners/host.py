"""Runs each listener on its own thread, reading its own bus consumer group.

* **What a listener hears**: the controller's announcements only (``run.<state>``,
  ``activity.<state>``, ``product.created``; ``model.messages.ANNOUNCEMENTS``), one per fact.  The
  workers' reports and the requests of other processes travel on the same event log but are the
  controller's input, not facts yet: an activity that failed is announced once, by the controller,
  with its run and task.
* **Isolation**: one thread per listener, so a slow listener delays only itself; the controller
  reads the same events through its own group.  A listener that raises is logged and counted,
  never propagated.  ``ctx.submit`` is serialised between listener threads.
* **Order and once**: a listener's thread is the only reader of its group; it hands the events to
  the listener in bus order and commits its offset after each batch (and when it stops), so each
  event reaches each listener once (a durable bus redelivers, after a crash, what was delivered but
  not committed).
* **Stopping** (``stop``): every thread delivers what is already on the bus, then ends.  The whole
  drain is bounded by ``drain_s`` (the ``listener_drain_s`` setting): a listener still busy then is
  left to finish the event it is handling and given nothing more; what it was not given is counted
  in ``undelivered`` and logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from skyweave.bus.base import Bus, Delivered
from skyweave.errors import DefinitionError, MessageError
from skyweave.listeners.base import Listener, ListenerContext, Submit
from skyweave.model.messages import ANNOUNCEMENTS, decode_message, topic_of

log = logging.getLogger(__name__)

_BATCH = 256
_IDLE_WAIT_S = 0.05
"""How long an idle listener thread waits for new events before looking again (and at ``stop``)."""


def announcement(item: Delivered) -> tuple[str, Any] | None:
    """``(topic, message)`` of a controller announcement; ``None`` for anything else on the log."""
    try:
        body = decode_message(item.data).body
    except MessageError:
        return None  # the controller dead-letters it
    if not isinstance(body, ANNOUNCEMENTS):
        return None
    return topic_of(body), body


class _Feed(threading.Thread):
    """One listener's thread: read its group, deliver in order, commit."""

    def __init__(self, host: ListenerHost, listener: Listener) -> None:
        super().__init__(name=f"skyweave-listener-{listener.name}", daemon=True)
        self.host = host
        self.listener = listener
        self.group = host.group(listener)
        self.ctx = ListenerContext(log=logging.getLogger(f"skyweave.listener.{listener.name}"),
                                   submit=host.submit)
        self.lock = threading.Lock()
        """Guards ``abandoned``, ``position`` and ``current`` (read by ``ListenerHost.stop``)."""
        self.abandoned = False
        self.position: str | None = None
        """Offset of the last event handled (delivered, or skipped as not wanted)."""
        self.current: str | None = None
        """The topic being delivered right now."""

    def run(self) -> None:
        while True:
            try:
                items = self.host.bus.read(self.group, _BATCH)
            except Exception:
                if self.host.stopping.is_set():
                    return
                log.exception("listener %s cannot read the bus; trying again", self.listener.name)
                self.host.stopping.wait(1.0)
                continue
            if not items:
                if self.host.stopping.is_set():
                    return  # drained
                self.host.bus.wait(_IDLE_WAIT_S)
                continue
            done = self._deliver(items)
            self._commit()
            if not done:
                return

    def _deliver(self, items: Sequence[Delivered]) -> bool:
        """Hand ``items`` to the listener in order; False once abandoned."""
        for item in items:
            event = announcement(item)
            wanted = event is not None and self.listener.wants(event[0])
            with self.lock:
                if self.abandoned:
                    return False
                if not wanted:
                    self.position = item.offset
                    continue
                assert event is not None
                self.current = event[0]
            topic, body = event
            try:
                self.listener.on_event(topic, body, self.ctx)
                self.host.count(self.host.delivered, self.listener.name)
            except Exception:
                self.host.count(self.host.errors, self.listener.name)
                log.exception("listener %s failed on %s (the controller goes on)", self.listener.name, topic)
            with self.lock:
                self.position = item.offset
                self.current = None
        return True

    def _commit(self) -> None:
        if self.position is not None:
            try:
                self.host.bus.commit(self.group, self.position)
            except Exception:  # the bus may be closed after an abandoned listener's last event
                if not self.abandoned:
                    raise
                log.debug("listener %s could not commit after stop", self.listener.name, exc_info=True)


class ListenerHost:
    def __init__(self, bus: Bus, listeners: list[Listener], *, submit: Submit | None = None,
                 drain_s: float = 5.0) -> None:
        names = Counter(lst.name for lst in listeners)
        twice = sorted(name for name, n in names.items() if n > 1)
        if twice:
            raise DefinitionError(
                f"two listeners are named {twice[0]!r}; each needs its own name (it names its bus group)",
                hint="rename one of the functions, or set `name = ...` on the Listener class")
        self.bus = bus
        self.listeners = listeners
        self.drain_s = drain_s
        self.errors: dict[str, int] = {}
        self.delivered: dict[str, int] = {}
        self.undelivered: dict[str, int] = {}
        """Per listener: events it was not given because the drain at ``stop`` ran out of time."""
        self.stopping = threading.Event()
        self._count_lock = threading.Lock()
        self._submit_lock = threading.Lock()
        self._submit = submit
        self.submit: Submit | None = self._submit_serialised if submit is not None else None
        self._feeds: list[_Feed] = []

    def group(self, lst: Listener) -> str:
        return f"listener:{lst.name}"

    def count(self, counts: dict[str, int], name: str) -> None:
        with self._count_lock:
            counts[name] = counts.get(name, 0) + 1

    def _submit_serialised(self, target: str, params: dict[str, Any], priority: int) -> str:
        assert self._submit is not None
        with self._submit_lock:
            return self._submit(target, params, priority)

    def start(self) -> None:
        for lst in self.listeners:
            self.bus.read(self.group(lst), 1)  # the group is known from now on (a read never commits)
        self._feeds = [_Feed(self, lst) for lst in self.listeners]
        for feed in self._feeds:
            feed.start()

    def stop(self) -> None:
        """Deliver what is on the bus, for at most ``drain_s`` seconds in all; then count and log
        what a listener still busy was not given."""
        self.stopping.set()
        deadline = time.monotonic() + self.drain_s
        for feed in self._feeds:
            feed.join(max(0.0, deadline - time.monotonic()))
        for feed in self._feeds:
            if feed.is_alive():
                self._abandon(feed)

    def _abandon(self, feed: _Feed) -> None:
        with feed.lock:
            feed.abandoned = True
            position, current = feed.position, feed.current
        topics: Counter[str] = Counter()
        try:
            items = self.bus.read(feed.group, 1_000_000)
        except Exception:  # counting is best effort; the warning below still says it was cut short
            log.debug("cannot count what listener %s missed", feed.listener.name, exc_info=True)
            items = []
        skip = 1 if current is not None else 0  # the event in its hands is being delivered
        offsets = [item.offset for item in items]  # opaque: found, never compared
        if position in offsets:  # handled but not committed yet
            items = items[offsets.index(position) + 1:]
        for item in items:
            event = announcement(item)
            if event is None or not feed.listener.wants(event[0]):
                continue
            if skip:
                skip -= 1
                continue
            topics[event[0]] += 1
        missed = sum(topics.values())
        if not missed and current is None:
            return  # it was between two looks at the bus, with nothing left for it
        self.undelivered[feed.listener.name] = missed
        busy = f"still handling {current}" if current is not None else "still busy"
        what = ", ".join(f"{topic} x{n}" for topic, n in sorted(topics.items()))
        log.warning("listener %s was %s after %.3g s (listener_drain_s): %d event(s) not delivered%s",
                    feed.listener.name, busy, self.drain_s, missed, f" ({what})" if what else "")
