"""Changing runs while they go on: cancel, pause, resume, retry an activity, change a priority.

Each is a request published on the bus for the controller (``RunControlRequested``,
``RetryRequested``, ``PriorityChangeRequested``), checked against the store first so that a
request that cannot apply is refused with the reason instead of being ignored later.  What
``Client.cancel``/``pause``/``resume``/``retry``/``set_priority`` do.
"""

from __future__ import annotations

import time
from typing import Any

from skyweave.bus.base import Bus
from skyweave.errors import ControlError
from skyweave.model import messages as m
from skyweave.model.ids import EVENT, new_id
from skyweave.model.states import RUN_TERMINAL
from skyweave.pausing import wait_until_paused
from skyweave.store.base import Store


class RunControl:
    def __init__(self, store: Store, bus: Bus) -> None:
        self.store = store
        self.bus = bus

    def send(self, message: Any) -> None:
        """Publish one request or announcement for the controller."""
        self.bus.publish([m.encode_message(new_id(EVENT), message)])

    def cancel(self, run_id: str) -> None:
        self._control(run_id, "cancel")

    def pause(self, run_id: str, *, timeout: float = 30.0) -> str:
        """Pause a run and wait until it holds: from then on no activity of the run starts until
        ``resume`` (running ones finish; work a worker had begun just before starts first, and is
        waited for: ``pausing``).  Returns the run's state then: ``paused``, or how it ended if it
        had nothing left; ``requested`` if no controller is running (the pause applies when one
        starts; workers may meanwhile start what is on the bus)."""
        self._control(run_id, "pause")
        holder = self.store.controller_lease_holder()
        if holder is None or holder[1] < time.time():
            return "requested"
        return wait_until_paused(self.store, self.bus, run_id, timeout)

    def resume(self, run_id: str) -> None:
        self._control(run_id, "resume")

    def _control(self, run_id: str, action: str) -> None:
        rec = self.store.get_run_head(run_id)
        if rec.state in RUN_TERMINAL:
            done = {"cancel": "cancelled", "pause": "paused", "resume": "resumed"}[action]
            raise ControlError(f"run {run_id} is already {rec.state}; it cannot be {done}",
                               hint="retry one of its failed activities with `skyweave retry ID`")
        self.send(m.RunControlRequested(run_id=run_id, action=action, at=time.time()))

    def retry(self, activity_id: str) -> None:
        act = self.store.get_activity(activity_id)
        if act.state not in ("failed", "cancelled"):
            raise ControlError(f"activity {activity_id} is {act.state}; only failed or cancelled "
                               "activities can be retried")
        self.send(m.RetryRequested(activity_id=activity_id, at=time.time()))

    def set_priority(self, priority: int, *, run_id: str | None = None,
                     activity_id: str | None = None) -> None:
        if run_id:
            self.store.get_run_head(run_id)
        if activity_id:
            self.store.get_activity(activity_id)
        self.send(m.PriorityChangeRequested(priority=priority, run_id=run_id, activity_id=activity_id,
                                            at=time.time()))
