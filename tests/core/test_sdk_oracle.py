"""The official openai SDK as the client oracle for every stream we emit.

Each event is validated strictly (pydantic validation of the SDK's ResponseStreamEvent union,
not the lenient construct path), then the SDK's own ``responses.stream()`` helper consumes the
bytes and its accumulated final response must equal our ``response.completed``.
"""

from __future__ import annotations

import httpx
import openai
import pydantic
import pytest
from chat_streams import events, run
from openai.types.responses import ResponseStreamEvent
from test_stream import SCENARIOS

EVENTS = pydantic.TypeAdapter(ResponseStreamEvent)
SUCCESSFUL = [
    n for n in sorted(SCENARIOS) if events(run(SCENARIOS[n]))[-1]["type"] == "response.completed"
]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("mode", ["summary", "raw", "hidden"])
def test_every_event_validates_strictly(name, mode):
    for event in events(run(SCENARIOS[name], reasoning_mode=mode)):
        parsed = EVENTS.validate_python(event)
        assert parsed.type == event["type"]
        # nothing we send is silently dropped by the SDK's model
        dumped = parsed.model_dump(exclude_unset=True, by_alias=True)
        assert set(event) <= set(dumped), set(event) - set(dumped)


def _client(body: bytes) -> openai.OpenAI:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path.endswith("/responses")
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    return openai.OpenAI(
        api_key="sk-test",
        base_url="http://relay.invalid/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )


@pytest.mark.parametrize("name", SUCCESSFUL)
def test_sdk_stream_helper_accumulates_our_output(name):
    body = run(SCENARIOS[name])
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


def test_sdk_sees_text_deltas_live():
    client = _client(run(SCENARIOS["text"]))
    with client.responses.stream(model="gpt-5.5", input="hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
    assert deltas == ["Hel", "lo ", "wörld"]
