"""``sqlite:///path/bus.db`` — the bus shared by several processes on one host.

The controller, the worker processes and the CLI each open the same file (its own file, apart
from the store's database, so the two do not contend for SQLite's single writer).  ``sqlite3`` is
used directly: this is the hot path.  WAL journal, ``synchronous=NORMAL``, 30 s busy timeout.

* ``dispatch`` rows are claimed lowest ``rank`` first (``enqueued_at - priority * aging_s``, the
  fixed form of the effective priority, computed by whoever enqueues or re-prioritises: the
  controller, with the settings' ``aging_s``).  They are claimable while not ``done`` and
  ``lease_until`` is NULL or in the past (``worker`` keeps the last claimer until another claims it:
  ``reclaim`` and ``holders`` read it).  ``report`` publishes events and sets ``done`` in one
  transaction; ``commit`` moves a group's offset and deletes acked rows in one transaction.
  ``claim`` is one ``BEGIN IMMEDIATE`` transaction (SQLite's single writer lock), so no two
  processes ever claim the same row; a cheap read first skips the lock when nothing is claimable.
  Lease times are wall clock (``time.time()``), comparable between processes and across restarts.
* ``events`` offsets come from ``AUTOINCREMENT``, so they never repeat even after trimming.  Every
  ``TRIM_EVERY`` commits, events that every known group (row in ``groups``) has committed go.
  ``read`` notes when a group was seen at most every ``SEEN_EVERY_S`` per handle (a write), so
  ``prune`` can drop the groups of listeners gone for good.
* ``wait`` polls ``PRAGMA data_version`` (which changes when *another* connection commits) with
  short sleeps backing off from 0.5 ms to 20 ms; only when it changes does it read the two counters
  that enqueue and publish advance, so acks and commits elsewhere do not wake it.  Changes made
  through this object by another thread wake it at once through a ``threading.Condition``.

One connection per object, guarded by a lock, so an object may be shared by threads.  Open a new
bus in each process (never carry one across ``fork``).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from skyweave.bus import sqlite_sql as sql
from skyweave.bus.base import (
    CONTROLLER_GROUP,
    FIRST_OFFSET,
    MAX_DELIVERIES_ERROR,
    Bus,
    Claimed,
    DeadLetter,
    Delivered,
    Pruned,
    redrivable,
    sequence_offset,
)
from skyweave.errors import BusError

TRIM_EVERY = 64
"""Trim fully committed events after this many ``commit`` calls on one bus object."""
SEEN_EVERY_S = 60.0
"""A handle's ``read`` writes when it saw a group at most this often (``commit`` always does)."""
_FIRST_PAUSE = 0.0005
_LAST_PAUSE = 0.02

