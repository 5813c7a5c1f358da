"""What the controller's pure core asks its shell to do, besides persisting a changeset."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import msgspec

from skyweave.model.messages import InputNeed, ProductRef
from skyweave.model.records import ActivityRecord, Changeset, ProductRecord, RunRecord


@dataclass(frozen=True, slots=True)
class LookupProducts:
    """Query the store for products matching a need; answer with ``ProductsFound``."""

    activity_id: str
    attempt: int
    need: InputNeed
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CheckCache:
    """Find a succeeded activity with this cache key whose outputs are intact; answer with
    ``CacheChecked``."""

    activity_id: str
    cache_key: str


@dataclass(frozen=True, slots=True)
class Timer:
    at: float
    kind: str
    """``retry`` (backoff over) or ``park`` (deadline)."""
    activity_id: str


@dataclass
class Decisions:
    changes: Changeset = field(default_factory=Changeset)
    lookups: list[LookupProducts] = field(default_factory=list)
    cache_checks: list[CheckCache] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    reprioritize: list[tuple[str, int]] = field(default_factory=list)
    """``(dispatch message id, new priority)`` for work on the bus that no worker has taken yet."""
    withdraw: list[str] = field(default_factory=list)
    """Dispatch message ids to take back from the bus (cancelled before a worker took them)."""
    hold: list[str] = field(default_factory=list)
    """Dispatch message ids of a paused run: held on the bus (no worker may claim them; one a worker
    took ahead is given back unstarted), and taken back if no worker has claimed them; answer with
    ``Held`` naming those taken back.  Done *before* the changeset that records the pause is
    committed: once the store says ``paused``, none of them starts."""
    release: list[str] = field(default_factory=list)
    """Dispatch message ids of a resumed run: those a worker gave back are taken back (answer:
    ``Held``, they are dispatched again), the others' hold is lifted."""
    reclaim: list[str] = field(default_factory=list)
    """Workers judged dead (no heartbeat for ``worker_timeout_s``): take back from the bus what they
    hold and answer with ``WorkerLost``."""
    finished_runs: list[str] = field(default_factory=list)
    dispatches: list[tuple[str, int, bytes]] = field(default_factory=list)
    """``(message id, priority, data)`` to enqueue once the changeset is committed.  The activity
    rows the same changeset marks ``dispatched`` are the outbox: after a crash, an in-flight
    dispatch the bus no longer holds is dispatched again as a new attempt (``Recovered``)."""
    dispatch_first: list[str] = field(default_factory=list)
    """Message ids among ``dispatches`` to enqueue ahead of their priority (``Bus.enqueue(first=)``):
    the next attempts of work lost with a worker, which had its turn already."""
    dispatch_sites: list[tuple[str, str]] = field(default_factory=list)
    """``(message id, site)`` for dispatches of ``dispatches`` placed at a site (``placement.py``):
    enqueued with ``Bus.enqueue(site=)``; the others go to the workers with no site."""
    relocate: list[tuple[str, int, bytes, str]] = field(default_factory=list)
    """``(message id, priority, data, site)``: dispatches on the bus placed at a site with no live
    worker, to enqueue for ``site`` instead — each only if it can be withdrawn (no worker of its
    old site claimed it meanwhile)."""
    notices: list[str] = field(default_factory=list)
    """What the controller's log must say (warnings: work waiting for a site, moved away from one)."""
    announcements: list[bytes] = field(default_factory=list)
    """Events for listeners and watchers, published after the transaction (not kept in the outbox:
    a crash in the milliseconds between commit and publish can lose one, never a dispatch)."""


def merged(first: Decisions, then: Decisions) -> Decisions:
    """Decisions of two consecutive ``handle`` calls as one (the second's cache checks replace the
    first's, which it answered); the changesets apply in order (upserts: the later row wins)."""
    a, b = first.changes, then.changes
    changes = Changeset(runs=a.runs + b.runs, activities=a.activities + b.activities,
                        attempts=a.attempts + b.attempts, products=a.products + b.products,
                        usages=a.usages + b.usages)
    lists: dict[str, list[Any]] = {f.name: getattr(first, f.name) + getattr(then, f.name)
                                   for f in fields(Decisions) if f.name not in ("changes", "cache_checks")}
    return Decisions(changes=changes, cache_checks=then.cache_checks, **lists)


