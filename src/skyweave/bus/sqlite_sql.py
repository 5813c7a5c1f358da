"""The SQL of the SQLite bus (``bus/sqlite.py``): its tables and its hot statements, kept in one
place like the Redis bus's Lua scripts.

* ``dispatch``: one row per dispatch, claimed lowest ``rank`` first (``rank, seq``: ties in enqueue
  order); ``done`` once reported, until acked; ``held`` while its run is paused;
  ``site``: only workers of that site claim it (``''``: workers with no site).
* ``events``: the event log; ``offset`` from ``AUTOINCREMENT``, so an offset is never reused.
* ``groups``: each consumer group's committed offset and when it last read or committed
  (``seen_at``, wall clock; NULL in a file made before pruning: taken as seen at the first prune);
  ``counters``: the dispatch sequence.
* ``dead_letters``, ``revoked``: put-aside messages and cancel marks.
"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS dispatch (
    id TEXT PRIMARY KEY,
    priority INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    lease_until REAL,
    worker TEXT,
    deliveries INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0,
    rank REAL NOT NULL DEFAULT 0,
    enqueued_at REAL NOT NULL DEFAULT 0,
    held INTEGER NOT NULL DEFAULT 0,
    begun INTEGER NOT NULL DEFAULT 0,
    site TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS events (offset INTEGER PRIMARY KEY AUTOINCREMENT, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS groups (name TEXT PRIMARY KEY, committed INTEGER NOT NULL, seen_at REAL);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY, data BLOB NOT NULL, error TEXT NOT NULL, at REAL NOT NULL,
    dispatch TEXT, priority INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS revoked (id TEXT PRIMARY KEY);
INSERT OR IGNORE INTO counters (name, value) VALUES ('dispatch_seq', 0);
"""
ADD_SITE = "ALTER TABLE dispatch ADD COLUMN site TEXT NOT NULL DEFAULT ''"
"""A bus file made before sites gets the column (``PRAGMA table_info`` tells)."""
INDEX = "CREATE INDEX IF NOT EXISTS dispatch_rank ON dispatch (rank, seq, lease_until)"
CLAIMABLE = "done = 0 AND held = 0 AND site = :site AND (lease_until IS NULL OR lease_until < :now)"
ANY_CLAIMABLE = f"SELECT 1 FROM dispatch WHERE {CLAIMABLE} LIMIT 1"
CLAIM = f"""
UPDATE dispatch SET lease_until = :until, worker = :worker, deliveries = deliveries + 1
WHERE id IN (SELECT id FROM dispatch WHERE {CLAIMABLE} ORDER BY rank, seq LIMIT :n)
RETURNING id, data, deliveries, rank, seq, priority
"""
DEAD = "INSERT INTO dead_letters (data, error, at, dispatch, priority) VALUES (?, ?, ?, ?, ?)"
NEXT_SEQ = "UPDATE counters SET value = value + ? WHERE name = 'dispatch_seq' RETURNING value"
LAST_OFFSET = "(SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'events')"
SIGNAL = f"SELECT (SELECT value FROM counters WHERE name = 'dispatch_seq'), {LAST_OFFSET}"
READ = """
-- a group without a row (dropped by ``prune`` while this handle knew it) reads from the oldest event
SELECT offset, data FROM events
WHERE offset > COALESCE((SELECT committed FROM groups WHERE name = ?), 0) ORDER BY offset LIMIT ?
"""
COMMIT = f"""
INSERT INTO groups (name, committed, seen_at) VALUES (?, min(?, {LAST_OFFSET}), ?)
ON CONFLICT (name) DO UPDATE SET committed = max(committed, excluded.committed), seen_at = excluded.seen_at
"""
SEEN = """
INSERT INTO groups (name, committed, seen_at) VALUES (?, 0, ?)
ON CONFLICT (name) DO UPDATE SET seen_at = excluded.seen_at
"""
"""A group read: created if missing (new, or dropped by ``prune`` and back), its time noted."""
ADD_SEEN_AT = "ALTER TABLE groups ADD COLUMN seen_at REAL"
TRIM = "DELETE FROM events WHERE offset <= (SELECT min(committed) FROM groups)"
IDLE_GROUPS = "SELECT name FROM groups WHERE name != ? AND seen_at < ? ORDER BY name"
TRIMMABLE = """
SELECT count(*) FROM events WHERE offset <= (
    SELECT min(committed) FROM groups WHERE name NOT IN (SELECT value FROM json_each(?)))
"""
OLD_LETTERS = "SELECT count(*) FROM dead_letters WHERE at < ?"
