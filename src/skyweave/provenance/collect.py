"""Gather the store records an export needs into one plain in-memory ``Bundle``.

Two scopes:

* ``collect_run(store, run_id)``: every activity of the run, every product it generated, every
  product its activities used (including products of other runs or registered from outside: they
  appear as entities without a generation in this bundle) and the usages;
* ``collect_product(store, product_id)``: the upstream closure of one product — its generating
  activity, the products that activity used, their generators, and so on.  ``Store.lineage`` is
  used when the store has it; otherwise a breadth-first walk over generations and usages, bounded
  by ``max_depth`` activity steps and ``max_nodes`` records, that ignores what it has already seen
  (so a cycle in a corrupted store ends the walk instead of looping).

Both add each activity's attempt rows (one per execution, lost and cancelled ones included) and
the task versions its activities ran.  The exporters (``w3c``, ``provdm``) only read a
``Bundle``; they never touch the store.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from skyweave.errors import SkyweaveError
from skyweave.model.records import ActivityRecord, AttemptRecord, ProductRecord, RunRecord, UsageRecord
from skyweave.model.specs import TaskSpec
from skyweave.provenance.ids import DEFAULT_AUTHORITY, check_authority
from skyweave.store.base import Store

MAX_NODES = 200_000
"""Most activities + products one product-scoped export walks before it stops (and says so)."""


@dataclass
class Bundle:
    """What one export describes; plain records, keyed by id, in the store's order."""

    scope: str
    """``run:<run id>`` or ``product:<product id>``."""
    authority: str = DEFAULT_AUTHORITY
    runs: dict[str, RunRecord] = field(default_factory=dict)
    activities: dict[str, ActivityRecord] = field(default_factory=dict)
    products: dict[str, ProductRecord] = field(default_factory=dict)
    usages: list[UsageRecord] = field(default_factory=list)
    attempts: dict[str, list[AttemptRecord]] = field(default_factory=dict)
    """Activity id -> its attempt rows (one per execution, lost and cancelled ones included), in order."""
    tasks: dict[tuple[str, str], TaskSpec] = field(default_factory=dict)
    """``(name, version)`` -> spec, for every task version an activity ran (when still registered)."""
    truncated: bool = False
    """A product-scoped walk stopped at ``max_depth`` or ``max_nodes``."""

    def generations(self) -> list[tuple[str, str]]:
        """``(product id, activity id)`` for each product whose generating activity is in the bundle."""
        return [(p.id, p.activity_id) for p in self.products.values()
                if p.activity_id is not None and p.activity_id in self.activities]

    def task(self, activity: ActivityRecord) -> TaskSpec | None:
        return self.tasks.get((activity.task_name, activity.task_version))


def collect_run(store: Store, run_id: str, *, authority: str = DEFAULT_AUTHORITY) -> Bundle:
    """The records of one run (``NotFoundError`` if there is no such run)."""
    run = store.get_run(run_id)
    bundle = Bundle(scope=f"run:{run.id}", authority=check_authority(authority))
    bundle.runs[run.id] = run
    for activity in store.list_activities(run_id=run.id):
        bundle.activities[activity.id] = activity
    for product in reversed(store.find_products(run_id=run.id, state=None)):
        bundle.products[product.id] = product  # the store lists newest first; keep creation order
    for activity in bundle.activities.values():
        for usage in store.list_usages(activity_id=activity.id):
            bundle.usages.append(usage)
            if usage.product_id not in bundle.products:  # made by another run, or added from outside
                bundle.products[usage.product_id] = store.get_product(usage.product_id)
    _add_tasks(store, bundle)
    _add_attempts(store, bundle)
    return bundle


def collect_product(
    store: Store,
    product_id: str,
    *,
    authority: str = DEFAULT_AUTHORITY,
    max_depth: int | None = None,
    max_nodes: int = MAX_NODES,
) -> Bundle:
    """The upstream closure of one product (``NotFoundError`` if there is no such product)."""
    root = store.get_product(product_id)
    bundle = Bundle(scope=f"product:{root.id}", authority=check_authority(authority))
    if not _from_lineage(store, bundle, root, max_depth):
        _walk_up(store, bundle, root, max_depth, max_nodes)
    for activity in bundle.activities.values():
        if activity.run_id not in bundle.runs:
            bundle.runs[activity.run_id] = store.get_run(activity.run_id)
    _add_tasks(store, bundle)
    _add_attempts(store, bundle)
    return bundle


def _walk_up(store: Store, bundle: Bundle, root: ProductRecord, max_depth: int | None,
             max_nodes: int) -> None:
    bundle.products[root.id] = root
    queue: deque[tuple[ProductRecord, int]] = deque([(root, 0)])
    while queue:
        product, depth = queue.popleft()
        generator = product.activity_id
        if generator is None or generator in bundle.activities:
            continue
        if (max_depth is not None and depth >= max_depth) or len(bundle.activities) + len(
                bundle.products) >= max_nodes:
            bundle.truncated = True
            continue
        bundle.activities[generator] = store.get_activity(generator)
        for usage in store.list_usages(activity_id=generator):
            bundle.usages.append(usage)
            if usage.product_id in bundle.products:
                continue
            used = store.get_product(usage.product_id)
            bundle.products[used.id] = used
            queue.append((used, depth + 1))


def _from_lineage(store: Store, bundle: Bundle, root: ProductRecord, max_depth: int | None) -> bool:
    """Fill ``bundle`` from ``Store.lineage`` when the store has one; ``False`` if it has not."""
    lineage: Any = getattr(store, "lineage", None)
    if not callable(lineage):
        return False
    try:
        graph: Any = lineage(root.id, direction="up", depth=max_depth)
        activity_ids = [a.id for a in graph.activities]
        product_ids = [p.id for p in graph.products]
        truncated = bool(getattr(graph, "truncated", False))
    except (TypeError, AttributeError):  # a lineage method of another shape: walk ourselves
        return False
    bundle.products[root.id] = root
    for pid in product_ids:
        if pid not in bundle.products:
            bundle.products[pid] = store.get_product(pid)
    for aid in activity_ids:
        bundle.activities[aid] = store.get_activity(aid)
        bundle.usages.extend(store.list_usages(activity_id=aid))
    for usage in bundle.usages:  # a used product the graph left out (it should not): keep relations whole
        if usage.product_id not in bundle.products:
            bundle.products[usage.product_id] = store.get_product(usage.product_id)
    bundle.truncated = truncated
    return True


def _add_attempts(store: Store, bundle: Bundle) -> None:
    for activity in bundle.activities.values():
        rows = store.list_attempts(activity.id) or []
        bundle.attempts[activity.id] = sorted(rows, key=lambda a: a.attempt)


def _add_tasks(store: Store, bundle: Bundle) -> None:
    for activity in bundle.activities.values():
        key = (activity.task_name, activity.task_version)
        if key in bundle.tasks:
            continue
        try:
            bundle.tasks[key] = store.get_task(*key)
        except SkyweaveError:
            continue  # a task version no longer registered: its activities still export


def add_attempts_and_tasks(store: Store, bundle: Bundle) -> None:
    """Add the attempt rows and task versions of the bundle's activities (for other walks, such
    as ProvSAP's)."""
    _add_tasks(store, bundle)
    _add_attempts(store, bundle)
