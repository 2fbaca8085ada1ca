"""Wire models: every captured request validates, unknown shapes are kept, errors name the field."""

from __future__ import annotations

import json
import logging

import pytest
from support.captured import request_bodies

from mitmrelay.core.errors import ClientRequestError
from mitmrelay.core.request import parse_request, translate_request
from mitmrelay.models.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest
from mitmrelay.models.responses import CustomTool, HostedTool, NamespaceTool, UnknownTool

BODIES = request_bodies()
KNOWN_ITEMS = {
    "message",
    "reasoning",
    "function_call",
    "function_call_output",
    "custom_tool_call",
    "custom_tool_call_output",
    "compaction",
    "compaction_trigger",
    "additional_tools",
    "tool_search_call",
    "tool_search_output",
}
# Content parts of messages and outputs, and a reasoning item's reasoning_text content.
KNOWN_PARTS = {"input_text", "input_image", "output_text", "refusal", "reasoning_text"}


def parse(body: dict) -> object:
    return parse_request(json.dumps(body).encode())


@pytest.mark.parametrize("name", sorted(BODIES))
def test_every_fixture_validates_without_unknowns_and_translates_to_a_valid_chat_request(name):
    req = parse(BODIES[name])
    # Codex 0.169 sends nothing we do not model (docs/codex-contract.md §5, §6): every item and
    # content part is a plain dict of a known type, every tool a model of a known kind.
    assert all(type(i) is dict and i.get("type", "message") in KNOWN_ITEMS for i in req.input)
    parts = [
        p
        for i in req.input
        for key in ("content", "output")
        if isinstance(i.get(key), list)
        for p in i[key]
    ]
    assert all(type(p) is dict and p["type"] in KNOWN_PARTS for p in parts)
    assert not any(isinstance(t, UnknownTool) for t in req.tools or ())
    if req.previous_response_id:
        # 14d: an incremental websocket frame holds only the new output; without the chain's
        # history (the state store's job) the output answers no call: nothing to send, which
        # is a clear client error rather than an empty Chat request.
        with pytest.raises(ClientRequestError, match="no input the upstream can read"):
            translate_request(req, upstream_model="up")
        return
    chat, _ = translate_request(req, upstream_model="up")
    ChatCompletionRequest.model_validate(chat)


def test_item_and_tool_kinds_seen_in_fixtures():
    lite = parse(BODIES["06-responses-lite-gpt-6.1-sol.request.json"])
    assert lite.input[0]["type"] == "additional_tools"
    assert any(isinstance(t, NamespaceTool) for t in lite.input[0]["tools"])
    gpt55 = parse(BODIES["04-gpt-5.5-first-turn.request.json"])
    kinds = {type(t) for t in gpt55.tools}
    assert {CustomTool, HostedTool} <= kinds
    apply_patch = next(t for t in gpt55.tools if isinstance(t, CustomTool))
    assert apply_patch.format["syntax"] == "lark"
    after = parse(BODIES["09-function_call_output-with-image.request.json"])
    output = next(i for i in after.input if i.get("type") == "function_call_output")
    assert any(p["type"] == "input_image" and p["image_url"] for p in output["output"])
    remote = parse(BODIES["13a-remote-compaction-v2.request.json"])
    assert remote.input[-1]["type"] == "compaction_trigger"
    replay = parse(BODIES["13b-after-remote-compaction.request.json"])
    assert any(i.get("type") == "compaction" and i["encrypted_content"] for i in replay.input)
    reasoning = next(
        i
        for i in parse(BODIES["07-raw-reasoning_text-replay.request.json"]).input
        if i.get("type") == "reasoning" and i.get("content")
    )
    assert reasoning["content"][0]["text"]


def test_plain_string_input_and_typeless_message():
    assert parse({"model": "m", "input": "hi"}).input == "hi"
    req = parse({"model": "m", "input": [{"role": "user", "content": "hi"}]})
    assert req.input == [{"role": "user", "content": "hi"}]  # a message: no type is filled in
    chat, _ = translate_request(req, upstream_model="up")
    assert chat["messages"] == [{"role": "user", "content": "hi"}]