class SQLiteBus(Bus):
    """The bus in one SQLite file, safe for many processes and for threads sharing the object."""

    def __init__(
        self, path: str | Path, *, url: str | None = None, groups: Iterable[str] = (CONTROLLER_GROUP,),
        aging_s: float = 60.0, clock: Callable[[], float] = time.time, max_deliveries: int = 0,
    ) -> None:
        self.path = Path(path)
        self.max_deliveries = max_deliveries
        """A dispatch claimed more often than this goes to the dead letters; 0: never."""
        self.aging_s = aging_s
        self._clock = clock
        """Wall clock: leases and enqueue times are compared between processes."""
        self.url = url or f"sqlite:///{self.path}"
        self._cond = threading.Condition(threading.Lock())
        self._seen = threading.local()
        self._generation = 0
        """Bumped when this object enqueues or publishes, to wake its own waiting threads."""
        self._commits = 0
        self._known: set[str] = set(groups)
        self._noted: dict[str, float] = {}
        """Group -> when this handle last wrote that it saw it (``SEEN_EVERY_S``)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise self._error("cannot open", exc) from exc
        try:
            self._conn.execute("PRAGMA busy_timeout = 30000")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            with self._write() as conn:
                for statement in sql.SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                _upgrade(conn, aging_s)
                conn.execute(sql.INDEX)
                conn.executemany(
                    "INSERT OR IGNORE INTO groups (name, committed, seen_at) VALUES (?, 0, ?)",
                    [(group, time.time()) for group in self._known],
                )
        except BaseException:
            self._conn.close()
            raise

    # -- dispatch queue ---------------------------------------------------------------------------
    def enqueue(self, messages: Sequence[tuple[str, int, bytes]], *, first: bool = False,
                site: str = "") -> None:
        if not messages:
            return
        with self._write() as conn:
            self._insert(conn, messages, first=first, site=site)

    def _insert(self, conn: sqlite3.Connection, messages: Sequence[tuple[str, int, bytes]], *,
                first: bool, site: str = "") -> int:
        """Enqueue in the caller's transaction; returns how many were new."""
        if not messages:
            return 0
        (last_seq,) = conn.execute(sql.NEXT_SEQ, (len(messages),)).fetchall()[0]
        first_seq = last_seq - len(messages) + 1 - (FIRST_OFFSET if first else 0)
        now = self._clock()
        oldest: dict[int, float] = {}
        if first:  # as old as the oldest of its priority (then ahead of it by ``seq``)
            oldest = dict(conn.execute(
                "SELECT priority, min(enqueued_at) FROM dispatch WHERE done = 0 GROUP BY priority"))
        rows = []
        for n, (i, priority, data) in enumerate(messages):
            at = min(oldest.get(priority, now), now)
            rows.append((i, priority, first_seq + n, data, at - priority * self.aging_s, at, site))
        added = conn.executemany(
            "INSERT OR IGNORE INTO dispatch (id, priority, seq, data, rank, enqueued_at, site)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)", rows).rowcount
        self._changed()
        return added

    def claim(self, worker: str, max_n: int, lease_s: float, *, site: str = "") -> list[Claimed]:
        if max_n <= 0:
            return []
        now = self._clock()
        with self._read() as conn:
            self._remember_signal(conn)
            if conn.execute(sql.ANY_CLAIMABLE, {"now": now, "site": site}).fetchone() is None:
                return []  # no write lock taken when there is nothing to claim
        with self._write() as conn:
            params = {"now": now, "until": now + lease_s, "worker": worker, "n": max_n, "site": site}
            rows = conn.execute(sql.CLAIM, params).fetchall()
            if self.max_deliveries > 0:
                poisoned = [row for row in rows if row[2] > self.max_deliveries]
                _delete(conn, [row[0] for row in poisoned])
                conn.executemany(sql.DEAD, [
                    (row[1], MAX_DELIVERIES_ERROR.format(id=row[0], n=self.max_deliveries),
                     time.time(), row[0], row[5]) for row in poisoned])
                rows = [row for row in rows if row[2] <= self.max_deliveries]
        rows.sort(key=lambda row: (row[3], row[4]))
        return [Claimed(row[0], row[1], row[2], row[3]) for row in rows]

    def ack(self, ids: Sequence[str]) -> None:
        if ids:
            with self._write() as conn:
                _delete(conn, ids)

    def report(self, events: Sequence[bytes], done: Sequence[str]) -> None:
        if not events and not done:
            return
        with self._write() as conn:
            conn.executemany("UPDATE dispatch SET done = 1 WHERE id = ?", [(i,) for i in done])
            if events:
                conn.executemany("INSERT INTO events (data) VALUES (?)", [(m,) for m in events])
                self._changed()

    def reclaim(self, worker: str) -> list[str]:
        with self._write() as conn:
            ids = [row[0] for row in conn.execute(
                "DELETE FROM dispatch WHERE worker = ? AND done = 0 RETURNING id", (worker,))]
            conn.executemany("DELETE FROM revoked WHERE id = ?", [(i,) for i in ids])
        return ids

    def holders(self) -> list[str]:
        with self._read() as conn:
            rows = conn.execute("SELECT DISTINCT worker FROM dispatch WHERE worker IS NOT NULL AND done = 0")
            return sorted(row[0] for row in rows)

    def present(self, ids: Sequence[str]) -> list[str]:
        found: set[str] = set()
        with self._read() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(row[0] for row in conn.execute(
                    f"SELECT id FROM dispatch WHERE id IN ({marks})", chunk))
        return [i for i in ids if i in found]

    def extend(self, ids: Sequence[str], lease_s: float) -> None:
        if ids:
            until = self._clock() + lease_s
            with self._write() as conn:
                conn.executemany(
                    "UPDATE dispatch SET lease_until = ? "
                    "WHERE id = ? AND lease_until IS NOT NULL AND done = 0",
                    [(until, i) for i in ids],
                )

    def withdraw(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        now = self._clock()
        with self._write() as conn:
            cursor = conn.executemany(
                "DELETE FROM dispatch WHERE id = ? AND done = 0 AND (lease_until IS NULL OR lease_until < ?)",
                [(i, now) for i in ids],
            )
            return cursor.rowcount

    def reprioritize(self, ids: Sequence[str], priority: int) -> int:
        if not ids:
            return 0
        now = self._clock()
        with self._write() as conn:
            cursor = conn.executemany(
                "UPDATE dispatch SET priority = ?, rank = enqueued_at - ? WHERE id = ? AND done = 0 "
                "AND (lease_until IS NULL OR lease_until < ?)",
                [(priority, priority * self.aging_s, i, now) for i in ids],
            )
            if cursor.rowcount:
                self._changed()
            return cursor.rowcount

    def hold(self, ids: Sequence[str]) -> None:
        if ids:
            with self._write() as conn:
                conn.executemany("UPDATE dispatch SET held = 1 WHERE id = ?", [(i,) for i in ids])

    def release(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        with self._write() as conn:
            cursor = conn.executemany("UPDATE dispatch SET held = 0 WHERE id = ? AND held = 1",
                                      [(i,) for i in ids])
            if cursor.rowcount:
                conn.execute(sql.NEXT_SEQ, (1,)).fetchall()  # the signal waiting workers watch
                self._changed()

    def held(self, ids: Sequence[str]) -> list[str]:
        if not ids:
            return []
        with self._read() as conn:
            marks = {row[0] for row in conn.execute(
                "SELECT id FROM dispatch WHERE held = 1 AND begun = 0 "
                f"AND id IN ({','.join('?' * len(ids))})", list(ids))}
        return [i for i in ids if i in marks]

    def begin(self, ids: Sequence[str]) -> list[str]:
        if not ids:
            return []
        begun: set[str] = set()
        with self._write() as conn:
            for start in range(0, len(ids), 500):
                chunk = list(ids[start:start + 500])
                begun.update(row[0] for row in conn.execute(
                    f"UPDATE dispatch SET begun = 1 WHERE held = 0 AND done = 0 "
                    f"AND id IN ({','.join('?' * len(chunk))}) RETURNING id", chunk))
        return [i for i in ids if i in begun]

    def revoke(self, ids: Sequence[str]) -> None:
        if ids:
            with self._write() as conn:
                conn.executemany("INSERT OR IGNORE INTO revoked (id) SELECT id FROM dispatch WHERE id = ?",
                                 [(i,) for i in ids])

    def revoked(self, ids: Sequence[str]) -> list[str]:
        if not ids:
            return []
        with self._read() as conn:
            marks = {row[0] for row in conn.execute("SELECT id FROM revoked")}
        return [i for i in ids if i in marks]

    def queued(self) -> int:
        with self._read() as conn:
            (count,) = conn.execute("SELECT count(*) FROM dispatch").fetchone()
            return int(count)

    # -- events -----------------------------------------------------------------------------------
    def publish(self, messages: Sequence[bytes]) -> None:
        if messages:
            with self._write() as conn:
                conn.executemany("INSERT INTO events (data) VALUES (?)", [(m,) for m in messages])
                self._changed()

    def read(self, group: str, max_n: int) -> list[Delivered]:
        now = time.time()
        if group not in self._known or now - self._noted.get(group, -SEEN_EVERY_S) >= SEEN_EVERY_S:
            with self._write() as conn:
                conn.execute(sql.SEEN, (group, now))
                self._known.add(group)
                self._noted[group] = now
        with self._read() as conn:
            self._remember_signal(conn)
            rows = conn.execute(sql.READ, (group, max_n)).fetchall()
        return [Delivered(str(offset), data) for offset, data in rows]

    def commit(self, group: str, offset: str, *, ack: Sequence[str] = ()) -> None:
        number = sequence_offset(offset)
        with self._write() as conn:
            now = time.time()
            conn.execute(sql.COMMIT, (group, number, now))
            self._noted[group] = now
            if ack:
                _delete(conn, ack)
            self._known.add(group)
            self._commits += 1
            if self._commits % TRIM_EVERY == 0:
                conn.execute(sql.TRIM)

    def dead_letter(self, data: bytes, error: str) -> None:
        with self._write() as conn:
            conn.execute(sql.DEAD, (data, error, time.time(), None, 0))

    def dead_letters(self) -> list[DeadLetter]:
        with self._read() as conn:
            return _letters(conn)

    def prune(self, now: float, *, group_idle_s: float | None, dead_letter_age_s: float | None,
              dry_run: bool = False) -> Pruned:
        with self._write() as conn:
            if not dry_run:  # a group of a file made before pruning: seen now (NULL is never idle)
                conn.execute("UPDATE groups SET seen_at = ? WHERE seen_at IS NULL", (now,))
            idle = [] if group_idle_s is None else [
                row[0] for row in conn.execute(sql.IDLE_GROUPS, (CONTROLLER_GROUP, now - group_idle_s))]
            letters_before = -math.inf if dead_letter_age_s is None else now - dead_letter_age_s
            if dry_run:
                (events,) = conn.execute(sql.TRIMMABLE, (json.dumps(idle),)).fetchone()
                (letters,) = conn.execute(sql.OLD_LETTERS, (letters_before,)).fetchone()
                return Pruned(groups=idle, events=int(events), dead_letters=int(letters))
            conn.executemany("DELETE FROM groups WHERE name = ?", [(g,) for g in idle])
            events = conn.execute(sql.TRIM).rowcount
            letters = conn.execute("DELETE FROM dead_letters WHERE at < ?", (letters_before,)).rowcount
        self._known.difference_update(idle)
        for group in idle:
            self._noted.pop(group, None)
        return Pruned(groups=idle, events=events, dead_letters=letters)

    def redrive(self, ids: Sequence[str]) -> int:
        with self._write() as conn:
            letters = redrivable(_letters(conn), ids)
            conn.executemany("DELETE FROM dead_letters WHERE id = ?", [(int(x.id),) for x in letters])
            return self._insert(conn, [(x.dispatch, x.priority, x.data) for x in letters
                                       if x.dispatch is not None], first=False)

    # -- waiting ----------------------------------------------------------------------------------
    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._read() as conn:
            version = self._data_version(conn)  # before the signal: a commit between is not missed
            signal = self._signal(conn)
            baseline = getattr(self._seen, "signal", signal)
            pause = _FIRST_PAUSE
            while signal == baseline:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                generation = self._generation
                self._cond.wait(min(pause, remaining))  # releases the lock while asleep
                pause = min(2 * pause, _LAST_PAUSE)
                new_version = self._data_version(conn)
                if new_version != version or generation != self._generation:
                    version = new_version
                    signal = self._signal(conn)
            self._seen.signal = signal

    def close(self) -> None:
        with self._cond:
            self._conn.close()

    # -- plumbing ---------------------------------------------------------------------------------
    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """The connection under the lock; single statements run in autocommit."""
        with self._cond:
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise self._error("cannot read", exc) from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction under the lock, rolled back if anything fails."""
        with self._cond:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._error("cannot write", exc) from exc
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._error("cannot write", exc) from exc
                raise

    def _error(self, what: str, exc: BaseException) -> BusError:
        return BusError(
            f"{what} the bus database {self.path}: {exc}",
            hint="check that the file is on a local, writable disk and not closed; the call can be retried",
            path=str(self.path),
        )

    def _changed(self) -> None:
        """Wake this object's threads in ``wait`` (other processes see ``data_version`` change)."""
        self._generation += 1
        self._cond.notify_all()

    def _signal(self, conn: sqlite3.Connection) -> tuple[int, int]:
        """The last dispatch sequence number and the last event offset ever given out."""
        seq, offset = conn.execute(sql.SIGNAL).fetchone()
        return int(seq), int(offset)

    @staticmethod
    def _data_version(conn: sqlite3.Connection) -> int:
        return int(conn.execute("PRAGMA data_version").fetchone()[0])

    def _remember_signal(self, conn: sqlite3.Connection) -> None:
        """Give this thread's next ``wait`` a baseline, if it has none yet."""
        if not hasattr(self._seen, "signal"):
            self._seen.signal = self._signal(conn)

    def __repr__(self) -> str:
        return f"SQLiteBus({self.url!r})"


def _upgrade(conn: sqlite3.Connection, aging_s: float) -> None:
    """Add the columns a bus file made by an older skyweave lacks."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(dispatch)")}
    if "done" not in columns:  # a bus file made before outcomes were kept until acked
        conn.execute("ALTER TABLE dispatch ADD COLUMN done INTEGER NOT NULL DEFAULT 0")
    if "rank" not in columns:  # a bus file made before the bus aged its dispatches
        conn.execute("ALTER TABLE dispatch ADD COLUMN rank REAL NOT NULL DEFAULT 0")
        conn.execute("ALTER TABLE dispatch ADD COLUMN enqueued_at REAL NOT NULL DEFAULT 0")
        conn.execute("UPDATE dispatch SET rank = -priority * ?", (aging_s,))
    if "held" not in columns:  # a bus file made before pause held work on the bus
        conn.execute("ALTER TABLE dispatch ADD COLUMN held INTEGER NOT NULL DEFAULT 0")
    if "begun" not in columns:  # a bus file made before workers began what they took
        conn.execute("ALTER TABLE dispatch ADD COLUMN begun INTEGER NOT NULL DEFAULT 0")
    if "site" not in columns:  # a bus file made before dispatches were routed to sites
        conn.execute(sql.ADD_SITE)
    dead_columns = {row[1] for row in conn.execute("PRAGMA table_info(dead_letters)")}
    if "seen_at" not in {row[1] for row in conn.execute("PRAGMA table_info(groups)")}:
        conn.execute(sql.ADD_SEEN_AT)  # a bus file made before groups were pruned
    if "dispatch" not in dead_columns:  # a bus file made before poisoned dispatches
        conn.execute("ALTER TABLE dead_letters ADD COLUMN dispatch TEXT")
        conn.execute("ALTER TABLE dead_letters ADD COLUMN priority INTEGER NOT NULL DEFAULT 0")


def _letters(conn: sqlite3.Connection) -> list[DeadLetter]:
    rows = conn.execute("SELECT id, data, error, dispatch, priority FROM dead_letters ORDER BY id")
    return [DeadLetter(str(i), bytes(data), str(error), dispatch, int(priority))
            for i, data, error, dispatch, priority in rows]


def _delete(conn: sqlite3.Connection, ids: Sequence[str]) -> None:
    conn.executemany("DELETE FROM dispatch WHERE id = ?", [(i,) for i in ids])
    conn.executemany("DELETE FROM revoked WHERE id = ?", [(i,) for i in ids])
