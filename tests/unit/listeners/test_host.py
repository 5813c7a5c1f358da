"""The listener host: each listener on its own thread, once and in order, a bounded drain at stop.

Timing is observed through events, never seconds: the ``timeout`` passed to ``Event.wait`` below
only keeps a broken host from hanging the suite.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from skyweave.bus.memory import MemoryBus
from skyweave.errors import DefinitionError
from skyweave.listeners import Listener, ListenerContext, ListenerHost, listener
from skyweave.model import messages as m

GUARD_S = 10.0
"""Only so that a host that never delivers fails the test instead of hanging it."""


def announce(bus: MemoryBus, n: int, *, state: str = "succeeded") -> list[str]:
    """Publish ``n`` activity announcements (with a worker report in between, which listeners
    must not hear); returns the activity ids in order."""
    ids = [f"act-{i:02d}" for i in range(n)]
    for i, aid in enumerate(ids):
        bus.publish([m.encode_message(f"rep-{i}", m.ActivityFinished(activity_id=aid, attempt=1)),
                     m.encode_message(f"evt-{i}", m.ActivityStateChanged(
                         activity_id=aid, run_id="run-1", task="calibrate", state=state))])
    return ids


class Recorder(Listener):
    """Records the activity ids it is given; can block on the ``block_at``-th event until ``gate``."""

    patterns = ("activity.*",)

    def __init__(self, name: str, *, block_at: int | None = None, gate: threading.Event | None = None) -> None:
        self.name = name
        self.got: list[str] = []
        self.block_at = block_at
        self.gate = gate or threading.Event()
        self.entered = threading.Event()
        """Set when the ``block_at``-th event has been handed over."""
        self.gate_was_open: bool | None = None

    def on_event(self, topic: str, event: Any, ctx: ListenerContext) -> None:
        if len(self.got) == self.block_at:
            self.entered.set()
            self.gate_was_open = self.gate.wait(GUARD_S)
        self.got.append(event.activity_id)


class Counting(Recorder):
    """Opens ``done`` once it holds ``n`` events."""

    def __init__(self, name: str, n: int) -> None:
        super().__init__(name)
        self.n = n
        self.done = threading.Event()

    def on_event(self, topic: str, event: Any, ctx: ListenerContext) -> None:
        super().on_event(topic, event, ctx)
        if len(self.got) == self.n:
            self.done.set()


def test_a_slow_listener_does_not_delay_a_fast_one() -> None:
    bus = MemoryBus()
    n = 30
    fast = Counting("fast", n)
    # the slow one is first in the list, and cannot finish its first event before the fast one
    # holds all n: with one thread for both, it would wait for ever (here: the guard) and see a
    # closed gate
    slow = Recorder("slow", block_at=0, gate=fast.done)
    host = ListenerHost(bus, [slow, fast], drain_s=GUARD_S)
    host.start()
    ids = announce(bus, n)
    assert fast.done.wait(GUARD_S), f"the fast listener got {len(fast.got)} of {n} events"
    host.stop()
    assert slow.gate_was_open is True, "the slow listener's first event ended before the fast one had all"
    assert fast.got == ids
    assert slow.got == ids
    assert host.undelivered == {}


def test_stop_drains_once_and_in_order_while_a_listener_is_still_working() -> None:
    bus = MemoryBus()
    gate = threading.Event()
    busy = Recorder("busy", block_at=0, gate=gate)
    host = ListenerHost(bus, [busy], drain_s=GUARD_S)
    host.start()
    ids = announce(bus, 14)
    assert busy.entered.wait(GUARD_S)
    stopper = threading.Thread(target=host.stop)
    stopper.start()
    assert host.stopping.wait(GUARD_S)
    gate.set()  # the listener finishes its first event after the drain has begun
    stopper.join(GUARD_S)
    assert not stopper.is_alive()
    assert busy.got == ids, "each event once, in bus order"
    assert host.delivered == {"busy": 14}
    assert host.undelivered == {}


def test_the_drain_is_bounded_and_what_was_not_delivered_is_counted(caplog: pytest.LogCaptureFixture) -> None:
    bus = MemoryBus()
    gate = threading.Event()
    stuck = Recorder("stuck", block_at=4, gate=gate)
    host = ListenerHost(bus, [stuck], drain_s=0.0)
    host.start()
    ids = announce(bus, 14)
    assert stuck.entered.wait(GUARD_S)  # handling its fifth event
    with caplog.at_level(logging.WARNING, logger="skyweave.listeners.host"):
        host.stop()
    assert host.undelivered == {"stuck": 9}, "14 events: 4 delivered, 1 in its hands, 9 never given"
    assert "still handling activity.succeeded" in caplog.text
    assert "9 event(s) not delivered (activity.succeeded x9)" in caplog.text
    gate.set()
    for feed in host._feeds:  # the abandoned thread ends after the event in its hands
        feed.join(GUARD_S)
        assert not feed.is_alive()
    assert stuck.got == ids[:5]
    # what it handled is committed (the fifth announcement is offset 10: a report precedes each)
    assert bus.read("listener:stuck", 1)[0].offset == "11"


def test_listeners_hear_announcements_only_and_patterns_filter() -> None:
    bus = MemoryBus()
    heard: list[tuple[str, str]] = []

    @listener("activity.failed", "run.*")
    def note(topic: str, event: Any, ctx: ListenerContext) -> None:
        heard.append((topic, event.run_id))

    host = ListenerHost(bus, [note], drain_s=GUARD_S)
    host.start()
    bus.publish([
        m.encode_message("r1", m.ActivityFailed(activity_id="act-1", attempt=1, message="boom")),
        m.encode_message("r2", m.RunSubmitted(run_id="run-1")),
        m.encode_message("e1", m.ActivityStateChanged(activity_id="act-1", run_id="run-1", task="t",
                                                      state="failed")),
        m.encode_message("e2", m.ActivityStateChanged(activity_id="act-2", run_id="run-1", task="t",
                                                      state="succeeded")),
        m.encode_message("e3", m.RunStateChanged(run_id="run-1", state="failed")),
    ])
    host.stop()
    assert heard == [("activity.failed", "run-1"), ("run.failed", "run-1")]


def test_two_listeners_with_one_name_are_refused() -> None:
    with pytest.raises(DefinitionError, match="two listeners are named 'twin'"):
        ListenerHost(MemoryBus(), [Recorder("twin"), Recorder("twin")])

