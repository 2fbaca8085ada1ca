"""The report's rules: --since, --by, grouping, ordering, JSON and the table."""

from __future__ import annotations

import datetime as dt

import pytest

from mitmrelay.core.ledger import COUNTERS
from mitmrelay.core.ledger_report import (
    FailureCount,
    Group,
    Report,
    aggregate,
    merge_failures,
    parse_by,
    parse_since,
    render,
    to_json,
)

TODAY = dt.date(2026, 12, 2)


def counts(**over) -> dict[str, float]:
    return {**dict.fromkeys(COUNTERS, 0), **over}


ROWS = [
    (
        {"day": "2026-12-01", "provider": "deepseek", "client_model": "gpt-5.5",
         "upstream_model": "deepseek-chat"},
        counts(requests=2, input_tokens=100, cost=0.5, priced=2, total_s=4.0),
    ),
    (
        {"day": "2026-12-02", "provider": "deepseek", "client_model": "gpt-5.5",
         "upstream_model": "deepseek-chat"},
        counts(requests=1, input_tokens=10, cost=0.25, priced=1, total_s=1.0),
    ),
    (
        {"day": "2026-12-02", "provider": "kimi", "client_model": "gpt-5.5",
         "upstream_model": "kimi-k2"},
        counts(requests=5, failed=1, output_tokens=7, cost=2.0, priced=4, unpriced=1, total_s=5.0),
    ),
    (
        {"day": "2026-12-02", "provider": "", "client_model": "bad", "upstream_model": ""},
        counts(requests=1, failed=1, no_usage=1, total_s=0.01),
    ),
]  # fmt: skip


# ---------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("text", "columns"),
    [
        ("model", ("provider", "upstream_model")),
        ("provider", ("provider",)),
        ("day", ("day",)),
        ("client", ("client_model",)),
        ("model,day", ("day", "provider", "upstream_model")),
        (" day , provider ", ("day", "provider")),
        ("provider,model", ("provider", "upstream_model")),
    ],
)
def test_by(text, columns):
    assert parse_by(text) == columns


@pytest.mark.parametrize("text", ["", ",", "models", "day,week"])
def test_by_refuses_other_names(text):
    with pytest.raises(ValueError, match="--by takes day, provider, model, client"):
        parse_by(text)


@pytest.mark.parametrize(
    ("text", "day"),
    [
        ("1d", TODAY),
        ("7d", dt.date(2026, 11, 26)),
        ("30d", dt.date(2026, 11, 3)),
        ("2026-11-01", dt.date(2026, 11, 1)),
        (" 2026-12-02 ", TODAY),
    ],
)
def test_since(text, day):
    assert parse_since(text, TODAY) == day


def test_since_refuses_zero_days_and_other_forms():
    with pytest.raises(ValueError, match="at least one day"):
        parse_since("0d", TODAY)
    for text in ("7", "1w", "yesterday", "2026-13-01", "24h"):
        with pytest.raises(ValueError, match=r"a date \(2026-11-01\) or a number of days"):
            parse_since(text, TODAY)


# ---------------------------------------------------------------------- grouping


def test_aggregate_by_model_sums_days_and_orders_by_cost():
    groups = aggregate(ROWS, ("provider", "upstream_model"))
    assert [g.key for g in groups] == [
        ("kimi", "kimi-k2"),
        ("deepseek", "deepseek-chat"),
        ("", ""),
    ]
    deepseek = groups[1].counts
    assert (deepseek["requests"], deepseek["input_tokens"], deepseek["cost"]) == (3, 110, 0.75)


def test_aggregate_by_day_orders_by_day_first():
    groups = aggregate(ROWS, ("day", "provider"))
    assert [g.key for g in groups] == [
        ("2026-12-01", "deepseek"),
        ("2026-12-02", "kimi"),
        ("2026-12-02", "deepseek"),
        ("2026-12-02", ""),
    ]


def test_merge_failures_across_days_most_frequent_first():
    merged = merge_failures(
        [
            ("deepseek", "deepseek-chat", "connect", 2),
            ("kimi", "kimi-k2", "server_error", 1),
            ("deepseek", "deepseek-chat", "connect", 3),
            ("deepseek", "deepseek-chat", "rate_limit_exceeded", 5),
        ]
    )
    assert merged == (
        FailureCount("deepseek", "deepseek-chat", "connect", 5),
        FailureCount("deepseek", "deepseek-chat", "rate_limit_exceeded", 5),
        FailureCount("kimi", "kimi-k2", "server_error", 1),
    )


