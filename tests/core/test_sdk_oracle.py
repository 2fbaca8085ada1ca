"""The official openai SDK as the client oracle for every stream we emit.

Every case the golden test pins (test_stream_golden.py: the stream-test scenarios and the cases
that reach every item kind: reasoning in each mode, with and without a sealed blob, message,
function call, custom tool call, compaction), in each variant: each event is validated strictly
(pydantic validation of the SDK's ResponseStreamEvent union, not the lenient construct path),
then the SDK's own ``responses.stream()`` helper consumes the bytes and its accumulated final
response must equal our ``response.completed``. Whole completions: the Response object
validates as the SDK's ``Response``.
"""

from __future__ import annotations

import json

import httpx
import openai
import pydantic
import pytest
from chat_streams import events, run
from openai.types.responses import Response, ResponseStreamEvent
from test_stream import SCENARIOS
from test_stream_golden import CASES, COMPLETIONS, VARIANTS, translate, translate_whole

EVENTS = pydantic.TypeAdapter(ResponseStreamEvent)
OUTPUTS = {(name, v): translate(CASES[name], v) for name in sorted(CASES) for v in VARIANTS}
SUCCESSFUL = [
    key for key, out in OUTPUTS.items() if events(out)[-1]["type"] == "response.completed"
]
ITEM_KINDS = {"message", "reasoning", "function_call", "custom_tool_call", "compaction"}


# Codex acts on these failure codes (docs/codex-contract.md §8) though the SDK's ResponseError
# enum lacks them: sent as they are, by decision (notes/decisions.md, "Failure codes").
CODEX_ONLY_CODES = {"context_length_exceeded", "insufficient_quota"}


def _as_the_sdk_types_it(event: dict) -> dict:
    error = event.get("response", {}).get("error") or {}
    if error.get("code") in CODEX_ONLY_CODES:
        response = {**event["response"], "error": {**error, "code": "server_error"}}
        return {**event, "response": response}
    return event


@pytest.mark.parametrize("key", sorted(OUTPUTS), ids="-".join)
def test_every_event_validates_strictly(key):
    for event in map(_as_the_sdk_types_it, events(OUTPUTS[key])):
        parsed = EVENTS.validate_python(event)
        assert parsed.type == event["type"]
        # nothing we send is silently dropped by the SDK's model
        dumped = parsed.model_dump(exclude_unset=True, by_alias=True)
        assert set(event) <= set(dumped), set(event) - set(dumped)


def test_the_cases_reach_every_item_kind_finished():
    kinds = {
        e["item"]["type"]
        for out in OUTPUTS.values()
        for e in events(out)
        if e["type"] == "response.output_item.done"
    }
    assert kinds == ITEM_KINDS


def _client(body: bytes) -> openai.OpenAI:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path.endswith("/responses")
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    return openai.OpenAI(
        api_key="sk-test",
        base_url="http://relay.invalid/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )


@pytest.mark.parametrize("key", SUCCESSFUL, ids="-".join)
def test_sdk_stream_helper_accumulates_our_output(key):
    body = OUTPUTS[key]
    ours = events(body)[-1]["response"]
    client = _client(body)
    with client.responses.stream(model="gpt-5.5", input="hi") as stream:
        seen = [event.type for event in stream]
        final = stream.get_final_response()
    assert seen[-1] == "response.completed"
    assert final.id == ours["id"]
    assert [i.model_dump(exclude_none=True) for i in final.output] == [
        {k: v for k, v in item.items() if v is not None} for item in ours["output"]
    ]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", sorted(COMPLETIONS))
def test_whole_completions_are_sdk_responses(name, variant):
    response = json.loads(translate_whole(COMPLETIONS[name], variant))
    Response.model_validate(response)


def test_sdk_sees_text_deltas_live():
    client = _client(run(SCENARIOS["text"]))
    with client.responses.stream(model="gpt-5.5", input="hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
    assert deltas == ["Hel", "lo ", "wörld"]
