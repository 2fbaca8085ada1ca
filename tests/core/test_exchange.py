"""The exchange logic the addon delegates: header scrub, history, each attempt's request per
target, retries and fallbacks, whole answers as events, what is kept, and the outcome."""

from __future__ import annotations

import itertools
import json
import os

import pytest
from chat_streams import chunk, usage

from mitmrelay.core.attempts import Failure
from mitmrelay.core.carrier import SealedReasoningCarrier
from mitmrelay.core.errors import ClientRequestError
from mitmrelay.core.exchange import (
    Exchange,
    answer_events,
    client_only,
    comment,
    log_line,
    model_not_found,
    previous_history,
    reasoning_key,
    refused_outcome,
)
from mitmrelay.core.history import conversation_record
from mitmrelay.core.request import parse_request
from mitmrelay.core.upstream_errors import map_transport_error, map_upstream_error

ENV = {"DS_KEY": "sk-ds-secret", "GROQ_KEY": "sk-groq-secret"}
ROUTES = """
[providers.deepseek]
base_url = "https://api.deepseek.com/v1"
api_key_env = "DS_KEY"
headers = { "X-Title" = "codex" }

[providers.groq]
base_url = "https://api.groq.com/openai/v1"
api_key_env = "GROQ_KEY"

[models."deepseek-chat"]
provider = "deepseek"
max_output_tokens = 4096
fallbacks = ["llama"]
price_input = 0.28
price_output = 0.42

[models.llama]
provider = "groq"
upstream_model = "llama-3.3-70b-versatile"
reasoning = false
"""


def plan(model: str = "deepseek-chat"):
    from mitmrelay.core.routes import parse_routes

    return parse_routes(ROUTES, source="routes.toml", env=ENV).plan(model)


TOOL_LOOP = [
    {"type": "message", "role": "user", "content": "list the files"},
    {"type": "function_call", "call_id": "call_a", "name": "exec_command", "arguments": "{}"},
    {"type": "function_call_output", "call_id": "call_a", "output": "a.txt"},
]


def request(**fields):
    body = {
        "model": "deepseek-chat",
        "input": TOOL_LOOP,
        "stream": True,
        "reasoning": {"effort": "high"},
        "tools": [{"type": "function", "name": "exec_command", "parameters": {}}],
        **fields,
    }
    return parse_request(json.dumps(body).encode())


def exchange(req=None, **kwargs) -> Exchange:
    counter = itertools.count(1)
    return Exchange(
        req or request(),
        plan(),
        response_id="resp_0123",
        started_at=1_700_000_000.5,
        new_id=lambda kind: f"{kind}_{next(counter):04d}",
        **kwargs,
    )


def http(status: int, body: object, headers: dict[str, str] | None = None) -> Failure:
    raw = json.dumps(body).encode()
    return Failure(status, map_upstream_error(status, headers or {}, raw, upstream="u"), raw)


# ---------------------------------------------------------------------- small rules


@pytest.mark.parametrize(
    ("name", "dropped"),
    [
        ("Authorization", True),
        ("session-id", True),
        ("x-codex-turn-metadata", True),
        ("X-OpenAI-Internal-Codex-Responses-Lite", True),
        ("chatgpt-account-id", True),
        ("content-type", False),
        ("user-agent", False),
        ("accept", False),
    ],
)
def test_headers_only_the_client_understands_never_go_upstream(name, dropped):
    assert client_only(name) is dropped


def test_an_unknown_previous_response_id_is_answered_like_openai():
    req = request(previous_response_id="resp_gone")
    with pytest.raises(ClientRequestError) as caught:
        previous_history(req, None)
    assert (caught.value.code, caught.value.status) == ("previous_response_not_found", 400)
    assert previous_history(request(), None) == []
    record, _ = conversation_record([{"type": "message", "role": "user", "content": "hi"}], [])
    assert len(previous_history(req, record)) == 1


def test_model_not_found_names_the_model_and_the_routes():
    error = model_not_found("gpt-9", ["deepseek-chat", "qwen/*"])
    assert (error.status, error.code, error.param) == (400, "model_not_found", "model")
    assert "'gpt-9'" in error.message and "deepseek-chat, qwen/*" in error.message


