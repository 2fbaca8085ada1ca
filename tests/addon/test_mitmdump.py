"""The relay as users run it: a real ``mitmdump -s addon/relay.py`` subprocess, a scripted
fake Chat upstream, and the official openai SDK (or plain httpx) as the client."""

from __future__ import annotations

import contextlib
import json
import ssl
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from support.fake_upstream import FakeUpstream, Reply, error, text, tool_call
from support.mitm import MITMDUMP, RELAY_SCRIPT, MitmRelay

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "codex-0.169"
CLIENT_KEY = "sk-client-openai-key-must-never-leave"


def codex_body(name: str, **overrides) -> dict:
    body = json.loads((FIXTURES / name).read_text())["body"]
    body.update(overrides)
    return body


@pytest.fixture(scope="module")
def upstream():
    with FakeUpstream(key="sk-relay") as up:
        yield up


@pytest.fixture(scope="module")
def relay(upstream, tmp_path_factory):
    with MitmRelay(tmp_path_factory.mktemp("confdir"), upstream.url) as r:
        yield r


@pytest.fixture
def client(relay):
    return openai.OpenAI(api_key=CLIENT_KEY, base_url=f"{relay.url}/v1", max_retries=0)


def sse_events(body: bytes) -> list[dict]:
    return [
        json.loads(line[6:]) for line in body.decode().splitlines() if line.startswith("data: ")
    ]


def post_through_proxy(relay: MitmRelay, **request: Any) -> httpx.Response:
    """An unmodified client's Responses call to api.openai.com, through ``relay`` as its
    HTTPS proxy, trusting the relay's CA."""
    ca = ssl.create_default_context(cafile=str(relay.ca))
    with httpx.Client(proxy=relay.url, verify=ca, timeout=30) as c:
        return c.post(
            "https://api.openai.com/v1/responses",
            json={"model": "gpt-5.5", "input": "hi", "stream": True},
            **request,
        )


@contextlib.contextmanager
def behind_corporate_proxy(
    tmp_path: Path, upstream_url: str, corp: dict[str, str], relay: dict[str, str] | None = None
) -> Iterator[tuple[MitmRelay, MitmRelay]]:
    """A relay in ``--mode upstream:`` whose corporate proxy is another mitmdump logging flows
    (``corp``: its extra options); yields (corp, relay)."""
    with (
        MitmRelay(
            tmp_path / "corp",
            "http://127.0.0.1:1/v1",
            mode="regular",
            options={"flow_detail": "1", **corp},
        ) as corp_proxy,
        MitmRelay(
            tmp_path / "relay", upstream_url, mode=f"upstream:{corp_proxy.url}", options=relay
        ) as relayed,
    ):
        yield corp_proxy, relayed


def final_text(body: bytes) -> str:
    """The text of the first output item of the stream's terminal response."""
    return sse_events(body)[-1]["response"]["output"][0]["content"][0]["text"]


def test_sdk_stream_text_through_real_mitmdump(upstream, client):
    upstream.enqueue(text("Hello", " from", " upstream", reasoning="thinking hard"))
    with client.responses.stream(model="deepseek-chat", input="hi") as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert final.output_text == "Hello from upstream"
    assert final.output[0].type == "reasoning"
    assert final.usage.input_tokens == 100
    assert "response.reasoning_summary_text.delta" in kinds
    sent = upstream.requests[-1]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["authorization"] == "Bearer sk-relay"
    assert sent["json"]["stream_options"] == {"include_usage": True}


def test_sdk_create_non_streaming(upstream, client):
    upstream.enqueue(tool_call("exec_command", {"cmd": "ls"}))
    response = client.responses.create(model="deepseek-chat", input="list")
    assert response.output[0].type == "function_call"
    assert json.loads(response.output[0].arguments) == {"cmd": "ls"}
    assert upstream.chat_requests()[-1].get("stream") is None


