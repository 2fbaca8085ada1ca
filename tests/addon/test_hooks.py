"""The addon's hooks driven directly with mitmproxy's taddons, as mitmproxy tests its own."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

import pytest
from mitmproxy import exceptions, http
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy import mode_specs
from mitmproxy.test import taddons, tflow, tutils

from mitmrelay.addon import Relay
from mitmrelay.core.outcome import ExchangeOutcome
from mitmrelay.core.routing import Route
from mitmrelay.link import JOB_HEADER

CLIENT_KEY = "sk-client-openai-key"
ROUTES = """
[providers.deepseek]
base_url = "http://127.0.0.1:9/deepseek/v1"
api_key_env = "HOOKS_DS_KEY"

[providers.kimi]
base_url = "http://127.0.0.1:9/kimi/v1"
api_key_env = "HOOKS_KIMI_KEY"

[models."deepseek-chat"]
provider = "deepseek"

[models."kimi-k2"]
provider = "kimi"
upstream_model = "kimi-k2-thinking"
"""


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("HOOKS_DS_KEY", "sk-ds-secret")
    monkeypatch.setenv("HOOKS_KIMI_KEY", "sk-kimi-secret")


def responses_flow(body: dict, *, host: str = "api.openai.com") -> http.HTTPFlow:
    f = tflow.tflow(
        req=tutils.treq(
            method=b"POST",
            scheme=b"https",
            host=host,
            port=443,
            path=b"/v1/responses",
            headers=http.Headers(
                host=host,
                content_type="application/json",
                authorization=f"Bearer {CLIENT_KEY}",
                session_id="s-1",
                x_codex_turn_metadata="{}",
            ),
            content=json.dumps(body).encode(),
        )
    )
    f.client_conn.proxy_mode = mode_specs.ProxyMode.parse("regular")
    return f


class Outcomes:
    """Another addon, as the usage ledger is: it gets every exchange's outcome."""

    def __init__(self) -> None:
        self.ended: list[ExchangeOutcome] = []
        self.started: list[tuple[str, str, bool]] = []

    def mitmrelay_exchange_started(self, response_id: str, client_model: str, stream: bool):
        self.started.append((response_id, client_model, stream))

    def mitmrelay_exchange_ended(self, outcome: ExchangeOutcome) -> None:
        self.ended.append(outcome)


class ExplodingRelay(Relay):
    """A fault injected below the hook: handing the flow to the link raises."""

    def _to_link(self, *args, **kwargs):
        raise RuntimeError("boom " + CLIENT_KEY)


def test_exception_in_request_answers_locally_and_never_forwards(tmp_path):
    relay, outcomes = ExplodingRelay(), Outcomes()
    with taddons.context(relay, outcomes) as tctx:
        tctx.configure(relay, confdir=str(tmp_path), relay_upstream="https://llm.example/v1")
        f = responses_flow({"model": "gpt-5.5", "input": "hi"})
        asyncio.run(relay.request(f))
    assert f.response is not None and f.response.status_code == 500
    assert CLIENT_KEY not in f.response.text  # the exception text is not echoed
    assert f.response.json()["error"]["code"] == "server_error"
    assert f.request.headers["authorization"] == "[hidden by mitmrelay]"
    assert relay.flights == {}
    # Still one exchange, announced and ended, for every consumer.
    (outcome,) = outcomes.ended
    assert (outcome.status, outcome.failure, outcome.client_model) == (
        "http 500",
        "server_error",
        "gpt-5.5",
    )
    assert [r for r, _, _ in outcomes.started] == [outcome.response_id]


