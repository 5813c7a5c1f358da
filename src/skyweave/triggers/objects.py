"""Objects arriving under ``s3://bucket/prefix`` (any fsspec URL).

S3 lists the keys of a bucket in lexicographic order and can start a listing after a key
(``StartAfter``), so a poll asks only for the keys after the trigger's *cursor*: it costs what
arrived, not the whole prefix (listing a prefix of 17,000 objects every poll took moto and the
trigger a core each).  Two kinds of object are not after the cursor when they arrive:

* **out of order by a little**: parallel uploads finishing in another order than their names
  sort.  The cursor trails the listings by ``overlap_s``: it is the last key listed at least that
  long ago, so each poll lists again what arrived in the last ``overlap_s`` and finds them;
* **late**: a name that sorts before keys listed long ago (senders whose names do not grow), or a
  new version of an object already seen.  A listing of the whole prefix every ``rescan_s``, and
  at the first poll of each trigger process, finds them, at most ``rescan_s`` late.

A key listed again starts nothing twice: ``seen`` (keys this process knows are recorded) and the
store's ledger (one row per ``bucket/key@ETag``) skip it.  The cursor is written with the poll's
firings in one store transaction, and only ever to a key whose poll was recorded whole
(``done``): it never passes an object whose firing is not in the ledger.  Other fsspec stores
cannot start a listing at a key and are listed whole at every poll.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from skyweave.model.triggers import TriggerEvent, TriggerRecord, TriggerSpec
from skyweave.triggers.sources import RESCAN_S, Poll, Source, _groups

FULL_RESCAN_S = 300.0
"""Default ``rescan_s``: the whole prefix is listed at least this often."""
OVERLAP_S = 10.0
"""Default ``overlap_s``: how far behind the newest key listed the cursor trails."""


class ObjectSource(Source):
    """Objects under ``s3://bucket/prefix``; key ``bucket/key@ETag`` (size and mtime when the store
    has no ETag); listed after the cursor at each poll, whole every ``rescan_s``."""

    def __init__(self, spec: TriggerSpec, wake: threading.Event | None = None) -> None:
        super().__init__(spec, wake)
        import fsspec

        self.url = str(spec.source["url"])
        self.fs, root = fsspec.core.url_to_fs(self.url, **spec.source.get("storage_options", {}))
        self.root = str(root).rstrip("/")
        pattern = spec.source.get("pattern")
        self.pattern = re.compile(pattern) if pattern else None
        self.rescan_s = float(spec.source.get("rescan_s", FULL_RESCAN_S))
        self.overlap_s = float(spec.source.get("overlap_s", OVERLAP_S))
        self.seen: set[str] = set()
        """Keys known to be in the ledger (or not this trigger's): not looked up again."""
        self.full_at: float | None = None
        """When the last full listing was made (``None``: the next poll makes one)."""
        self._marks: deque[tuple[float, str]] = deque()
        """(poll time, last key listed) of the polls recorded whole, oldest first: the cursor's
        next positions."""
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        self._s3 = "s3" in protocols

    def poll(self, record: TriggerRecord, now: float) -> Poll:
        out = Poll(retry_at=now + RESCAN_S)
        after = record.cursor if record.cursor and record.cursor.startswith(self.root + "/") else None
        while self._marks and self._marks[0][0] <= now - self.overlap_s:  # the cursor moves on
            mark = self._marks.popleft()[1]
            if after is None or mark > after:
                after = out.cursor = mark
        full = self.full_at is None or now - self.full_at >= self.rescan_s
        last = after
        self.fs.invalidate_cache()
        for path, info in self._list(None if full else after):
            if last is None or path > last:
                last = path
            event = self._event(path, info, now)
            if event is not None:
                out.events.append(event)
        if full:
            self.full_at = now
        out.offset = (now, last)
        return out

    def done(self, poll: Poll, recorded: Sequence[str]) -> None:  # noqa: ARG002
        self.seen.update(e.key for e in poll.events)
        at, last = poll.offset
        if last is not None:
            self._marks.append((at, last))

    def _event(self, path: str, info: dict[str, Any], now: float) -> TriggerEvent | None:
        etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
        mtime = _timestamp(info.get("LastModified") or info.get("mtime") or info.get("created"))
        key = f"{path}@{etag}" if etag else f"{path}@{info.get('size')}:{mtime}"
        if key in self.seen:
            return None
        name = path.rsplit("/", 1)[-1]
        groups = _groups(self.pattern, name)
        if groups is None:
            self.seen.add(key)  # not this trigger's object
            return None
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
        return TriggerEvent(key=key, fields=fields, at=mtime or now)

    def _list(self, after: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(path, info)`` of the objects under the prefix whose paths sort after ``after`` (all
        of them when ``None``, or when the store cannot start a listing at a key), in order."""
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


def _timestamp(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return 0.0
