"""The usage ledger's stores (SQLite, a real redis-server) and its writer thread."""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import threading
from collections.abc import Sequence

import pytest

from mitmrelay.core.ledger import (
    COUNTERS,
    UsageRecord,
    counters,
    record_of,
    record_row,
)
from mitmrelay.core.ledger_report import FailureCount, aggregate, merge_failures
from mitmrelay.core.outcome import AttemptOutcome, ExchangeOutcome, Price
from mitmrelay.state import SQLITE_FILE
from mitmrelay.state.ledger import LedgerWriter, open_ledger, where

DAY1 = dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC).timestamp()
DAY = 86400.0


def outcome(at: float = DAY1, **over) -> ExchangeOutcome:
    fields = {
        "response_id": f"resp_{at}",
        "client_model": "gpt-5.5",
        "provider": "deepseek",
        "upstream_model": "deepseek-chat",
        "status": "completed",
        "stream": True,
        "started_at": at,
        "total_s": 2.0,
        "first_event_s": 0.5,
        "usage": {
            "input_tokens": 1000,
            "input_tokens_details": {"cached_tokens": 200},
            "output_tokens": 100,
            "output_tokens_details": {"reasoning_tokens": 30},
            "total_tokens": 1100,
        },
        "attempts": (AttemptOutcome("deepseek", "deepseek-chat", 200),),
        "price": Price(input=1.0, output=2.0, cached_input=0.1),
    }
    return ExchangeOutcome(**{**fields, **over})


def sample() -> list[UsageRecord]:
    """Three days, two providers, a fallback, a failure, a refusal, an unpriced model."""
    return [
        record_of(outcome(DAY1)),
        record_of(outcome(DAY1 + 60, client_model="gpt-5.5-codex")),
        record_of(
            outcome(
                DAY1 + 120,
                provider="kimi",
                upstream_model="kimi-k2",
                price=None,
                attempts=(
                    AttemptOutcome("deepseek", "deepseek-chat", 503, "server_error"),
                    AttemptOutcome("kimi", "kimi-k2", 200),
                ),
            )
        ),
        record_of(
            outcome(
                DAY1 + DAY,
                status="failed",
                failure="server_error",
                usage=None,
                attempts=(AttemptOutcome("deepseek", "deepseek-chat", 200, "server_error"),),
            )
        ),
        record_of(
            outcome(
                DAY1 + DAY + 5,
                provider="",
                upstream_model="",
                status="http 400",
                failure="invalid_request_error",
                usage=None,
                first_event_s=None,
                attempts=(),
                price=None,
            )
        ),
        record_of(outcome(DAY1 + 2 * DAY, provider="kimi", upstream_model="kimi-k2", price=None)),
    ]


@pytest.fixture(params=["sqlite", "redis"])
def backend(request, tmp_path):
    """``open()`` the ledger of one backend (a fresh Redis database per test)."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        import redis

        redis.Redis.from_url(url).flushdb()
    else:
        url = "sqlite"
    opened = []

    def open_(**kw):
        store = open_ledger(url, confdir=tmp_path, **kw)
        opened.append(store)
        return store

    open_.url = url
    yield open_
    for store in opened:
        store.close()


SINCE, UNTIL = dt.date(2026, 11, 1), dt.date(2026, 12, 31)
ALL_COLUMNS = [
    ("day",),
    ("provider",),
    ("provider", "upstream_model"),
    ("client_model",),
    ("day", "provider", "upstream_model"),
    ("day", "provider", "upstream_model", "client_model"),
]


def expected(records: Sequence[UsageRecord], columns):
    """The report's groups computed straight from the records, the slow obvious way."""
    rows = [
        (
            {
                "day": r.day,
                "provider": r.provider,
                "client_model": r.client_model,
                "upstream_model": r.upstream_model,
            },
            counters(r),
        )
        for r in records
    ]
    return aggregate(rows, columns)


def same(groups, wanted):
    assert [g.key for g in groups] == [g.key for g in wanted]
    for got, want in zip(groups, wanted, strict=True):
        for name in COUNTERS:
            assert got.counts[name] == pytest.approx(want.counts[name]), (got.key, name)


