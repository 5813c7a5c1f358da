"""States of runs and activities, and the transitions the controller may make.

Every state is documented; terminal sets are derived from the transition tables so the two can
never disagree, and the controller changes a state only through ``activity_transition`` and
``run_transition``, which refuse what the tables do not allow.
"""

from __future__ import annotations

from enum import StrEnum

from skyweave.errors import InvalidTransitionError


class RunState(StrEnum):
    SUBMITTED = "submitted"
    """Written to the store by a client; no controller has taken it yet."""
    RUNNING = "running"
    """A controller is creating and dispatching its activities."""
    PAUSED = "paused"
    """No new activity is dispatched; running ones finish; queued ones wait."""
    SUCCEEDED = "succeeded"
    """Every activity finished, succeeded, was skipped by a condition or was reused."""
    FAILED = "failed"
    """At least one activity failed for good; nothing is left running."""
    CANCELLED = "cancelled"
    """Stopped on request; queued work dropped, running work asked to stop."""


class ActivityState(StrEnum):
    QUEUED = "queued"
    """Inputs bound; waiting in the controller's ready queue for a worker slot."""
    DISPATCHED = "dispatched"
    """Sent to the bus; not yet picked up by a worker."""
    RUNNING = "running"
    """A worker runs an attempt."""
    RETRY_WAIT = "retry_wait"
    """The last attempt failed with a retryable error; waiting for its backoff delay."""
    BACKTRACKING = "backtracking"
    """Waiting for a provider activity that makes a missing input."""
    PARKED = "parked"
    """Waiting, without polling, for a matching product to be registered, until a deadline."""
    SUCCEEDED = "succeeded"
    """Finished; its result and products are recorded."""
    FAILED = "failed"
    """Failed for good (retries exhausted, non-retryable error, detours exhausted, deadline passed)."""
    SKIPPED = "skipped"
    """Its condition was false, or an upstream activity was skipped."""
    CANCELLED = "cancelled"
    """Its run was cancelled."""


class AttemptState(StrEnum):
    """How one try of an activity stands (the ``attempts`` rows); one row per execution."""

    RUNNING = "running"
    """A worker reported it started."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    NEEDS_INPUT = "needs_input"
    """It reported a missing or insufficient input (a backtrack follows)."""
    CANCELLED = "cancelled"
    """Its run was cancelled while it ran; its worker was asked to stop it."""
    LOST = "lost"
    """Its worker died (no heartbeat for ``worker_timeout_s``), or the bus lost its dispatch across
    a controller restart: it may have run, its outcome never came; the row's error says why, and
    the activity runs again as the next attempt."""


_A = ActivityState
ACTIVITY_TRANSITIONS: dict[ActivityState, frozenset[ActivityState]] = {
    _A.QUEUED: frozenset({_A.DISPATCHED, _A.CANCELLED, _A.SUCCEEDED, _A.FAILED}),
    # QUEUED -> SUCCEEDED: reused from the cache; -> FAILED: its arguments or task cannot be bound
    _A.DISPATCHED: frozenset({_A.RUNNING, _A.QUEUED, _A.SUCCEEDED, _A.FAILED, _A.RETRY_WAIT,
                              _A.BACKTRACKING, _A.PARKED, _A.CANCELLED}),
    _A.RUNNING: frozenset({_A.SUCCEEDED, _A.FAILED, _A.RETRY_WAIT, _A.BACKTRACKING, _A.PARKED,
                           _A.CANCELLED, _A.QUEUED}),
    _A.RETRY_WAIT: frozenset({_A.QUEUED, _A.CANCELLED}),
    _A.BACKTRACKING: frozenset({_A.QUEUED, _A.PARKED, _A.FAILED, _A.CANCELLED}),
    _A.PARKED: frozenset({_A.QUEUED, _A.FAILED, _A.CANCELLED}),
    _A.SUCCEEDED: frozenset(),
    _A.FAILED: frozenset(),
    _A.SKIPPED: frozenset(),
    _A.CANCELLED: frozenset(),
}
"""Where an activity may go from each state as a run goes on.  An activity is created
``queued``, or ``skipped`` (its condition was false), never in another state."""

ACTIVITY_RETRY: dict[ActivityState, frozenset[ActivityState]] = {
    _A.FAILED: frozenset({_A.QUEUED}),
    _A.CANCELLED: frozenset({_A.QUEUED}),
}
"""What an explicit retry request may do besides: run a failed or cancelled activity again."""

ACTIVITY_TERMINAL: frozenset[ActivityState] = frozenset(
    s for s, after in ACTIVITY_TRANSITIONS.items() if not after)
"""States in which an activity holds no resources and needs nothing more from the controller."""

ACTIVITY_WAITING: frozenset[ActivityState] = frozenset({_A.RETRY_WAIT, _A.BACKTRACKING, _A.PARKED})
ACTIVITY_IN_FLIGHT: frozenset[ActivityState] = frozenset({_A.DISPATCHED, _A.RUNNING})

_R = RunState
RUN_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    _R.SUBMITTED: frozenset({_R.RUNNING, _R.CANCELLED, _R.FAILED}),
    _R.RUNNING: frozenset({_R.PAUSED, _R.SUCCEEDED, _R.FAILED, _R.CANCELLED}),
    _R.PAUSED: frozenset({_R.RUNNING, _R.CANCELLED, _R.SUCCEEDED, _R.FAILED}),  # nothing left to hold
    _R.SUCCEEDED: frozenset(),
    _R.FAILED: frozenset(),
    _R.CANCELLED: frozenset(),
}
"""Where a run may go from each state as it goes on."""

RUN_RETRY: dict[RunState, frozenset[RunState]] = {
    _R.SUCCEEDED: frozenset({_R.RUNNING}),
    _R.FAILED: frozenset({_R.RUNNING}),
    _R.CANCELLED: frozenset({_R.RUNNING}),
}
"""A retried activity reopens its ended run."""

RUN_TERMINAL: frozenset[RunState] = frozenset(s for s, after in RUN_TRANSITIONS.items() if not after)


def activity_transition(current: str, new: ActivityState, *, retry: bool = False) -> ActivityState:
    """The one way an activity's state changes: ``new``, if the tables allow it from ``current``
    (``retry``: an explicit retry request, which may also reopen a terminal activity)."""
    allowed = ACTIVITY_TRANSITIONS[ActivityState(current)]
    if retry:
        allowed = allowed | ACTIVITY_RETRY.get(ActivityState(current), frozenset())
    if new not in allowed:
        raise InvalidTransitionError(f"an activity cannot go from {current} to {new}",
                                     hint="a bug in skyweave's controller: please report it")
    return new


def run_transition(current: str, new: RunState, *, retry: bool = False) -> RunState:
    """The one way a run's state changes: ``new``, if the tables allow it from ``current``."""
    allowed = RUN_TRANSITIONS[RunState(current)]
    if retry:
        allowed = allowed | RUN_RETRY.get(RunState(current), frozenset())
    if new not in allowed:
        raise InvalidTransitionError(f"a run cannot go from {current} to {new}",
                                     hint="a bug in skyweave's controller: please report it")
    return new