def test_real_codex_request_is_translated(upstream, relay):
    upstream.enqueue(tool_call("apply_patch", {"input": "*** Begin Patch\n*** End Patch\n"}))
    body = codex_body("05-custom_tool_call-and-output.request.json")
    r = httpx.post(
        f"{relay.url}/v1/responses",
        json=body,
        timeout=30,
        headers={
            "authorization": f"Bearer {CLIENT_KEY}",
            "x-codex-turn-metadata": "{}",
            "session-id": "s1",
        },
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    done = [e["item"] for e in sse_events(r.content) if e["type"] == "response.output_item.done"]
    assert done == [
        {
            **done[0],
            "type": "custom_tool_call",
            "name": "apply_patch",
            "input": "*** Begin Patch\n*** End Patch\n",
        }
    ]
    sent = upstream.requests[-1]
    assert sent["json"]["model"] == "gpt-5.5"  # no mapping configured: the client's model
    assert sent["json"]["messages"][0]["content"].startswith("You are Codex")
    for header in ("session-id", "x-codex-turn-metadata"):
        assert header not in sent["headers"]
    assert CLIENT_KEY not in json.dumps(sent["headers"])


def test_zstd_request_body(upstream, relay):
    zstd = pytest.importorskip("backports.zstd")
    upstream.enqueue(text("z"))
    raw = json.dumps({"model": "m", "input": "hi", "stream": True}).encode()
    r = httpx.post(
        f"{relay.url}/v1/responses",
        content=zstd.compress(raw),
        timeout=30,
        headers={"content-type": "application/json", "content-encoding": "zstd"},
    )
    assert r.status_code == 200
    assert sse_events(r.content)[-1]["type"] == "response.completed"
    assert upstream.chat_requests()[-1]["messages"] == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("reply", "status", "code", "retry_after"),
    [
        (
            error(
                429,
                {"error": {"message": "Rate limit reached", "type": "requests"}},
                {"retry-after": "7"},
            ),
            429,
            "rate_limit_exceeded",
            "7",
        ),
        (
            error(
                400,
                {
                    "object": "error",
                    "message": "This model's maximum context length is "
                    "8192 tokens. However, you requested 9000 tokens.",
                    "type": "BadRequestError",
                    "param": None,
                    "code": 400,
                },
            ),
            400,
            "context_length_exceeded",
            None,
        ),
        (
            error(402, {"error": {"message": "Insufficient Balance"}}),
            429,
            "insufficient_quota",
            None,
        ),
        (error(500, "upstream exploded"), 500, "server_error", None),
    ],
)
def test_upstream_errors_are_mapped(upstream, relay, reply, status, code, retry_after):
    upstream.enqueue(reply)
    r = httpx.post(
        f"{relay.url}/v1/responses", json={"model": "m", "input": "x", "stream": True}, timeout=30
    )
    assert r.status_code == status
    assert r.json()["error"]["code"] == code
    assert r.headers.get("retry-after") == retry_after


def test_cut_stream_is_failed_not_truncated(upstream, relay):
    upstream.enqueue(Reply(chunks=[{"content": "half"}], cut=True))
    r = httpx.post(
        f"{relay.url}/v1/responses", timeout=30, json={"model": "m", "input": "x", "stream": True}
    )
    events = sse_events(r.content)  # a complete HTTP body: httpx read it to the end
    assert [e["type"] for e in events].count("response.completed") == 0
    assert events[-1]["type"] == "response.failed"
    error = events[-1]["response"]["error"]
    assert error["code"] == "server_error"  # Codex retries it (docs/codex-contract.md §8)
    assert "closed the connection mid-answer" in error["message"]


def test_thinking_upstream_keeps_the_client_informed(tmp_path):
    """A model silent for 3 s after its headers: the client hears response.created at once and
    response.in_progress every relay_keepalive second, then the answer (the SDK accepts the
    whole stream)."""
    with (
        FakeUpstream() as up,
        MitmRelay(tmp_path, up.url, options={"relay_keepalive": "1"}) as relay,
    ):
        up.enqueue(Reply(chunks=[{"content": "considered"}], think_s=3.2))
        client = openai.OpenAI(api_key=CLIENT_KEY, base_url=f"{relay.url}/v1", max_retries=0)
        with client.responses.stream(model="m", input="think") as stream:
            kinds = [e.type for e in stream]
            final = stream.get_final_response()
    assert final.output_text == "considered"
    first_delta = kinds.index("response.output_text.delta")
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[:first_delta].count("response.in_progress") >= 3  # the first + keep-alives
    assert kinds[-1] == "response.completed"


