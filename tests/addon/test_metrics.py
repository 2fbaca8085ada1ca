"""The metrics endpoint over real HTTP, read back with prometheus_client's own parser."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mitmrelay.core.outcome import AttemptOutcome, ExchangeOutcome, Price
from mitmrelay.metrics import MetricsServer, RelayMetrics


def outcome(response_id="resp_1", **over) -> ExchangeOutcome:
    fields = {
        "response_id": response_id,
        "client_model": "gpt-5.5",
        "provider": "kimi",
        "upstream_model": "kimi-k2",
        "status": "completed",
        "stream": True,
        "started_at": 1_796_000_000.0,
        "total_s": 3.0,
        "first_event_s": 0.2,
        "usage": {
            "input_tokens": 1000,
            "input_tokens_details": {"cached_tokens": 600},
            "output_tokens": 50,
            "output_tokens_details": {"reasoning_tokens": 20},
            "total_tokens": 1050,
        },
        "attempts": (
            AttemptOutcome("deepseek", "deepseek-chat", None, "server_error"),
            AttemptOutcome("kimi", "kimi-k2", 200),
        ),
        "price": Price(input=1.0, output=4.0, cached_input=0.25),
    }
    return ExchangeOutcome(**{**fields, **over})


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def served():
    metrics = RelayMetrics(clock=lambda: 1_796_000_010.0)
    status = {"configured": True, "providers": ["deepseek", "kimi"]}
    server = MetricsServer(metrics, lambda: (status["configured"], status["providers"]), 0)
    yield metrics, server, status
    server.close()


def scrape(server: MetricsServer) -> dict:
    r = httpx.get(f"{server.url}/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return samples(r.text)


def test_an_exchange_with_a_fallback_as_scraped(served):
    metrics, server, _ = served
    metrics.started("resp_1", stream=True)
    metrics.started("resp_2", stream=True)
    metrics.started("resp_3", stream=False)  # not a stream: not in the gauge
    assert scrape(server)[("mitmrelay_active_streams", ())] == 2
    metrics.ended(outcome())
    got = scrape(server)
    assert got[("mitmrelay_active_streams", ())] == 1
    assert (
        got[
            (
                "mitmrelay_requests_total",
                (
                    ("failure", ""),
                    ("model", "kimi-k2"),
                    ("provider", "kimi"),
                    ("status", "completed"),
                ),
            )
        ]
        == 1
    )
    tokens = {
        dict(labels)["kind"]: value
        for (name, labels), value in got.items()
        if name == "mitmrelay_tokens_total"
    }
    assert tokens == {"input": 1000, "cached_input": 600, "output": 50, "reasoning": 20}
    cost = got[("mitmrelay_cost_total", (("model", "kimi-k2"), ("provider", "kimi")))]
    assert cost == pytest.approx((400 * 1.0 + 600 * 0.25 + 50 * 4.0) / 1e6)
    assert (
        got[
            (
                "mitmrelay_upstream_failures_total",
                (("cause", "server_error"), ("model", "deepseek-chat"), ("provider", "deepseek")),
            )
        ]
        == 1
    )
    assert got[("mitmrelay_fallbacks_total", (("provider", "kimi"),))] == 1
    assert got[("mitmrelay_first_event_seconds_count", (("provider", "kimi"),))] == 1
    assert (
        got[("mitmrelay_first_event_seconds_bucket", (("le", "0.25"), ("provider", "kimi")))] == 1
    )
    assert got[("mitmrelay_first_event_seconds_bucket", (("le", "0.1"), ("provider", "kimi")))] == 0
    assert got[("mitmrelay_exchange_seconds_sum", (("provider", "kimi"),))] == 3.0
    assert got[("mitmrelay_exchange_seconds_bucket", (("le", "2.0"), ("provider", "kimi")))] == 0


def test_failures_refusals_and_store_errors(served):
    metrics, server, _ = served
    metrics.ended(
        outcome(
            "resp_f",
            provider="deepseek",
            upstream_model="deepseek-chat",
            status="http 502",
            failure="server_error",
            usage=None,
            first_event_s=None,
            attempts=(AttemptOutcome("deepseek", "deepseek-chat", None, "server_error"),),
            price=None,
        )
    )
    metrics.ended(
        outcome(
            "resp_r",
            provider="",
            upstream_model="",
            status="http 400",
            failure="invalid_request_error",
            usage=None,
            first_event_s=None,
            attempts=(),
        )
    )
    metrics.store_error("ledger", "write")
    got = scrape(server)
    key = (
        ("failure", "server_error"),
        ("model", "deepseek-chat"),
        ("provider", "deepseek"),
        ("status", "http 502"),
    )
    assert got[("mitmrelay_requests_total", key)] == 1
    refused = (
        ("failure", "invalid_request_error"),
        ("model", ""),
        ("provider", ""),
        ("status", "http 400"),
    )
    assert got[("mitmrelay_requests_total", refused)] == 1
    assert not any(name == "mitmrelay_tokens_total" for name, _ in got)
    assert not any(name == "mitmrelay_cost_total" for name, _ in got)
    assert got[("mitmrelay_store_errors_total", (("kind", "write"), ("store", "ledger")))] == 1
    # No first byte went out: no first-event observation; the duration is there.
    assert ("mitmrelay_first_event_seconds_count", (("provider", "deepseek"),)) not in got
    assert got[("mitmrelay_exchange_seconds_count", (("provider", "deepseek"),))] == 1


def test_label_values_are_bounded():
    metrics = RelayMetrics(max_label_values=2)
    for i in range(4):
        metrics.ended(outcome(f"r{i}", upstream_model=f"client-picked-{i}", attempts=()))
    server = MetricsServer(metrics, lambda: (True, []), 0)
    try:
        got = scrape(server)
    finally:
        server.close()
    models = {
        dict(labels)["model"]
        for (name, labels), _ in got.items()
        if name == "mitmrelay_requests_total"
    }
    assert models == {"client-picked-0", "client-picked-1", "other"}


def test_active_streams_forget_ends_that_never_came():
    metrics = RelayMetrics(max_active=3)
    for i in range(5):
        metrics.started(f"r{i}", stream=True)
    assert metrics.active_streams._value.get() == 3
    metrics.ended(outcome("r0"))  # forgotten already: not counted down twice
    assert metrics.active_streams._value.get() == 3
    metrics.ended(outcome("r4"))
    assert metrics.active_streams._value.get() == 2


def test_healthz_over_http(served):
    metrics, server, status = served
    r = httpx.get(f"{server.url}/healthz", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json()["status"] == "ok"
    assert set(r.json()["providers"]) == {"deepseek", "kimi"}
    metrics.ended(outcome())  # deepseek's attempt failed without an HTTP status
    r = httpx.get(f"{server.url}/healthz", timeout=10)
    assert r.status_code == 503
    doc = r.json()
    assert doc["unreachable"] == ["deepseek"]
    assert doc["providers"]["kimi"]["reachable"] is True
    assert doc["providers"]["deepseek"]["last_attempt_s_ago"] == 0.0
    status["configured"] = False
    assert httpx.get(f"{server.url}/healthz", timeout=10).json()["status"] == "unconfigured"


def test_other_paths_are_404_and_openmetrics_is_negotiated(served):
    _, server, _ = served
    assert httpx.get(f"{server.url}/", timeout=10).status_code == 404
    r = httpx.get(
        f"{server.url}/metrics",
        headers={"accept": "application/openmetrics-text; version=1.0.0"},
        timeout=10,
    )
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.rstrip().endswith("# EOF")


def test_the_server_listens_on_loopback_only_and_a_taken_port_raises(served):
    _, server, _ = served
    assert server.url.startswith("http://127.0.0.1:")
    with pytest.raises(OSError):
        MetricsServer(RelayMetrics(), lambda: (True, []), server.port)
    assert server._server.socket.getsockname()[0] == "127.0.0.1"