# ---------------------------------------------------------------------- attempts


def test_the_first_attempt_is_translated_for_its_target():
    ex = exchange()
    call = ex.first_call()
    assert call.url.geturl() == "https://api.deepseek.com/v1/chat/completions"
    assert call.headers() == {"x-title": "codex", "authorization": "Bearer sk-ds-secret"}
    assert "sk-ds-secret" not in repr(call)
    assert call.label == "deepseek" and call.upstream == "https://api.deepseek.com/v1"
    assert call.chat["model"] == "deepseek-chat"
    assert call.chat["max_tokens"] == 4096  # the route's bound: Codex never sends one
    assert call.chat["reasoning_effort"] == "high"
    assert json.loads(call.body) == call.chat
    assert call.ctx.client_model == "deepseek-chat"


def test_the_routes_bound_is_the_lower_of_the_two():
    call = exchange(request(max_output_tokens=100)).first_call()
    assert call.chat["max_tokens"] == 100
    call = exchange(request(max_output_tokens=100_000)).first_call()
    assert call.chat["max_tokens"] == 4096


def test_a_fallback_is_translated_for_its_own_provider_and_profile():
    ex = exchange()
    first = ex.first_call()
    assert first.chat["messages"][1]["reasoning_content"] == " "  # DeepSeek's placeholder
    delay, second = ex.next_call(http(503, {"error": {"message": "busy"}}))
    assert delay == 0.0 and second.index == 1 and second.label == "groq"
    assert second.chat["model"] == "llama-3.3-70b-versatile"
    assert "reasoning_content" not in second.chat["messages"][1]  # Groq refuses it
    assert "reasoning_effort" not in second.chat  # the route says it does not reason
    assert "max_tokens" not in second.chat  # no bound on that route
    assert second.headers() == {"authorization": "Bearer sk-groq-secret"}
    assert second.ctx.client_model == "deepseek-chat"  # the client's name stays
    assert ex.next_call(http(503, {"error": {"message": "busy"}})) is None  # plan exhausted


def test_a_fallbacks_translator_continues_the_same_response():
    ex = exchange()
    first = ex.translator(ex.first_call())
    started = first.start()
    _, second_call = ex.next_call(Failure(None, map_transport_error("connect", "x", upstream="u")))
    second = ex.translator(second_call)
    second.continue_from(first)
    out = second.feed(chunk({"content": "hi"}) + chunk(finish="stop")) + second.finish()
    events = [json.loads(x[6:]) for x in (started + out).split(b"\n") if x.startswith(b"data: ")]
    assert [e["type"] for e in events].count("response.created") == 1
    assert {e["response"]["id"] for e in events if "response" in e} == {"resp_0123"}
    seq = [e["sequence_number"] for e in events]
    assert seq == list(range(seq[0], seq[0] + len(seq)))
    assert second.response["model"] == "deepseek-chat"


def test_a_short_wait_repeats_the_same_request():
    ex = exchange(retry_wait_s=2.0)
    first = ex.first_call()
    delay, again = ex.next_call(http(429, {"error": {"message": "slow"}}, {"retry-after": "1"}))
    assert (delay, again) == (1.0, first)
    assert len(ex.calls) == 2


def test_a_missing_reasoning_refusal_is_healed_with_placeholders():
    routes_plan = plan()
    # A profile without a placeholder of its own still gets the single space on a heal.
    groq_first = Exchange(
        request(model="llama"),
        routes_plan[1:],
        response_id="resp_1",
        started_at=0,
        new_id=str,
    )
    call = groq_first.first_call()
    assert "reasoning_content" not in call.chat["messages"][1]
    refusal = {
        "error": {
            "message": "The reasoning_content in the thinking mode must be passed back to the API.",
            "type": "invalid_request_error",
        }
    }
    delay, healed = groq_first.next_call(http(400, refusal))
    assert delay == 0.0 and healed.healed and healed.index == 0
    assert healed.chat["messages"][1]["reasoning_content"] == " "
    assert "reasoning_content" not in call.chat["messages"][1]  # the first body untouched


