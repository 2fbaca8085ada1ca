"""The official openai SDK as the client oracle for every stream the Responses wire emits.

Each event of every family's normalised stream is validated strictly (pydantic validation of
the SDK's ``ResponseStreamEvent`` union, not the lenient construct path), and nothing we send
is dropped by the SDK's model; then the SDK's own ``responses.stream()`` helper consumes the
bytes and its accumulated final response must equal our ``response.completed``.
"""

from __future__ import annotations

import httpx
import openai
import pydantic
import pytest
from openai.types.responses import ResponseStreamEvent
from wire_helpers import CODEX, FAMILIES, carrier, clean, events, run
from wire_streams import CTX, SUCCESSFUL, scenarios, stream

EVENTS = pydantic.TypeAdapter(ResponseStreamEvent)
NAMES = sorted(scenarios("generic"))


def _strictly_valid(event: dict) -> None:
    parsed = EVENTS.validate_python(event)
    assert parsed.type == event["type"]
    dumped = parsed.model_dump(exclude_unset=True, by_alias=True)
    assert set(event) <= set(dumped), set(event) - set(dumped)


@pytest.mark.parametrize("mode", ["summary", "raw", "hidden"])
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", NAMES)
def test_every_event_validates_strictly(name, family, mode):
    out = run(stream(family, name), family, ctx=CTX, carrier=carrier(), reasoning_mode=mode)
    for event in events(out):
        _strictly_valid(event)


def test_events_echoing_a_real_codex_request_validate_strictly():
    """The Response objects echo the client's tools and parameters: Codex's own (namespace,
    custom, tool_search, web_search tools) must validate too."""
    _, ctx = clean("04-gpt-5.5-first-turn.request.json", "deepseek")
    assert ctx.response_echo["tools"] == CODEX["04-gpt-5.5-first-turn.request.json"]["tools"]
    for event in events(run(stream("deepseek", "freeform_patch"), "deepseek", ctx=ctx)):
        _strictly_valid(event)


def _client(body: bytes) -> openai.OpenAI:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path.endswith("/responses")
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    return openai.OpenAI(
        api_key="sk-test",
        base_url="http://relay.invalid/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", SUCCESSFUL)
def test_sdk_stream_helper_accumulates_our_output(name, family):
    body = run(stream(family, name), family, ctx=CTX, carrier=carrier())
    ours = events(body)[-1]["response"]
    with _client(body).responses.stream(model="gpt-5.5", input="hi") as sdk_stream:
        seen = [event.type for event in sdk_stream]
        final = sdk_stream.get_final_response()
    assert seen[-1] == "response.completed"
    assert final.id == ours["id"]
    assert [i.model_dump(exclude_none=True) for i in final.output] == [
        {k: v for k, v in item.items() if v is not None} for item in ours["output"]
    ]


def test_sdk_sees_text_deltas_live():
    body = run(stream("kimi", "text"), "kimi", ctx=CTX)
    with _client(body).responses.stream(model="gpt-5.5", input="hi") as sdk_stream:
        deltas = [e.delta for e in sdk_stream if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "Hello wörld, a longer answer in pieces." and len(deltas) > 1