@pytest.mark.parametrize("columns", ALL_COLUMNS, ids="+".join)
def test_counters_agree_with_the_records(backend, columns):
    store = backend()
    records = sample()
    store.write(records[:2])
    store.write(records[2:])  # a second batch adds to the same groups
    same(store.groups(SINCE, UNTIL, columns), expected(records, columns))


def test_days_outside_the_range_are_not_counted(backend):
    store = backend()
    records = sample()
    store.write(records)
    day2 = dt.date(2026, 12, 1)
    same(
        store.groups(day2, day2, ("provider",)),
        expected([r for r in records if r.day == "2026-12-01"], ("provider",)),
    )
    assert store.groups(dt.date(2027, 1, 1), dt.date(2027, 1, 31), ("day",)) == []


def test_upstream_failures_per_provider_and_cause(backend):
    store = backend()
    store.write(sample())
    # Two days, one each (the given-up attempt before a fallback, the failed serving one).
    assert merge_failures(store.failures(SINCE, UNTIL)) == (
        FailureCount("deepseek", "deepseek-chat", "server_error", 2),
    )
    assert merge_failures(store.failures(SINCE, dt.date(2026, 11, 30))) == (
        FailureCount("deepseek", "deepseek-chat", "server_error", 1),
    )
    assert store.failures(dt.date(2026, 12, 2), UNTIL) == []


def test_odd_model_names_survive_the_counters(backend):
    """Names are the client's when passed through: slashes, quotes, newlines, non-ASCII."""
    store = backend()
    names = ["qwen/qwen3-coder", 'a"b', "line\nbreak", "modèle-ü", "x\\y"]
    records = [
        record_of(outcome(DAY1 + i, client_model=n, upstream_model=n)) for i, n in enumerate(names)
    ]
    store.write(records)
    for columns in [("upstream_model",), ("day", "provider", "upstream_model", "client_model")]:
        same(store.groups(SINCE, UNTIL, columns), expected(records, columns))


def test_records_round_trip(backend):
    store = backend()
    records = sample()
    store.write(records)
    rows = store.records(DAY1, DAY1 + 3 * DAY)
    assert rows == [record_row(r) for r in records]
    assert rows[2]["attempt_failures"] == [["deepseek", "deepseek-chat", "server_error"]]
    assert rows[3]["input_tokens"] is None and rows[3]["cost"] is None
    assert store.records(DAY1 + 1, DAY1 + 61) == [record_row(records[1])]


def test_prune_forgets_days_before_the_cutoff(backend):
    store = backend()
    records = sample()
    store.write(records)
    gone = store.prune(DAY1 + DAY)  # the cutoff's day (2026-12-01) stays whole in counters
    assert gone == 3
    assert [g.key for g in store.groups(SINCE, UNTIL, ("day",))] == [
        ("2026-12-01",),
        ("2026-12-02",),
    ]
    assert store.records(0, DAY1 + 10 * DAY) == [record_row(r) for r in records[3:]]
    assert store.prune(DAY1 + DAY) == 0


def test_a_second_relay_process_adds_to_the_same_counters(backend):
    one, two = backend(), backend()
    records = sample()
    errors = []

    def write(store, part):
        try:
            for record in part:
                store.write([record])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [
        threading.Thread(target=write, args=(one, records[::2])),
        threading.Thread(target=write, args=(two, records[1::2])),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    same(one.groups(SINCE, UNTIL, ("provider",)), expected(records, ("provider",)))


def test_open_ledger_follows_relay_state(tmp_path):
    assert open_ledger("memory", confdir=tmp_path) is None
    with pytest.raises(ValueError, match="relay_state must be"):
        open_ledger("postgres://x", confdir=tmp_path)
    store = open_ledger(f"sqlite:///{tmp_path}/elsewhere/usage.db", confdir=tmp_path)
    store.write(sample()[:1])
    store.close()
    assert (tmp_path / "elsewhere" / "usage.db").exists()


def test_the_ledger_shares_the_conversation_store_database(tmp_path):
    from mitmrelay.core.bounds import Limits
    from mitmrelay.state import open_store

    history = open_store("sqlite", confdir=tmp_path, limits=Limits())
    ledger = open_ledger("sqlite", confdir=tmp_path)
    history.put("resp_1", {"input": []})
    ledger.write(sample()[:1])
    assert history.get("resp_1") == {"input": []}
    tables = {
        name
        for (name,) in sqlite3.connect(tmp_path / SQLITE_FILE).execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
        )
    }
    assert {"entries", "usage_records", "usage_daily", "usage_failures"} <= tables
    history.close()
    ledger.close()