def test_a_refusal_with_nothing_to_heal_is_not_retried():
    ex = exchange()
    call = ex.first_call()
    assert call.chat["messages"][1]["reasoning_content"] == " "  # DeepSeek's own placeholder
    refusal = {"error": {"message": "Missing reasoning_content field in the assistant message"}}
    assert ex.next_call(http(400, refusal)) is None  # the same body again would be refused
    assert len(ex.calls) == 1


def test_the_last_failure_is_recorded_when_nothing_follows():
    ex = exchange()
    ex.first_call()
    assert ex.next_call(http(400, {"error": {"message": "bad tools"}})) is None
    assert [(a.provider, a.status, a.failure) for a in ex.failed] == [
        ("deepseek", 400, "invalid_request_error")
    ]


def test_a_fallback_the_provider_cannot_take_keeps_the_known_failure(monkeypatch):
    ex = exchange()
    ex.first_call()

    def refuse(*args, **kwargs):
        raise ClientRequestError("tool names collide")

    monkeypatch.setattr("mitmrelay.core.exchange.translate_request", refuse)
    assert ex.next_call(http(503, {"error": {"message": "busy"}})) is None


# ---------------------------------------------------------------------- kept reasoning


def test_kept_reasoning_is_looked_up_and_restored_per_provider():
    ex = exchange(request(model="llama"))
    ex.plan = plan()  # deepseek first: it replays reasoning_content
    call = ex.first_call()
    keys = ex.reasoning_keys()
    assert keys[0] == reasoning_key("deepseek", "call_a") == "reasoning:deepseek:call_a"
    assert keys[1].startswith("reasoning:deepseek:turn:")
    assert ex.restore({}) is call  # nothing kept: nothing rebuilt
    # Another provider's record under the same call id is not this provider's reasoning.
    other = {reasoning_key("kimi", "call_a"): {"text": "kimi thought"}}
    assert ex.restore(other) is call
    kept = {reasoning_key("deepseek", "call_a"): {"text": "deepseek thought"}}
    restored = ex.restore(kept)
    assert restored.chat["messages"][1]["reasoning_content"] == "deepseek thought"
    assert ex.calls[-1] is restored and json.loads(restored.body) == restored.chat


def test_a_provider_that_refuses_reasoning_needs_no_lookup():
    ex = Exchange(request(model="llama"), plan()[1:], response_id="r", started_at=0, new_id=str)
    ex.first_call()
    assert ex.reasoning_keys() == []


def sealed_answer(ex: Exchange, carrier: SealedReasoningCarrier) -> dict:
    translator = ex.translator(ex.calls[-1])
    translator.feed(
        chunk({"reasoning_content": "think about ls"})
        + chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_new",
                        "type": "function",
                        "function": {"name": "exec_command", "arguments": '{"cmd":"ls"}'},
                    }
                ]
            }
        )
        + chunk(finish="tool_calls")
        + usage()
    )
    translator.finish()
    return translator.response


def test_what_is_kept_after_an_answer():
    carrier = SealedReasoningCarrier(os.urandom(32), os.urandom)
    ex = exchange(carrier=carrier)
    ex.first_call()
    response = sealed_answer(ex, carrier)
    kept = dict(ex.records(response))
    conversation = kept.pop("resp_0123")
    assert len(conversation["input"]) == 3 and conversation["output"] == response["output"]
    by_call = kept.pop(reasoning_key("deepseek", "call_new"))
    assert by_call["text"] == "think about ls" and by_call["call_ids"] == ["call_new"]
    ((turn, record),) = kept.items()
    assert turn.startswith("reasoning:deepseek:turn:") and record == by_call
    assert ex.records({**response, "status": "failed"}) == []
    assert ex.records(None) == []
    # Without a carrier only the conversation is kept.
    plain = exchange()
    plain.first_call()
    assert [k for k, _ in plain.records(response)] == ["resp_0123"]


