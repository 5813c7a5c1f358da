"""Retention of what grows with every run and is not provenance: ``skyweave prune`` and the active
controller's periodic prune (``PeriodicPrune``), by the limits of ``[prune]`` (``PruneSettings``).

The same shape as product retention (``storage/cleanup.py``, ``skyweave cleanup``): one function
given ``now``, a ``dry_run`` that says exactly what would go, a report that the CLI prints.

* **Bus** (``Bus.prune``): consumer groups that have not read for ``listener_idle_days`` (a
  listener, a server or a messages trigger gone for good; never the controller's) are dropped, with
  the events kept only for them; dead letters older than ``dead_letters_days`` go.
* **Trigger ledger** (``Store.prune_trigger_firings``): rows older than ``trigger_ledger_days`` of
  schedule, messages and voevents triggers, not held (``model.triggers.PRUNABLE_KINDS``).
* **Activity logs** (``logs/`` of the storage, through the ``Storage`` port): a log file older than
  ``logs_days`` goes once its activity has finished and none of the activity's products is still
  available: while a product is there, the log of the activity that made it is kept with it.  A
  file that is not an activity of this store is left alone (another deployment's, a user's).

Never pruned, whatever the limits: runs, activities, attempts, products, usages (the provenance
rows: an attempt is part of its activity's record), the controller's group, events a live group has
not committed, held ledger rows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from skyweave.bus.base import Bus, Pruned
from skyweave.config.settings import PruneSettings
from skyweave.errors import NotFoundError, SkyweaveError
from skyweave.model.states import ACTIVITY_TERMINAL, ActivityState
from skyweave.storage import ObjectMissingError, Storage
from skyweave.store.base import Store

log = logging.getLogger(__name__)

DAY_S = 86_400.0
LOG_SUFFIX = ".log"


def _age(days: float | None) -> float | None:
    """Seconds of a limit in days; ``None`` for a kind kept for ever (``0`` or ``None``)."""
    return days * DAY_S if days else None


@dataclass
class PruneReport:
    """What a prune removed (``dry_run``: would remove), per kind."""

    now: float
    dry_run: bool
    bus: list[tuple[str, Pruned]] = field(default_factory=list)
    """(bus URL, what went from it)."""
    trigger_firings: dict[str, int] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)
    """Keys under ``logs/`` deleted."""
    log_bytes: int = 0
    logs_kept: dict[str, int] = field(default_factory=dict)
    """Why old log files stay -> how many."""
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(what, error): a kind that could not be pruned this time; the others went on."""

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        groups = sum(len(p.groups) for _, p in self.bus)
        events = sum(p.events for _, p in self.bus)
        letters = sum(p.dead_letters for _, p in self.bus)
        return (f"{verb} {groups} idle listener group(s), {events} bus event(s), {letters} dead "
                f"letter(s), {sum(self.trigger_firings.values())} trigger ledger row(s), "
                f"{len(self.logs)} log file(s) ({self.log_bytes} bytes)")

    def to_json(self) -> dict[str, Any]:
        return {
            "now": self.now, "dry_run": self.dry_run,
            "bus": [{"url": url, "groups": p.groups, "events": p.events, "dead_letters": p.dead_letters}
                    for url, p in self.bus],
            "trigger_firings": self.trigger_firings,
            "logs": {"deleted": self.logs, "bytes": self.log_bytes, "kept": self.logs_kept},
            "failed": [{"what": what, "error": error} for what, error in self.failed],
        }


def prune(store: Store, buses: Sequence[Bus], logs: Storage | None, limits: PruneSettings, now: float,
          *, dry_run: bool = False) -> PruneReport:
    """Prune every kind by ``limits`` at ``now`` (epoch seconds); ``logs`` is the storage's
    ``logs/`` (``None``: logs are not pruned).  An error in one kind is recorded in the report and
    the other kinds go on."""
    report = PruneReport(now=now, dry_run=dry_run)
    for bus in buses:
        try:
            report.bus.append((bus.url, bus.prune(
                now, group_idle_s=_age(limits.listener_idle_days),
                dead_letter_age_s=_age(limits.dead_letters_days), dry_run=dry_run)))
        except SkyweaveError as exc:
            report.failed.append((f"bus {bus.url}", exc.message))
    ledger_s = _age(limits.trigger_ledger_days)
    if ledger_s is not None:
        try:
            report.trigger_firings = store.prune_trigger_firings(
                now - ledger_s, batch=limits.batch, dry_run=dry_run)
        except SkyweaveError as exc:
            report.failed.append(("trigger ledger", exc.message))
    logs_s = _age(limits.logs_days)
    if logs is not None and logs_s is not None:
        try:
            _prune_logs(store, logs, now - logs_s, report)
        except (OSError, SkyweaveError) as exc:
            report.failed.append(("logs", getattr(exc, "message", str(exc))))
    return report


def _prune_logs(store: Store, logs: Storage, before: float, report: PruneReport) -> None:
    verdicts: dict[str, str | None] = {}
    for key in list(logs.list()):
        activity_id = key.rsplit("/", 1)[-1].split(".", 1)[0]
        if not key.endswith(LOG_SUFFIX) or not activity_id:
            continue
        try:
            stat = logs.stat(key)
        except ObjectMissingError:
            continue  # gone meanwhile
        if stat.modified >= before:
            continue
        if activity_id not in verdicts:
            verdicts[activity_id] = _why_log_kept(store, activity_id)
        why = verdicts[activity_id]
        if why is not None:
            report.logs_kept[why] = report.logs_kept.get(why, 0) + 1
            continue
        if not report.dry_run:
            try:
                logs.delete(key)
            except ObjectMissingError:
                continue
        report.logs.append(key)
        report.log_bytes += stat.size


def _why_log_kept(store: Store, activity_id: str) -> str | None:
    try:
        act = store.get_activity(activity_id)
    except NotFoundError:
        return "not an activity of this store"
    if ActivityState(act.state) not in ACTIVITY_TERMINAL:
        return "activity not finished"
    if store.find_products(activity_id=activity_id, state="available", limit=1):
        return "a product of its activity is still available"
    return None


class PeriodicPrune(threading.Thread):
    """The active controller's prune every ``limits.every_s`` (the first that long after start),
    in its own thread so that a long prune never delays decisions; stops with ``stop``."""

    def __init__(self, store: Store, buses: Sequence[Bus], logs: Callable[[], Storage | None],
                 limits: PruneSettings, stop: threading.Event) -> None:
        super().__init__(name="skyweave-prune", daemon=True)
        self._store, self._buses, self._logs = store, list(buses), logs
        self._limits, self._halt = limits, stop
        self.reports: list[PruneReport] = []
        """The last few reports (tests and the log read them)."""

    def run(self) -> None:
        while not self._halt.wait(self._limits.every_s):
            self.prune_now()

    def prune_now(self) -> PruneReport | None:
        try:
            report = prune(self._store, self._buses, self._logs(), self._limits, time.time())
        except Exception:  # the controller must go on deciding whatever a prune meets
            log.exception("periodic prune failed; it is tried again in %.0f s", self._limits.every_s)
            return None
        self.reports = [*self.reports[-9:], report]
        log.info("periodic prune: %s", report.summary())
        for what, error in report.failed:
            log.warning("periodic prune of %s failed: %s", what, error)
        return report
