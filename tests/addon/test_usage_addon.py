"""The usage addon in mitmproxy's test host (taddons): its options, refusals, the ledger it
opens where relay_state says, and the two hooks the relay triggers."""

from __future__ import annotations

import logging
import re
import socket
import time

import httpx
import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from mitmrelay.core.outcome import AttemptOutcome, ExchangeOutcome
from mitmrelay.state.ledger import open_ledger
from mitmrelay.usage_addon import Usage


def outcome(response_id: str = "resp_1") -> ExchangeOutcome:
    return ExchangeOutcome(
        response_id=response_id,
        client_model="gpt-5.5",
        provider="deepseek",
        upstream_model="deepseek-chat",
        status="completed",
        stream=True,
        started_at=time.time(),
        total_s=1.0,
        first_event_s=0.1,
        usage={"input_tokens": 10, "output_tokens": 2, "total_tokens": 12},
        attempts=(AttemptOutcome("deepseek", "deepseek-chat", 200),),
    )


@pytest.fixture
def host(tmp_path):
    """The addon loaded in taddons, with the relay's relay_state option declared beside it."""
    usage = Usage(status=lambda: (True, ["deepseek"]))
    with taddons.context(usage) as tctx:
        tctx.options.add_option("relay_state", str, "sqlite", "declared by the relay")
        yield usage, tctx
        usage.done()


def test_exchanges_reach_the_ledger_and_the_metrics(host, tmp_path):
    usage, tctx = host
    tctx.configure(usage, confdir=str(tmp_path), relay_state="sqlite")
    assert usage.writer is not None
    usage.mitmrelay_exchange_started("resp_1", "gpt-5.5", True)
    assert usage.metrics.active_streams._value.get() == 1
    usage.mitmrelay_exchange_ended(outcome())
    assert usage.metrics.active_streams._value.get() == 0
    assert usage.writer.flush()
    store = open_ledger("sqlite", confdir=tmp_path, read_only=True)
    (row,) = store.records(0, time.time() + 1)
    store.close()
    assert (row["response_id"], row["input_tokens"], row["output_tokens"]) == ("resp_1", 10, 2)


@pytest.mark.parametrize(("state", "days"), [("memory", 90), ("sqlite", 0)])
def test_no_ledger_for_memory_state_or_zero_days(host, tmp_path, caplog, state, days):
    usage, tctx = host
    tctx.configure(usage, confdir=str(tmp_path), relay_state=state, relay_usage_days=str(days))
    assert usage.writer is None
    usage.mitmrelay_exchange_ended(outcome())  # still counted by the metrics
    assert usage.metrics.requests._metrics  # one labelled child exists
    caplog.set_level(logging.INFO, logger="mitmrelay.usage")
    usage.running()
    assert "usage ledger off; metrics off" in caplog.text


def test_metrics_port_serves_and_the_start_line_names_it(host, tmp_path, caplog):
    usage, tctx = host
    tctx.configure(usage, confdir=str(tmp_path), relay_metrics_port="0")
    caplog.set_level(logging.INFO, logger="mitmrelay.usage")
    usage.running()
    url = usage.server.url
    assert f"metrics {url}/metrics and /healthz" in caplog.text
    assert f"usage ledger {tmp_path}/mitmrelay-state.sqlite3, 90 days" in caplog.text
    assert httpx.get(f"{url}/healthz", timeout=10).json()["providers"] == {
        "deepseek": {
            "reachable": None,
            "last_attempt_s_ago": None,
            "last_status": None,
            "last_failure": None,
        }
    }
    tctx.configure(usage, relay_metrics_port="")  # switched off at run time
    assert usage.server is None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/metrics", timeout=2)


def test_errors_before_running_are_one_error_line(host, caplog):
    usage, tctx = host
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    tctx.configure(usage, relay_metrics_port=str(port))
    caplog.set_level(logging.INFO, logger="mitmrelay.usage")
    usage.running()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        f"mitmrelay: relay_metrics_port: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
    assert errors[0].exc_info is None
    taken.close()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("relay_usage_days", "-1", "relay_usage_days must be 0 (no ledger) or more"),
        ("relay_metrics_port", "70000", "relay_metrics_port must be 0-65535, got 70000"),
    ],
)
def test_errors_once_running_refuse_the_change(host, option, value, message):
    usage, tctx = host
    usage.running()
    with pytest.raises(exceptions.OptionsError, match=re.escape(message)):
        tctx.configure(usage, **{option: value})
