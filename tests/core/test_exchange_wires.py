"""An exchange whose plan reaches providers on the Responses wire (core/exchange.py rule 7):
each attempt built for its own target's wire, fallbacks across wires in both directions, the
request parsed once for the wires the table uses (core/client_request.py), the previous
response expanded from the relay's record, what is kept after the answer and given back when a
client dropped it, and whole answers on each wire."""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

import pytest
from chat_streams import chunk
from support.fake_responses import (
    Call,
    FakeResponses,
    Reasoning,
    Turn,
    response_for,
    say,
    stream_for,
)

from mitmrelay.core.attempts import Failure
from mitmrelay.core.carrier import SealedReasoningCarrier
from mitmrelay.core.client_request import ClientRequest
from mitmrelay.core.errors import ClientRequestError
from mitmrelay.core.exchange import Exchange, answer_events, reasoning_key
from mitmrelay.core.responses_wire import ResponsesNormaliser, map_http_error
from mitmrelay.core.routes import parse_routes
from mitmrelay.core.stream import StreamTranslator
from mitmrelay.core.upstream_errors import map_upstream_error
from mitmrelay.core.wires import CHAT, RESPONSES

ENV = {"DS_KEY": "sk-ds-secret", "GROQ_KEY": "sk-groq-secret", "KIMI_KEY": "sk-kimi-secret"}
ROUTES = """
[providers.deepseek]
base_url = "https://api.deepseek.com/v1"
api_key_env = "DS_KEY"
wire = "responses"

[providers.groq]
base_url = "https://api.groq.com/openai/v1"
api_key_env = "GROQ_KEY"

[providers.kimi]
base_url = "https://api.moonshot.ai/v1"
api_key_env = "KIMI_KEY"
wire = "responses"

[models."deepseek-v4"]
provider = "deepseek"
max_output_tokens = 4096
fallbacks = ["llama"]

[models.llama]
provider = "groq"
upstream_model = "llama-3.3-70b-versatile"
fallbacks = ["kimi-k3"]

[models."kimi-k3"]
provider = "kimi"
reasoning = false

[models."kimi-thinking"]
provider = "kimi"
"""
TABLE = parse_routes(ROUTES, source="routes.toml", env=ENV)
TOOLS = [{"type": "function", "name": "exec_command", "parameters": {"type": "object"}}]
LOOP = [
    {"type": "message", "role": "user", "content": "list the files"},
    {"type": "function_call", "call_id": "call_a", "name": "exec_command", "arguments": "{}"},
    {"type": "function_call_output", "call_id": "call_a", "output": "a.txt"},
]


def body(**fields: Any) -> bytes:
    request = {
        "model": "deepseek-v4",
        "input": LOOP,
        "stream": True,
        "store": False,
        "reasoning": {"effort": "medium"},
        "tools": TOOLS,
        **fields,
    }
    return json.dumps({k: v for k, v in request.items() if v is not None}).encode()


def exchange(raw: bytes | None = None, model: str = "deepseek-v4", **kw: Any) -> Exchange:
    counter = itertools.count(1)
    request = ClientRequest.parse(raw or body(model=model), TABLE.wires)
    return Exchange(
        request,
        TABLE.plan(request.model),
        response_id="resp_0123",
        started_at=1_700_000_000.5,
        new_id=lambda kind: f"{kind}_{next(counter):04d}",
        **kw,
    )


def http(status: int, error: dict[str, Any]) -> Failure:
    raw = json.dumps(error).encode()
    return Failure(status, map_upstream_error(status, {}, raw, upstream="u"), raw)


def events(out: bytes) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in out.split(b"\n") if line.startswith(b"data: ")]


# ---------------------------------------------------------------------- parsing once


def test_a_chat_only_table_validates_at_once_as_it_always_did():
    request = ClientRequest.parse(body(), {"chat"})
    assert request.parsed_for == "chat" and request.validated.model == "deepseek-v4"


def test_a_responses_only_table_never_builds_the_models():
    request = ClientRequest.parse(body(previous_response_id="resp_x"), {"responses"})
    assert (request.model, request.stream, request.previous_response_id) == (
        "deepseek-v4",
        True,
        "resp_x",
    )
    assert request.parsed_for == "responses" and request.raw["store"] is False


def test_a_mixed_table_reads_the_routing_fields_and_parses_what_the_first_call_needs():
    ex = exchange()  # deepseek (Responses) first, groq (Chat) behind it
    ex.first_call()
    assert ex.request.parsed_for == "responses"  # no models were built for the first call
    ex.next_call(http(503, {"error": {"message": "busy"}}))
    assert ex.calls[-1].wire is CHAT and ex.request.validated.model == "deepseek-v4"


