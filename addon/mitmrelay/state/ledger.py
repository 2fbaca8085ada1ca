"""The usage ledger's IO: where records go (the store ``relay_state`` names) and the writer
thread that puts them there without ever delaying an answer.

``open_ledger(url, confdir=…)`` follows ``relay_state`` (state/__init__.py):

- ``sqlite`` / ``sqlite:///path``: tables of the ledger's own in the relay's database file
  (state/ledger_sqlite.py);
- ``redis://…``: keys of its own under ``mitmrelay:usage:`` (state/ledger_redis.py);
- ``memory``: no ledger (None). Nothing in the process could read it back, and a relay told to
  keep nothing on disk keeps no usage either; the metrics still count.

``LedgerWriter`` owns one store and one daemon thread. ``submit`` never blocks and never
raises: a full queue drops the record (counted). The thread takes what is queued in batches,
writes each batch in one transaction, prunes records and counters older than the retention at
most once an hour, and survives every store failure: the batch is lost, the failure counted and
logged at most once a minute (with how many records were lost meanwhile), and the next batch
tries again. Clock injected.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from mitmrelay.core.ledger import UsageRecord
from mitmrelay.core.ledger_report import Group

from . import SQLITE_FILE

logger = logging.getLogger("mitmrelay.ledger")

MAX_QUEUE = 10_000  # records waiting for the writer; beyond it a record is dropped
MAX_BATCH = 500  # records written in one transaction
PRUNE_EVERY_S = 3600.0
ERROR_LOG_EVERY_S = 60.0
CLOSE_WAIT_S = 5.0  # how long shutdown waits for the queue to be written


class LedgerStore(Protocol):
    def write(self, records: Sequence[UsageRecord]) -> None:
        """Store the records and add them to the counters, all or nothing."""

    def prune(self, before: float) -> int:
        """Forget records older than ``before`` (unix s) and counters of days before its
        day; returns the number of records forgotten (where the store can tell)."""

    def groups(self, since: dt.date, until: dt.date, columns: Sequence[str]) -> list[Group]:
        """The counters of the days ``since``..``until`` summed per ``columns``
        (core/ledger_report.py), in report order."""

    def failures(self, since: dt.date, until: dt.date) -> list[tuple[str, str, str, int]]:
        """(provider, upstream model, cause, count) rows of those days (several per key)."""

    def records(self, since: float, until: float) -> list[dict[str, object]]:
        """The records of ``since`` <= at < ``until`` (unix s) as ``record_row`` makes them,
        oldest first: for audits and tests, never for the report."""

    def close(self) -> None: ...


def open_ledger(url: str, *, confdir: Path, read_only: bool = False) -> LedgerStore | None:
    """The ledger of ``relay_state`` ``url`` (None for ``memory``). ``read_only``: for the
    report, which must not create a database where none was. Raises ``ValueError`` for an
    unknown or unusable ``url``, ``FileNotFoundError`` for a read of a missing database."""
    if url == "memory":
        return None
    if url == "sqlite" or url.startswith("sqlite:///"):
        from .ledger_sqlite import SQLiteLedger

        path = confdir / SQLITE_FILE if url == "sqlite" else Path(url[len("sqlite:///") - 1 :])
        return SQLiteLedger(path, read_only=read_only)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .ledger_redis import RedisLedger

        return RedisLedger(url)
    raise ValueError(
        f"relay_state must be memory, sqlite, sqlite:///path or redis://…, got {url!r}"
    )


def where(url: str, confdir: Path) -> str:
    """Where ``relay_state`` keeps the ledger, for people (log lines, errors): never a Redis
    password or user name."""
    if url == "sqlite":
        return str(confdir / SQLITE_FILE)
    if url.startswith("sqlite:///"):
        return url[len("sqlite://") :]
    parts = urllib.parse.urlsplit(url)
    try:
        port: object = parts.port or 6379
    except ValueError:  # an unusable port is the error being reported
        port = "?"
    return f"{parts.scheme}://{parts.hostname}:{port}{parts.path}"


_STOP = object()


class _ErrorLog:
    """One WARNING per ``ERROR_LOG_EVERY_S`` at most, saying how many records were lost."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._next = float("-inf")
        self._lost = 0

    def failed(self, lost: int, error: BaseException) -> None:
        self._lost += lost
        now = self._clock()
        if now < self._next:
            return
        logger.warning(
            "mitmrelay: usage ledger store failed, %d record(s) lost since last said: %s: %s "
            "(answers are not affected; said at most once a minute)",
            self._lost,
            type(error).__name__,
            str(error).splitlines()[0] if str(error) else "",
        )
        self._lost = 0
        self._next = now + ERROR_LOG_EVERY_S


