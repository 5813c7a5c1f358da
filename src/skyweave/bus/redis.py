"""``redis://host:port/db`` — the bus for controller and workers on different hosts.

Needs the ``redis`` extra (``pip install 'skyweave[redis]'``).  URL query parameters:
``prefix`` (key prefix, default ``skyweave``: several buses can share one Redis database),
``max_deliveries`` (a dispatch claimed that many times without an ack goes to the dead letters
instead of a next worker; default 10, 0 for never) and ``retry_s`` (how long an operation keeps
retrying an unreachable server before it raises ``BusError``; default 60).

* **Dispatch queue**: a sorted set of claimable dispatches scored by their *rank*
  ``enqueued_at - priority * aging_s`` (the effective priority ``priority + waited / aging_s`` as a
  key that does not change with time; see ``bus/base.py``), whose members start with a zero-padded
  sequence number, so equal ranks go oldest first; a priority change rescores in place and keeps
  the age.  A second sorted set holds the claimed ones scored by lease deadline (the equivalent of
  a stream consumer group's pending list with ``XAUTOCLAIM``: an expired lease makes the dispatch
  claimable again, in its old place).  Hashes hold body, priority, rank, enqueue time, delivery
  count and last claimer; sets hold the dispatches reported done (out of both sorted sets, kept
  until the controller acks them, with its offset commit in the same script) and the held ones (a
  paused run's: out of the claimable set until released).  Every operation is one Lua script
  (``redis_scripts``), so no two workers ever claim the same dispatch and ``hold`` is atomic with
  claims.  Enqueue times are the enqueuer's clock (the controller's); leases the server's, so
  workers on hosts with different clocks agree.  Why not a stream per priority band: see
  ARCHITECTURE.md ("The Redis bus").
* **Events**: a Redis stream with entry ids ``<n>-0`` (an event's offset is its entry id); each
  consumer group of the stream holds its committed offset as its last-delivered id (``XGROUP
  SETID``, never backwards).  ``read`` is ``XRANGE`` after that id, so reading again without a
  commit returns the same events.  Events every group has committed are trimmed (``XTRIM
  MINID``).  Each group's last read or commit is noted (server time, hash ``seen``) so ``prune`` can
  ``XGROUP DESTROY`` the groups idle longer than the limit and trim what only they held.  A group
  missing (e.g. Redis came back without its data) is created again by the next
  ``read`` or ``commit``; ``CONTROLLER_GROUP`` always is, so a listener's commits never trim what
  the controller has not read.
* **Dead letters**: a stream with fields ``data`` and ``error`` (a poisoned dispatch's also
  ``dispatch`` and ``priority``); a letter's id is its entry id.  ``redrive`` enqueues the
  dispatches, then deletes their entries: a crash between leaves a letter whose dispatch is on the
  bus again, and re-driving it again only drops the letter (enqueue is idempotent).
* **wait** blocks in ``XREAD`` on a small stream that every enqueue and publish appends to.
* **Reconnect**: a lost or refused connection (or a server still loading its append-only file) is
  retried with exponential backoff, logged as a warning each time; after ``retry_s`` the operation
  raises ``BusError`` saying what to do.  Scripts are loaded again by redis-py after a restart.

Redis should run with an append-only file (``appendfsync everysec`` loses at most a second of bus
changes in a crash — a restarted controller re-sends in-flight dispatches the bus no longer holds;
``always`` loses nothing and costs a disk sync per write).  The object is safe to share between
threads (redis-py's connection pool).  Open a new bus in each process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from skyweave.bus import redis_scripts as lua
from skyweave.bus.base import (
    CONTROLLER_GROUP,
    FIRST_OFFSET,
    Bus,
    Claimed,
    DeadLetter,
    Delivered,
    Pruned,
    redrivable,
)
from skyweave.errors import BusError, NotFoundError

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_PREFIX = "skyweave"
DEFAULT_MAX_DELIVERIES = 10
DEFAULT_RETRY_S = 60.0
_FIRST_BACKOFF = 0.05
_LAST_BACKOFF = 2.0
_BLOCK_CHUNK_S = 5.0
"""``wait`` blocks in chunks of at most this long (the socket timeout is above it)."""


class RedisBus(Bus):
    """The bus in one Redis database, under one key prefix."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str | None = None,
        max_deliveries: int | None = None,
        retry_s: float | None = None,
        aging_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.url = url
        self._outages = 0
        self._outage_lock = threading.Lock()
        self.aging_s = aging_s
        self._clock = clock
        """Enqueue times (the enqueuer's wall clock: the controller's); leases use the server's."""
        self.prefix = prefix or query.get("prefix") or DEFAULT_PREFIX
        self.max_deliveries = (max_deliveries if max_deliveries is not None
                               else _number(url, query, "max_deliveries", DEFAULT_MAX_DELIVERIES, int))
        self.retry_s = (retry_s if retry_s is not None
                        else _number(url, query, "retry_s", DEFAULT_RETRY_S, float))
        server_url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        try:
            self._client: Any = redis.Redis.from_url(  # Any: redis-py's reply types are unions
                server_url, socket_timeout=_BLOCK_CHUNK_S + 10, socket_connect_timeout=5,
                health_check_interval=30,
            )
        except ValueError as exc:
            raise BusError(f"bad Redis bus URL {url!r}: {exc}",
                           hint="write redis://HOST:PORT/DB (rediss:// for TLS)") from exc
        tag = "{" + self.prefix + "}"
        self._keys = [f"{tag}:{name}" for name in lua.KEY_NAMES]
        self._scripts = {
            name: self._client.register_script(getattr(lua, name))
            for name in ("ENQUEUE", "CLAIM", "ACK", "EXTEND", "WITHDRAW", "REPRIORITIZE", "REVOKE",
                         "PUBLISH", "READ", "COMMIT", "GROUP", "REPORT", "RECLAIM", "HOLDERS", "PRESENT",
                         "HOLD", "RELEASE", "BEGIN", "HELD", "PRUNE")
        }
        self._seen = threading.local()
        self._script("GROUP", [CONTROLLER_GROUP])

    # -- dispatch queue ---------------------------------------------------------------------------
    def enqueue(self, messages: Sequence[tuple[str, int, bytes]], *, first: bool = False,
                site: str = "") -> None:
        if messages:
            self._script("ENQUEUE", [0 if first else FIRST_OFFSET, repr(self._clock()), repr(self.aging_s),
                                     site, *(x for message_id, priority, data in messages
                                       for x in (message_id, int(priority), data))])

    def claim(self, worker: str, max_n: int, lease_s: float, *, site: str = "") -> list[Claimed]:
        if max_n <= 0:
            return []
        reply = self._script("CLAIM", [worker, max_n, max(1, round(lease_s * 1000)), self.max_deliveries,
                                       site])
        self._remember_signal(reply[0])
        return [Claimed(_text(reply[i]), bytes(reply[i + 1]), int(reply[i + 2]), float(reply[i + 3]))
                for i in range(1, len(reply), 4)]

    def ack(self, ids: Sequence[str]) -> None:
        if ids:
            self._script("ACK", list(ids))

    def report(self, events: Sequence[bytes], done: Sequence[str]) -> None:
        if events or done:
            self._script("REPORT", [len(done), *done, *events])

    def reclaim(self, worker: str) -> list[str]:
        return [_text(i) for i in self._script("RECLAIM", [worker])]

    def holders(self) -> list[str]:
        return sorted(_text(w) for w in self._script("HOLDERS", []))

    def present(self, ids: Sequence[str]) -> list[str]:
        if not ids:
            return []
        flags = self._script("PRESENT", list(ids))
        return [i for i, flag in zip(ids, flags, strict=True) if flag]

    def extend(self, ids: Sequence[str], lease_s: float) -> None:
        if ids:
            self._script("EXTEND", [max(1, round(lease_s * 1000)), *ids])

    def withdraw(self, ids: Sequence[str]) -> int:
        return int(self._script("WITHDRAW", list(ids))) if ids else 0

    def reprioritize(self, ids: Sequence[str], priority: int) -> int:
        if not ids:
            return 0
        return int(self._script("REPRIORITIZE", [int(priority), repr(self.aging_s), *ids]))

    def hold(self, ids: Sequence[str]) -> None:
        if ids:
            self._script("HOLD", list(ids))

    def release(self, ids: Sequence[str]) -> None:
        if ids:
            self._script("RELEASE", list(ids))

    def held(self, ids: Sequence[str]) -> list[str]:
        if not ids:
            return []
        marks = self._script("HELD", list(ids))
        return [i for i, mark in zip(ids, marks, strict=True) if mark]

    def begin(self, ids: Sequence[str]) -> list[str]:
        if not ids:
            return []
        begun = {_text(i) for i in self._script("BEGIN", list(ids))}
        return [i for i in ids if i in begun]

    def revoke(self, ids: Sequence[str]) -> None:
        if ids:
            self._script("REVOKE", list(ids))

    def revoked(self, ids: Sequence[str]) -> list[str]:
        if not ids:
            return []
        marks = self._call(lambda: self._client.smismember(self._key("revoked"), list(ids)))
        return [i for i, mark in zip(ids, marks, strict=True) if mark]

    def queued(self) -> int:
        return int(self._call(lambda: self._client.hlen(self._key("data"))))

    # -- events -----------------------------------------------------------------------------------
    def publish(self, messages: Sequence[bytes]) -> None:
        if messages:
            self._script("PUBLISH", list(messages))

    def read(self, group: str, max_n: int) -> list[Delivered]:
        reply = self._script("READ", [group, max(0, max_n), CONTROLLER_GROUP])
        self._remember_signal(reply[0])
        if max_n <= 0:
            return []
        return [Delivered(_text(reply[i]), bytes(reply[i + 1])) for i in range(1, len(reply), 2)]

    def commit(self, group: str, offset: str, *, ack: Sequence[str] = ()) -> None:
        number, dash, seq = offset.partition("-") if isinstance(offset, str) else ("", "", "")
        if not (number.isdigit() and dash and seq == "0"):
            raise NotFoundError(f"{offset!r} is not an event offset of this bus (a stream entry id)",
                                hint="commit the offset of an event this bus delivered (Delivered.offset)")
        self._script("COMMIT", [group, int(number), CONTROLLER_GROUP, *ack])

    def dead_letter(self, data: bytes, error: str) -> None:
        self._call(lambda: self._client.xadd(self._key("dead"), {"data": data, "error": error}))

    def dead_letters(self) -> list[DeadLetter]:
        entries = self._call(lambda: self._client.xrange(self._key("dead")))
        return [DeadLetter(_text(entry), bytes(fields[b"data"]), _text(fields[b"error"]),
                           _text(fields[b"dispatch"]) if b"dispatch" in fields else None,
                           int(fields.get(b"priority") or 0))
                for entry, fields in entries]

    def prune(self, now: float, *, group_idle_s: float | None, dead_letter_age_s: float | None,
              dry_run: bool = False) -> Pruned:
        now_ms = round(now * 1000)
        reply = self._script("PRUNE", [
            now_ms, -1 if group_idle_s is None else round(group_idle_s * 1000),
            -1 if dead_letter_age_s is None else max(0, now_ms - round(dead_letter_age_s * 1000)),
            1 if dry_run else 0, CONTROLLER_GROUP])
        return Pruned(groups=sorted(_text(g) for g in reply[2:]), events=int(reply[0]),
                      dead_letters=int(reply[1]))

    def redrive(self, ids: Sequence[str]) -> int:
        letters = redrivable(self.dead_letters(), ids)
        if not letters:
            return 0
        messages = [(x.dispatch, x.priority, x.data) for x in letters if x.dispatch is not None]
        added = int(self._script("ENQUEUE", [FIRST_OFFSET, repr(self._clock()), repr(self.aging_s), "",
                                             *(x for message in messages for x in message)]))
        self._call(lambda: self._client.xdel(self._key("dead"), *(x.id for x in letters)))
        return added

    # -- waiting ----------------------------------------------------------------------------------
    def wait(self, timeout: float) -> None:
        current = self._current_signal()
        baseline = getattr(self._seen, "signal", None)
        baseline = current if baseline is None else baseline
        deadline = time.monotonic() + timeout
        wake = self._key("wake")
        while current == baseline and (remaining := deadline - time.monotonic()) > 0:
            block_ms = max(1, round(min(remaining, _BLOCK_CHUNK_S) * 1000))
            stream = {wake: f"{baseline}-0"}
            if self._call(lambda: self._client.xread(stream, count=1, block=block_ms)):  # noqa: B023
                current = self._current_signal()
        self._seen.signal = current

    def close(self) -> None:
        self._client.close()

    def purge(self) -> int:
        """Delete every key of this bus (its prefix) — for tests and for retiring a deployment."""
        site_queues = self._call(lambda: self._client.keys(f"{self._key('ready')}:*"))  # one per site
        return int(self._call(lambda: self._client.delete(*self._keys, *site_queues)))

    # -- plumbing ---------------------------------------------------------------------------------
    def _key(self, name: str) -> str:
        return self._keys[lua.KEY_NAMES.index(name)]

    def _script(self, name: str, args: Sequence[Any]) -> Any:
        script = self._scripts[name]
        return self._call(lambda: script(keys=self._keys, args=list(args)))

    def _call(self, operation: Callable[[], T]) -> T:
        """Run ``operation``, retrying a lost connection with backoff for up to ``retry_s``."""
        give_up = time.monotonic() + self.retry_s
        pause = _FIRST_BACKOFF
        failed = False
        while True:
            try:
                result = operation()
            except (RedisConnectionError, RedisTimeoutError) as exc:
                failed = True
                left = give_up - time.monotonic()
                if left <= 0:
                    raise BusError(
                        f"cannot reach the Redis bus at {self._where()} "
                        f"(retried for {self.retry_s:g} s): {exc}",
                        hint="start Redis or fix the --bus URL; ?retry_s=SECONDS in the URL waits longer",
                    ) from exc
                pause = min(pause, left)
                log.warning("Redis bus at %s unreachable (%s); retrying in %.2f s (for %.0f s more)",
                            self._where(), exc, pause, left)
                time.sleep(pause)
                pause = min(2 * pause, _LAST_BACKOFF)
            except RedisError as exc:
                raise BusError(f"the Redis bus at {self._where()} refused an operation: {exc}",
                               hint="check the server's log; a Redis 6.2 or newer is needed") from exc
            else:
                if failed:
                    with self._outage_lock:
                        self._outages += 1
                    log.warning("Redis bus at %s reachable again", self._where())
                return result

    @property
    def outages(self) -> int:
        return self._outages

    def _where(self) -> str:
        parts = urlsplit(self.url)
        host = parts.hostname or "localhost"
        return f"{parts.scheme}://{host}:{parts.port or 6379}{parts.path or '/0'} (prefix {self.prefix!r})"

    def _current_signal(self) -> int:
        return int(self._call(lambda: self._client.get(self._key("signal"))) or 0)

    def _remember_signal(self, value: object) -> None:
        """Give this thread's next ``wait`` a baseline, if it has none yet."""
        if getattr(self._seen, "signal", None) is None:
            self._seen.signal = int(value)  # type: ignore[call-overload]

    def __repr__(self) -> str:
        return f"RedisBus({self._where()!r})"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _number(url: str, query: dict[str, str], name: str, default: T, kind: Callable[[str], T]) -> T:
    if name not in query:
        return default
    try:
        return kind(query[name])
    except ValueError:
        raise BusError(f"bad {name}={query[name]!r} in the bus URL {url!r}",
                       hint=f"{name} takes a number, e.g. ?{name}=10") from None
