"""The ledger's record of an exchange, its cost, and the counters it adds to."""

from __future__ import annotations

import pytest

from mitmrelay.core.ledger import (
    COUNTERS,
    AttemptFailure,
    Tokens,
    billed_output,
    cost,
    counters,
    failure_keys,
    format_amount,
    format_cost,
    record_of,
    tokens_of,
    utc_day,
)
from mitmrelay.core.outcome import AttemptOutcome, ExchangeOutcome, Price

# 2026-12-01 23:59:59 UTC and one second later.
LAST_SECOND = 1_796_169_599.0


def usage(inp=1000, cached=400, out=200, reasoning=50, total=None):
    return {
        "input_tokens": inp,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": inp + out if total is None else total,
    }


def outcome(**over) -> ExchangeOutcome:
    fields = {
        "response_id": "resp_1",
        "client_model": "gpt-5.5",
        "provider": "deepseek",
        "upstream_model": "deepseek-chat",
        "status": "completed",
        "stream": True,
        "started_at": LAST_SECOND,
        "total_s": 2.5,
        "first_event_s": 0.25,
        "usage": usage(),
        "attempts": (AttemptOutcome("deepseek", "deepseek-chat", 200),),
        "price": Price(input=0.27, output=1.10, cached_input=0.07),
    }
    return ExchangeOutcome(**{**fields, **over})


# ---------------------------------------------------------------------- tokens


def test_tokens_as_reported():
    assert tokens_of(usage()) == Tokens(
        input=1000, cached=400, output=200, reasoning=50, total=1200
    )


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "usage",
        {},
        {"input_tokens": 10},
        {"output_tokens": 10},
        {"input_tokens": -1, "output_tokens": 3},
        {"input_tokens": True, "output_tokens": 3},
        {"input_tokens": 1.5, "output_tokens": 3},
    ],
)
def test_usage_without_input_or_output_counts_as_none(bad):
    assert tokens_of(bad) is None


def test_missing_details_and_total_are_zero_and_the_sum():
    assert tokens_of({"input_tokens": 10, "output_tokens": 3}) == Tokens(10, 0, 3, 0, 13)
    odd = {
        "input_tokens": 10,
        "output_tokens": 3,
        "input_tokens_details": "x",
        "output_tokens_details": {"reasoning_tokens": "many"},
        "total_tokens": -4,
    }
    assert tokens_of(odd) == Tokens(10, 0, 3, 0, 13)


def test_cached_never_exceeds_input():
    assert tokens_of(usage(inp=10, cached=99)).cached == 10


# ---------------------------------------------------------------------- cost


def test_cost_splits_cached_input_and_counts_reasoning_once():
    tokens = Tokens(1_000_000, 400_000, 200_000, 150_000, 1_200_000)
    price = Price(input=2.0, output=8.0, cached_input=0.5)
    # 600k uncached * 2 + 400k cached * 0.5 + 200k output * 8 (reasoning is inside the output)
    assert cost(tokens, price) == pytest.approx(1.2 + 0.2 + 1.6)


def test_cached_input_costs_the_input_price_when_none_is_given():
    tokens = Tokens(1_000_000, 400_000, 0, 0, 1_000_000)
    assert cost(tokens, Price(input=2.0, output=8.0)) == pytest.approx(2.0)


def test_output_left_out_of_completion_tokens_is_billed_from_the_total():
    # Gemini-style: 382 thought tokens counted in the total, not in completion_tokens.
    tokens = tokens_of(usage(inp=20, cached=0, out=151, reasoning=382, total=553))
    assert billed_output(tokens) == 533
    assert cost(tokens, Price(input=0.0, output=1_000_000.0)) == pytest.approx(533)
    # A total below input + output (or equal) changes nothing.
    assert billed_output(Tokens(20, 0, 151, 0, 100)) == 151


def test_no_cost_without_usage_or_price():
    assert cost(None, Price(1, 1)) is None
    assert cost(Tokens(1, 0, 1, 0, 2), None) is None


# ---------------------------------------------------------------------- record


def test_record_of_a_priced_exchange():
    record = record_of(outcome())
    assert record.day == "2026-12-01"
    assert record.tokens == Tokens(1000, 400, 200, 50, 1200)
    assert record.cost == pytest.approx((600 * 0.27 + 400 * 0.07 + 200 * 1.10) / 1e6)
    assert (record.provider, record.upstream_model, record.client_model) == (
        "deepseek",
        "deepseek-chat",
        "gpt-5.5",
    )
    assert not record.failed
    assert record.attempt_failures == ()
    assert record.group == ("2026-12-01", "deepseek", "gpt-5.5", "deepseek-chat")


def test_days_are_utc():
    assert utc_day(LAST_SECOND) == "2026-12-01"
    assert utc_day(LAST_SECOND + 1) == "2026-12-02"