class LedgerWriter:
    """Writes records to a store from a thread of its own. ``open_store`` runs in that
    thread (a SQLite connection belongs to the thread that made it; a slow Redis connect
    delays nothing else). ``on_error(kind)`` is told of each store failure: ``"write"`` (the
    batch is lost), ``"queue_full"`` (the record is lost) or ``"prune"`` (nothing is lost);
    it must not raise."""

    def __init__(
        self,
        open_store: Callable[[], LedgerStore],
        *,
        retention_s: float,
        clock: Callable[[], float] = time.time,
        on_error: Callable[[str], None] = lambda kind: None,
        max_queue: int = MAX_QUEUE,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.retention_s = retention_s
        self.written = 0
        self.lost = 0
        self._open_store = open_store
        self._clock = clock
        self._on_error = on_error
        self._max_batch = max_batch
        self._queue: queue.Queue[object] = queue.Queue(max_queue)
        self._errors = _ErrorLog(clock)
        self._store: LedgerStore | None = None
        self._next_prune = float("-inf")
        self._thread = threading.Thread(target=self._run, name="mitmrelay-ledger", daemon=True)
        self._thread.start()

    def submit(self, record: UsageRecord) -> bool:
        """Queue a record; False (and counted as lost) when the queue is full."""
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.lost += 1
            self._on_error("queue_full")
            return False
        return True

    def flush(self, timeout_s: float = CLOSE_WAIT_S) -> bool:
        """Wait until everything queued so far was written (or lost); False on timeout."""
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout_s)
        except queue.Full:
            return False
        return done.wait(timeout_s)

    def close(self, timeout_s: float = CLOSE_WAIT_S) -> None:
        """Write what is queued (waiting ``timeout_s`` at most), then stop the thread."""
        # A queue still full after the wait belongs to a store that stopped answering: the
        # thread is a daemon and ends with the process, what it held is lost.
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=timeout_s)
        self._thread.join(timeout_s)

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                batch: list[UsageRecord] = []
                markers: list[threading.Event] = []
                stop = False
                while True:
                    if item is _STOP:
                        stop = True
                    elif isinstance(item, threading.Event):
                        markers.append(item)
                    else:
                        batch.append(item)  # type: ignore[arg-type]
                    if stop or len(batch) >= self._max_batch:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    self._write(batch)
                for marker in markers:
                    marker.set()
                if stop:
                    return
        finally:
            if self._store is not None:
                self._close_store()

    def _write(self, batch: list[UsageRecord]) -> None:
        try:
            if self._store is None:
                self._store = self._open_store()
            self._store.write(batch)
            self.written += len(batch)
        except Exception as e:  # a store failure loses the batch, never the thread
            self.lost += len(batch)
            self._on_error("write")
            self._errors.failed(len(batch), e)
            return
        now = self._clock()
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_EVERY_S
        try:
            self._store.prune(now - self.retention_s)
        except Exception as e:  # the records stay a while longer; the next prune tries again
            self._on_error("prune")
            self._errors.failed(0, e)

    def _close_store(self) -> None:
        try:
            self._store.close()  # type: ignore[union-attr]
        except Exception as e:  # shutting down: say it, do not raise into mitmproxy's done
            logger.warning("mitmrelay: usage ledger: closing the store failed: %s", e)
        self._store = None
