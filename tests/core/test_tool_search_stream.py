"""Deferred tools, response side: the model's call of the relay's ``tool_search`` function
reaches Codex as the ``tool_search_call`` item Codex runs (core/tool_search.py rule 5,
``ToolSearchCallItem`` in core/output_items.py), streamed and not; a found MCP tool's call as a
``function_call`` with its namespace. The contexts are the ones the request side builds from
the real Codex captures (tests/fixtures/tool-search/); the openai SDK validates every event.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pydantic
import pytest
from chat_streams import DONE, call, chunk, events, run, terminal, translator, types, usage
from hypothesis import example, given
from hypothesis import strategies as st
from openai.types.responses import ResponseStreamEvent

from mitmrelay.core.completion import translate_completion
from mitmrelay.core.context import ToolKind
from mitmrelay.core.request import parse_request, translate_request

CAPTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tool-search" / "codex-0.169"
EVENTS = pydantic.TypeAdapter(ResponseStreamEvent)


def context(name: str) -> Any:
    body = json.loads((CAPTURES / f"{name}.request.json").read_text())["body"]
    return translate_request(parse_request(json.dumps(body).encode()), upstream_model="up")[1]


FIRST = context("search-01")  # tool_search offered, nothing found yet
FOUND = context("search-02")  # mcp__demo__echo_tool found

SEARCH = (
    chunk({"reasoning_content": "I need a tool that echoes."})
    + chunk({"tool_calls": [call(0, id="call_s1", name="tool_search", args="")]})
    + chunk({"tool_calls": [call(0, args='{"query": "echo ')]})
    + chunk({"tool_calls": [call(0, args='text tool", "limit": 8.0}')]})
    + chunk(finish="tool_calls")
    + usage()
    + DONE
)


def output(raw: bytes, **kw: Any) -> list[dict[str, Any]]:
    return terminal(run(raw, **kw))["response"]["output"]


def test_the_context_marks_the_search_function():
    assert FIRST.tools["tool_search"].kind is ToolKind.TOOL_SEARCH
    assert FOUND.tools["mcp__demo__echo_tool"].kind is ToolKind.FUNCTION


def test_a_search_call_goes_to_codex_as_the_item_it_runs():
    out = run(SEARCH, ctx=FIRST)
    assert types(out) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",  # reasoning
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",  # the search: no argument deltas, whole on done
        "response.output_item.done",
        "response.completed",
    ]
    added = [e["item"] for e in events(out) if e["type"] == "response.output_item.added"][1]
    assert added == {
        "id": added["id"],
        "type": "tool_search_call",
        "status": "in_progress",
        "call_id": "call_s1",
        "execution": "client",
        "arguments": {},
    }
    reasoning, search = output(SEARCH, ctx=FIRST)
    assert reasoning["type"] == "reasoning"
    # Codex parses limit as a usize: 8.0 would be refused, so it goes out as 8.
    assert search == {
        "id": added["id"],
        "type": "tool_search_call",
        "status": "completed",
        "call_id": "call_s1",
        "execution": "client",
        "arguments": {"query": "echo text tool", "limit": 8},
    }
    assert search["id"].startswith("tsc_")


def test_a_found_mcp_tool_is_called_with_its_namespace_beside_a_new_search():
    raw = (
        chunk(
            {
                "tool_calls": [
                    call(0, id="call_e1", name="mcp__demo__echo_tool", args='{"text": "hi"}'),
                    call(1, id="call_s2", name="tool_search", args='{"keywords": "calendar"}'),
                ]
            }
        )
        + chunk(finish="tool_calls")
        + DONE
    )
    echo, search = output(raw, ctx=FOUND)
    assert (echo["type"], echo["name"], echo["namespace"]) == (
        "function_call",
        "echo_tool",
        "mcp__demo",
    )
    assert echo["arguments"] == '{"text": "hi"}'
    assert search["type"] == "tool_search_call"
    assert search["arguments"] == {"query": "calendar"}  # the only string, moved to query


def test_without_the_search_offered_a_call_named_tool_search_stays_a_function_call():
    # A client that declared no tool_search (the name means nothing to its context).
    (item,) = output(SEARCH, ctx=dataclasses.replace(FIRST, tools={}))[1:]
    assert (item["type"], item["name"]) == ("function_call", "tool_search")


def test_search_arguments_that_are_not_json_fail_the_response():
    raw = (
        chunk({"tool_calls": [call(0, id="c", name="tool_search", args='{"query": ')]})
        + chunk(finish="tool_calls")
        + DONE
    )
    last = terminal(run(raw, ctx=FIRST))
    assert last["type"] == "response.failed"
    assert last["response"]["error"]["code"] == "server_error"
    assert "invalid_tool_call" in last["response"]["error"]["message"]
    assert last["response"]["output"] == []


def test_a_search_cut_by_the_length_limit_is_left_out():
    raw = (
        chunk({"tool_calls": [call(0, id="c", name="tool_search", args='{"query": "ec')]})
        + chunk(finish="length")
        + DONE
    )
    last = terminal(run(raw, ctx=FIRST))
    assert last["type"] == "response.incomplete"
    assert last["response"]["output"] == []


def test_the_non_streaming_path_answers_with_the_same_item():
    completion = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_s1",
                            "type": "function",
                            "function": {
                                "name": "tool_search",
                                "arguments": '{"query": "echo", "limit": "3"}',
                            },
                        }
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
    }
    response = translate_completion(
        json.dumps(completion).encode(),
        FIRST,
        response_id="resp_1",
        created_at=1,
        new_id=lambda prefix: f"{prefix}_1",
    )
    assert response["status"] == "completed"
    assert response["output"] == [
        {
            "id": "tsc_1",
            "type": "tool_search_call",
            "status": "completed",
            "call_id": "call_s1",
            "execution": "client",
            "arguments": {"query": "echo", "limit": 3},
        }
    ]


# ----------------------------------------------------------------------------- the SDK oracle


@pytest.mark.parametrize("mode", ["summary", "raw", "hidden"])
def test_every_event_validates_strictly_in_the_sdk(mode):
    for event in events(run(SEARCH, ctx=FIRST, reasoning_mode=mode)):
        parsed = EVENTS.validate_python(event)
        assert parsed.type == event["type"]
        dumped = parsed.model_dump(exclude_unset=True, by_alias=True)
        assert set(event) <= set(dumped), set(event) - set(dumped)


def test_the_sdk_stream_helper_accumulates_our_output():
    body = run(SEARCH, ctx=FIRST)
    ours = terminal(body)["response"]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    client = openai.OpenAI(
        api_key="sk-test",
        base_url="http://relay.invalid/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    with client.responses.stream(model="gpt-5.5", input="hi") as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert [i.model_dump(exclude_none=True) for i in final.output] == [
        {k: v for k, v in item.items() if v is not None} for item in ours["output"]
    ]
    assert final.output[1].type == "tool_search_call"


# ----------------------------------------------------------------------------- chunking


@given(st.lists(st.integers(0, len(SEARCH)), max_size=30))
@example([i for i in range(len(SEARCH))])  # byte by byte
def test_output_does_not_depend_on_chunking(cuts):
    whole = run(SEARCH, ctx=FIRST)
    bounds = [0, *sorted(cuts), len(SEARCH)]
    t = translator(ctx=FIRST)
    out = b"".join(t.feed(SEARCH[a:b]) for a, b in itertools.pairwise(bounds))
    assert out + t.finish() == whole
