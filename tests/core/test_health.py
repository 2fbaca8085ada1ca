"""/healthz: reachability per provider from the outcomes' attempts, 200 or 503."""

from __future__ import annotations

import pytest

from mitmrelay.core import health as health_module
from mitmrelay.core.health import Health
from mitmrelay.core.outcome import AttemptOutcome, ExchangeOutcome


def ended(*attempts: AttemptOutcome) -> ExchangeOutcome:
    last = attempts[-1] if attempts else AttemptOutcome("", "", None)
    return ExchangeOutcome(
        response_id="resp_1",
        client_model="gpt-5.5",
        provider=last.provider,
        upstream_model=last.upstream_model,
        status="completed",
        stream=True,
        started_at=0.0,
        total_s=1.0,
        attempts=attempts,
    )


def test_a_configured_relay_with_no_traffic_is_healthy_and_says_it_knows_nothing():
    code, doc = Health().answer(1000.0, configured=True, providers=["deepseek", "kimi"])
    assert code == 200
    assert doc["status"] == "ok" and doc["unreachable"] == []
    assert doc["providers"] == {
        name: {
            "reachable": None,
            "last_attempt_s_ago": None,
            "last_status": None,
            "last_failure": None,
        }
        for name in ("deepseek", "kimi")
    }


def test_an_unconfigured_relay_is_503():
    code, doc = Health().answer(0.0, configured=False)
    assert code == 503 and doc["status"] == "unconfigured" and doc["configured"] is False


@pytest.mark.parametrize(
    ("status", "failure", "reachable"),
    [
        (200, None, True),
        (200, "server_error", True),  # answered, then the stream failed: it is there
        (429, "rate_limit_exceeded", True),
        (401, "invalid_api_key", True),
        (None, "server_error", False),  # refused, TLS, silence: no HTTP status
        (502, "server_error", False),
        (503, "server_error", False),
    ],
)
def test_reachable_means_an_http_answer_below_500(status, failure, reachable):
    health = Health()
    health.saw(ended(AttemptOutcome("deepseek", "deepseek-chat", status, failure)), now=100.0)
    code, doc = health.answer(110.0, configured=True, providers=["deepseek"])
    entry = doc["providers"]["deepseek"]
    assert entry == {
        "reachable": reachable,
        "last_attempt_s_ago": 10.0,
        "last_status": status,
        "last_failure": failure,
    }
    assert code == (200 if reachable else 503)
    assert doc["unreachable"] == ([] if reachable else ["deepseek"])
    assert doc["status"] == ("ok" if reachable else "failing")


def test_the_latest_attempt_counts_and_old_ones_become_unknown():
    health = Health(window_s=300.0)
    health.saw(
        ended(
            AttemptOutcome("deepseek", "deepseek-chat", None, "server_error"),
            AttemptOutcome("kimi", "kimi-k2", 200),
        ),
        now=1000.0,
    )
    code, doc = health.answer(1000.0, configured=True, providers=["kimi"])
    assert code == 503 and doc["unreachable"] == ["deepseek"]
    assert list(doc["providers"]) == ["kimi", "deepseek"]  # configured first, then seen
    health.saw(ended(AttemptOutcome("deepseek", "deepseek-chat", 200)), now=1100.0)
    assert health.answer(1100.0, configured=True)[0] == 200
    # Out of the window: unknown; the later one still counts.
    code, doc = health.answer(1399.0, configured=True)
    assert doc["providers"]["kimi"]["reachable"] is None
    assert doc["providers"]["kimi"]["last_attempt_s_ago"] == 399.0
    assert doc["providers"]["deepseek"]["reachable"] is True  # 299 s ago
    # Both out of it, after a failure: an idle relay is a healthy one.
    health.saw(ended(AttemptOutcome("kimi", "kimi-k2", 503, "server_error")), now=1400.0)
    assert health.answer(1400.0, configured=True)[0] == 503
    code, doc = health.answer(1701.0, configured=True)
    assert code == 200 and doc["unreachable"] == []


def test_one_exchange_trying_a_provider_twice_keeps_the_later_attempt():
    health = Health()
    health.saw(
        ended(
            AttemptOutcome("deepseek", "deepseek-chat", 429, "rate_limit_exceeded"),
            AttemptOutcome("deepseek", "deepseek-chat", None, "server_error"),
        ),
        now=5.0,
    )
    assert health.answer(5.0, configured=True)[1]["providers"]["deepseek"]["last_status"] is None


def test_refusals_and_nameless_attempts_count_for_no_provider():
    health = Health()
    health.saw(ended(), now=1.0)
    health.saw(ended(AttemptOutcome("", "", None, "server_error")), now=1.0)
    assert health.answer(1.0, configured=True)[1]["providers"] == {}


def test_tracked_providers_are_bounded(monkeypatch):
    monkeypatch.setattr(health_module, "MAX_PROVIDERS", 3)
    health = Health()
    for i in range(5):
        health.saw(ended(AttemptOutcome(f"p{i}", "m", 200)), now=float(i))
    assert list(health.answer(5.0, configured=True)[1]["providers"]) == ["p2", "p3", "p4"]
