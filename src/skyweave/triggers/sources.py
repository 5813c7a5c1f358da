"""Where trigger events come from: a folder, a bucket, a schedule (the bus: ``messages.py``).

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
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from skyweave.model.triggers import FiringState, TriggerEvent, TriggerRecord, TriggerSpec

log = logging.getLogger(__name__)

RESCAN_S = 5.0
"""A folder or bucket is listed again at least this often, notification or not (network file
systems send none)."""
FULL_RESCAN_S = 300.0
"""An object trigger lists its whole prefix at least this often (otherwise only the keys after its
cursor): the longest a key that sorts before the cursor waits to be seen."""


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


class ObjectSource(Source):
    """Objects arriving under ``s3://bucket/prefix`` (any fsspec URL); key ``bucket/key@ETag``
    (size and mtime when the store has no ETag).

    S3 lists keys in lexicographic order, so a poll asks only for the keys after the trigger's
    cursor (``StartAfter``: the last key listed, stored with the firings in one transaction); a
    poll costs what arrived, not the whole prefix.  A key that sorts *before* the cursor when it
    arrives (senders whose names do not grow, a new version of an object already seen) is not in
    such a listing: a full listing every ``rescan_s`` (and the first poll of each trigger process)
    finds it, and the ledger and ``seen`` make sure a key listed again fires nothing twice.
    ``rescan_s: 0`` lists everything at every poll.  Other fsspec stores are listed whole at
    every poll.
    """

    def __init__(self, spec: TriggerSpec, wake: threading.Event | None = None) -> None:
        super().__init__(spec, wake)
        import fsspec

        self.url = str(spec.source["url"])
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **spec.source.get("storage_options", {}))
        self.root = self.root.rstrip("/")
        pattern = spec.source.get("pattern")
        self.pattern = re.compile(pattern) if pattern else None
        self.rescan_s = float(spec.source.get("rescan_s", FULL_RESCAN_S))
        self.seen: set[str] = set()
        """Keys known to be in the ledger (or not this trigger's): not looked up again."""
        self.full_at: float | None = None
        """When the last full listing was made (``None``: the next poll makes one)."""
        self.listed = 0
        """Objects listed so far (a whole-prefix listing counts every object again)."""
        self._s3 = "s3" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))

    def _after(self, cursor: str | None) -> str | None:
        """The stored cursor, if it is a path under this trigger's prefix (``triggers add --replace``
        may have moved the prefix: then the listing starts from the beginning)."""
        if cursor and cursor.startswith(self.root + "/"):
            return cursor
        return None

    def _list(self, after: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(path, info)`` of the objects under the prefix whose paths sort after ``after``, in
        lexicographic order (every object on a store that cannot start a listing at a key: it
        costs the same, and nothing waits for a full listing)."""
        if not self._s3:
            try:
                listing = self.fs.find(self.root, detail=True)
            except FileNotFoundError:
                return
            for path, info in sorted(listing.items()):
                if info.get("type") != "directory":
                    yield path, info
            return
        bucket, _, prefix = self.root.lstrip("/").partition("/")
        args: dict[str, Any] = {"Bucket": bucket, "Prefix": f"{prefix}/" if prefix else ""}
        if after is not None:
            args["StartAfter"] = after.lstrip("/").partition("/")[2]
        while True:
            try:
                page = self.fs.call_s3("list_objects_v2", **args)
            except FileNotFoundError:  # no such bucket (yet)
                return
            for item in page.get("Contents", []):
                if not item["Key"].endswith("/"):  # a folder marker
                    yield f"{bucket}/{item['Key']}", {
                        "ETag": item.get("ETag"),
                        "size": item.get("Size"),
                        "LastModified": item.get("LastModified"),
                    }
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            args["ContinuationToken"] = token

    def poll(self, record: TriggerRecord, now: float) -> Poll:
        out = Poll(retry_at=now + RESCAN_S)
        full = self.full_at is None or now - self.full_at >= self.rescan_s
        after = self._after(record.cursor)
        self.fs.invalidate_cache()
        last = after
        for path, info in self._list(None if full else after):
            self.listed += 1
            if last is None or path > last:
                last = path
            etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
            mtime = _timestamp(info.get("LastModified") or info.get("mtime") or info.get("created"))
            key = f"{path}@{etag}" if etag else f"{path}@{info.get('size')}:{mtime}"
            if key in self.seen:
                continue
            name = path.rsplit("/", 1)[-1]
            groups = _groups(self.pattern, name)
            if groups is None:
                self.seen.add(key)
                continue
            bucket, _, obj = path.lstrip("/").partition("/")
            fields = {
                "url": self.fs.unstrip_protocol(path),
                "bucket": bucket,
                "key": obj,
                "name": name,
                "size": info.get("size"),
                "etag": etag,
                **groups,
            }
            out.events.append(TriggerEvent(key=key, fields=fields, at=mtime or now))
        if full:
            self.full_at = now
        if last is not None and last != after:
            out.cursor = last
        return out

    def done(self, poll: Poll, recorded: Sequence[str]) -> None:  # noqa: ARG002
        self.seen.update(e.key for e in poll.events)


def _timestamp(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return 0.0


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
