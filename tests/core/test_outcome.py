"""ExchangeOutcome: the fallback count is read off the attempts."""

from __future__ import annotations

from mitmrelay.core.outcome import AttemptOutcome, ExchangeOutcome


def outcome(*attempts: AttemptOutcome) -> ExchangeOutcome:
    return ExchangeOutcome(
        response_id="resp_1",
        client_model="m",
        provider=attempts[-1].provider,
        upstream_model=attempts[-1].upstream_model,
        status="completed",
        stream=True,
        started_at=0.0,
        total_s=1.0,
        attempts=attempts,
    )


def test_a_retry_on_the_same_provider_is_not_a_fallback() -> None:
    same = AttemptOutcome("deepseek", "deepseek-chat", 429, "rate_limit_exceeded")
    served = AttemptOutcome("deepseek", "deepseek-chat", 200)
    assert outcome(same, served).fallbacks == 0


def test_each_switch_to_another_provider_or_model_counts() -> None:
    a = AttemptOutcome("deepseek", "deepseek-chat", 503, "server_error")
    b = AttemptOutcome("kimi", "kimi-k2", None, "connect")
    c = AttemptOutcome("kimi", "kimi-k2-turbo", 200)
    assert outcome(a, b, c).fallbacks == 2
    assert outcome(c).fallbacks == 0
