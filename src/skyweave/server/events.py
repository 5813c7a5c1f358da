"""Live run events for every connected client from one bus reader (``EventHub``).

One thread reads the controller's announcements (``run.<state>``, ``activity.<state>``,
``product.created``) through the server's own consumer group and hands each to the subscribers
that want it, on their event loop; no client polls anything.  A run's subscribers also get
``progress`` events (its activities counted by state): the counts are read from the store at most
every ``progress_s`` per run, and only after an announcement about that run arrived, once for all
its subscribers.

A subscriber that does not keep up (``QUEUE_SIZE`` events waiting) loses the events that do not
fit and is marked ``lagged``: its stream sends a fresh snapshot once it has caught up
(``server/routes_runs.py``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from skyweave.bus.base import Bus
from skyweave.listeners.host import announcement
from skyweave.model.messages import ActivityStateChanged, ProductCreated, RunStateChanged
from skyweave.model.states import RUN_TERMINAL
from skyweave.store.base import Store

log = logging.getLogger(__name__)

QUEUE_SIZE = 10_000
_BATCH = 512

DONE_STATES = ("succeeded", "failed", "skipped", "cancelled")


def run_progress(store: Store, run_id: str) -> dict[str, Any]:
    """A run's state and its activities counted by state (what a progress bar shows)."""
    head = store.get_run_head(run_id)
    counts = store.count_activities(run_id)
    return {"run_id": run_id, "status": head.state, "by_state": counts, "total": sum(counts.values()),
            "done": sum(v for k, v in counts.items() if k in DONE_STATES)}


def event_of(body: Any) -> tuple[str, str | None, dict[str, Any]] | None:
    """``(SSE event name, run id, data)`` of an announcement."""
    if isinstance(body, RunStateChanged):
        return "run", body.run_id, {"run_id": body.run_id, "status": body.state, "at": body.at}
    if isinstance(body, ActivityStateChanged):
        return "activity", body.run_id, {"run_id": body.run_id, "activity_id": body.activity_id,
                                         "task": body.task, "state": body.state, "at": body.at}
    if isinstance(body, ProductCreated):
        p = body.product
        return "product", body.run_id, {"run_id": body.run_id, "activity_id": body.activity_id,
                                        "product_id": p.id, "name": p.name, "type": p.type,
                                        "size": p.size, "at": body.at}
    return None


@dataclass(eq=False)
class Subscriber:
    loop: asyncio.AbstractEventLoop
    run_id: str | None
    """Only this run's events (with progress); ``None``: every run's (no progress)."""
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    lagged: bool = False

    def offer(self, item: tuple[str, dict[str, Any]]) -> None:
        """Called on the subscriber's loop."""
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.lagged = True  # the stream sends a snapshot once it has drained the queue


class EventHub:
    def __init__(self, bus: Bus, store: Store, *, group: str = "server", progress_s: float = 0.25) -> None:
        self.bus = bus
        self.store = store
        self.group = group
        self.progress_s = progress_s
        self._subs: set[Subscriber] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._dirty: dict[str, float] = {}
        """Runs with an announcement since their last progress event -> when it came."""
        self._last_progress: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, name="skyweave-server-events", daemon=True)

    def start(self) -> EventHub:
        self._skip_history()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=10)

    def subscribe(self, run_id: str | None) -> Subscriber:
        sub = Subscriber(asyncio.get_running_loop(), run_id)
        with self._lock:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subs.discard(sub)

    # -- the reader thread ---------------------------------------------------------------------------
    def _skip_history(self) -> None:
        """Commit what is on the bus already: clients hear what happens from now on."""
        while items := self.bus.read(self.group, _BATCH):
            self.bus.commit(self.group, items[-1].offset)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:
                log.exception("reading run events from the bus failed; trying again")
                self._stop.wait(1.0)

    def _step(self) -> None:
        items = self.bus.read(self.group, _BATCH)
        for item in items:
            found = announcement(item)
            event = event_of(found[1]) if found is not None else None
            if event is not None:
                self._deliver(*event)
        if items:
            self.bus.commit(self.group, items[-1].offset)
        self._send_progress()
        if not items:
            self.bus.wait(self.progress_s if self._dirty else 1.0)

    def _targets(self, run_id: str | None) -> list[Subscriber]:
        with self._lock:
            return [s for s in self._subs if s.run_id is None or s.run_id == run_id]

    def _deliver(self, name: str, run_id: str | None, data: dict[str, Any]) -> None:
        targets = self._targets(run_id)
        if run_id is not None and any(s.run_id == run_id for s in targets):
            if name == "run" and data["status"] in RUN_TERMINAL:
                self._progress(run_id)  # the final counts, before the event that ends the stream
                self._last_progress.pop(run_id, None)
            else:
                self._dirty.setdefault(run_id, time.monotonic())
        for sub in targets:
            sub.loop.call_soon_threadsafe(sub.offer, (name, data))

    def _send_progress(self) -> None:
        now = time.monotonic()
        for run_id in list(self._dirty):
            if now - self._last_progress.get(run_id, 0.0) >= self.progress_s:
                self._progress(run_id)

    def _progress(self, run_id: str) -> None:
        self._dirty.pop(run_id, None)
        self._last_progress[run_id] = time.monotonic()
        data = run_progress(self.store, run_id)
        for sub in self._targets(run_id):
            if sub.run_id == run_id:
                sub.loop.call_soon_threadsafe(sub.offer, ("progress", data))