def test_a_read_only_ledger_never_creates_a_database(tmp_path):
    with pytest.raises(FileNotFoundError, match="no relay database"):
        open_ledger("sqlite", confdir=tmp_path, read_only=True)
    assert not (tmp_path / SQLITE_FILE).exists()


def test_a_database_without_ledger_tables_reads_as_empty(tmp_path):
    sqlite3.connect(tmp_path / SQLITE_FILE).execute("CREATE TABLE entries (key TEXT)").close()
    store = open_ledger("sqlite", confdir=tmp_path, read_only=True)
    assert store.groups(SINCE, UNTIL, ("day",)) == []
    assert store.failures(SINCE, UNTIL) == []
    with pytest.raises(sqlite3.OperationalError):  # read-only: nothing is written
        store.write(sample()[:1])
    store.close()


def test_report_columns_are_checked_before_reaching_the_store(backend):
    store = backend()
    for columns in [(), ("day; DROP TABLE usage_daily",), ("cost",)]:
        with pytest.raises(ValueError, match="report columns"):
            store.groups(SINCE, UNTIL, columns)


# ---------------------------------------------------------------------- the writer thread


class Clock:
    def __init__(self) -> None:
        self.now = DAY1 + 3 * DAY

    def __call__(self) -> float:
        return self.now


class FlakyStore:
    """A store that fails while ``broken`` (a stand-in for a lost Redis or a full disk), and
    otherwise keeps what it is given."""

    def __init__(self) -> None:
        self.broken = False
        self.batches: list[list[UsageRecord]] = []
        self.pruned: list[float] = []
        self.closed = False

    def write(self, records):
        if self.broken:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
        self.batches.append(list(records))

    def prune(self, before):
        if self.broken:
            raise ConnectionError("still down")
        self.pruned.append(before)
        return 0

    def close(self):
        self.closed = True


def test_writer_writes_in_batches_prunes_hourly_and_closes_the_store():
    store, clock, errors = FlakyStore(), Clock(), []
    writer = LedgerWriter(
        lambda: store, retention_s=90 * DAY, clock=clock, on_error=errors.append, max_batch=4
    )
    records = sample()
    for record in records:
        assert writer.submit(record)
    assert writer.flush()
    assert [r for batch in store.batches for r in batch] == records
    assert all(len(batch) <= 4 for batch in store.batches)
    assert store.pruned == [clock.now - 90 * DAY]
    clock.now += 1800
    writer.submit(records[0])
    assert writer.flush()
    assert len(store.pruned) == 1  # not again within the hour
    clock.now += 1801
    writer.submit(records[0])
    assert writer.flush()
    assert len(store.pruned) == 2
    writer.close()
    assert store.closed and writer.written == len(records) + 2 and errors == []


def test_a_failing_store_loses_the_batch_logs_once_a_minute_and_recovers(caplog):
    store, clock, errors = FlakyStore(), Clock(), []
    writer = LedgerWriter(lambda: store, retention_s=DAY, clock=clock, on_error=errors.append)
    caplog.set_level(logging.WARNING, logger="mitmrelay.ledger")
    store.broken = True
    for _ in range(3):
        writer.submit(sample()[0])
        assert writer.flush()
        clock.now += 10
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "1 record(s) lost" in warnings[0] and "Connection refused" in warnings[0]
    assert "answers are not affected" in warnings[0]
    clock.now += 60
    writer.submit(sample()[0])
    assert writer.flush()
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and "3 record(s) lost" in warnings[1]  # two held back + this one
    assert writer.lost == 4 and errors == ["write"] * 4
    store.broken = False
    writer.submit(sample()[1])
    assert writer.flush()
    assert store.batches == [[sample()[1]]] and writer.written == 1
    writer.close()