@pytest.mark.parametrize(
    ("reply", "timeout", "code", "phrase"),
    [
        # Headers later than the link waits: it commits to SSE, so the 429 arrives as an event.
        (
            Reply(
                status=429,
                body=b'{"error":{"message":"Rate limit reached. Please try again in 20s."}}',
                delay_s=3,
            ),
            "10",
            "rate_limit_exceeded",
            "try again in 20s",
        ),
        # Silent after its headers for longer than relay_timeout.
        (Reply(chunks=[{"content": "x"}], think_s=30), "2", "server_error", "sent nothing"),
    ],
    ids=["late-429", "idle-mid-stream"],
)
def test_failures_after_the_answer_started_are_response_failed(
    tmp_path, reply, timeout, code, phrase
):
    with (
        FakeUpstream() as up,
        MitmRelay(
            tmp_path, up.url, options={"relay_keepalive": "1", "relay_timeout": timeout}
        ) as relay,
    ):
        up.enqueue(reply)
        r = httpx.post(
            f"{relay.url}/v1/responses",
            timeout=30,
            json={"model": "m", "input": "x", "stream": True},
        )
    events = sse_events(r.content)
    assert r.status_code == 200 and events[0]["type"] == "response.created"
    assert events[-1]["type"] == "response.failed"
    error = events[-1]["response"]["error"]
    assert error["code"] == code and phrase in error["message"]


def test_gzip_stream_from_an_upstream_that_ignored_identity(upstream, client):
    upstream.enqueue(Reply(chunks=[{"content": "unzipped"}], gzip=True))
    with client.responses.stream(model="m", input="x") as stream:
        assert stream.get_final_response().output_text == "unzipped"


def test_invalid_body_is_answered_locally(upstream, relay):
    before = len(upstream.requests)
    r = httpx.post(
        f"{relay.url}/v1/responses",
        timeout=30,
        json={
            "model": "m",
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_image", "image_url": 5}],
                }
            ],
        },
    )
    assert r.status_code == 400
    assert "input[0].content[0].image_url" in r.json()["error"]["message"]
    assert len(upstream.requests) == before


def test_websocket_upgrade_gets_426_and_other_paths_404(relay):
    r = httpx.get(
        f"{relay.url}/v1/responses",
        timeout=30,
        headers={"upgrade": "websocket", "connection": "upgrade"},
    )
    assert r.status_code == 426
    r = httpx.post(f"{relay.url}/v1/embeddings", json={}, timeout=30)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_models_list_for_sdk(upstream, client):
    assert [m.id for m in client.models.list()] == ["deepseek-chat", "deepseek-reasoner"]


def test_twenty_concurrent_streams(upstream, relay):
    def one(i: int) -> str:
        c = openai.OpenAI(api_key="k", base_url=f"{relay.url}/v1", max_retries=0)
        with c.responses.stream(model="m", input=f"echo {i}") as s:
            return s.get_final_response().output_text

    upstream.brain = lambda req: text("echo:", req["messages"][-1]["content"])
    try:
        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(one, range(20)))
    finally:
        upstream.brain = None
    assert results == [f"echo:echo {i}" for i in range(20)]


def test_unreachable_upstream_is_a_retryable_json_error(tmp_path):
    with MitmRelay(tmp_path, "http://127.0.0.1:1/v1") as r:
        resp = httpx.post(
            f"{r.url}/v1/responses", json={"model": "m", "input": "x", "stream": True}, timeout=30
        )
    assert resp.status_code == 502
    assert resp.json()["error"]["code"] == "server_error"


def test_proxy_mode_relays_openai_and_passes_other_traffic(upstream, tmp_path):
    with (
        FakeUpstream() as other,
        MitmRelay(
            tmp_path, upstream.url, mode="regular", options={"relay_model": "deepseek-chat"}
        ) as r,
    ):
        upstream.enqueue(text("proxied"))
        resp = post_through_proxy(r, headers={"authorization": f"Bearer {CLIENT_KEY}"})
        assert resp.status_code == 200
        assert final_text(resp.content) == "proxied"
        ca = ssl.create_default_context(cafile=str(r.ca))
        with httpx.Client(proxy=r.url, verify=ca, timeout=30) as c:
            ws = c.get(
                "https://api.openai.com/v1/responses",
                headers={"upgrade": "websocket", "connection": "upgrade"},
            )
            assert ws.status_code == 426
            # unrelated traffic goes through untouched
            untouched = c.get(f"{other.url}/models")
            assert untouched.status_code == 200
        sent = upstream.requests[-1]
        assert sent["json"]["model"] == "deepseek-chat"
        assert sent["headers"]["authorization"] == "Bearer sk-relay"
        assert other.requests[-1]["path"] == "/v1/models"


