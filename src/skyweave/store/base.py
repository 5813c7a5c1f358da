"""The store port: everything durable.  Implementations: SQLite (embedded), PostgreSQL (scale-out).

Every implementation passes the contract suites of ``tests/unit/store/`` (``test_contract.py``,
``test_catalogue_contract.py``, ``test_lineage_contract.py``).  Writes from the controller come
as one ``Changeset`` applied in one transaction (runs, activities and attempts are upserted whole,
products and usages inserted idempotently by id) — that is what makes a crash
at any point lose nothing and duplicate nothing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import msgspec

from skyweave.errors import LeaseLostError
from skyweave.model.lineage import Direction, LineageGraph
from skyweave.model.records import (
    ActivityRecord,
    AttemptRecord,
    Changeset,
    ProductRecord,
    RunRecord,
    TokenRecord,
    UsageRecord,
    WorkflowRecord,
)
from skyweave.model.specs import TaskSpec
from skyweave.model.triggers import Firing, FiringState, TriggerRecord, TriggerSpec, TriggerState

DEFAULT_POOL_SIZE = 5
"""Connections a server-backed store keeps open unless told (``Settings.store_pool_size``)."""


def check_fence(owner: str, holder: tuple[str, float] | None, now: float) -> None:
    """Raise ``LeaseLostError`` unless ``owner`` holds the controller lease at ``now``; called by
    stores inside the transaction of a fenced ``apply``, so a deposed controller commits nothing."""
    if holder is None or holder[0] != owner or holder[1] <= now:
        whom = "nobody" if holder is None else holder[0]
        raise LeaseLostError(
            f"controller {owner} lost the store's controller lease (held by {whom}): it stops acting",
            hint="another controller took over (this one was paused or cut off longer than "
                 "controller_lease_s); restart it to stand by")


class UnreadableTask(msgspec.Struct, frozen=True, kw_only=True):
    """A task registry row whose stored definition cannot be decoded (``Store.unreadable_tasks``)."""

    name: str
    version: str
    error: str
    spec: str
    """The stored text, as it is."""
    current: bool = False


class RemovedTask(msgspec.Struct, frozen=True, kw_only=True):
    """What ``Store.remove_task`` took out: the stored definition (text), whether it was readable,
    how many activities had run it, and the version its name now routes to (``None``: none left)."""

    name: str
    version: str
    spec: str
    readable: bool
    activities: int
    current: str | None


class ActivityGroup(msgspec.Struct, frozen=True, kw_only=True):
    """The activities of one workflow node of a run in one state (``Store.activity_groups``): how
    many, and when the first started and the last ended - a run page of 100,000 activities reads
    these few rows instead of every activity."""

    node: str
    task_name: str
    state: str
    count: int
    first_started: float | None = None
    last_ended: float | None = None


class Store(ABC):
    url: str

    # -- writes ---------------------------------------------------------------------------------
    @abstractmethod
    def apply(self, changes: Changeset) -> None:
        """Apply a whole changeset in one transaction (upserts by id; products never duplicated)."""

    @abstractmethod
    def register_task(self, spec: TaskSpec, *, make_current: bool = True) -> None:
        """Add a task version to the registry (idempotent for an identical spec)."""

    @abstractmethod
    def set_current_version(self, name: str, version: str) -> None:
        """Route new activations of ``name`` to ``version``."""

    @abstractmethod
    def mark_products(self, ids: Sequence[str], state: str) -> None:
        """Set products' retention state (e.g. ``deleted``); their rows and provenance stay."""

    # -- reads ----------------------------------------------------------------------------------
    @abstractmethod
    def get_run(self, run_id: str) -> RunRecord:
        """The run, or ``NotFoundError`` naming the id and how to list runs."""

    @abstractmethod
    def get_run_head(self, run_id: str) -> RunRecord:
        """The run without its graph (``graph`` is ``{}``): its state, times, error and the rest,
        for waiting, polling and status.  The graph grows with the workflow (tens of MB for 100k
        nodes); only the controller and planning need it, through ``get_run``."""

    @abstractmethod
    def list_runs(self, *, states: Sequence[str] | None = None, limit: int = 100,
                  graph: bool = True) -> list[RunRecord]:
        """Newest first; ``graph=False``: heads only (as ``get_run_head``), for listings and polls."""

    @abstractmethod
    def get_activity(self, activity_id: str) -> ActivityRecord: ...

    @abstractmethod
    def list_activities(
        self,
        *,
        run_id: str | None = None,
        states: Sequence[str] | None = None,
        task_name: str | None = None,
        limit: int | None = None,
    ) -> list[ActivityRecord]:
        """In creation order."""

    @abstractmethod
    def find_reusable(self, cache_keys: Sequence[str]) -> dict[str, ActivityRecord]:
        """For each cache key, the latest *succeeded* activity that has it (keys without one are
        absent).  The caller still checks that its outputs are intact before reusing them."""

    @abstractmethod
    def count_activities(self, run_id: str) -> dict[str, int]:
        """State -> number of activities of the run."""

    @abstractmethod
    def activity_groups(self, run_id: str) -> list[ActivityGroup]:
        """The run's activities counted per (node, state), with the node's task and time span."""

    @abstractmethod
    def list_attempts(self, activity_id: str) -> list[AttemptRecord]: ...

    @abstractmethod
    def get_product(self, product_id: str) -> ProductRecord: ...

    @abstractmethod
    def find_products(
        self,
        *,
        type: str | None = None,
        match: dict[str, Any] | None = None,
        run_id: str | None = None,
        activity_id: str | None = None,
        state: str | None = "available",
        limit: int | None = None,
        version: str | None = None,
        name: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        pinned: bool | None = None,
    ) -> list[ProductRecord]:
        """Products matching all given fields; ``match`` keys are product columns (obs_id,
        detector, version, name) or attribute names.  Newest first.  ``state=None``: any state;
        ``created_after <= created_at < created_before`` (epoch seconds); ``pinned``: only pinned
        (``True``) or only unpinned (``False``) products."""

    @abstractmethod
    def pin_products(self, ids: Sequence[str], pinned: bool = True) -> None:
        """Pin (or unpin) products: retention never deletes a pinned product nor what it was made
        from.  ``NotFoundError`` and nothing changed when an id is unknown."""

    @abstractmethod
    def list_usages(self, *, activity_id: str | None = None, product_id: str | None = None,
                    run_id: str | None = None) -> list[UsageRecord]:
        """Usages matching all given fields; ``run_id``: of the activities of that run (one query
        where a restarting controller used to ask once per activity)."""

    @abstractmethod
    def get_task(self, name: str, version: str | None = None) -> TaskSpec:
        """A version of a task, or the current one; ``UnknownTaskError`` lists what exists."""

    @abstractmethod
    def list_tasks(self) -> list[tuple[TaskSpec, bool]]:
        """Every registered version and whether it is the current one; a row whose definition
        cannot be read is skipped (logged once per process; see ``unreadable_tasks``)."""

    @abstractmethod
    def unreadable_tasks(self) -> list[UnreadableTask]:
        """Registry rows whose definition cannot be read (``list_tasks`` skips them)."""

    @abstractmethod
    def remove_task(self, name: str, version: str) -> RemovedTask:
        """Take ``name@version`` out of the registry; the route moves to the latest remaining version.

        ``UnknownTaskError`` if it is not registered; ``ControlError`` if an activity ran it and
        its definition is readable (provenance names it: keep it), or an unfinished run will run
        it.  An unreadable definition may go even if activities ran it: their rows, attempts and
        products stay, and no export could read it anyway (``RemovedTask.spec`` keeps its text).
        """

    # -- lineage ---------------------------------------------------------------------------------
    @abstractmethod
    def lineage(self, product_id: str, *, direction: Direction = "up", depth: int | None = None
                ) -> LineageGraph:
        """The provenance subgraph around one product, across runs (see ``model/lineage.py``).

        ``up`` ("what made this"): the activity that generated the product, the products it used,
        their generating activities, and so on back to products registered from outside.
        ``down`` ("what depends on this"): the activities that used the product, the products they
        generated, and so on.  ``depth`` limits the walk to that many activity steps (``0``: the
        product alone; ``None``: no limit).  Nodes carry their smallest depth; ``roots`` is
        ``[product_id]``; ``truncated`` says the depth limit cut further nodes off.

        A cycle (impossible in a consistent store, possible in a corrupted one) never hangs the
        query: what is reachable is returned with ``cycle_detected`` set.
        ``NotFoundError`` (hint: ``skyweave products list``) for an unknown product id;
        ``ParameterError`` for a negative depth or a direction other than ``up``/``down``.
        """

    @abstractmethod
    def impact(self, task_name: str, version: str | None = None) -> LineageGraph:
        """Everything a task version affected: the activities of ``task_name`` (at ``version``, or
        at any version when ``None``) at depth 0, the products they generated (the ``roots``, depth
        0) and everything downstream of those products, as ``lineage(..., direction="down")``.

        ``UnknownTaskError`` when no activity of that task (version) exists and it is not
        registered either; a registered version that never ran gives an empty graph.
        """

    # -- API tokens (the server's; ``skyweave tokens``) ---------------------------------------------
    @abstractmethod
    def add_token(self, token: TokenRecord) -> None:
        """Keep a new token (its secret's hash; ids and hashes are unique)."""

    @abstractmethod
    def list_tokens(self) -> list[TokenRecord]:
        """Every token, revoked ones too, oldest first."""

    @abstractmethod
    def token_by_hash(self, secret_hash: str) -> TokenRecord | None:
        """The token whose secret hashes to this, revoked or not; ``None`` if there is none."""

    @abstractmethod
    def revoke_token(self, token_id: str, now: float) -> TokenRecord:
        """Mark a token revoked at ``now`` (a revoked one keeps its first revocation time);
        ``NotFoundError`` for an unknown id."""

    # -- workflow registry (store/workflows_sql.py; ``skyweave workflows``) ------------------------
    @abstractmethod
    def register_workflow(self, record: WorkflowRecord) -> WorkflowRecord:
        """Keep a workflow version; the same code again returns the row already there (its first
        registration time), different code under a registered version is refused
        (``VersionConflictError``)."""

    @abstractmethod
    def get_workflow(self, name: str, version: str | None = None) -> WorkflowRecord:
        """A registered workflow version (``None``: the one registered last); ``NotFoundError``
        listing the versions of ``name`` (or the registered names) when there is none."""

    @abstractmethod
    def list_workflows(self, name: str | None = None) -> list[WorkflowRecord]:
        """Registered workflow versions (of ``name``), by name then registration order."""

    # -- triggers (store/triggers_sql.py) --------------------------------------------------------
    @abstractmethod
    def save_trigger(self, spec: TriggerSpec, *, replace: bool = False) -> TriggerRecord:
        """Add a trigger (``ControlError`` if the name exists, unless ``replace``: the definition
        changes, its state, cursor and ledger stay)."""

    @abstractmethod
    def get_trigger(self, name: str) -> TriggerRecord: ...

    @abstractmethod
    def list_triggers(self) -> list[TriggerRecord]: ...

    @abstractmethod
    def set_trigger_state(self, name: str, state: TriggerState) -> TriggerRecord: ...

    @abstractmethod
    def remove_trigger(self, name: str, *, forget: bool = False) -> int: ...

    @abstractmethod
    def record_firings(self, trigger: str, firings: Sequence[Firing], new_runs: Sequence[RunRecord] = (),
                       *, cursor: str | None = None, refire: bool = False) -> list[str]:
        """Ledger rows, the runs they start and the cursor in one transaction; a key already in the
        ledger starts nothing (see ``triggers_sql.TriggerLedger.record_firings``)."""

    @abstractmethod
    def count_skipped(self, trigger: str, n: int) -> None: ...

    @abstractmethod
    def known_keys(self, trigger: str, keys: Sequence[str]) -> set[str]: ...

    @abstractmethod
    def trigger_history(self, trigger: str, *, states: Sequence[FiringState] | None = None,
                        limit: int | None = 100, oldest_first: bool = False) -> list[Firing]: ...

    @abstractmethod
    def trigger_counts(self, trigger: str) -> dict[str, int]: ...

    @abstractmethod
    def trigger_runs(self, trigger: str, *, unfinished: bool = True) -> dict[str, str]: ...

    @abstractmethod
    def prune_trigger_firings(self, before: float, *, batch: int = 10_000,
                              dry_run: bool = False) -> dict[str, int]:
        """Delete the ledger rows recorded before ``before`` (epoch seconds) of the triggers whose
        sources never replay an old event (``PRUNABLE_KINDS``), except ``held`` ones, ``batch`` rows
        per transaction; returns trigger -> rows deleted (with ``dry_run``: that would be)."""

    @abstractmethod
    def unannounced_runs(self, trigger: str) -> list[str]: ...

    # -- controller lease -------------------------------------------------------------------------
    @abstractmethod
    def acquire_controller_lease(self, owner: str, ttl_s: float, now: float) -> bool:
        """Take or renew the single-controller lease; ``False`` if another live owner holds it."""

    @abstractmethod
    def release_controller_lease(self, owner: str) -> None: ...

    @abstractmethod
    def controller_lease_holder(self) -> tuple[str, float] | None:
        """``(owner, expires_at)`` of the current lease, if any.

        ``apply`` of a ``Changeset`` with ``lease_owner`` set reads the lease inside its own
        transaction and writes nothing unless that owner holds it unexpired (``check_fence``)."""

    @abstractmethod
    def close(self) -> None: ...
