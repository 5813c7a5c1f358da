"""Where trigger events come from: a folder, a schedule (a bucket: ``objects.py``; the bus:
``messages.py``).

A ``Source`` is polled for the events it sees now (``poll``) and told which of them the ledger
recorded (``done``).  It never decides whether an event already ran: the store's ledger does
(one row per key), so a source may report an event twice - after a restart, a rescan - and
nothing runs twice.  ``wait`` blocks until something may have arrived (a file-system
notification, the next tick) or the timeout passes.
"""

from __future__ import annotations

import logging
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from skyweave.model.triggers import FiringState, TriggerEvent, TriggerRecord, TriggerSpec

log = logging.getLogger(__name__)

RESCAN_S = 5.0
"""A folder or bucket is listed again at least this often, notification or not (network file
systems send none)."""


class Poll(msgspec.Struct, kw_only=True):
    events: list[TriggerEvent] = msgspec.field(default_factory=list)
    cursor: str | None = None
    """The source's position once these events are recorded (schedules), stored with them."""
    retry_at: float | None = None
    """Poll again at this time even without a notification (a file still settling, the next tick)."""
    offset: Any = None
    """What ``done`` commits (the bus offset of the last message read)."""


class Source(ABC):
    def __init__(self, spec: TriggerSpec, wake: threading.Event | None = None) -> None:
        self.spec = spec
        self._changed = wake or threading.Event()
        """Set when something may have arrived (shared by the sources of one trigger process)."""

    @abstractmethod
    def poll(self, record: TriggerRecord, now: float) -> Poll: ...

    def done(self, poll: Poll, recorded: Sequence[str]) -> None:  # noqa: B027 - nothing to do by default
        """The events of ``poll`` are in the ledger (``recorded``: those new to it)."""

    def wait(self, timeout: float) -> None:
        """Until a change may have happened, or ``timeout`` seconds."""
        if self._changed.wait(max(0.0, timeout)):
            self._changed.clear()

    def wake(self) -> None:
        self._changed.set()

    def close(self) -> None:  # noqa: B027 - most sources watch nothing in the background
        """Stop background watching."""


def _groups(pattern: re.Pattern[str] | None, name: str) -> dict[str, Any] | None:
    """The named groups of ``pattern`` in ``name`` (``{}`` without a pattern; ``None``: no match)."""
    if pattern is None:
        return {}
    found = pattern.search(name)
    return None if found is None else {k: v for k, v in found.groupdict().items() if v is not None}


class FileSource(Source):
    """Files arriving in a folder: each file matching the glob (and the pattern), once it has
    stayed unchanged for ``settle_s``; key ``relative path|size|mtime_ns`` (a file replaced by a
    new version is a new event).  Names starting with ``.`` are ignored (partial copies)."""

    def __init__(self, spec: TriggerSpec, wake: threading.Event | None = None) -> None:
        super().__init__(spec, wake)
        self.folder = Path(spec.source["folder"])
        self.glob = str(spec.source.get("glob", "*"))
        self.settle_s = float(spec.source.get("settle_s", 1.0))
        pattern = spec.source.get("pattern")
        self.pattern = re.compile(pattern) if pattern else None
        self.seen: set[str] = set()
        """Keys known to be in the ledger: not looked up again."""
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def _watch(self) -> None:
        from watchfiles import watch

        while not self._stop.is_set():
            if not self.folder.is_dir():
                self._stop.wait(RESCAN_S)
                continue
            try:
                for _ in watch(
                    self.folder,
                    stop_event=self._stop,
                    recursive="**" in self.glob or "/" in self.glob,
                    debounce=50,
                    step=20,
                    raise_interrupt=False,
                    ignore_permission_denied=True,
                ):
                    self._changed.set()
            except (OSError, RuntimeError):  # the folder went away: look again later
                log.warning(
                    "trigger %s: cannot watch %s; listing it every %s s",
                    self.spec.name,
                    self.folder,
                    RESCAN_S,
                )
                self._stop.wait(RESCAN_S)

    def poll(self, record: TriggerRecord, now: float) -> Poll:  # noqa: ARG002
        if self._watcher is None:
            self._watcher = threading.Thread(
                target=self._watch, name=f"trigger-{self.spec.name}", daemon=True
            )
            self._watcher.start()
        out = Poll(retry_at=now + RESCAN_S)
        if not self.folder.is_dir():
            return out
        for path in self.folder.glob(self.glob):
            rel = path.relative_to(self.folder)
            if any(part.startswith(".") for part in rel.parts):
                continue
            try:
                st = path.stat()
            except OSError:  # gone between listing and stat
                continue
            if not path.is_file():
                continue
            key = f"{rel.as_posix()}|{st.st_size}|{st.st_mtime_ns}"
            if key in self.seen:
                continue
            if now - st.st_mtime < self.settle_s:  # still being written, perhaps
                out.retry_at = min(out.retry_at or now, st.st_mtime + self.settle_s)
                continue
            groups = _groups(self.pattern, path.name)
            if groups is None:
                self.seen.add(key)  # not this trigger's file
                continue
            fields = {
                "path": str(path),
                "name": path.name,
                "stem": path.stem,
                "folder": str(path.parent),
                "size": st.st_size,
                "mtime": st.st_mtime,
                **groups,
            }
            out.events.append(TriggerEvent(key=key, fields=fields, at=st.st_mtime))
        out.events.sort(key=lambda e: (e.at, e.key))
        return out

    def done(self, poll: Poll, recorded: Sequence[str]) -> None:  # noqa: ARG002
        self.seen.update(e.key for e in poll.events)

    def close(self) -> None:
        self._stop.set()


class ScheduleSource(Source):
    """The ticks of a cron expression in a time zone, from the stored cursor (the last tick
    fired; the trigger's creation at first).  Ticks missed while no trigger process ran all fire
    (``catchup: all``) or only the latest does, the others recorded as coalesced."""

    MAX_CATCHUP = 10_000

    def poll(self, record: TriggerRecord, now: float) -> Poll:
        from zoneinfo import ZoneInfo

        from croniter import croniter

        tz = ZoneInfo(self.spec.source.get("timezone", "UTC"))
        start = (
            datetime.fromisoformat(record.cursor)
            if record.cursor
            else datetime.fromtimestamp(record.created_at, tz)
        )
        ticks = croniter(self.spec.source["cron"], start.astimezone(tz))
        due: list[datetime] = []
        upcoming: datetime = ticks.get_next(datetime)
        while upcoming.timestamp() <= now and len(due) < self.MAX_CATCHUP:
            due.append(upcoming)
            upcoming = ticks.get_next(datetime)
        out = Poll(retry_at=upcoming.timestamp(), cursor=due[-1].isoformat() if due else None)
        latest_only = self.spec.source.get("catchup", "all") == "latest"
        for i, tick in enumerate(due):
            fields = {
                "tick": tick.isoformat(),
                "date": tick.date().isoformat(),
                "timestamp": tick.timestamp(),
            }
            coalesced = latest_only and i < len(due) - 1
            out.events.append(
                TriggerEvent(
                    key=tick.isoformat(),
                    fields=fields,
                    at=tick.timestamp(),
                    state=FiringState.COALESCED if coalesced else None,
                    reason=f"missed tick coalesced into {due[-1].isoformat()} (catchup: latest)"
                    if coalesced
                    else "",
                )
            )
        return out