def test_items_are_plain_dicts_with_their_extras_and_without_defaults():
    item = {"type": "function_call", "call_id": "c", "name": "f", "status": "completed"}
    req = parse({"model": "m", "input": [item, {"type": "reasoning", "summary": []}]})
    assert req.input == [item, {"type": "reasoning", "summary": []}]
    assert all(type(i) is dict for i in req.input)


def test_unknown_fields_items_parts_and_tools_are_kept_and_skipped(caplog):
    body = {
        "model": "m",
        "future_field": {"x": 1},
        "input": [
            {"type": "agent_message", "text": "?"},
            {"type": "agent_message", "text": "??"},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_audio", "data": "…"},
                    {"type": "input_text", "text": "x"},
                ],
                "status": "completed",
            },
        ],
        "tools": [{"type": "brand_new_tool"}, {"type": "web_search", "external_web_access": False}],
    }
    req = parse(body)
    assert req.model_extra == {"future_field": {"x": 1}}
    assert req.input[:2] == [
        {"type": "agent_message", "text": "?"},
        {"type": "agent_message", "text": "??"},
    ]
    assert req.input[2]["content"][0] == {"type": "input_audio", "data": "…"}
    assert req.input[2]["status"] == "completed"
    assert [type(t) for t in req.tools] == [UnknownTool, HostedTool]
    with caplog.at_level(logging.INFO, logger="mitmrelay.core.request"):
        chat, _ = translate_request(req, upstream_model="up")
    assert chat["messages"] == [{"role": "user", "content": "x"}]
    assert "tools" not in chat
    logged = [r.getMessage() for r in caplog.records]
    assert sum("'agent_message'" in m for m in logged) == 1  # once per type
    assert any("'brand_new_tool'" in m for m in logged)
    assert sum("'input_audio'" in m for m in logged) == 1  # unknown content parts too
    assert any("'web_search'" in m for m in logged)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (
            {
                "model": "m",
                "input": [
                    {"role": "user", "content": "a"},
                    {"role": "user", "content": "b"},
                    {"role": "user", "content": "c"},
                    {"role": "user", "content": [{"type": "input_image", "image_url": 5}]},
                ],
            },
            "input[3].content[0].image_url",
        ),
        ({"input": "hi"}, "model"),
        ({"model": "m", "input": [{"type": "function_call", "name": "f"}]}, "input[0].call_id"),
        ({"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"model": "m", "tools": [{"type": "function"}]}, "tools[0].name"),
        ({"model": "m", "max_output_tokens": "lots"}, "max_output_tokens"),
    ],
)
def test_validation_errors_name_the_field_path(body, path):
    with pytest.raises(ClientRequestError) as err:
        parse(body)
    assert f"{path}: " in err.value.message
    assert err.value.param == path and err.value.status == 400


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b'{"model": "m",}'])
def test_invalid_json_is_a_client_error(raw):
    with pytest.raises(ClientRequestError, match="not valid JSON"):
        parse_request(raw)


def test_chat_answer_models_accept_provider_extras():
    chunk = ChatCompletionChunk.model_validate(
        {
            "id": "c1",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "reasoning_content": "think",
                        "tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f"}}],
                        "extra_content": {"google": {"thought_signature": "sig"}},
                    },
                    "finish_reason": None,
                }
            ],
        }
    )
    assert chunk.choices[0].delta.tool_calls[0].id == "call_1"
    assert chunk.choices[0].delta.model_extra["extra_content"]["google"]["thought_signature"]
    usage_only = ChatCompletionChunk.model_validate(
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
    )
    assert usage_only.usage.total_tokens == 5
    done = ChatCompletion.model_validate(
        {
            "choices": [
                {
                    "message": {"role": "assistant", "content": None, "reasoning": "r"},
                    "finish_reason": "stop",
                }
            ]
        }
    )
    assert done.choices[0].message.reasoning == "r"


def test_chat_request_model_enforces_what_upstreams_reject():
    base = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    ChatCompletionRequest.model_validate(base)
    for bad in (
        {**base, "tools": []},  # several backends reject an empty tools array
        {**base, "messages": []},
        {**base, "tools": [{"type": "function", "function": {"name": "mcp.demo.echo"}}]},
    ):
        with pytest.raises(ValueError):
            ChatCompletionRequest.model_validate(bad)
