"""The usage ledger in the relay's SQLite database (``relay_state=sqlite``), tables of its own.

- ``usage_records``: one row per exchange (core/ledger.py ``RECORD_COLUMNS``), indexed by
  time, so pruning by age is a range delete.
- ``usage_daily``: the counters per (day, provider, client model, upstream model), updated in
  the same transaction as the records (an upsert per group a batch touches), so they always
  agree with the records. The report aggregates these rows in SQL (``GROUP BY`` over the
  primary key's range for the days asked): its cost follows the number of groups, not of
  records.
- ``usage_failures``: upstream attempt failures per (day, provider, upstream model, cause).

WAL and ``busy_timeout`` as the conversation store (state/sqlite.py): the relay's processes and
a running report share the file. Each write is one ``BEGIN IMMEDIATE`` transaction. The report
opens the file read-only (``mode=ro``) and never creates it.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from mitmrelay.core.ledger import COUNTERS, RECORD_COLUMNS, UsageRecord, batch_counters, record_row
from mitmrelay.core.ledger_report import Group, ordered

BUSY_TIMEOUT_S = 10.0
PRUNE_ROWS = 5000  # records deleted per transaction, so a big prune never holds the lock long
_GROUP = ("day", "provider", "client_model", "upstream_model")
_FAILURE = ("day", "provider", "upstream_model", "cause")

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS usage_records (
    at REAL NOT NULL, day TEXT NOT NULL, response_id TEXT NOT NULL,
    client_model TEXT NOT NULL, provider TEXT NOT NULL, upstream_model TEXT NOT NULL,
    status TEXT NOT NULL, failure TEXT, stream INTEGER NOT NULL,
    input_tokens INTEGER, cached_tokens INTEGER, output_tokens INTEGER,
    reasoning_tokens INTEGER, total_tokens INTEGER, cost REAL,
    first_event_s REAL, total_s REAL NOT NULL, fallbacks INTEGER NOT NULL,
    attempt_failures TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_records_at ON usage_records (at);
CREATE TABLE IF NOT EXISTS usage_daily (
    day TEXT NOT NULL, provider TEXT NOT NULL, client_model TEXT NOT NULL,
    upstream_model TEXT NOT NULL,
    {", ".join(f"{name} NUMERIC NOT NULL DEFAULT 0" for name in COUNTERS)},
    PRIMARY KEY ({", ".join(_GROUP)})
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS usage_failures (
    day TEXT NOT NULL, provider TEXT NOT NULL, upstream_model TEXT NOT NULL,
    cause TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY ({", ".join(_FAILURE)})
) WITHOUT ROWID;
"""

_INSERT_RECORD = (
    f"INSERT INTO usage_records ({', '.join(RECORD_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in RECORD_COLUMNS)})"
)
_UPSERT_DAILY = (
    f"INSERT INTO usage_daily ({', '.join(_GROUP + COUNTERS)}) "
    f"VALUES ({', '.join('?' for _ in _GROUP + COUNTERS)}) "
    f"ON CONFLICT ({', '.join(_GROUP)}) DO UPDATE SET "
    + ", ".join(f"{name} = {name} + excluded.{name}" for name in COUNTERS)
)
_UPSERT_FAILURE = (
    f"INSERT INTO usage_failures ({', '.join(_FAILURE)}, count) VALUES (?, ?, ?, ?, ?) "
    f"ON CONFLICT ({', '.join(_FAILURE)}) DO UPDATE SET count = count + excluded.count"
)
# Only these column names ever reach SQL text from a caller (the report's --by).
_KEY_COLUMNS = frozenset(_GROUP)


class SQLiteLedger:
    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        if read_only:
            if not path.exists():
                raise FileNotFoundError(f"no relay database at {path}")
            self._db = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S
            )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(path), isolation_level=None, timeout=BUSY_TIMEOUT_S, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        self._read_only = read_only

    def write(self, records: Sequence[UsageRecord]) -> None:
        groups, failures = batch_counters(records)
        rows = []
        for record in records:
            row = record_row(record)
            row["attempt_failures"] = json.dumps(row["attempt_failures"])
            rows.append(tuple(row[c] for c in RECORD_COLUMNS))
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(_INSERT_RECORD, rows)
            self._db.executemany(
                _UPSERT_DAILY,
                [(*key, *(added[c] for c in COUNTERS)) for key, added in groups.items()],
            )
            self._db.executemany(
                _UPSERT_FAILURE, [(*key, count) for key, count in failures.items()]
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def prune(self, before: float) -> int:
        day = dt.datetime.fromtimestamp(before, dt.UTC).date().isoformat()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("DELETE FROM usage_daily WHERE day < ?", (day,))
            self._db.execute("DELETE FROM usage_failures WHERE day < ?", (day,))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        gone = 0
        while True:
            deleted = self._db.execute(
                "DELETE FROM usage_records WHERE rowid IN "
                "(SELECT rowid FROM usage_records WHERE at < ? LIMIT ?)",
                (before, PRUNE_ROWS),
            ).rowcount
            gone += deleted
            if deleted < PRUNE_ROWS:
                return gone

    def _has_tables(self) -> bool:
        """A database the relay made before any exchange was recorded, or an older relay's,
        has no ledger tables yet: an empty report, not an error."""
        row = self._db.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'usage_daily'"
        ).fetchone()
        return bool(row[0])

    def groups(self, since: dt.date, until: dt.date, columns: Sequence[str]) -> list[Group]:
        if not set(columns) <= _KEY_COLUMNS or not columns:
            raise ValueError(f"report columns must be among {sorted(_KEY_COLUMNS)}")
        if not self._has_tables():
            return []
        keys = ", ".join(columns)
        sums = ", ".join(f"SUM({name})" for name in COUNTERS)
        query = f"SELECT {keys}, {sums} FROM usage_daily WHERE day BETWEEN ? AND ? GROUP BY {keys}"
        found = []
        for row in self._db.execute(query, (since.isoformat(), until.isoformat())):
            key, figures = row[: len(columns)], row[len(columns) :]
            found.append(Group(tuple(key), dict(zip(COUNTERS, figures, strict=True))))
        return ordered(found, columns)

    def failures(self, since: dt.date, until: dt.date) -> list[tuple[str, str, str, int]]:
        if not self._has_tables():
            return []
        return self._db.execute(
            "SELECT provider, upstream_model, cause, SUM(count) FROM usage_failures "
            "WHERE day BETWEEN ? AND ? GROUP BY provider, upstream_model, cause",
            (since.isoformat(), until.isoformat()),
        ).fetchall()

    def records(self, since: float, until: float) -> list[dict[str, object]]:
        """The records of ``since`` <= at < ``until`` (unix s), oldest first (tests, audits)."""
        cursor = self._db.execute(
            f"SELECT {', '.join(RECORD_COLUMNS)} FROM usage_records "
            "WHERE at >= ? AND at < ? ORDER BY at",
            (since, until),
        )
        out = []
        for values in cursor:
            row = dict(zip(RECORD_COLUMNS, values, strict=True))
            row["stream"] = bool(row["stream"])
            row["attempt_failures"] = json.loads(row["attempt_failures"])
            out.append(row)
        return out

    def close(self) -> None:
        self._db.close()