def test_a_store_that_cannot_be_opened_is_tried_again_with_the_next_batch():
    attempts = []
    store = FlakyStore()

    def open_store():
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("unable to open database file")
        return store

    writer = LedgerWriter(open_store, retention_s=DAY, clock=Clock())
    writer.submit(sample()[0])
    writer.flush()
    writer.submit(sample()[1])
    writer.flush()
    assert len(attempts) == 2 and store.batches == [[sample()[1]]] and writer.lost == 1
    writer.close()


def test_a_failed_prune_keeps_the_batch():
    store, clock, errors = FlakyStore(), Clock(), []

    class PruneFails(FlakyStore):
        def prune(self, before):
            raise OSError("disk I/O error")

    store = PruneFails()
    writer = LedgerWriter(lambda: store, retention_s=DAY, clock=clock, on_error=errors.append)
    writer.submit(sample()[0])
    writer.flush()
    assert store.batches == [[sample()[0]]] and writer.lost == 0 and errors == ["prune"]
    writer.close()


def test_submit_never_blocks_a_full_queue_drops_and_counts():
    gate = threading.Event()
    errors = []

    class Slow(FlakyStore):
        def write(self, records):
            gate.wait(10)
            super().write(records)

    store = Slow()
    writer = LedgerWriter(
        lambda: store, retention_s=DAY, clock=Clock(), on_error=errors.append, max_queue=2
    )
    results = [writer.submit(r) for r in sample()]  # the thread holds one, two wait, rest drop
    assert results.count(False) >= 3 and errors.count("queue_full") == results.count(False)
    assert writer.lost == results.count(False)
    gate.set()
    writer.close()
    assert writer.written == results.count(True)


def test_close_writes_what_is_queued(tmp_path):
    writer = LedgerWriter(
        lambda: open_ledger("sqlite", confdir=tmp_path), retention_s=365 * DAY, clock=Clock()
    )
    for record in sample():
        writer.submit(record)
    writer.close()
    store = open_ledger("sqlite", confdir=tmp_path, read_only=True)
    assert len(store.records(0, DAY1 + 10 * DAY)) == len(sample())
    store.close()


def test_a_batch_is_all_or_nothing(tmp_path):
    import dataclasses

    store = open_ledger("sqlite", confdir=tmp_path)
    good = sample()[:2]
    broken = dataclasses.replace(sample()[2], response_id=None)  # NOT NULL: the insert fails
    with pytest.raises(sqlite3.IntegrityError):
        store.write([*good, broken])
    assert store.groups(SINCE, UNTIL, ("day",)) == []
    assert store.records(0, DAY1 + 10 * DAY) == []
    store.write(good)  # the connection is usable again
    same(store.groups(SINCE, UNTIL, ("day",)), expected(good, ("day",)))
    store.close()


def test_a_large_prune_deletes_in_slices(tmp_path, monkeypatch):
    from mitmrelay.state import ledger_sqlite

    monkeypatch.setattr(ledger_sqlite, "PRUNE_ROWS", 2)
    store = open_ledger("sqlite", confdir=tmp_path)
    store.write(sample())
    assert store.prune(DAY1 + 10 * DAY) == len(sample())
    assert store.records(0, DAY1 + 10 * DAY) == []
    store.close()


def test_where_never_shows_a_redis_password(tmp_path):
    assert (
        where("redis://:s3cret@cache.internal:6380/2", tmp_path) == "redis://cache.internal:6380/2"
    )
    assert where("rediss://user:pw@h/0", tmp_path) == "rediss://h:6379/0"
    assert where("sqlite:///var/lib/relay.db", tmp_path) == "/var/lib/relay.db"
    assert where("sqlite", tmp_path) == str(tmp_path / "mitmrelay-state.sqlite3")
    with pytest.raises(ValueError) as refused:
        open_ledger("redis://:s3cret@127.0.0.1:port/0", confdir=tmp_path)
    assert str(refused.value).startswith("cannot use Redis at redis://127.0.0.1:?/0: ")
    assert "s3cret" not in str(refused.value) and refused.value.__cause__ is None
