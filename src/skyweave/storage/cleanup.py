"""Retention: which products' files to delete (``plan_cleanup``) and deleting them (``apply_cleanup``).

Planning is pure with respect to the files and the store (it only reads the store) and takes
``now`` as an argument, so ``skyweave cleanup --dry-run`` shows exactly what ``skyweave cleanup``
would do.  The rules (``RetentionRule``, ``[[retention]]`` in ``skyweave.toml``) are tried in
order and the first whose ``type`` pattern matches a product's type governs it: the product is
deleted when it is older than that rule's ``older_than_days``, unless

* it is pinned, or a pinned product was made from it (its upstream lineage, across runs), and the
  rule keeps pinned products (the default);
* it was registered from outside (no generating activity: it could not be recomputed) and the rule
  does not include external products;
* an unfinished activity (queued, running, waiting...) has it among its arguments;
* its file is not in the store's product storage (the ``Storage`` given, by default the local
  folder ``storage_root``): a file registered in place (raw data a task returned, ``products add``
  without copying) belongs to the user, and skyweave never deletes what it did not create,
  whatever the rule says; nor does it delete a product kept in some other storage.

Deleting removes the file and marks the product ``deleted``; provenance rows (the product row, its
generating activity, usages) are never deleted, so ``skyweave products show ID`` can still tell
how to make it again.  Files are deleted through the ``Storage`` port, so this works for any
storage the registry knows (``storage/__init__.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from skyweave.config.settings import RetentionRule
from skyweave.errors import SkyweaveError
from skyweave.model.records import ProductRecord
from skyweave.model.states import ACTIVITY_TERMINAL, ActivityState
from skyweave.storage import ObjectMissingError, Storage, describe, open_storage
from skyweave.store.base import Store

DAY_S = 86_400.0

UNFINISHED = [s.value for s in ActivityState if s not in ACTIVITY_TERMINAL]
"""Activity states in which the products an activity was given may still be read."""


@dataclass(frozen=True)
class Deletion:
    """A product the plan deletes, the rule (index and rule) that matched and why."""

    product: ProductRecord
    rule_index: int
    rule: RetentionRule
    reason: str


@dataclass(frozen=True)
class Kept:
    """A product a rule would delete but the plan keeps; ``pinned_by`` names the pinned products
    that protect it (itself when it is pinned)."""

    product: ProductRecord
    rule_index: int
    reason: str
    pinned_by: tuple[str, ...] = ()


@dataclass
class CleanupPlan:
    now: float
    delete: list[Deletion] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)
    storage: Storage | None = None
    """Where the planned files are (``apply_cleanup`` deletes them there, and nothing else)."""

    @property
    def files(self) -> int:
        return len(self.delete)

    @property
    def bytes(self) -> int:
        """Bytes freed if every file is deleted (sizes as recorded)."""
        return sum(d.product.size or 0 for d in self.delete)

    def to_json(self) -> dict[str, Any]:
        return {
            "now": self.now,
            "delete": [{"id": d.product.id, "type": d.product.type, "uri": d.product.uri,
                        "size": d.product.size, "created_at": d.product.created_at,
                        "rule": d.rule_index, "pattern": d.rule.type, "reason": d.reason}
                       for d in self.delete],
            "kept": [{"id": k.product.id, "type": k.product.type, "rule": k.rule_index,
                      "reason": k.reason, "pinned_by": list(k.pinned_by)} for k in self.kept],
            "totals": {"files": self.files, "bytes": self.bytes, "kept": len(self.kept)},
        }


@dataclass
class CleanupResult:
    """What ``apply_cleanup`` did: ``deleted`` and ``already_gone`` products are now marked
    ``deleted``; ``skipped`` and ``failed`` ones are untouched (``(id, reason)``)."""

    deleted: list[str] = field(default_factory=list)
    already_gone: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    bytes_freed: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_json(self) -> dict[str, Any]:
        return {"deleted": self.deleted, "already_gone": self.already_gone,
                "skipped": [{"id": i, "reason": r} for i, r in self.skipped],
                "failed": [{"id": i, "error": e} for i, e in self.failed],
                "bytes_freed": self.bytes_freed}


def governing_rule(product: ProductRecord, rules: Sequence[RetentionRule]) -> int | None:
    """The index of the first rule whose pattern matches the product's type, if any."""
    return next((i for i, r in enumerate(rules) if fnmatchcase(product.type, r.type)), None)


