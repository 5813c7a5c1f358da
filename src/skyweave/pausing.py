"""Waiting for a pause to hold (``Client.pause``): the store says ``paused`` once the controller
has held the run's dispatches on the bus; then whatever a worker had already *begun* (handed to
its executor just before the hold: ``Bus.begin``) starts all the same, so the pause is complete
only once each of those is reported started.  After that no activity of the run starts until
resume.  Both are read from the store and the bus, so this works for a controller and workers
in other processes."""

from __future__ import annotations

import time

from skyweave.bus.base import Bus
from skyweave.errors import ControlError
from skyweave.model.messages import dispatch_id
from skyweave.model.states import ActivityState as A
from skyweave.model.states import RunState as R
from skyweave.store.base import Store

POLL_S = 0.02
"""How often the store is read meanwhile (the controller records in the store, which cannot
notify another process)."""


def begun_not_started(store: Store, bus: Bus, run_id: str) -> list[str]:
    """Activities of the run a worker has begun that are not yet recorded as started."""
    dispatched = {dispatch_id(a.id, a.attempt): a.id
                  for a in store.list_activities(run_id=run_id, states=[A.DISPATCHED])}
    if not dispatched:
        return []
    ids = list(dispatched)
    held = set(bus.held(ids))
    return [dispatched[i] for i in bus.present(ids) if i not in held]


def wait_until_paused(store: Store, bus: Bus, run_id: str, timeout: float) -> str:
    """The run's state once its pause holds: ``paused`` (nothing of it starts any more), or how it
    ended; ``ControlError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        state = store.get_run_head(run_id).state
        if state not in (R.RUNNING, R.SUBMITTED):
            starting = begun_not_started(store, bus, run_id) if state == R.PAUSED else []
            if not starting:
                return str(state)
            named = ", ".join(starting[:3]) + ("…" if len(starting) > 3 else "")
            what = (f"{len(starting)} activities a worker had already begun before the pause "
                    f"({named}) did not report their start")
        else:
            what = "the controller has not applied the pause"
        if time.monotonic() > deadline:
            raise ControlError(f"pausing {run_id}: {what} within {timeout:g} s",
                               hint=f"the pause stays requested; see the controller's and workers' logs and "
                                    f"`skyweave status {run_id}`")
        time.sleep(POLL_S)