def test_upstream_proxy_mode_reaches_the_upstream_through_that_proxy(upstream, tmp_path):
    """--mode upstream:http://corp-proxy: the link goes through the proxy, as mitmproxy would
    (here the corporate proxy is another mitmdump, passing everything through)."""
    with behind_corporate_proxy(tmp_path, upstream.url, corp={}) as (corp, relay):
        upstream.enqueue(text("via the proxy"))
        assert final_text(post_through_proxy(relay).content) == "via the proxy"
        assert corp.wait_for_text(f"POST {upstream.url}/chat/completions")


def test_missing_upstream_fails_at_start(tmp_path):
    proc = subprocess.run(
        [
            str(MITMDUMP),
            "--mode",
            "reverse:http://127.0.0.1:1@127.0.0.1:0",
            "--set",
            f"confdir={tmp_path}",
            "-s",
            str(RELAY_SCRIPT),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert proc.returncode != 0
    assert "relay_upstream" in proc.stdout + proc.stderr


def test_unknown_previous_response_id_is_answered_like_openai(upstream, relay):
    before = len(upstream.requests)
    r = httpx.post(
        f"{relay.url}/v1/responses",
        timeout=30,
        json={"model": "m", "input": "x", "previous_response_id": "resp_unknown"},
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "previous_response_not_found"
    assert len(upstream.requests) == before


def _reasoning_items(body: bytes) -> list[dict]:
    return [
        e["item"]
        for e in sse_events(body)
        if e["type"] == "response.output_item.done" and e["item"]["type"] == "reasoning"
    ]


@pytest.mark.parametrize("state", ["memory", "sqlite", "redis"])
def test_sealed_reasoning_survives_a_relay_restart(upstream, tmp_path, state, request, monkeypatch):
    # A DeepSeek-rule tool loop across a relay restart, whatever the state backend: the
    # reasoning rides sealed in the item the client replays.
    options = {"relay_state": request.getfixturevalue("redis_url") if state == "redis" else state}
    monkeypatch.setattr(upstream, "deepseek_reasoning_rule", True)
    confdir = tmp_path / "conf"
    upstream.enqueue(
        tool_call(
            "exec_command", {"cmd": "ls"}, call_id="call_r", reasoning="private chain of thought"
        )
    )
    with MitmRelay(
        confdir, upstream.url, key="sk-relay", options={"relay_reasoning": "hidden"}
    ) as first:
        r = httpx.post(
            f"{first.url}/v1/responses",
            timeout=30,
            json={"model": "m", "input": "go", "stream": True},
        )
    (item,) = _reasoning_items(r.content)
    assert item["encrypted_content"].startswith("mr1.")
    assert "private chain" not in item["encrypted_content"]
    call = next(
        e["item"]
        for e in sse_events(r.content)
        if e["type"] == "response.output_item.done" and e["item"]["type"] == "function_call"
    )
    replay = [
        {"type": "message", "role": "user", "content": "go"},
        {**item, "summary": []},  # only the sealed blob carries the text
        call,
        {"type": "function_call_output", "call_id": "call_r", "output": "a.txt"},
    ]
    upstream.enqueue(text("done"))
    with MitmRelay(
        confdir, upstream.url, key="sk-relay", options=options
    ) as second:  # a new process
        r2 = httpx.post(
            f"{second.url}/v1/responses",
            timeout=30,
            json={"model": "m", "input": replay, "stream": True},
        )
    assert sse_events(r2.content)[-1]["type"] == "response.completed"
    assistant = upstream.chat_requests()[-1]["messages"][1]
    assert assistant["reasoning_content"] == "private chain of thought"


def test_foreign_reasoning_blob_falls_back_to_the_summary(upstream, relay):
    upstream.enqueue(text("ok"))
    replay = [
        {"type": "message", "role": "user", "content": "go"},
        {
            "type": "reasoning",
            "id": "rs_x",
            "encrypted_content": "gAAAAA-OPENAI-BLOB",
            "summary": [{"type": "summary_text", "text": "readable summary"}],
        },
        {"type": "function_call", "call_id": "c9", "name": "exec_command", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c9", "output": "x"},
    ]
    r = httpx.post(
        f"{relay.url}/v1/responses",
        timeout=30,
        json={"model": "m", "input": replay, "stream": True},
    )
    assert r.status_code == 200
    assert upstream.chat_requests()[-1]["messages"][1]["reasoning_content"] == "readable summary"


def test_previous_response_id_chains_through_the_relay(upstream, client):
    upstream.enqueue(tool_call("exec_command", {"cmd": "ls"}, call_id="call_chain"))
    first = client.responses.create(model="m", input="list the files")
    upstream.enqueue(text("two files"))
    second = client.responses.create(
        model="m",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": "call_chain", "output": "a b"}],
    )
    assert second.output_text == "two files"
    sent = upstream.chat_requests()[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert sent[0]["content"] == "list the files" and sent[2]["content"] == "a b"
    upstream.enqueue(text("three"))
    third = client.responses.create(model="m", previous_response_id=second.id, input="more?")
    assert third.output_text == "three"
    assert [m["role"] for m in upstream.chat_requests()[-1]["messages"]] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]


def test_lost_reasoning_is_healed_once_with_placeholders(tmp_path):
    # A thread begun elsewhere: the history replays a call this DeepSeek produced, without the
    # reasoning it produced. The first answer is DeepSeek's 400; the relay retries once.
    with FakeUpstream(deepseek_reasoning_rule=True) as up, MitmRelay(tmp_path, up.url) as relay:
        up.produced_reasoning["call_lost"] = "reasoning the history lost"
        up.enqueue(text("healed answer"))
        history = [
            {"type": "message", "role": "user", "content": "go"},
            {
                "type": "function_call",
                "call_id": "call_lost",
                "name": "exec_command",
                "arguments": "{}",
            },
            {"type": "function_call_output", "call_id": "call_lost", "output": "x"},
        ]
        r = httpx.post(
            f"{relay.url}/v1/responses",
            timeout=30,
            json={"model": "m", "input": history, "stream": True},
        )
        events = sse_events(r.content)
        assert r.status_code == 200 and events[-1]["type"] == "response.completed"
        assert events[-1]["response"]["output"][0]["content"][0]["text"] == "healed answer"
        first, second = up.chat_requests()
        assert "reasoning_content" not in first["messages"][1]
        assert second["messages"][1]["reasoning_content"] == " "
        # The exchange's line names the refused attempt before the one that served.
        deadline = time.monotonic() + 10
        while "after 127.0.0.1 (http 400" not in relay.text() and time.monotonic() < deadline:
            time.sleep(0.05)
        (line,) = [x for x in relay.log if "after 127.0.0.1 (http 400" in x]
        assert "m -> m completed" in line


@pytest.mark.parametrize("state", ["sqlite", "redis"])
def test_previous_response_id_survives_a_relay_restart(upstream, tmp_path, state, request):
    options = {}
    if state == "redis":
        redis_url = request.getfixturevalue("redis_url")
        options["relay_state"] = redis_url
    confdir = tmp_path / "conf"
    upstream.enqueue(text("first answer"))
    with MitmRelay(confdir, upstream.url, key="sk-relay", options=options) as first:
        c = openai.OpenAI(api_key="k", base_url=f"{first.url}/v1", max_retries=0)
        one = c.responses.create(model="m", input="remember 42")
    upstream.enqueue(text("second answer"))
    with MitmRelay(confdir, upstream.url, key="sk-relay", options=options) as second:
        c = openai.OpenAI(api_key="k", base_url=f"{second.url}/v1", max_retries=0)
        two = c.responses.create(model="m", input="what was it?", previous_response_id=one.id)
    assert two.output_text == "second answer"
    assert [m.get("content") for m in upstream.chat_requests()[-1]["messages"]] == [
        "remember 42",
        "first answer",
        "what was it?",
    ]


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    """A certificate for 127.0.0.1 that no trust store knows."""
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(d / "key.pem"),
            "-out",
            str(d / "cert.pem"),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(d / "cert.pem", d / "key.pem")
    return context, d / "cert.pem"


def test_untrusted_upstream_tls_is_a_json_error_then_trusting_it_works(self_signed, tmp_path):
    context, cert = self_signed
    with FakeUpstream(tls=context) as up:
        with MitmRelay(tmp_path / "a", up.url) as relay:
            r = httpx.post(
                f"{relay.url}/v1/responses",
                timeout=30,
                json={"model": "m", "input": "x", "stream": True},
            )
        assert r.status_code == 502 and r.headers["content-type"] == "application/json"
        assert r.json()["error"]["code"] == "server_error"
        assert "TLS handshake" in r.json()["error"]["message"]
        assert up.requests == []
        up.enqueue(text("over tls"))
        with MitmRelay(
            tmp_path / "b", up.url, options={"ssl_verify_upstream_trusted_ca": str(cert)}
        ) as relay:
            r = httpx.post(
                f"{relay.url}/v1/responses",
                timeout=30,
                json={"model": "m", "input": "x", "stream": True},
            )
        assert final_text(r.content) == "over tls"


def test_https_upstream_through_an_upstream_proxy_is_tunnelled(self_signed, tmp_path):
    """--mode upstream: with an https upstream: the link CONNECTs through the proxy and does
    TLS with the upstream itself (the proxy, told to ignore that host, only tunnels)."""
    context, cert = self_signed
    with (
        FakeUpstream(tls=context) as up,
        behind_corporate_proxy(
            tmp_path,
            up.url,
            corp={"ignore_hosts": "127.0.0.1"},
            relay={"ssl_verify_upstream_trusted_ca": str(cert)},
        ) as (corp, relay),
    ):
        up.enqueue(text("tunnelled"))
        assert final_text(post_through_proxy(relay).content) == "tunnelled"
        assert up.chat_requests()  # the upstream saw it, over TLS, through the tunnel
        assert corp.wait_for_text(f"server connect 127.0.0.1:{up.port}")  # the tunnel


def test_silent_upstream_is_given_up_after_relay_timeout(tmp_path):
    with FakeUpstream() as up, MitmRelay(tmp_path, up.url, options={"relay_timeout": "1"}) as relay:
        # The upstream stays silent for 60 s and the client waits 30 s: only the relay's
        # watchdog can produce an answer, a retryable 5xx (docs/codex-contract.md §8).
        up.enqueue(Reply(chunks=[{"content": "late"}], delay_s=60))
        r = httpx.post(
            f"{relay.url}/v1/responses",
            timeout=30,
            json={"model": "m", "input": "x", "stream": True},
        )
        assert r.status_code == 504 and r.headers["content-type"] == "application/json"
        error = r.json()["error"]
        assert error["code"] == "server_error"
        assert "sent nothing for too long" in error["message"]
        assert "relay_timeout" in error["message"]
    # One INFO line for the exchange says what went wrong.
    [line] = [entry for entry in relay.log if "relay " in entry and " -> " in entry]
    assert "http 504" in line and "sent nothing for too long" in line


def _first_call(upstream, relay, call_id: str, reasoning: str) -> dict:
    """One exchange whose answer is a tool call preceded by reasoning; returns the call item."""
    upstream.enqueue(tool_call("exec_command", {"cmd": "ls"}, call_id=call_id, reasoning=reasoning))
    first = httpx.post(
        f"{relay.url}/v1/responses", timeout=30, json={"model": "m", "input": "go", "stream": True}
    )
    return next(
        e["item"]
        for e in sse_events(first.content)
        if e["type"] == "response.output_item.done" and e["item"]["type"] == "function_call"
    )


def _replay_without_reasoning(upstream, relay, call: dict) -> dict:
    """The client replays the call and its output but not the reasoning item; returns the
    assistant message the upstream received."""
    upstream.enqueue(text("done"))
    httpx.post(
        f"{relay.url}/v1/responses",
        timeout=30,
        json={
            "model": "m",
            "stream": True,
            "input": [
                {"type": "message", "role": "user", "content": "go"},
                call,
                {"type": "function_call_output", "call_id": call["call_id"], "output": "a"},
            ],
        },
    )
    return upstream.chat_requests()[-1]["messages"][1]


def test_reasoning_kept_per_call_id_for_clients_that_drop_reasoning_items(upstream, relay):
    call = _first_call(upstream, relay, "call_map", "kept by the relay")
    assert _replay_without_reasoning(upstream, relay, call)["reasoning_content"] == (
        "kept by the relay"
    )


def test_reasoning_found_by_turn_when_a_client_rewrites_call_ids(upstream, relay):
    call = _first_call(upstream, relay, "call_turn", "kept for this turn")
    renamed = {**call, "call_id": "my_own_id"}
    assert _replay_without_reasoning(upstream, relay, renamed)["reasoning_content"] == (
        "kept for this turn"
    )