def test_a_store_false_request_keeps_no_conversation_but_its_reasoning():
    # OpenAI keeps no store:false response, so no previous_response_id can name it; Codex sends
    # store:false with its whole history on every call.
    carrier = SealedReasoningCarrier(os.urandom(32), os.urandom)
    ex = exchange(request(store=False), carrier=carrier)
    ex.first_call()
    kept = dict(ex.records(sealed_answer(ex, carrier)))
    assert "resp_0123" not in kept
    assert kept[reasoning_key("deepseek", "call_new")]["text"] == "think about ls"
    with pytest.raises(ClientRequestError) as err:
        previous_history(request(previous_response_id="resp_0123"), kept.get("resp_0123"))
    assert err.value.code == "previous_response_not_found"
    stored = exchange(request(store=True), carrier=carrier)
    stored.first_call()
    assert "resp_0123" in dict(stored.records(sealed_answer(stored, carrier)))


def test_the_conversation_continues_from_the_full_input():
    call = {"type": "function_call", "call_id": "c0", "name": "x", "arguments": "{}"}
    record, _ = conversation_record([], [call])
    ex = exchange(request(previous_response_id="resp_before"), previous=record)
    assert [i.get("call_id") for i in ex.input_items()][:2] == ["c0", None]
    text_only = exchange(request(input="hello"))
    (item,) = text_only.input_items()
    assert item["role"] == "user" and item["content"] == "hello"


# ---------------------------------------------------------------------- whole answers


