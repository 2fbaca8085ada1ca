"""``mitmrelay usage`` over a ledger written by the real stores (SQLite, a real redis-server):
its arguments, its JSON and table, its one-line errors, and the console script itself."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mitmrelay.core.ledger import record_of
from mitmrelay.core.outcome import AttemptOutcome, ExchangeOutcome, Price
from mitmrelay.state.ledger import open_ledger
from mitmrelay.usage_report import main

NOW = dt.datetime(2026, 12, 2, 15, tzinfo=dt.UTC).timestamp()
DAY = 86400.0
MITMRELAY = Path(sys.executable).with_name("mitmrelay")


def outcome(at: float, **over) -> ExchangeOutcome:
    fields = {
        "response_id": f"resp_{at}",
        "client_model": "gpt-5.5",
        "provider": "deepseek",
        "upstream_model": "deepseek-chat",
        "status": "completed",
        "stream": True,
        "started_at": at,
        "total_s": 1.0,
        "first_event_s": 0.1,
        "usage": {
            "input_tokens": 2_000_000,
            "input_tokens_details": {"cached_tokens": 1_000_000},
            "output_tokens": 100_000,
            "output_tokens_details": {"reasoning_tokens": 40_000},
            "total_tokens": 2_100_000,
        },
        "attempts": (AttemptOutcome("deepseek", "deepseek-chat", 200),),
        "price": Price(input=0.28, output=0.42, cached_input=0.028),
    }
    return ExchangeOutcome(**{**fields, **over})


WEEK = [
    outcome(NOW),  # today
    outcome(NOW - DAY),
    outcome(
        NOW - DAY,
        provider="kimi",
        upstream_model="kimi-k2",
        price=Price(input=0.6, output=2.5),
        attempts=(
            AttemptOutcome("deepseek", "deepseek-chat", 429, "rate_limit_exceeded"),
            AttemptOutcome("kimi", "kimi-k2", 200),
        ),
    ),
    outcome(
        NOW - 2 * DAY,
        status="failed",
        failure="server_error",
        usage=None,
        attempts=(AttemptOutcome("deepseek", "deepseek-chat", 200, "server_error"),),
    ),
    outcome(NOW - 10 * DAY),  # outside 7d
]
DEEPSEEK_COST = (1.0 * 0.28 + 1.0 * 0.028 + 0.1 * 0.42) / 1  # per exchange: 0.35
KIMI_COST = 2.0 * 0.6 + 0.1 * 2.5  # no cached price: cached input at the input price


@pytest.fixture(params=["sqlite", "redis"])
def ledger(request, tmp_path):
    """A confdir and --state holding WEEK, written by the relay's own store."""
    if request.param == "redis":
        state = request.getfixturevalue("redis_url")
        import redis

        redis.Redis.from_url(state).flushdb()
    else:
        state = "sqlite"
    store = open_ledger(state, confdir=tmp_path)
    store.write([record_of(o) for o in WEEK])
    store.close()
    return ["--confdir", str(tmp_path), "--state", state]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), clock=lambda: NOW)
    out, err = capsys.readouterr()
    return code, out, err


def test_json_by_model_over_a_week(ledger, capsys):
    code, out, err = run(capsys, *ledger, "--since", "7d", "--json")
    assert code == 0 and err == ""
    doc = json.loads(out)
    assert (doc["since"], doc["until"], doc["by"]) == (
        "2026-11-26",
        "2026-12-02",
        ["provider", "model"],
    )
    rows = {(r["provider"], r["model"]): r for r in doc["rows"]}
    deepseek, kimi = rows["deepseek", "deepseek-chat"], rows["kimi", "kimi-k2"]
    assert (deepseek["requests"], deepseek["failed"], deepseek["no_usage"]) == (3, 1, 1)
    assert deepseek["input_tokens"] == 4_000_000 and deepseek["cached_tokens"] == 2_000_000
    assert deepseek["output_tokens"] == 200_000 and deepseek["reasoning_tokens"] == 80_000
    assert deepseek["cost"] == pytest.approx(2 * DEEPSEEK_COST)
    assert kimi["cost"] == pytest.approx(KIMI_COST) and kimi["fallbacks"] == 1
    assert doc["total"]["requests"] == 4
    assert doc["total"]["cost"] == pytest.approx(2 * DEEPSEEK_COST + KIMI_COST)
    assert doc["upstream_failures"] == [
        {
            "provider": "deepseek",
            "model": "deepseek-chat",
            "cause": "rate_limit_exceeded",
            "count": 1,
        },
        {"provider": "deepseek", "model": "deepseek-chat", "cause": "server_error", "count": 1},
    ]


def test_by_day_and_since_a_date(ledger, capsys):
    code, out, _ = run(capsys, *ledger, "--by", "day", "--since", "2026-11-01", "--json")
    assert code == 0
    days = {r["day"]: r["requests"] for r in json.loads(out)["rows"]}
    assert days == {"2026-11-22": 1, "2026-11-30": 1, "2026-12-01": 2, "2026-12-02": 1}


def test_by_provider_for_today_as_a_table(ledger, capsys):
    code, out, _ = run(capsys, *ledger, "--by", "provider", "--since", "1d")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "mitmrelay usage 2026-12-02 .. 2026-12-02 (UTC days)"
    assert lines[3].split()[:3] == ["deepseek", "1", "0"]
    assert "0.350" in lines[3]


def test_an_empty_span(ledger, capsys):
    code, out, _ = run(capsys, *ledger, "--since", "2026-12-03")
    assert code == 0 and "no exchanges recorded" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--since", "last week"], "--since takes a date (2026-11-01) or a number of days"),
        (["--by", "week"], "--by takes day, provider, model, client"),
        (["--state", "memory"], "relay_state=memory keeps no usage ledger"),
        (["--state", "postgres://x"], "relay_state must be"),
    ],
)
def test_errors_are_one_line(tmp_path, capsys, argv, message):
    code, out, err = run(capsys, "--confdir", str(tmp_path), *argv)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_confdir_the_relay_never_used(tmp_path, capsys):
    code, _, err = run(capsys, "--confdir", str(tmp_path / "none"))
    assert code == 2
    assert "no relay database at" in err and "has the relay run with this --confdir?" in err
    assert not (tmp_path / "none").exists()


def test_an_unreachable_redis_is_one_line(tmp_path, capsys):
    code, _, err = run(capsys, "--state", "redis://127.0.0.1:1/0")
    assert code == 2 and "ConnectionError" in err and len(err.strip().splitlines()) == 1


def test_the_console_script(tmp_path):
    store = open_ledger("sqlite", confdir=tmp_path)
    store.write([record_of(outcome(dt.datetime.now(dt.UTC).timestamp()))])
    store.close()
    done = subprocess.run(
        [str(MITMRELAY), "usage", "--confdir", str(tmp_path), "--since", "1d", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["total"]["requests"] == 1