# -- internal events the shell feeds to the core -------------------------------------------------


class RunLoaded(msgspec.Struct, frozen=True, kw_only=True, tag="internal.run_loaded"):
    run: RunRecord
    products: list[ProductRef] = msgspec.field(default_factory=list)
    """Registered products the workflow names directly (e.g. the raw file of an observation)."""


class ProductsFound(msgspec.Struct, frozen=True, kw_only=True, tag="internal.products_found"):
    activity_id: str
    attempt: int
    products: list[ProductRef]


class CacheChecked(msgspec.Struct, frozen=True, kw_only=True, tag="internal.cache_checked"):
    """The answer to ``CheckCache``: the activity to reuse (with its intact products), or why not."""

    activity_id: str
    reuse_from: str | None = None
    result: Any = None
    products: list[ProductRef] = msgspec.field(default_factory=list)
    miss_reason: str = ""


class TimerFired(msgspec.Struct, frozen=True, kw_only=True, tag="internal.timer"):
    kind: str
    """``retry``, ``park`` or ``liveness`` (time to look for silent workers; no activity)."""
    activity_id: str


class RunRestored(msgspec.Struct, frozen=True, kw_only=True, tag="internal.run_restored"):
    """After a restart: a running or paused run as the store holds it."""

    run: RunRecord
    activities: list[ActivityRecord]
    products: list[ProductRecord]


class RetryLoaded(msgspec.Struct, frozen=True, kw_only=True, tag="internal.retry_loaded"):
    """A requested retry (``RetryRequested``) with what the store holds: the failed or cancelled
    activity, and its run as ``RunRestored`` when the controller had already forgotten the run (it
    had ended), so the core rebuilds it before the activity runs again."""

    activity: ActivityRecord
    restore: RunRestored | None = None


class Recovered(msgspec.Struct, frozen=True, kw_only=True, tag="internal.recovered"):
    """After a restart, once every run is restored and every outcome reported meanwhile is handled:
    which in-flight dispatches the bus still holds (the rest are dispatched again as new attempts)
    and which workers hold dispatches (watched like workers heard from)."""

    present: list[str]
    holders: list[str]


class BusRestored(msgspec.Struct, frozen=True, kw_only=True, tag="internal.bus_restored"):
    """The bus's server was unreachable and is back: no worker could send a heartbeat meanwhile,
    so the silence of every worker counts from now (workers retry too, with their own backoff)."""


class Held(msgspec.Struct, frozen=True, kw_only=True, tag="internal.held"):
    """The answer to ``Decisions.hold``: the dispatches of a paused run taken back from the bus."""

    dispatches: list[str]


class WorkerLost(msgspec.Struct, frozen=True, kw_only=True, tag="internal.worker_lost"):
    """The answer to ``Decisions.reclaim``: the dispatches taken back from a dead worker."""

    worker: str
    dispatches: list[str]


def _markers(value: Any, key: str) -> list[str]:
    """Ids in every ``{key: id}`` marker nested anywhere in a JSON-like value."""
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if key == "product" and "lit" in item:
                continue  # a literal value written by the user is never a reference
            pid = item.get(key)
            if isinstance(pid, str) and len(item) == 1:
                found.append(pid)
            else:
                stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def graph_products(graph: dict[str, Any]) -> list[str]:
    """Ids of products a workflow graph names as literal arguments (``{"product": id}``)."""
    return _markers([n.get("args", {}) for n in graph.get("nodes", {}).values()], "product")


def walk_products(value: Any) -> list[str]:
    """Ids of every ``{"$product": id}`` marker in a JSON-like value."""
    return _markers(value, "$product")