COMPLETION = {
    "id": "c",
    "object": "chat.completion",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "whole"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


def test_a_whole_json_answer_equals_its_one_chunk_stream():
    as_json = exchange().translator(exchange().first_call())
    answer_events(as_json, json.dumps(COMPLETION).encode(), event_stream=False, upstream="u")
    as_sse = exchange().translator(exchange().first_call())
    sse = chunk({"role": "assistant", "content": "whole"}) + chunk(finish="stop")
    answer_events(as_sse, sse + usage(3, 1), event_stream=True, upstream="u")
    assert as_json.response["status"] == as_sse.response["status"] == "completed"
    assert as_json.response["output"] == as_sse.response["output"]
    assert as_json.response["usage"] == as_sse.response["usage"]


def test_a_body_that_is_not_json_fails_the_response():
    translator = exchange().translator(exchange().first_call())
    out = answer_events(translator, b"<html>", event_stream=False, upstream="https://x/v1")
    assert b"response.failed" in out
    assert "https://x/v1 answered with a body that is not JSON" in json.dumps(translator.response)


# ---------------------------------------------------------------------- the outcome


def test_the_outcome_names_the_provider_that_served_and_those_given_up():
    ex = exchange()
    ex.first_call()
    ex.next_call(http(503, {"error": {"message": "busy"}}))
    response = {"status": "completed", "usage": {"input_tokens": 10, "output_tokens": 2}}
    outcome = ex.outcome(status="completed", total_s=1.25, http_status=200, response=response)
    assert (outcome.provider, outcome.upstream_model) == ("groq", "llama-3.3-70b-versatile")
    assert [(a.provider, a.status, a.failure) for a in outcome.attempts] == [
        ("deepseek", 503, "server_error"),
        ("groq", 200, None),
    ]
    assert outcome.fallbacks == 1 and outcome.price is None  # the llama route has no price
    assert outcome.client_model == "deepseek-chat" and outcome.started_at == 1_700_000_000.5
    line = log_line("abcdef0123", outcome)
    assert line == (
        "relay abcdef01: deepseek-chat -> llama-3.3-70b-versatile completed 10 in / 2 out "
        "in 1.25s via groq after deepseek (http 503 server_error)"
    )
    assert comment(outcome) == (
        "mitmrelay: deepseek-chat -> llama-3.3-70b-versatile | completed | 10 in / 2 out | "
        "via groq after deepseek (http 503 server_error)"
    )


def test_a_failed_outcome_says_why_and_carries_the_price():
    ex = exchange()
    ex.first_call()
    outcome = ex.outcome(
        status="http 504",
        total_s=3.0,
        http_status=None,
        failure="server_error",
        detail="https://api.deepseek.com/v1 sent nothing for too long",
    )
    assert outcome.price is not None and outcome.price.input == 0.28
    assert [(a.status, a.failure) for a in outcome.attempts] == [(None, "server_error")]
    line = log_line("f" * 8, outcome)
    assert "http 504 no usage in 3.00s via deepseek" in line
    assert line.endswith("(server_error: https://api.deepseek.com/v1 sent nothing for too long)")


def test_the_comment_adds_the_cost_when_the_route_has_a_price():
    ex = exchange()
    ex.first_call()
    usage = {
        "input_tokens": 1_000_000,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 0,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 1_000_000,
    }
    outcome = ex.outcome(
        status="completed", total_s=1.0, http_status=200, response={"usage": usage}
    )
    assert outcome.price is not None
    assert f"| cost {outcome.price.input:g}" in comment(outcome)


def test_a_refused_request_has_no_provider():
    outcome = refused_outcome(
        client_model="gpt-9",
        response_id="resp_x",
        stream=True,
        started_at=0.0,
        total_s=0.01,
        status=400,
        code="model_not_found",
        detail="The model 'gpt-9' does not exist",
    )
    assert outcome.attempts == () and outcome.provider == ""
    assert log_line("12345678", outcome) == (
        "relay 12345678: gpt-9 -> - http 400 no usage in 0.01s "
        "(model_not_found: The model 'gpt-9' does not exist)"
    )
    assert comment(outcome) == "mitmrelay: gpt-9 -> - | http 400 | no usage"


def test_reasoning_before_a_freeform_call_is_kept_by_call_id_only():
    carrier = SealedReasoningCarrier(os.urandom(32), os.urandom)
    req = request(tools=[{"type": "custom", "name": "apply_patch"}])
    ex = exchange(req, carrier=carrier)
    translator = ex.translator(ex.first_call())
    call = {"index": 0, "id": "call_p", "type": "function"}
    call["function"] = {"name": "apply_patch", "arguments": '{"input":"*** Begin Patch"}'}
    translator.feed(
        chunk({"reasoning_content": "patch it"})
        + chunk({"tool_calls": [call]})
        + chunk(finish="tool_calls")
    )
    translator.finish()
    assert translator.response["output"][1]["type"] == "custom_tool_call"
    keys = [k for k, _ in ex.records(translator.response)]
    assert keys == ["resp_0123", reasoning_key("deepseek", "call_p")]


def test_an_outcome_before_any_attempt_names_the_planned_target():
    outcome = exchange().outcome(status="http 500", total_s=0.1, http_status=None)
    assert outcome.provider == "deepseek" and outcome.attempts == ()


def test_an_exchange_needs_a_target():
    with pytest.raises(ValueError):
        Exchange(request(), (), response_id="r", started_at=0, new_id=str)


def test_a_hostile_model_name_stays_on_one_line():
    outcome = refused_outcome(
        client_model="gpt\r\nFAKE relay 00000000: injected",
        response_id="r",
        stream=False,
        started_at=0.0,
        total_s=0.0,
        status=400,
        code="model_not_found",
        detail="The model 'gpt\r\nx' does not exist",
    )
    for text in (log_line("12345678", outcome), comment(outcome)):
        assert "\n" not in text and "\r" not in text
        assert "gpt\\r\\nFAKE" in text


def test_each_attempt_is_translated_with_its_routes_switches():
    from mitmrelay.core.routes import parse_routes

    routes = parse_routes(
        """
[providers.p]
base_url = "http://127.0.0.1:1/v1"
[models.blind]
provider = "p"
vision = false
reasoning = false
fallbacks = ["seeing"]
[models.seeing]
provider = "p"
vision = true
""",
        source="r",
        env={},
    )
    image = {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}
    req = request(
        model="blind",
        input=[{"type": "message", "role": "user", "content": [image]}],
        reasoning={"effort": "high"},
    )
    ex = Exchange(req, routes.plan("blind"), response_id="r", started_at=0, new_id=str)
    blind = ex.first_call()
    assert "image_url" not in json.dumps(blind.chat["messages"])  # a note in its place
    _, seeing = ex.next_call(http(503, {"error": {"message": "busy"}}))
    (part,) = seeing.chat["messages"][0]["content"]
    assert part["type"] == "image_url"
