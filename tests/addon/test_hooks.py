"""The addon's hooks driven directly with mitmproxy's taddons, as mitmproxy tests its own."""

from __future__ import annotations

import asyncio
import json

import pytest
from mitmproxy import exceptions, http
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy import mode_specs
from mitmproxy.test import taddons, tflow, tutils

from mitmrelay.addon import Relay
from mitmrelay.core.routing import Route
from mitmrelay.link import JOB_HEADER

CLIENT_KEY = "sk-client-openai-key"


def responses_flow(body: dict, *, host: str = "api.openai.com") -> http.HTTPFlow:
    f = tflow.tflow(
        req=tutils.treq(
            method=b"POST",
            scheme=b"https",
            host=host,
            port=443,
            path=b"/v1/responses",
            headers=http.Headers(
                host=host, content_type="application/json", authorization=f"Bearer {CLIENT_KEY}"
            ),
            content=json.dumps(body).encode(),
        )
    )
    f.client_conn.proxy_mode = mode_specs.ProxyMode.parse("regular")
    return f


class ExplodingRelay(Relay):
    """A fault injected below the hook: the model mapping raises."""

    def _upstream_model(self, client_model: str) -> str:
        raise RuntimeError("boom " + CLIENT_KEY)


def test_exception_in_request_answers_locally_and_never_forwards(tmp_path):
    relay = ExplodingRelay()
    with taddons.context(relay) as tctx:
        tctx.configure(relay, confdir=str(tmp_path), relay_upstream="https://llm.example/v1")
        f = responses_flow({"model": "gpt-5.5", "input": "hi"})
        asyncio.run(relay.request(f))
    assert f.response is not None and f.response.status_code == 500
    assert CLIENT_KEY not in f.response.text  # the exception text is not echoed
    assert f.response.json()["error"]["code"] == "server_error"


def test_reroute_sends_the_chat_request_to_the_link_which_holds_the_key(monkeypatch, tmp_path):
    monkeypatch.setenv("CODEX_RELAY_API_KEY", "sk-relay")
    relay = Relay()
    with taddons.context(relay) as tctx:
        tctx.configure(
            relay, relay_upstream="http://127.0.0.1:9/api/v1", relay_model="deepseek-chat"
        )
        f = responses_flow({"model": "gpt-5.5", "input": "hi", "stream": True})
        relay._relay(f)
    exchange = relay.exchanges[f.id]
    job = exchange.link_job
    assert job is not None and job.url.geturl() == "http://127.0.0.1:9/api/v1/chat/completions"
    assert job.headers == {"authorization": "Bearer sk-relay"}
    assert job.translator is not None  # the link translates the stream
    # The flow goes to the loopback link; neither key is on it (mitmweb shows flows, -w saves).
    assert (f.request.host, f.request.path) == ("127.0.0.1", "/api/v1/chat/completions")
    assert f.request.headers[JOB_HEADER] == exchange.link_token
    assert "sk-relay" not in str(f.request.headers) and CLIENT_KEY not in str(f.request.headers)
    # The Chat body goes to the link in memory, not through mitmproxy's loopback hop.
    assert f.request.content == b"" and json.loads(job.sent_body)["model"] == "deepseek-chat"
    assert f.metadata["mitmrelay"]["upstream_model"] == "deepseek-chat"
    # The client's request is kept as it was sent, for inspection.
    assert exchange.client_request is not None
    assert exchange.client_request.path == "/v1/responses"


def test_lazy_connection_strategy_is_forced(tmp_path):
    relay = Relay()
    with taddons.context(Proxyserver(), relay) as tctx:
        tctx.configure(relay, confdir=str(tmp_path), relay_upstream="https://llm.example/v1")
        assert tctx.options.connection_strategy == "lazy"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("relay_upstream", "ftp://x", r"http\(s\) URL"),
        ("relay_reasoning", "loud", "summary, raw, hidden"),
        ("relay_profile", "nope", "unknown"),
        ("relay_model_map", ["justone"], "client=upstream"),
        ("relay_hosts", ["/v1"], "relay_hosts"),
    ],
)
def test_bad_options_are_rejected(option, value, message, tmp_path):
    relay = Relay()
    with taddons.context(relay) as tctx, pytest.raises(exceptions.OptionsError, match=message):
        tctx.configure(relay, confdir=str(tmp_path), **{option: value})


def test_unrelated_flow_is_untouched(tmp_path):
    relay = Relay()
    with taddons.context(relay) as tctx:
        tctx.configure(relay, confdir=str(tmp_path), relay_upstream="https://llm.example/v1")
        f = responses_flow({"model": "m", "input": "x"}, host="example.com")
        asyncio.run(relay.request(f))
    assert f.response is None and f.request.host == "example.com"
    assert f.request.headers["authorization"] == f"Bearer {CLIENT_KEY}"


@pytest.mark.parametrize("mode", ["transparent", "wireguard", "local"])
def test_ip_addressed_modes_match_by_pretty_host(mode, tmp_path):
    # In transparent, wireguard and local modes request.host is an IP; Host / SNI name the
    # service (mitmproxy-notes §2).
    relay = Relay()
    with taddons.context(relay) as tctx:
        tctx.configure(relay, confdir=str(tmp_path), relay_upstream="http://127.0.0.1:9/v1")
        f = responses_flow({"model": "m", "input": "x"}, host="127.0.0.2")
        f.request.headers["host"] = "api.openai.com"
        f.client_conn.proxy_mode = mode_specs.ProxyMode.parse(mode)
        assert f.request.pretty_host == "api.openai.com"
        assert relay._route(f) is Route.RESPONSES
        relay._relay(f)
    job = relay.exchanges[f.id].link_job
    assert job is not None and job.url.geturl() == "http://127.0.0.1:9/v1/chat/completions"
    assert CLIENT_KEY not in str(f.request.headers)