@pytest.mark.parametrize("wires", [{"chat"}, {"responses"}, {"chat", "responses"}])
@pytest.mark.parametrize(
    ("raw", "message", "param"),
    [
        (b"{not json", "not valid JSON", None),
        (b'{"input": "hi"}', "model", "model"),
        (b'{"model": 5, "input": "hi"}', "model", "model"),
    ],
)
def test_a_body_routing_cannot_read_is_a_400_naming_what_is_wrong(wires, raw, message, param):
    with pytest.raises(ClientRequestError, match=message) as caught:
        ClientRequest.parse(raw, wires)
    assert caught.value.status == 400 and caught.value.param == param


def test_a_bad_field_the_chat_wire_would_name_is_named_on_a_mixed_table_too():
    with pytest.raises(ClientRequestError) as caught:
        ClientRequest.parse(body(stream="sometimes"), {"chat", "responses"})
    assert caught.value.param == "stream"


# ---------------------------------------------------------------------- attempts


def test_a_responses_provider_gets_codexs_request_cleaned_at_its_responses_path():
    ex = exchange(body(max_output_tokens=100_000))
    call = ex.first_call()
    assert call.wire is RESPONSES
    assert call.url.geturl() == "https://api.deepseek.com/v1/responses"
    assert call.headers() == {"authorization": "Bearer sk-ds-secret"}
    sent = json.loads(call.body)
    assert sent == call.chat and sent["model"] == "deepseek-v4" and sent["stream"] is True
    assert "store" not in sent  # DeepSeek's row
    assert sent["max_output_tokens"] == 4096  # the route's bound: the lower of the two
    assert sent["reasoning"] == {"effort": "high"}  # medium on DeepSeek's ladder
    assert FakeResponses("deepseek").validate(sent) is None
    translator = ex.translator(call)
    assert isinstance(translator, ResponsesNormaliser)
    assert translator.response["id"] == "resp_0123"


def test_a_route_that_does_not_reason_sends_no_effort():
    ex = exchange(model="kimi-k3")
    assert "reasoning" not in ex.first_call().chat


@pytest.mark.parametrize("start", ["deepseek-v4", "llama"])
def test_a_fallback_crosses_wires_and_its_translator_continues_the_stream(start):
    ex = exchange(model=start)
    first = ex.first_call()
    translator = ex.translator(first)
    shown = translator.start()
    _, second = ex.next_call(http(503, {"error": {"message": "busy"}}))
    assert second.wire is not first.wire
    nxt = ex.translator(second)
    nxt.continue_from(translator)
    if isinstance(nxt, ResponsesNormaliser):
        assert second.label == "kimi" and json.loads(second.body)["model"] == "kimi-k3"
        out = nxt.feed(stream_for(say("hi"), "kimi"))
    else:
        assert isinstance(nxt, StreamTranslator) and second.label == "groq"
        assert json.loads(second.body)["messages"][-1]["role"] == "tool"
        out = nxt.feed(chunk({"content": "hi"}) + chunk(finish="stop"))
    evs = events(shown + out + nxt.finish())
    assert [e["type"] for e in evs].count("response.created") == 1
    assert [e["sequence_number"] for e in evs] == list(range(len(evs)))
    assert evs[-1]["response"]["id"] == "resp_0123"
    assert evs[-1]["response"]["model"] == start  # the client's name, whichever served


def test_a_previous_response_id_is_expanded_from_the_relays_record_on_this_wire_too():
    record = {
        "input": [{"type": "message", "role": "user", "content": "first question"}],
        "output": [{"type": "message", "role": "assistant", "content": "first answer"}],
    }
    follow_up = body(previous_response_id="resp_before", input="second question")
    ex = exchange(follow_up, previous=record)
    sent = json.loads(ex.first_call().body)
    assert "previous_response_id" not in sent
    contents = [i["content"] for i in sent["input"] if i["type"] == "message"]
    assert contents[:2] == ["first question", "first answer"]
    assert [i["type"] for i in ex.input_items()] == ["message", "message", "message"]
    with pytest.raises(ClientRequestError) as caught:
        exchange(follow_up)  # the relay holds nothing for it
    assert caught.value.code == "previous_response_not_found"


def test_a_missing_reasoning_refusal_is_healed_on_this_wire_with_a_placeholder():
    ex = exchange(model="kimi-thinking")  # Kimi's row has no placeholder of its own
    call = ex.first_call()
    assert [i["type"] for i in call.chat["input"]].count("reasoning") == 0
    refusal = {"error": {"message": "reasoning_content is missing in assistant tool call message"}}
    delay, healed = ex.next_call(http(400, refusal))
    assert healed.healed and healed.index == 0 and delay == 0.0
    (placeholder,) = [i for i in healed.chat["input"] if i["type"] == "reasoning"]
    assert placeholder["content"] == [{"type": "reasoning_text", "text": " "}]
    assert ex.next_call(http(400, refusal)) is None  # healed once