def report(columns=("provider", "upstream_model"), rows=ROWS, failures=()) -> Report:
    return Report(
        since=dt.date(2026, 11, 26),
        until=TODAY,
        columns=columns,
        groups=tuple(aggregate(rows, columns)),
        failures=tuple(failures),
    )


# ---------------------------------------------------------------------- output


def test_json_report():
    doc = to_json(report(failures=[FailureCount("kimi", "kimi-k2", "connect", 2)]))
    assert doc["since"] == "2026-11-26" and doc["until"] == "2026-12-02"
    assert doc["days"] == "UTC" and doc["by"] == ["provider", "model"]
    kimi = doc["rows"][0]
    assert kimi["provider"] == "kimi" and kimi["model"] == "kimi-k2"
    assert kimi["requests"] == 5 and kimi["failed"] == 1 and kimi["unpriced"] == 1
    assert kimi["cost"] == 2.0
    assert kimi["avg_total_s"] == 1.0 and kimi["avg_first_event_s"] is None
    refused = doc["rows"][2]
    assert refused["cost"] is None and refused["no_usage"] == 1
    assert doc["total"]["requests"] == 9 and doc["total"]["cost"] == 2.75
    assert doc["upstream_failures"] == [
        {"provider": "kimi", "model": "kimi-k2", "cause": "connect", "count": 2}
    ]


def test_json_averages_first_events_over_exchanges_that_had_one():
    doc = to_json(
        report(
            rows=[
                (
                    {"provider": "p", "upstream_model": "m"},
                    counts(requests=4, first_events=2, first_event_s=3.0, total_s=8.0),
                )
            ]
        )
    )
    assert doc["rows"][0]["avg_first_event_s"] == 1.5
    assert doc["rows"][0]["avg_total_s"] == 2.0


def test_empty_report():
    empty = report(rows=[])
    assert (
        render(empty)
        == "mitmrelay usage 2026-11-26 .. 2026-12-02 (UTC days): no exchanges recorded"
    )
    doc = to_json(empty)
    assert doc["rows"] == [] and doc["total"]["requests"] == 0
    assert doc["total"]["cost"] is None and doc["total"]["avg_total_s"] is None


def test_table_for_people():
    text = render(
        report(
            columns=("day", "provider", "upstream_model"),
            failures=[FailureCount("deepseek", "deepseek-chat", "rate_limit_exceeded", 1234)],
        )
    )
    lines = text.splitlines()
    assert lines[0] == "mitmrelay usage 2026-11-26 .. 2026-12-02 (UTC days)"
    assert lines[2].split() == [
        "day", "(UTC)", "provider", "model", "requests", "failed", "input", "cached", "output",
        "reasoning", "cost", "first", "s", "total", "s",
    ]  # fmt: skip
    assert lines[3].split() == [
        "2026-12-01", "deepseek", "deepseek-chat", "2", "0", "100", "0", "0", "0", "0.500", "-",
        "2.00",
    ]  # fmt: skip
    kimi = lines[4].split()
    assert kimi[:3] == ["2026-12-02", "kimi", "kimi-k2"] and kimi[9] == "2.00*"
    refused = lines[6].split()
    assert refused[:3] == ["2026-12-02", "-", "-"] and refused[9] == "-"
    assert lines[7].split()[:2] == ["total", "9"]
    assert "2.75*" in lines[7]
    assert "* some exchanges of this row had no price in the routes file" in lines
    assert "1 exchange(s) without usage reported upstream" in lines
    assert lines[-1].split() == ["deepseek", "deepseek-chat", "rate_limit_exceeded", "1,234"]
    # Figures are right-aligned under their header.
    assert lines[2].index("requests") + len("requests") == lines[3].index(" 2 ") + 2


def test_table_without_unpriced_or_missing_usage_has_no_such_notes():
    text = render(report(rows=ROWS[:2]))
    assert "*" not in text and "without usage" not in text
    assert "upstream failures" not in text


def test_group_is_plain_data():
    assert Group(("a",), {"requests": 1}) == Group(("a",), {"requests": 1})
