"""The retry and fallback policy, on failures mapped exactly as the link maps them."""

from __future__ import annotations

import json

import pytest

from mitmrelay.core.attempts import AttemptPolicy, Decision, Failure, Step, falls_back
from mitmrelay.core.upstream_errors import (
    map_error_payload,
    map_transport_error,
    map_upstream_error,
)

UP = "https://api.example.com/v1"


def http_failure(status: int, body: object, headers: dict[str, str] | None = None) -> Failure:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Failure(status, map_upstream_error(status, headers or {}, raw, upstream=UP), raw)


def transport(kind: str) -> Failure:
    return Failure(None, map_transport_error(kind, "detail", upstream=UP))


RATE = {"error": {"message": "Rate limit reached", "type": "requests"}}
DEEPSEEK_400 = {
    "error": {
        "message": "The reasoning_content in the thinking mode must be passed back to the API.",
        "type": "invalid_request_error",
    }
}


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (transport("connect"), True),
        (transport("tls"), True),
        (transport("timeout"), True),
        (transport("cut"), True),
        (http_failure(500, "boom"), True),
        (http_failure(503, {"error": {"message": "overloaded"}}), True),
        (http_failure(429, RATE), True),
        (http_failure(402, {"error": {"message": "Insufficient Balance"}}), True),
        (http_failure(429, {"error": {"message": "You exceeded your current quota"}}), True),
        (http_failure(403, {"error": {"message": "insufficient balance on the account"}}), True),
        # a stream that said 200 and then sent an error chunk before its first item
        (
            Failure(200, map_error_payload({"code": 502, "message": "provider died"}, upstream=UP)),
            True,
        ),
        (http_failure(400, {"error": {"message": "Unsupported parameter: 'foo'"}}), False),
        (http_failure(401, {"error": {"message": "Incorrect API key provided."}}), False),
        (http_failure(400, {"error": {"code": "context_length_exceeded", "message": "x"}}), False),
        (http_failure(404, {"error": {"message": "model not found"}}), False),
    ],
)
def test_which_failures_fall_back(failure, expected):
    assert falls_back(failure) is expected
    policy = AttemptPolicy(2, retry_wait_s=0.0)
    assert policy.next(failure) == (Decision(Step.FALL_BACK, 1) if expected else None)


def test_fallbacks_go_through_the_plan_in_order_then_give_up():
    policy = AttemptPolicy(3, retry_wait_s=2.0)
    assert policy.next(http_failure(503, "x")) == Decision(Step.FALL_BACK, 1)
    assert policy.next(transport("connect")) == Decision(Step.FALL_BACK, 2)
    assert policy.next(http_failure(502, "x")) is None  # the last failure is the client's
    assert [d.target for d in policy.decisions] == [1, 2]


def test_a_short_retry_after_is_waited_for_once_on_the_same_target():
    policy = AttemptPolicy(2, retry_wait_s=2.0)
    limited = http_failure(429, RATE, {"retry-after": "1"})
    assert policy.next(limited) == Decision(Step.WAIT, 0, 1.0)
    assert policy.next(limited) == Decision(Step.FALL_BACK, 1)  # waited once: move on
    assert policy.next(limited) == Decision(Step.WAIT, 1, 1.0)  # the new target's own wait
    assert policy.next(limited) is None


@pytest.mark.parametrize(
    ("headers", "body", "wait"),
    [
        ({"retry-after": "3"}, RATE, 2.0),  # longer than relay_retry_wait
        ({}, RATE, 2.0),  # no delay given: nothing to wait for
        ({"retry-after": "1"}, RATE, 0.0),  # relay_retry_wait 0 turns waiting off
    ],
)
def test_a_rate_limit_without_a_short_wait_falls_back_at_once(headers, body, wait):
    policy = AttemptPolicy(2, retry_wait_s=wait)
    assert policy.next(http_failure(429, body, headers)) == Decision(Step.FALL_BACK, 1)


def test_the_try_again_phrase_counts_as_a_delay():
    policy = AttemptPolicy(1, retry_wait_s=2.0)
    failure = http_failure(429, {"error": {"message": "Rate limit. Please try again in 1.5s."}})
    assert policy.next(failure) == Decision(Step.WAIT, 0, 1.5)


def test_a_quota_error_is_never_waited_for():
    policy = AttemptPolicy(1, retry_wait_s=60.0)
    quota = http_failure(
        429, {"error": {"message": "You exceeded your current quota"}}, {"retry-after": "1"}
    )
    assert quota.error.code == "insufficient_quota"
    assert policy.next(quota) is None


def test_missing_reasoning_is_healed_once_per_target():
    policy = AttemptPolicy(2, retry_wait_s=2.0)
    refusal = http_failure(400, DEEPSEEK_400)
    assert policy.next(refusal) == Decision(Step.HEAL, 0)
    assert policy.next(refusal) is None  # a 400 again: the client's answer, no fallback


def test_heal_then_fall_back_then_heal_the_fallback():
    policy = AttemptPolicy(2, retry_wait_s=2.0)
    assert policy.next(http_failure(400, DEEPSEEK_400)).step is Step.HEAL
    assert policy.next(http_failure(500, "x")) == Decision(Step.FALL_BACK, 1)
    assert policy.next(http_failure(400, DEEPSEEK_400)) == Decision(Step.HEAL, 1)


def test_a_plan_has_a_target():
    with pytest.raises(ValueError):
        AttemptPolicy(0, retry_wait_s=1.0)