def test_reroute_sends_the_chat_request_to_the_link_which_holds_the_key(monkeypatch, tmp_path):
    monkeypatch.setenv("CODEX_RELAY_API_KEY", "sk-relay")
    relay = Relay()
    with taddons.context(relay) as tctx:
        tctx.configure(
            relay,
            confdir=str(tmp_path),
            relay_upstream="http://127.0.0.1:9/api/v1",
            relay_model="deepseek-chat",
        )
        f = responses_flow({"model": "gpt-5.5", "input": "hi", "stream": True})
        asyncio.run(relay.request(f))
    flight = relay.flights[f.id]
    job = flight.job
    assert job.url.geturl() == "http://127.0.0.1:9/api/v1/chat/completions"
    assert job.headers == {"authorization": "Bearer sk-relay"}
    assert job.translator is not None  # the link translates the stream
    # The flow goes to the loopback link; neither key is on it (mitmweb shows flows, -w saves).
    assert (f.request.host, f.request.path) == ("127.0.0.1", "/api/v1/chat/completions")
    assert f.request.headers[JOB_HEADER] == flight.token
    assert "sk-relay" not in str(f.request.headers) and CLIENT_KEY not in str(f.request.headers)
    assert "session-id" not in f.request.headers
    assert "x-codex-turn-metadata" not in f.request.headers
    # The Chat body goes to the link in memory, not through mitmproxy's loopback hop.
    assert f.request.content == b"" and json.loads(job.sent_body)["model"] == "deepseek-chat"
    meta = f.metadata["mitmrelay"]
    assert (meta["upstream_model"], meta["provider"]) == ("deepseek-chat", "127.0.0.1")
    # The client's request is kept as it was sent, for inspection.
    assert flight.client_request.path == "/v1/responses"


def sent_model(relay: Relay, f: http.HTTPFlow) -> str:
    return json.loads(relay.flights[f.id].job.sent_body)["model"]


def write_routes(tmp_path: Path, text: str = ROUTES) -> Path:
    path = tmp_path / "routes.toml"
    path.write_text(text)
    return path


@pytest.mark.usefixtures("keys")
def test_each_model_goes_to_its_own_provider_with_its_own_key(tmp_path):
    relay, outcomes = Relay(), Outcomes()
    with taddons.context(relay, outcomes) as tctx:
        tctx.configure(relay, confdir=str(tmp_path), relay_routes=str(write_routes(tmp_path)))
        sent = {}
        for model in ("deepseek-chat", "kimi-k2"):
            f = responses_flow({"model": model, "input": "hi", "stream": True})
            asyncio.run(relay.request(f))
            job = relay.flights[f.id].job
            sent[model] = (job, json.loads(job.sent_body)["model"])
    ds_job, ds_model = sent["deepseek-chat"]
    kimi_job, kimi_model = sent["kimi-k2"]
    assert ds_job.url.path == "/deepseek/v1/chat/completions" and ds_model == "deepseek-chat"
    assert ds_job.headers == {"authorization": "Bearer sk-ds-secret"}
    assert kimi_job.url.path == "/kimi/v1/chat/completions" and kimi_model == "kimi-k2-thinking"
    assert kimi_job.headers == {"authorization": "Bearer sk-kimi-secret"}
    assert [(m, s) for _, m, s in outcomes.started] == [("deepseek-chat", True), ("kimi-k2", True)]


@pytest.mark.usefixtures("keys")
def test_an_unrouted_model_is_a_400_naming_it_and_the_routes(tmp_path):
    relay, outcomes = Relay(), Outcomes()
    with taddons.context(relay, outcomes) as tctx:
        tctx.configure(relay, confdir=str(tmp_path), relay_routes=str(write_routes(tmp_path)))
        f = responses_flow({"model": "gpt-5.5", "input": "hi"})
        asyncio.run(relay.request(f))
    assert f.response is not None and f.response.status_code == 400
    error = f.response.json()["error"]
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert "'gpt-5.5'" in error["message"] and "deepseek-chat, kimi-k2" in error["message"]
    (outcome,) = outcomes.ended
    assert (outcome.status, outcome.failure, outcome.provider) == (
        "http 400",
        "model_not_found",
        "",
    )
    assert f.comment.startswith("mitmrelay: gpt-5.5 -> - | http 400")


