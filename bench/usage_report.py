"""``mitmrelay usage`` over a million-record ledger, timed against a plain ``SELECT count(*)``
of the same records table, in the same process at the same time.

    .venv/bin/python bench/usage_report.py [--records 1000000] [--redis redis://127.0.0.1:6379/15]

Builds the ledger through the relay's own store (``SQLiteLedger.write`` in the writer's batch
size: records and per-day counters in one transaction each), spread over 90 days, 3 providers,
8 upstream models and 3 client names, then times, as the median of ``REPEATS`` runs each:

- the baseline: ``SELECT count(*) FROM usage_records`` (SQLite's cheapest full answer);
- the report ``--by model``, ``--by day`` and ``--by day,model`` over 90 days (what
  ``mitmrelay usage`` runs: counters read, groups summed in SQL, failures merged).

Also prints the write cost per record (in the writer thread), and what the usage addon does
on mitmproxy's event loop per exchange (ledger record, queue, metrics), against the same run's
``json.loads`` + ``json.dumps`` of one typical upstream chunk (work the relay does per event).
With ``--redis`` the same records go to that Redis database (flushed first: give it a scratch
one) and its report is timed too. Target: the report stays fast on 1 million records:
it reads counters, not records, so it must not grow with the table, and its ratio to the count
stays below 1 however large the table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "addon"))

from mitmrelay.core.ledger import record_of  # noqa: E402
from mitmrelay.core.ledger_report import parse_by  # noqa: E402
from mitmrelay.core.outcome import AttemptOutcome, ExchangeOutcome, Price  # noqa: E402
from mitmrelay.state import SQLITE_FILE  # noqa: E402
from mitmrelay.state.ledger import MAX_BATCH, open_ledger  # noqa: E402
from mitmrelay.usage_report import build_report  # noqa: E402

REPEATS = 15
DAYS = 90
UNTIL = dt.date(2026, 12, 2)
SINCE = UNTIL - dt.timedelta(days=DAYS - 1)
MODELS = {
    "deepseek": ("deepseek-v4-flash", "deepseek-v4-pro", "deepseek-chat"),
    "kimi": ("kimi-k2", "kimi-k2-thinking", "kimi-k2-turbo"),
    "openrouter": ("qwen/qwen3-coder", "z-ai/glm-5"),
}
CLIENTS = ("gpt-5.5", "gpt-5.5-codex", "o4-mini")
CAUSES = ("server_error", "rate_limit_exceeded", "insufficient_quota")


def outcomes(n: int, seed: int = 7):
    rng = random.Random(seed)
    start = dt.datetime.combine(SINCE, dt.time(), dt.UTC).timestamp()
    span = DAYS * 86400.0
    pairs = [(p, m) for p, models in MODELS.items() for m in models]
    for i in range(n):
        provider, model = rng.choice(pairs)
        failed = rng.random() < 0.02
        fell_back = rng.random() < 0.03
        attempts = [AttemptOutcome(provider, model, None if failed else 200)]
        if fell_back:
            attempts.insert(0, AttemptOutcome("deepseek", "deepseek-chat", 429, rng.choice(CAUSES)))
        inp = rng.randrange(2_000, 120_000)
        out = rng.randrange(10, 4_000)
        yield ExchangeOutcome(
            response_id=f"resp_{i:08d}",
            client_model=rng.choice(CLIENTS),
            provider=provider,
            upstream_model=model,
            status="failed" if failed else "completed",
            stream=True,
            started_at=start + span * i / n,
            total_s=rng.uniform(0.5, 60),
            first_event_s=rng.uniform(0.05, 3),
            failure="server_error" if failed else None,
            usage=None
            if failed
            else {
                "input_tokens": inp,
                "input_tokens_details": {"cached_tokens": rng.randrange(0, inp)},
                "output_tokens": out,
                "output_tokens_details": {"reasoning_tokens": rng.randrange(0, out)},
                "total_tokens": inp + out,
            },
            attempts=tuple(attempts),
            price=Price(input=0.28, output=0.42, cached_input=0.028)
            if provider != "kimi"
            else None,
        )


def fill(url: str, confdir: Path, n: int) -> float:
    """Write ``n`` records; returns µs per record (record building included)."""
    store = open_ledger(url, confdir=confdir)
    assert store is not None
    began = time.perf_counter()
    batch = []
    for outcome in outcomes(n):
        batch.append(record_of(outcome))
        if len(batch) == MAX_BATCH:
            store.write(batch)
            batch = []
    if batch:
        store.write(batch)
    took = time.perf_counter() - began
    store.close()
    return took / n * 1e6


def median_s(fn) -> float:
    times = []
    for _ in range(REPEATS):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def measure(url: str, confdir: Path, count_db: Path) -> None:
    def count() -> int:
        db = sqlite3.connect(f"{count_db.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return db.execute("SELECT count(*) FROM usage_records").fetchone()[0]
        finally:
            db.close()

    base = median_s(count)
    print(f"  SELECT count(*) of {count():,} records: {base * 1e3:8.2f} ms (baseline)")
    for by in ("model", "day", "day,model"):
        columns = parse_by(by)
        report = build_report(url, confdir, SINCE, UNTIL, columns)
        took = median_s(lambda columns=columns: build_report(url, confdir, SINCE, UNTIL, columns))
        print(
            f"  report --by {by:<10} ({len(report.groups):>4} rows): "
            f"{took * 1e3:8.2f} ms = {took / base:5.2f}x the count"
        )


def hook_cost() -> None:
    """µs per exchange on the event loop: ``Usage.mitmrelay_exchange_ended``'s work."""
    import json

    from mitmrelay.metrics import RelayMetrics
    from mitmrelay.state.ledger import LedgerWriter

    class Nowhere:
        def write(self, records):
            pass

        def prune(self, before):
            return 0

        def close(self):
            pass

    n = 20_000
    sample = list(outcomes(n))
    metrics = RelayMetrics()
    writer = LedgerWriter(Nowhere, retention_s=86400.0, max_queue=n + 1)
    chunk = json.dumps(
        {
            "id": "chatcmpl-9f2c",
            "object": "chat.completion.chunk",
            "created": 1732800000,
            "model": "deepseek-chat",
            "choices": [{"index": 0, "delta": {"content": "token"}, "finish_reason": None}],
        }
    )

    def ended() -> None:
        for outcome in sample:
            record = record_of(outcome)
            writer.submit(record)
            metrics.ended(outcome, record)

    def baseline() -> None:
        for _ in range(n):
            json.dumps(json.loads(chunk))

    took, base = median_s(ended) / n * 1e6, median_s(baseline) / n * 1e6
    writer.close()
    print(
        f"usage hook per exchange on the event loop: {took:.1f} µs = {took / base:.1f}x "
        f"one chunk's json.loads + json.dumps ({base:.2f} µs)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--redis", help="a scratch Redis database URL (flushed)")
    args = p.parse_args()
    hook_cost()
    with tempfile.TemporaryDirectory() as tmp:
        confdir = Path(tmp)
        per = fill("sqlite", confdir, args.records)
        print(
            f"SQLite ledger, {args.records:,} records over {DAYS} days: write {per:.1f} µs/record"
        )
        measure("sqlite", confdir, confdir / SQLITE_FILE)
        if args.redis:
            import redis

            redis.Redis.from_url(args.redis).flushdb()
            per = fill(args.redis, confdir, args.records)
            print(f"Redis ledger, same records: write {per:.1f} µs/record")
            measure(args.redis, confdir, confdir / SQLITE_FILE)


if __name__ == "__main__":
    main()