def plan_cleanup(store: Store, rules: Sequence[RetentionRule], now: float,
                 storage_root: Storage | Path | str) -> CleanupPlan:
    """What retention would delete at ``now`` (epoch seconds), and what it keeps and why; only
    objects of the product storage (a ``Storage``, or its folder or URL) are ever planned for
    deletion."""
    storage = storage_root if isinstance(storage_root, Storage) else open_storage(storage_root)
    plan = CleanupPlan(now=now, storage=storage)
    if not rules:
        return plan
    youngest = now - min(r.older_than_days for r in rules) * DAY_S
    due: list[tuple[ProductRecord, int]] = []
    for product in store.find_products(state="available", created_before=youngest):
        index = governing_rule(product, rules)
        if index is not None and product.created_at < now - rules[index].older_than_days * DAY_S:
            due.append((product, index))
    if not due:
        return plan
    pinned = [p.id for p in store.find_products(pinned=True, state=None)]
    protected = _upstream_of(store, pinned) if any(rules[i].keep_pinned for _, i in due) else {}
    in_use = _used_by_unfinished(store)
    for product, index in due:
        rule = rules[index]
        kept = _why_kept(product, rule, protected, in_use, storage)
        if kept is not None:
            reason, by = kept
            plan.kept.append(Kept(product, index, reason, by))
            continue
        age = (now - product.created_at) / DAY_S
        plan.delete.append(Deletion(product, index, rule, (
            f"type {product.type} matches rule {index} ({rule.type!r}); "
            f"{age:.1f} days old > {rule.older_than_days:g}")))
    return plan


def _why_kept(product: ProductRecord, rule: RetentionRule, protected: dict[str, list[str]],
              in_use: dict[str, str], storage: Storage) -> tuple[str, tuple[str, ...]] | None:
    if rule.keep_pinned and product.id in protected:
        by = protected[product.id]
        if product.id in by:
            return "pinned", (product.id,)
        shown = ", ".join(by[:3]) + (f" and {len(by) - 3} more" if len(by) > 3 else "")
        return f"pinned product {shown} was made from it", tuple(by)
    if product.activity_id is None and not rule.include_external:
        return ("registered from outside, cannot be recomputed "
                "(set include_external = true in the rule to delete it)"), ()
    if product.id in in_use:
        return f"used by unfinished activity {in_use[product.id]}", ()
    if not _in_storage(product, storage):
        where = describe(product.uri)
        if where == product.uri:
            return f"at {where}, not in the product storage: skyweave never deletes it", ()
        return f"registered in place at {where}, outside the store: skyweave never deletes it", ()
    return None


def _in_storage(product: ProductRecord, storage: Storage) -> bool:
    """Whether the product's file is an object of ``storage`` (a local one: inside its folder,
    symlinks resolved, so a link cannot make a user's file look like a product)."""
    try:
        storage.key(product.uri)
    except SkyweaveError:
        return False
    return True


def _upstream_of(store: Store, pinned: Sequence[str]) -> dict[str, list[str]]:
    """Product id -> the pinned products made from it (a pinned product lists itself), through
    ``Store.lineage`` (recursive SQL; stops on cycles a corrupted store might hold)."""
    protected: dict[str, list[str]] = {}
    for pid in pinned:
        for node in store.lineage(pid, direction="up").products:
            protected.setdefault(node.id, []).append(pid)
    return protected


def _used_by_unfinished(store: Store) -> dict[str, str]:
    """Product id -> an unfinished activity that was given it as an argument."""
    used: dict[str, str] = {}
    for act in store.list_activities(states=UNFINISHED):
        for pid in _product_refs(act.arguments):
            used.setdefault(pid, act.id)
    return used


def _product_refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        ref = value.get("$product")
        if isinstance(ref, str):
            yield ref
            return
        for item in value.values():
            yield from _product_refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _product_refs(item)


def apply_cleanup(store: Store, plan: CleanupPlan) -> CleanupResult:
    """Delete the plan's files and mark their products ``deleted``; never deletes a store row.

    A file already gone is marked too; a product pinned since the plan was made, or not in the
    plan's storage, is skipped; an error on one file is recorded and the others go on.  Products
    are marked even if the loop is interrupted, so the store never claims a deleted file exists.
    """
    result = CleanupResult()
    pinned_now = {p.id for p in store.find_products(pinned=True, state=None)} if plan.delete else set()
    try:
        for item in plan.delete:
            product = item.product
            if item.rule.keep_pinned and product.id in pinned_now:
                result.skipped.append((product.id, "pinned since the plan was made"))
                continue
            if plan.storage is None or not _in_storage(product, plan.storage):
                result.skipped.append((product.id, "not in the product storage of the plan; left available"))
                continue
            try:
                key = plan.storage.key(product.uri)
                size = plan.storage.stat(key).size
                plan.storage.delete(key)
            except ObjectMissingError:
                result.already_gone.append(product.id)
            except (OSError, SkyweaveError) as exc:
                result.failed.append((product.id, _describe(exc)))
            else:
                result.deleted.append(product.id)
                result.bytes_freed += size
    finally:
        store.mark_products(result.deleted + result.already_gone, "deleted")
    return result


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SkyweaveError):
        return exc.message
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)
