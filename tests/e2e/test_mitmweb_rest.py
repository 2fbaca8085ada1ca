"""What a person watching mitmweb sees of relayed calls, read through mitmweb's REST API.

A real headless ``mitmweb -s addon/relay.py`` (support/mitmweb.py) in reverse mode, a scripted
fake Chat upstream, and plain HTTP clients (httpx, the openai SDK) calling ``/v1/responses``.
Each relayed call is two flows (inspection.py): the client leg (Responses request, translated
Responses stream) and the upstream leg (Chat request, the upstream's raw answer).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from support.fake_upstream import FakeUpstream, Reply, error, text, tool_call
from support.mitmweb import MitmWeb

from mitmrelay.webview import LLMStreamView

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

CLIENT_KEY = "sk-client-openai-key-for-mitmweb-test"
UPSTREAM_KEY = "sk-upstream-relay-key-for-mitmweb-test"
LLM_VIEW = LLMStreamView.name  # "LLM stream"
TOOLS = [
    {
        "type": "function",
        "name": "exec_command",
        "description": "Run a shell command.",
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
    }
]
REASONING = "the user wants the files listed"
ARGS = json.dumps({"cmd": "ls -la"})


@pytest.fixture(scope="module")
def upstream():
    with FakeUpstream(key=UPSTREAM_KEY) as up:
        yield up


@pytest.fixture(scope="module")
def web(upstream, tmp_path_factory):
    with MitmWeb(
        tmp_path_factory.mktemp("confdir"),
        upstream.url,
        key=UPSTREAM_KEY,
        options={"relay_model_map": "gpt-5.5=deepseek-chat"},
    ) as w:
        yield w


def sse_data(body: bytes) -> list[str]:
    return [line[6:] for line in body.decode().splitlines() if line.startswith("data: ")]


def sse_events(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(d) for d in sse_data(body) if d != "[DONE]"]


def post_stream(web: MitmWeb, body: dict[str, Any]) -> tuple[int, bytes]:
    """A streamed call as Codex makes it; a cut stream yields what arrived before the cut."""
    received: list[bytes] = []
    with httpx.stream(
        "POST",
        f"{web.url}/v1/responses",
        json=body,
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
        timeout=30,
    ) as r:
        try:
            for chunk in r.iter_raw():
                received.append(chunk)
        except httpx.RemoteProtocolError:
            pass
    return r.status_code, b"".join(received)


def reasoning_text_and_call(prompt_tokens: int = 100, completion_tokens: int = 10) -> Reply:
    """Reasoning, then text, then a tool call (the id only on its first chunk, as OpenAI and
    DeepSeek send it), with the usage the comment must show."""
    said = text("Let me look.", reasoning=REASONING)
    call = tool_call("exec_command", ARGS, call_id="call_web")
    return Reply(
        chunks=said.chunks + call.chunks,
        finish_reason="tool_calls",
        usage={
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    )


def test_streamed_call_shows_both_legs_with_comments_bodies_and_llm_view(upstream, web):
    before = web.ids()
    upstream.enqueue(reasoning_text_and_call(321, 45))
    sent = {"model": "gpt-5.5", "input": "list the files", "tools": TOOLS, "stream": True}
    status, received = post_stream(web, sent)
    assert status == 200
    ex = web.exchange_since(before)
    client, up = ex.client, ex.upstream

    # The relay's annotations: model mapping, status, usage; the legs name each other.
    assert client["comment"].startswith(
        "mitmrelay: gpt-5.5 -> deepseek-chat | completed | 321 in / 45 out"
    )
    assert up["id"][:8] in client["comment"]
    assert up["comment"].startswith(f"mitmrelay upstream leg of {client['id'][:8]}: 200")
    assert client["marked"] == up["marked"] == ""
    found = web.by_comment(r"gpt-5\.5 -> deepseek-chat \| completed \| 321 in / 45 out")
    assert [f["id"] for f in found] == [client["id"]]
    assert ex.client_meta["leg"] == "client" and ex.upstream_meta["leg"] == "upstream"
    assert ex.client_meta["upstream_flow"] == up["id"]
    assert ex.upstream_meta["client_flow"] == client["id"]
    assert ex.client_meta["client_model"] == "gpt-5.5"
    assert ex.client_meta["upstream_model"] == "deepseek-chat"
    assert ex.client_meta["status"] == "completed"

    # Client leg: the Responses request as sent, the translated stream as received.
    assert client["request"]["path"] == "/v1/responses"
    # Where the client sent it, not mitmproxy's dummy reverse target.
    assert (client["request"]["host"], client["request"]["port"]) == ("127.0.0.1", web.port)
    bodies = web.bodies(client["id"])
    assert bodies["request"] is not None and bodies["response"] is not None
    assert json.loads(bodies["request"]) == sent
    events = sse_events(bodies["response"])
    assert events == sse_events(received)  # SSE comments aside
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["id"] == ex.client_meta["response_id"]
    output = events[-1]["response"]["output"]
    assert [item["type"] for item in output] == ["reasoning", "message", "function_call"]
    assert output[2]["arguments"] == ARGS

    # Upstream leg: the Chat request the upstream received, its raw Chat stream.
    assert up["request"]["path"] == "/v1/chat/completions"
    assert up["request"]["port"] == upstream.port
    assert up["response"]["status_code"] == 200
    bodies = web.bodies(up["id"])
    assert bodies["request"] is not None and bodies["response"] is not None
    chat = json.loads(bodies["request"])
    assert chat == upstream.chat_requests()[-1]
    assert chat["model"] == "deepseek-chat" and chat["stream"] is True
    assert chat["messages"][-1] == {"role": "user", "content": "list the files"}
    assert [t["function"]["name"] for t in chat["tools"]] == ["exec_command"]
    assert sse_data(bodies["response"])[-1] == "[DONE]"
    chunks = sse_events(bodies["response"])
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    deltas = [choice["delta"] for c in chunks for choice in c["choices"]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == REASONING
    assert "".join(d.get("content", "") for d in deltas) == "Let me look."
    calls = [tc for d in deltas for tc in d.get("tool_calls", [])]
    assert "".join(tc["function"]["arguments"] for tc in calls) == ARGS
    assert chunks[-1]["usage"]["prompt_tokens"] == 321

    # The "LLM stream" view: listed under its REST name, chosen by "auto" for both streams.
    rest_name = LLM_VIEW.lower()
    assert rest_name in web.view_names()
    for leg in (client, up):
        auto = web.view(leg["id"], "response", "auto")
        assert auto["view_name"] == LLM_VIEW and "content missing" not in auto["text"]
    lines = web.view(client["id"], "response", rest_name)["text"].splitlines()
    assert any(line.startswith("reasoning") and line.endswith(f": {REASONING}") for line in lines)
    assert "text: Let me look." in lines
    assert f"call call_web: exec_command({ARGS})" in lines
    assert "== completed" in lines
    assert any(line.startswith("usage: ") and '"input_tokens": 321' in line for line in lines)
    lines = web.view(up["id"], "response", rest_name)["text"].splitlines()
    assert f"reasoning: {REASONING}" in lines
    assert "text: Let me look." in lines
    assert "== finish_reason: tool_calls" in lines
    assert any(line.startswith("usage: ") and '"prompt_tokens": 321' in line for line in lines)


def test_llm_view_of_a_chat_stream_shows_one_line_per_tool_call(upstream, web):
    before = web.ids()
    upstream.enqueue(reasoning_text_and_call())
    post_stream(web, {"model": "gpt-5.5", "input": "one call", "tools": TOOLS, "stream": True})
    up = web.exchange_since(before).upstream
    lines = web.view(up["id"], "response", LLM_VIEW.lower())["text"].splitlines()
    assert [line for line in lines if line.startswith("call ")] == [
        f"call call_web: exec_command({ARGS})"
    ]


UPSTREAM_400 = {"error": {"message": "Invalid 'messages'", "type": "invalid_request_error"}}


@pytest.mark.parametrize(
    "reply",
    [error(400, UPSTREAM_400), Reply(chunks=[{"content": "half an ans"}], cut=True)],
    ids=["upstream-400", "cut-stream"],
)
def test_failed_call_is_marked_on_both_legs(upstream, web, reply):
    before = web.ids()
    upstream.enqueue(reply)
    status, received = post_stream(web, {"model": "gpt-5.5", "input": "fail", "stream": True})
    assert b"response.completed" not in received
    ex = web.exchange_since(before)
    client, up = ex.client, ex.upstream
    assert client["marked"] != "" and up["marked"] != ""
    assert {client["id"], up["id"]} <= set(web.matching("@marked"))
    assert client["comment"].startswith("mitmrelay: gpt-5.5 -> deepseek-chat | ")
    assert "completed" not in client["comment"]
    assert ex.client_meta["status"] != "completed"
    client_bodies, up_bodies = web.bodies(client["id"]), web.bodies(up["id"])
    assert b"response.completed" not in (client_bodies["response"] or b"")
    if reply.status == 400:
        # The client got the mapped error; the upstream leg keeps the upstream's own.
        assert status == 400 and "| http 400 |" in client["comment"]
        assert client_bodies["response"] == received
        assert up["response"]["status_code"] == 400
        assert up["comment"].endswith(": 400")
        assert json.loads(up_bodies["response"] or b"") == UPSTREAM_400
    else:
        # Told to the client as response.failed; the upstream leg holds the bytes before the
        # cut and the failure.
        assert status == 200 and "| failed |" in client["comment"]
        assert sse_events(received)[-1]["type"] == "response.failed"
        assert "error" in up and up["comment"].endswith(up["error"]["msg"])
        data = sse_data(up_bodies["response"] or b"")
        assert "[DONE]" not in data and "half an ans" in data[-1]


def test_meta_filter_selects_both_legs_and_nothing_else(upstream, web):
    before = web.ids()
    upstream.enqueue(text("filtered"))
    assert post_stream(web, {"model": "gpt-5.5", "input": "x", "stream": True})[0] == 200
    ex = web.exchange_since(before)
    legs = {ex.client["id"], ex.upstream["id"]}
    # Not a relayed call: the relay answers it 404 and leaves no metadata.
    assert httpx.post(f"{web.url}/v1/embeddings", json={}, timeout=30).status_code == 404
    (other,) = web.wait_for(
        lambda flows: [
            f for f in flows if f["id"] not in before and f["request"]["path"] == "/v1/embeddings"
        ]
    )
    assert web.metadata(other["id"]) == {}

    # A filter as a flow spec, evaluated by mitmproxy (`cut` over view.flows.resolve).
    selected = set(web.matching("~meta mitmrelay"))
    assert legs <= selected and other["id"] not in selected
    assert set(web.matching("~meta \"'leg': 'upstream'\"")) & legs == {ex.upstream["id"]}
    assert set(web.matching("~comment 'upstream leg of'")) & legs == {ex.upstream["id"]}

    # GET /flows/dump?filter=: the same selection, as flow objects with their metadata.
    dumped = web.dump("~meta mitmrelay")
    assert {f.id for f in dumped} == selected
    assert all("mitmrelay" in f.metadata for f in dumped)

    # The view filter limits what GET /flows (the flow list) shows.
    try:
        assert web.command("view.filter.set", "~meta mitmrelay") is None
        shown = {f["id"] for f in web.flows()}
        assert shown == selected
    finally:
        web.command("view.filter.set", "")
    assert other["id"] in {f["id"] for f in web.flows()}


def test_no_key_appears_anywhere_in_mitmweb(upstream, web):
    before = web.ids()
    client = openai.OpenAI(api_key=CLIENT_KEY, base_url=f"{web.url}/v1", max_retries=0)
    upstream.enqueue(reasoning_text_and_call())
    with client.responses.stream(model="gpt-5.5", input="keyless stream", tools=TOOLS) as s:
        assert s.get_final_response().output[-1].type == "function_call"
    upstream.enqueue(text("keyless answer"))
    assert client.responses.create(model="gpt-5.5", input="keyless create").output_text
    upstream.enqueue(error(401, {"error": {"message": "Incorrect API key provided."}}))
    with pytest.raises(openai.APIStatusError):
        client.responses.create(model="gpt-5.5", input="keyless error")
    web.exchanges_since(before, count=3)
    # The keys were really used: the client sent its own, the relay the upstream's.
    assert upstream.requests[-1]["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"

    dump = web.rest_dump()
    for prompt in (b"keyless stream", b"keyless create", b"keyless error", b"Incorrect API"):
        assert prompt in dump  # both legs' bodies are really in it
    assert CLIENT_KEY.encode() not in dump
    assert UPSTREAM_KEY.encode() not in dump