@pytest.mark.usefixtures("keys")
def test_the_models_list_is_the_routed_names_without_an_upstream_call(tmp_path):
    relay = Relay()
    with taddons.context(relay) as tctx:
        tctx.configure(relay, confdir=str(tmp_path), relay_routes=str(write_routes(tmp_path)))
        f = responses_flow({})
        f.request.method, f.request.path = "GET", "/v1/models"
        f.client_conn.proxy_mode = mode_specs.ProxyMode.parse("reverse:http://127.0.0.1:1")
        asyncio.run(relay.request(f))
    assert f.response is not None
    assert [m["id"] for m in f.response.json()["data"]] == ["deepseek-chat", "kimi-k2"]


@pytest.mark.usefixtures("keys")
def test_a_changed_routes_file_applies_to_the_next_request(tmp_path, caplog):
    caplog.set_level(logging.INFO, "mitmrelay")
    routes = write_routes(tmp_path)
    relay = Relay()
    with taddons.context(relay) as tctx:
        tctx.configure(relay, confdir=str(tmp_path), relay_routes=str(routes))
        routes.write_text(ROUTES.replace('upstream_model = "kimi-k2-thinking"', ""))
        os.utime(routes, ns=(1, 1))  # a new mtime even within the clock's resolution
        f = responses_flow({"model": "kimi-k2", "input": "hi"})
        asyncio.run(relay.request(f))
        assert sent_model(relay, f) == "kimi-k2"
        assert "changed; routes in force" in caplog.text
        # A broken edit: said once, and the last good table stays.
        routes.write_text(ROUTES + '\n[models."x"]\nprovider = "nobody"\n')
        for _ in range(3):
            f = responses_flow({"model": "kimi-k2", "input": "hi"})
            asyncio.run(relay.request(f))
            assert sent_model(relay, f) == "kimi-k2"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert 'unknown provider "nobody"' in warnings[0].getMessage()
    assert "the previous routes stay in force" in warnings[0].getMessage()


def test_the_start_line_says_which_options_a_routes_file_overrides(tmp_path, keys, caplog):
    caplog.set_level(logging.INFO, "mitmrelay")
    relay = Relay()
    with taddons.context(relay) as tctx:
        tctx.configure(
            relay,
            confdir=str(tmp_path),
            relay_routes=str(write_routes(tmp_path)),
            relay_upstream="https://llm.example/v1",
            relay_model="x",
        )
        relay.running()
    (line,) = [r.getMessage() for r in caplog.records if "routes from" in r.getMessage()]
    assert "relay_upstream, relay_model ignored (relay_routes is set)" in line
    assert (
        "deepseek = http://127.0.0.1:9/deepseek/v1 (profile generic, key $HOOKS_DS_KEY set)" in line
    )
    assert "kimi-k2 -> kimi:kimi-k2-thinking" in line
    assert "sk-ds-secret" not in caplog.text and "sk-kimi-secret" not in caplog.text


def test_lazy_connection_strategy_is_forced(tmp_path):
    relay = Relay()
    with taddons.context(Proxyserver(), relay) as tctx:
        tctx.configure(relay, confdir=str(tmp_path), relay_upstream="https://llm.example/v1")
        assert tctx.options.connection_strategy == "lazy"


BAD_OPTIONS = [
    ("relay_upstream", "ftp://x", r"relay_upstream: must be an http\(s\) URL"),
    ("relay_reasoning", "loud", "summary, raw, hidden"),
    ("relay_profile", "nope", "unknown"),
    ("relay_model_map", ["justone"], "client=upstream"),
    ("relay_hosts", ["/v1"], "relay_hosts"),
    ("relay_timeout", "0", "relay_timeout must be a positive"),
    ("relay_timeout", "1.5s", "relay_timeout must be a positive number of seconds, got .1.5s."),
    ("relay_history_entries", "1.5", "relay_history_entries must be a positive whole number"),
    ("relay_state_deadline_ms", "nan", "relay_state_deadline_ms must be a positive number"),
    ("relay_retry_wait", "-1", "relay_retry_wait must be 0"),
    ("relay_history_ttl", "0", "relay_history_ttl must be a positive"),
    ("relay_state", "mongodb://x", "relay_state"),
    ("relay_routes", "/nonexistent/routes.toml", "routes.toml: cannot be read"),
]