# ---------------------------------------------------------------------- after the answer


def answered(ex: Exchange, carrier: SealedReasoningCarrier) -> dict[str, Any]:
    translator = ex.translator(ex.calls[-1])
    turn = Turn([Reasoning("think about ls"), Call("exec_command", {"cmd": "ls"}, "call_new")])
    translator.feed(stream_for(turn, "deepseek"))
    translator.finish()
    return translator.response


def test_what_is_kept_after_an_answer_on_this_wire():
    carrier = SealedReasoningCarrier(os.urandom(32), os.urandom)
    ex = exchange(carrier=carrier)  # store: false, as Codex sends: its reasoning alone is kept
    ex.first_call()
    response = answered(ex, carrier)
    kept = dict(ex.records(response))
    assert kept[reasoning_key("deepseek", "call_new")]["text"] == "think about ls"
    (turn,) = [k for k in kept if k.startswith(reasoning_key("deepseek", "turn:"))]
    assert set(kept) == {reasoning_key("deepseek", "call_new"), turn}
    assert ex.request.parsed_for == "responses"  # kept without building models either
    stored = exchange(body(store=True), carrier=carrier)
    stored.first_call()
    response = answered(stored, carrier)
    conversation = dict(stored.records(response))["resp_0123"]
    assert conversation["input"] == LOOP and conversation["output"] == response["output"]
    assert stored.request.parsed_for == "responses"


def test_reasoning_a_client_dropped_is_looked_up_for_this_provider_and_given_back():
    carrier = SealedReasoningCarrier(os.urandom(32), os.urandom)
    first = exchange(carrier=carrier)
    first.first_call()
    response = answered(first, carrier)
    store = dict(first.records(response))
    # The client's next request replays the call and its output, without the reasoning item.
    calls = [i for i in response["output"] if i["type"] == "function_call"]
    outputs = [{"type": "function_call_output", "call_id": "call_new", "output": "a.txt"}]
    nxt = exchange(body(input=[*LOOP, *calls, *outputs]), carrier=carrier)
    call = nxt.first_call()
    keys = nxt.reasoning_keys()
    assert keys[:2] == [reasoning_key("deepseek", "call_a"), keys[1]]
    assert reasoning_key("deepseek", "call_new") in keys
    assert all(k.startswith(reasoning_key("deepseek", "")) for k in keys)
    assert nxt.restore({}) is call
    restored = nxt.restore({k: store[k] for k in keys if k in store})
    reasoning = [i for i in restored.chat["input"] if i["type"] == "reasoning"]
    assert [r["content"][0]["text"] for r in reasoning] == [" ", "think about ls"]
    assert nxt.calls[-1] is restored and json.loads(restored.body) == restored.chat
    assert FakeResponses("deepseek").validate(restored.chat) is None


# ---------------------------------------------------------------------- whole answers


def test_a_whole_response_is_the_stream_it_stands_for():
    ex = exchange(body(stream=False))
    call = ex.first_call()
    translator = ex.translator(call)
    whole = json.dumps(response_for(say("whole", reasoning="r"), "deepseek")).encode()
    out = answer_events(translator, whole, event_stream=False, upstream="u", wire=call.wire)
    assert events(out)[-1]["type"] == "response.completed"
    assert [i["type"] for i in translator.response["output"]] == ["reasoning", "message"]
    broken = ex.translator(call)
    out = answer_events(broken, b"<html>", event_stream=False, upstream="u", wire=call.wire)
    assert broken.response["status"] == "failed"


def test_each_wire_maps_its_own_error_answers():
    assert RESPONSES.map_error is map_http_error and CHAT.map_error is map_upstream_error
    raw = json.dumps(
        {"error": {"code": "invalid_prompt", "message": "Invalid"}, "error_type": "rate_limit"}
    ).encode()
    assert RESPONSES.map_error(429, {"retry-after": "3"}, raw, upstream="u").retry_after_s == 3


def test_a_short_rate_limit_waits_and_repeats_the_same_responses_request():
    ex = exchange(retry_wait_s=2.0)
    first = ex.first_call()
    raw = json.dumps({"error": {"message": "slow down"}}).encode()
    failure = Failure(429, map_http_error(429, {"retry-after": "1"}, raw, upstream="u"), raw)
    assert ex.next_call(failure) == (1.0, first)
