"""The SQL of the SQLite bus (``bus/sqlite.py``): its tables and its hot statements, kept in one
place like the Redis bus's Lua scripts.

* ``dispatch``: one row per dispatch, claimed lowest ``rank`` first (``rank, seq``: ties in enqueue
  order); ``done`` once reported, until acked; ``held`` while its run is paused;
  ``site``: only workers of that site claim it (``''``: workers with no site).
* ``events``: the event log; ``offset`` from ``AUTOINCREMENT``, so an offset is never reused.
* ``groups``: each consumer group's committed offset; ``counters``: the dispatch sequence.
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
CREATE TABLE IF NOT EXISTS groups (name TEXT PRIMARY KEY, committed INTEGER NOT NULL);
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
SELECT offset, data FROM events
WHERE offset > (SELECT committed FROM groups WHERE name = ?) ORDER BY offset LIMIT ?
"""
COMMIT = f"""
INSERT INTO groups (name, committed) VALUES (?, min(?, {LAST_OFFSET}))
ON CONFLICT (name) DO UPDATE SET committed = max(committed, excluded.committed)
"""
TRIM = "DELETE FROM events WHERE offset <= (SELECT min(committed) FROM groups)"
