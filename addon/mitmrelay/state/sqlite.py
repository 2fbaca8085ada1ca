"""The embedded default: SQLite in WAL mode, bounded like the others.

WAL lets readers proceed while one writer writes, across threads and processes; every
statement runs under ``busy_timeout`` so concurrent relays wait instead of failing. Bounds are
enforced on each write: expired rows first, then least recently used until the count and byte
limits hold. The count and byte totals live in a ``meta`` row updated in the same transaction,
and ``stored``/``used`` are indexed, so a write costs O(log n), not a table scan.

A record holding a long string (an image a conversation carries) is written into its row a
chunk at a time (``zeroblob``, then SQLite's incremental blob I/O), never whole in memory beside
the string. ``value`` is the last column because SQLite builds a row in memory whole, zeroblob
included, unless the zeroblob is the row's last field; every statement names its columns, so
a database made with ``value`` second works the same (its large rows cost that copy).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mitmrelay.core.body import LARGE_BODY, JsonBody, json_body
from mitmrelay.core.bounds import Limits

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    stored REAL NOT NULL,
    used REAL NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_used ON entries (used);
CREATE INDEX IF NOT EXISTS entries_stored ON entries (stored);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (name, value)
    SELECT 'count', COUNT(*) FROM entries UNION ALL SELECT 'bytes', COALESCE(SUM(size), 0)
    FROM entries;
"""


class SQLiteStore:
    def __init__(self, path: Path, limits: Limits, clock: Callable[[], float]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            str(path), check_same_thread=False, isolation_level=None, timeout=10.0
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self.evictions = 0

    def get(self, key: str) -> dict[str, Any] | None:
        now = self._clock()
        with self._lock:
            row = self._db.execute(
                "SELECT value, stored FROM entries WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                return None
            if now - row[1] > self.limits.ttl_s:
                self._transaction(lambda: self._delete([key]))
                return None
            self._db.execute("UPDATE entries SET used = ? WHERE key = ?", (now, key))
        return json.loads(row[0])

    def put(self, key: str, value: dict[str, Any]) -> None:
        # Bytes, or a record holding a long string (an image) as parts written into the row a
        # chunk at a time: never a second copy of the string (core/body.py).
        raw = json_body(value, LARGE_BODY)
        if len(raw) > self.limits.max_bytes:
            self.evictions += 1
            return
        now = self._clock()

        def write() -> None:
            self._delete([key])
            if isinstance(raw, JsonBody):
                row = self._db.execute(
                    "INSERT INTO entries (key, value, size, stored, used) "
                    "VALUES (?, zeroblob(?), ?, ?, ?)",
                    (key, len(raw), len(raw), now, now),
                ).lastrowid
                with self._db.blobopen("entries", "value", row) as blob:
                    for chunk in raw.chunks():
                        blob.write(chunk)
            else:
                self._db.execute(
                    "INSERT INTO entries (key, value, size, stored, used) VALUES (?, ?, ?, ?, ?)",
                    (key, raw, len(raw), now, now),
                )
            self._add(1, len(raw))
            self._enforce(now)

        with self._lock:
            self._transaction(write)

    def _transaction(self, body: Callable[[], None]) -> None:
        self._db.execute("BEGIN IMMEDIATE")  # one writer at a time, across processes too
        try:
            body()
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _add(self, count: int, size: int) -> None:
        self._db.execute("UPDATE meta SET value = value + ? WHERE name = 'count'", (count,))
        self._db.execute("UPDATE meta SET value = value + ? WHERE name = 'bytes'", (size,))

    def _delete(self, keys: list[str]) -> int:
        rows = [
            self._db.execute("SELECT size FROM entries WHERE key = ?", (k,)).fetchone()
            for k in keys
        ]
        gone = [(k, r[0]) for k, r in zip(keys, rows, strict=True) if r is not None]
        if gone:
            self._db.executemany("DELETE FROM entries WHERE key = ?", [(k,) for k, _ in gone])
            self._add(-len(gone), -sum(size for _, size in gone))
        return len(gone)

    def _totals(self) -> tuple[int, int]:
        rows = dict(self._db.execute("SELECT name, value FROM meta").fetchall())
        return rows["count"], rows["bytes"]

    def _enforce(self, now: float) -> None:
        expired = [
            k
            for (k,) in self._db.execute(
                "SELECT key FROM entries WHERE stored < ? LIMIT 1000", (now - self.limits.ttl_s,)
            )
        ]
        self.evictions += self._delete(expired)
        count, total = self._totals()
        while count > self.limits.max_entries or total > self.limits.max_bytes:
            excess = max(count - self.limits.max_entries, 1)
            oldest = [
                k
                for (k,) in self._db.execute(
                    "SELECT key FROM entries ORDER BY used LIMIT ?", (excess,)
                )
            ]
            if not oldest:
                break
            self.evictions += self._delete(oldest)
            count, total = self._totals()

    def stats(self) -> dict[str, int]:
        with self._lock:
            count, total = self._totals()
        return {"entries": count, "bytes": total, "evictions": self.evictions}

    def close(self) -> None:
        with self._lock:
            self._db.close()