@pytest.mark.parametrize(("option", "value", "message"), BAD_OPTIONS)
def test_bad_options_at_start_are_one_error_line_and_no_traceback(
    option, value, message, tmp_path, caplog
):
    relay = Relay()
    with taddons.context(relay) as tctx:
        tctx.configure(relay, confdir=str(tmp_path), **{option: value})  # does not raise
        relay.running()
    (error,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert error.exc_info is None
    assert "\n" not in error.getMessage()
    assert __import__("re").search(message, error.getMessage())


@pytest.mark.parametrize(("option", "value", "message"), BAD_OPTIONS)
def test_bad_option_changes_while_running_are_refused(option, value, message, tmp_path):
    relay = Relay()
    with taddons.context(relay) as tctx:
        tctx.configure(relay, confdir=str(tmp_path), relay_upstream="https://llm.example/v1")
        relay.running()
        with pytest.raises(exceptions.OptionsError, match=message):
            tctx.configure(relay, **{option: value})
        assert relay.config is not None and relay.config.routes is not None


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
    # service (docs/mitmproxy-notes.md §2).
    relay = Relay()
    with taddons.context(relay) as tctx:
        tctx.configure(relay, confdir=str(tmp_path), relay_upstream="http://127.0.0.1:9/v1")
        f = responses_flow({"model": "m", "input": "x"}, host="127.0.0.2")
        f.request.headers["host"] = "api.openai.com"
        f.client_conn.proxy_mode = mode_specs.ProxyMode.parse(mode)
        assert f.request.pretty_host == "api.openai.com"
        assert relay._route(f) is Route.RESPONSES
        asyncio.run(relay.request(f))
    job = relay.flights[f.id].job
    assert job.url.geturl() == "http://127.0.0.1:9/v1/chat/completions"
    assert CLIENT_KEY not in str(f.request.headers)


COMPLETION = {
    "id": "c1",
    "object": "chat.completion",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
}


@pytest.mark.usefixtures("keys")
def test_an_answered_exchange_ends_in_one_outcome_and_is_kept(tmp_path):
    relay, outcomes = Relay(), Outcomes()
    with taddons.context(relay, outcomes) as tctx:
        tctx.configure(
            relay,
            confdir=str(tmp_path),
            relay_routes=str(write_routes(tmp_path)),
            relay_state="memory",
        )
        f = responses_flow({"model": "kimi-k2", "input": "hi"})
        asyncio.run(relay.request(f))
        # What the link passes on for a whole (non-streamed) answer.
        f.response = http.Response.make(
            200, json.dumps(COMPLETION), {"content-type": "application/json"}
        )
        relay.responseheaders(f)
        relay.response(f)
        assert f.response.json()["output"][0]["content"][0]["text"] == "hello"
        (outcome,) = outcomes.ended
        assert (outcome.status, outcome.provider, outcome.upstream_model) == (
            "completed",
            "kimi",
            "kimi-k2-thinking",
        )
        assert outcome.usage["input_tokens"] == 7 and outcome.first_event_s is not None
        assert (
            f.comment
            == "mitmrelay: kimi-k2 -> kimi-k2-thinking | completed | 7 in / 2 out | via kimi"
        )
        assert f.request.path == "/v1/responses"  # the client's leg, its key hidden
        assert f.request.headers["authorization"] == "[hidden by mitmrelay]"
        # The conversation is kept for previous_response_id.
        g = responses_flow(
            {"model": "kimi-k2", "input": "and?", "previous_response_id": outcome.response_id}
        )
        asyncio.run(relay.request(g))
        sent = json.loads(relay.flights[g.id].job.sent_body)["messages"]
        assert [m["role"] for m in sent] == ["user", "assistant", "user"]
        relay.error(g)  # the client went away
    assert outcomes.ended[-1].status == "failed" and outcomes.ended[-1].failure == "flow_error"
    assert g.marked == ":x:"