def test_every_given_up_attempt_is_a_failure_of_its_own_provider():
    record = record_of(
        outcome(
            provider="kimi",
            upstream_model="kimi-k2",
            attempts=(
                AttemptOutcome("deepseek", "deepseek-chat", 429, "rate_limit_exceeded"),
                AttemptOutcome("deepseek", "deepseek-chat", None, "connect"),
                AttemptOutcome("kimi", "kimi-k2", 200),
            ),
        )
    )
    assert record.fallbacks == 1
    assert record.attempt_failures == (
        AttemptFailure("deepseek", "deepseek-chat", "rate_limit_exceeded"),
        AttemptFailure("deepseek", "deepseek-chat", "connect"),
    )
    assert failure_keys(record) == [
        ("2026-12-01", "deepseek", "deepseek-chat", "rate_limit_exceeded"),
        ("2026-12-01", "deepseek", "deepseek-chat", "connect"),
    ]
    assert not record.failed


@pytest.mark.parametrize(
    ("status", "failed"),
    [("completed", False), ("incomplete", True), ("failed", True), ("http 502", True)],
)
def test_failed_means_the_client_got_no_usable_answer(status, failed):
    assert record_of(outcome(status=status)).failed is failed


def test_counters_of_an_answer():
    added = counters(record_of(outcome()))
    assert set(added) == set(COUNTERS)
    assert added == {
        "requests": 1,
        "failed": 0,
        "fallbacks": 0,
        "input_tokens": 1000,
        "cached_tokens": 400,
        "output_tokens": 200,
        "reasoning_tokens": 50,
        "no_usage": 0,
        "priced": 1,
        "unpriced": 0,
        "first_events": 1,
        "cost": pytest.approx(0.00041),
        "first_event_s": 0.25,
        "total_s": 2.5,
    }


def test_counters_of_a_refusal_before_any_upstream_call():
    refused = outcome(
        provider="",
        upstream_model="",
        status="http 400",
        failure="invalid_request_error",
        usage=None,
        first_event_s=None,
        attempts=(),
        price=None,
    )
    record = record_of(refused)
    added = counters(record)
    assert record.failed and record.tokens is None and record.cost is None
    assert failure_keys(record) == []  # the upstream did not fail: it was never called
    assert {k: added[k] for k in ("failed", "no_usage", "priced", "unpriced", "first_events")} == {
        "failed": 1,
        "no_usage": 1,
        "priced": 0,
        "unpriced": 0,
        "first_events": 0,
    }
    assert added["input_tokens"] == added["output_tokens"] == 0
    assert added["cost"] == 0.0 and added["first_event_s"] == 0.0


def test_usage_without_a_price_is_unpriced():
    added = counters(record_of(outcome(price=None)))
    assert (added["priced"], added["unpriced"], added["cost"]) == (0, 1, 0.0)


# ---------------------------------------------------------------------- people


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (0, "0"),
        (1234.5678, "1,234.57"),
        (1, "1.00"),
        (0.5, "0.500"),
        (0.0123456, "0.0123"),
        (0.000412, "0.000412"),
        (0.00000123, "0.00000123"),
    ],
)
def test_format_amount(amount, text):
    assert format_amount(amount) == text


def test_format_cost_for_mitmweb():
    assert format_cost(outcome()) == "cost 0.000410"
    assert format_cost(outcome(price=None)) is None
    assert format_cost(outcome(usage=None)) is None


# ---------------------------------------------------------------------- storage forms


def test_record_row_is_plain_json_data():
    import json

    from mitmrelay.core.ledger import RECORD_COLUMNS, record_row

    fell_back = record_of(
        outcome(
            attempts=(
                AttemptOutcome("kimi", "kimi-k2", None, "server_error"),
                AttemptOutcome("deepseek", "deepseek-chat", 200),
            )
        )
    )
    row = record_row(fell_back)
    assert tuple(row) == RECORD_COLUMNS
    assert json.loads(json.dumps(row)) == row
    assert row["attempt_failures"] == [["kimi", "kimi-k2", "server_error"]]
    assert (row["input_tokens"], row["total_tokens"], row["fallbacks"]) == (1000, 1200, 1)
    empty = record_row(record_of(outcome(usage=None, price=None)))
    assert [empty[k] for k in ("input_tokens", "cached_tokens", "output_tokens")] == [None] * 3
    assert empty["reasoning_tokens"] is None and empty["total_tokens"] is None
    assert empty["cost"] is None


def test_a_batch_is_summed_per_group_and_failure_key():
    from mitmrelay.core.ledger import batch_counters

    first = record_of(outcome())
    second = record_of(
        outcome(
            status="failed",
            failure="server_error",
            usage=None,
            attempts=(AttemptOutcome("deepseek", "deepseek-chat", 200, "server_error"),),
        )
    )
    other = record_of(outcome(client_model="o4-mini"))
    groups, failures = batch_counters([first, second, other, second])
    assert set(groups) == {first.group, other.group}
    summed = groups[first.group]
    assert (summed["requests"], summed["failed"], summed["input_tokens"]) == (3, 2, 1000)
    assert summed["total_s"] == pytest.approx(7.5)
    assert failures == {("2026-12-01", "deepseek", "deepseek-chat", "server_error"): 2}
    assert counters(first)["requests"] == 1  # the record's own counters are not mutated
