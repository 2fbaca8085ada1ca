"""The embedded default: SQLite in WAL mode, bounded like the others.

WAL lets readers proceed while one writer writes, across threads and processes; every
statement runs under ``busy_timeout`` so concurrent relays wait instead of failing. Bounds are
enforced on each write: expired rows first, then least recently used until the count and byte
limits hold (an index on ``used`` keeps that cheap).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mitmrelay.core.bounds import Limits

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    size INTEGER NOT NULL,
    stored REAL NOT NULL,
    used REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_used ON entries (used);
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
                self._db.execute("DELETE FROM entries WHERE key = ?", (key,))
                return None
            self._db.execute("UPDATE entries SET used = ? WHERE key = ?", (now, key))
        return json.loads(row[0])

    def put(self, key: str, value: dict[str, Any]) -> None:
        raw = json.dumps(value, separators=(",", ":"))
        if len(raw) > self.limits.max_bytes:
            self.evictions += 1
            return
        now = self._clock()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO entries (key, value, size, stored, used) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (key, raw, len(raw), now, now),
                )
                self._enforce(now)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _enforce(self, now: float) -> None:
        self._db.execute("DELETE FROM entries WHERE stored < ?", (now - self.limits.ttl_s,))
        count, total = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM entries"
        ).fetchone()
        while count > self.limits.max_entries or total > self.limits.max_bytes:
            # Evict in batches of the oldest-used rows until both bounds hold.
            excess = max(count - self.limits.max_entries, 1)
            rows = self._db.execute(
                "SELECT key, size FROM entries ORDER BY used LIMIT ?", (excess,)
            ).fetchall()
            self._db.executemany("DELETE FROM entries WHERE key = ?", [(k,) for k, _ in rows])
            count -= len(rows)
            total -= sum(size for _, size in rows)
            self.evictions += len(rows)

    def stats(self) -> dict[str, int]:
        with self._lock:
            count, total = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM entries"
            ).fetchone()
        return {"entries": count, "bytes": total, "evictions": self.evictions}

    def close(self) -> None:
        with self._lock:
            self._db.close()
