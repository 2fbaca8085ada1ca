"""Table-driven edge cases, one group per rule of the request translator (core/request.py)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

import pytest

from mitmrelay.core.errors import ClientRequestError
from mitmrelay.core.profiles import GENERIC, Profile
from mitmrelay.core.reasoning import ReasoningPayload
from mitmrelay.core.request import MISSING_OUTPUT, parse_request, translate_request
from mitmrelay.models.responses import MessageItem


class DictCarrier:
    """A real (if trivial) ReasoningCarrier: blobs it made open, anything else does not."""

    def __init__(self) -> None:
        self.sealed: dict[str, ReasoningPayload] = {}

    def seal(self, payload: ReasoningPayload) -> str:
        blob = f"blob{len(self.sealed)}"
        self.sealed[blob] = payload
        return blob

    def open(self, blob: str) -> ReasoningPayload | None:
        return self.sealed.get(blob)


def tr(input: Any = (), *, profile: Profile = GENERIC, carrier=None, history=(), **fields):
    body = {"model": "client-model", "input": list(input) if input != "str" else "hi", **fields}
    req = parse_request(json.dumps(body).encode())
    return translate_request(
        req, upstream_model="up", profile=profile, carrier=carrier, history=history
    )


def msgs(input: Any = (), **kw) -> list[dict[str, Any]]:
    return tr(input, **kw)[0]["messages"]


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def dev(text: str, role: str = "developer") -> dict[str, Any]:
    return {"type": "message", "role": role, "content": [{"type": "input_text", "text": text}]}


def said(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def call(cid: str, name: str = "exec_command", args: str = '{"cmd":"ls"}', **kw) -> dict:
    return {"type": "function_call", "call_id": cid, "name": name, "arguments": args, **kw}


def out(cid: str, output: Any = "ok") -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": cid, "output": output}


def reasoning(summary: str = "", text: str | None = None, blob: str | None = None) -> dict:
    return {
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": summary}] if summary else [],
        "content": [{"type": "reasoning_text", "text": text}] if text is not None else None,
        "encrypted_content": blob,
    }


FN = {"type": "function", "name": "exec_command", "parameters": {"type": "object"}}
TOOL = {"role": "tool", "tool_call_id": "c1", "content": "ok"}


def tc(cid: str, name: str = "exec_command", args: str = '{"cmd":"ls"}') -> dict[str, Any]:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}


# ----------------------------------------------------------------------------- 1. system prompts


@pytest.mark.parametrize(
    ("fields", "input", "expected"),
    [
        ({}, [dev("A"), dev("B"), user("u")], ["A", "B"]),
        ({"instructions": "I"}, [dev("A"), user("u")], ["I", "A"]),
        ({}, [dev("A", "system"), dev("B")], ["A", "B"]),
        ({"instructions": ""}, [dev("A")], ["A"]),
        # multi-part developer messages stay one message, parts joined
        (
            {},
            [
                {
                    "type": "message",
                    "role": "developer",
                    "content": [
                        {"type": "input_text", "text": "p1"},
                        {"type": "input_text", "text": "p2"},
                    ],
                }
            ],
            ["p1\n\np2"],
        ),
    ],
)
def test_every_system_message_is_kept_in_order(fields, input, expected):
    messages = msgs(input, **fields)
    assert [m["content"] for m in messages if m["role"] == "system"] == expected


def test_a_17kb_first_developer_message_is_never_dropped_or_replaced():
    big = "You are a coding agent. " * 800
    messages = msgs([dev(big), dev("permissions"), user("u")])
    assert messages[0] == {"role": "system", "content": big}
    assert messages[1] == {"role": "system", "content": "permissions"}


def test_developer_message_mid_conversation_stays_in_place():
    messages = msgs([user("a"), dev("note"), user("b")])
    assert [m["role"] for m in messages] == ["user", "system", "user"]


def test_merge_profile_joins_all_system_messages_first():
    merged = replace(GENERIC, merge_system_messages=True)
    messages = msgs([dev("A"), user("u"), dev("B")], profile=merged, instructions="I")
    assert messages == [
        {"role": "system", "content": "I\n\nA\n\nB"},
        {"role": "user", "content": "u"},
    ]


# ----------------------------------------------------------------------------- 2. messages, images


@pytest.mark.parametrize(
    ("part", "expected"),
    [
        (
            {"type": "input_image", "image_url": "data:image/png;base64,AAA", "detail": "high"},
            {"url": "data:image/png;base64,AAA", "detail": "high"},
        ),
        (
            {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"},
            {"url": "https://x/y.png", "detail": "low"},
        ),
        (
            {"type": "input_image", "image_url": "https://x/y.png", "detail": "original"},
            {"url": "https://x/y.png", "detail": "high"},  # view_image's full resolution
        ),
        ({"type": "input_image", "image_url": "https://x/y.png"}, {"url": "https://x/y.png"}),
    ],
)
def test_input_image_becomes_an_image_url_part(part, expected):
    item = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "t"}, part],
    }
    assert msgs([item])[0]["content"] == [
        {"type": "text", "text": "t"},
        {"type": "image_url", "image_url": expected},
    ]


def test_image_without_url_is_skipped_not_fatal():
    item = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "t"}, {"type": "input_image", "file_id": "f"}],
    }
    assert msgs([item]) == [{"role": "user", "content": "t"}]


@pytest.mark.parametrize(
    ("input", "expected"),
    [
        ("str", [{"role": "user", "content": "hi"}]),
        ([{"role": "user", "content": "plain"}], [{"role": "user", "content": "plain"}]),
        ([said("hello")], [{"role": "assistant", "content": "hello"}]),
        (
            [
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "refusal", "refusal": "no"}],
                }
            ],
            [{"role": "assistant", "content": "no"}],
        ),
    ],
)
def test_plain_messages(input, expected):
    assert msgs(input) == expected


# ----------------------------------------------------------------------------- 3. calls, outputs


@pytest.mark.parametrize(
    ("input", "expected"),
    [
        # one call, one output
        (
            [call("c1"), out("c1")],
            [{"role": "assistant", "content": None, "tool_calls": [tc("c1")]}, TOOL],
        ),
        # consecutive calls grouped, outputs answered in call order even if sent reversed
        (
            [call("c1"), call("c2", args='{"cmd":"pwd"}'), out("c2", "two"), out("c1", "one")],
            [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [tc("c1"), tc("c2", args='{"cmd":"pwd"}')],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "one"},
                {"role": "tool", "tool_call_id": "c2", "content": "two"},
            ],
        ),
        # empty arguments -> "{}"
        (
            [call("c1", args=""), out("c1")],
            [{"role": "assistant", "content": None, "tool_calls": [tc("c1", args="{}")]}, TOOL],
        ),
        # a call without output gets the documented placeholder
        (
            [call("c1"), user("next")],
            [
                {"role": "assistant", "content": None, "tool_calls": [tc("c1")]},
                {"role": "tool", "tool_call_id": "c1", "content": MISSING_OUTPUT},
                {"role": "user", "content": "next"},
            ],
        ),
        # an output without a call is dropped
        ([user("u"), out("ghost")], [{"role": "user", "content": "u"}]),
        # a second output for one call is dropped
        (
            [call("c1"), out("c1"), out("c1", "again")],
            [{"role": "assistant", "content": None, "tool_calls": [tc("c1")]}, TOOL],
        ),
        # assistant text then a call: one assistant message
        (
            [said("let me look"), call("c1"), out("c1")],
            [{"role": "assistant", "content": "let me look", "tool_calls": [tc("c1")]}, TOOL],
        ),
        # calls of two turns stay two assistant messages
        (
            [call("c1"), out("c1"), call("c2"), out("c2")],
            [
                {"role": "assistant", "content": None, "tool_calls": [tc("c1")]},
                TOOL,
                {"role": "assistant", "content": None, "tool_calls": [tc("c2")]},
                {"role": "tool", "tool_call_id": "c2", "content": "ok"},
            ],
        ),
        # namespaced call -> flattened name
        (
            [call("c1", name="echo_tool", namespace="mcp__demo"), out("c1")],
            [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [tc("c1", name="mcp__demo__echo_tool")],
                },
                TOOL,
            ],
        ),
    ],
)
def test_calls_and_outputs(input, expected):
    assert msgs(input) == expected


def test_orphan_output_is_logged(caplog):
    with caplog.at_level(logging.INFO, logger="mitmrelay.core.request"):
        msgs([user("u"), out("ghost")])
    assert any("ghost" in r.getMessage() for r in caplog.records)


def test_array_output_text_joined_and_images_follow_the_turns_tool_messages():
    image = {"type": "input_image", "image_url": "data:image/png;base64,AAA", "detail": "original"}
    messages = msgs(
        [
            call("c1"),
            call("c2"),
            out(
                "c1",
                [{"type": "input_text", "text": "a"}, image, {"type": "input_text", "text": "b"}],
            ),
            out("c2", "plain"),
        ]
    )
    assert [m["role"] for m in messages] == ["assistant", "tool", "tool", "user"]
    assert messages[1]["content"] == "a\n\nb"
    assert messages[2]["content"] == "plain"
    assert messages[3]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAA", "detail": "high"},
    }


def test_custom_tool_call_and_output_use_the_declared_function():
    apply_patch = {
        "type": "custom",
        "name": "apply_patch",
        "description": "Use apply_patch.",
        "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch"},
    }
    chat, ctx = tr(
        [
            {
                "type": "custom_tool_call",
                "call_id": "p1",
                "name": "apply_patch",
                "input": "*** Begin",
            },
            {"type": "custom_tool_call_output", "call_id": "p1", "output": "Done"},
        ],
        tools=[apply_patch],
    )
    fn = chat["tools"][0]["function"]
    assert fn["name"] == "apply_patch"
    assert fn["description"].startswith("Use apply_patch.")
    assert "lark" in fn["description"] and "start: begin_patch" in fn["description"]
    assert fn["parameters"]["properties"] == {"input": {"type": "string"}}
    assert ctx.tools["apply_patch"].freeform and ctx.tools["apply_patch"].input_param == "input"
    assert chat["messages"][0]["tool_calls"][0]["function"] == {
        "name": "apply_patch",
        "arguments": '{"input": "*** Begin"}',
    }
    assert chat["messages"][1] == {"role": "tool", "tool_call_id": "p1", "content": "Done"}


def test_history_is_prepended():
    history = [
        MessageItem(role="user", content="earlier"),
        MessageItem(role="assistant", content="reply"),
    ]
    assert msgs([user("now")], history=history) == [
        {"role": "user", "content": "earlier"},
        {"role": "assistant", "content": "reply"},
        {"role": "user", "content": "now"},
    ]


def test_history_call_answered_by_an_incremental_output():
    # 14d: a websocket frame with previous_response_id carries only the new output.
    req = parse_request(json.dumps({"model": "m", "input": [call("c1")]}).encode())
    messages = msgs([out("c1")], history=req.input, previous_response_id="resp_1")
    assert messages == [{"role": "assistant", "content": None, "tool_calls": [tc("c1")]}, TOOL]


@pytest.mark.parametrize(
    "item",
    [
        {"type": "compaction", "encrypted_content": "opaque-server-blob"},
        {"type": "compaction_trigger"},
        # A search the provider ran (no call_id): nothing the upstream called.
        {"type": "tool_search_call", "execution": "server", "arguments": {"query": "q"}},
        {"type": "some_future_item", "payload": 1},
    ],
)
def test_items_without_a_chat_form_are_skipped(item):
    assert msgs([user("a"), item, user("b")]) == [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
    ]


# ----------------------------------------------------------------------------- 4. reasoning


@pytest.mark.parametrize(
    ("items", "field", "expected"),
    [
        ([reasoning("sum")], "reasoning_content", "sum"),
        ([reasoning("sum", text="raw")], "reasoning_content", "raw"),  # raw beats summary
        ([reasoning("a"), reasoning("b")], "reasoning_content", "a\n\nb"),
        ([reasoning("", text="")], "reasoning_content", None),
    ],
)
def test_reasoning_fills_the_next_assistant_message(items, field, expected):
    messages = msgs([user("u"), *items, call("c1"), out("c1")])
    assistant = messages[1]
    assert assistant.get(field) == expected
    assert assistant["content"] is None  # never visible text


@pytest.mark.parametrize(
    ("replay", "present", "absent"),
    [
        ("reasoning_content", "reasoning_content", "reasoning"),
        ("reasoning", "reasoning", "reasoning_content"),
        ("none", None, "reasoning_content"),
    ],
)
def test_reasoning_replay_field_follows_the_profile(replay, present, absent):
    profile = replace(GENERIC, reasoning_replay=replay)
    assistant = msgs([reasoning("r"), said("x")], profile=profile)[0]
    assert absent not in assistant and "reasoning" not in (set(assistant) - {present})
    if present:
        assert assistant[present] == "r"


def test_reasoning_never_crosses_a_user_turn():
    messages = msgs([reasoning("stale"), user("u"), said("x")])
    assert messages[1] == {"role": "assistant", "content": "x"}


def test_reasoning_between_two_calls_of_one_turn_joins_that_message():
    messages = msgs(
        [reasoning("one"), call("c1"), reasoning("two"), call("c2"), out("c1"), out("c2")]
    )
    assert messages[0]["reasoning_content"] == "one\n\ntwo"
    assert [m["role"] for m in messages] == ["assistant", "tool", "tool"]


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([call("c1"), out("c1")], "…"),  # tool-call message without reasoning
        ([reasoning("real"), call("c1"), out("c1")], "real"),
        ([said("text only")], None),  # only tool-call messages need it
    ],
)
def test_reasoning_placeholder(items, expected):
    profile = replace(GENERIC, reasoning_placeholder="…")
    assert msgs(items, profile=profile)[0].get("reasoning_content") == expected


def test_carrier_payload_restores_text_details_and_thought_signatures():
    carrier = DictCarrier()
    blob = carrier.seal(
        ReasoningPayload(
            text="sealed thinking",
            details=({"type": "reasoning.encrypted", "data": "x"},),
            signatures={"c1": "sig-1"},
            call_ids=("c1",),
        )
    )
    messages = msgs(
        [reasoning("visible summary", blob=blob), call("c1"), call("c2"), out("c1"), out("c2")],
        carrier=carrier,
    )
    assistant = messages[0]
    assert assistant["reasoning_content"] == "sealed thinking"
    assert assistant["reasoning_details"] == [{"type": "reasoning.encrypted", "data": "x"}]
    calls = assistant["tool_calls"]
    assert calls[0]["extra_content"] == {"google": {"thought_signature": "sig-1"}}
    assert "extra_content" not in calls[1]


@pytest.mark.parametrize("carrier", [None, DictCarrier()])
def test_a_blob_the_carrier_cannot_open_falls_back_to_readable_text(carrier):
    messages = msgs([reasoning("summary", blob="gAAAA-openai-blob"), said("x")], carrier=carrier)
    assert messages[0]["reasoning_content"] == "summary"
    assert "gAAAA" not in json.dumps(messages)


# ----------------------------------------------------------------------------- 5. tools


def test_tool_kinds():
    tools = [
        {**FN, "strict": True, "description": "run"},
        {"type": "function", "name": "no_params"},
        {
            "type": "namespace",
            "name": "mcp__demo",
            "tools": [{"type": "function", "name": "echo_tool", "parameters": {"type": "object"}}],
        },
        {"type": "web_search", "external_web_access": False},
        {"type": "tool_search"},  # hosted (the client-executed one: test_tool_search.py)
        {"type": "local_shell"},
        {"type": "image_generation"},
        {"type": "future_tool"},
    ]
    chat, ctx = tr([user("u")], tools=tools)
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "exec_command",
                "description": "run",
                "parameters": {"type": "object"},
                "strict": True,
            },
        },
        {
            "type": "function",
            "function": {"name": "no_params", "parameters": {"type": "object", "properties": {}}},
        },
        {
            "type": "function",
            "function": {"name": "mcp__demo__echo_tool", "parameters": {"type": "object"}},
        },
    ]
    origin = ctx.tools["mcp__demo__echo_tool"]
    assert (origin.name, origin.namespace, origin.freeform) == ("echo_tool", "mcp__demo", False)
    assert ctx.response_echo["tools"] == tools  # echoed as the client sent them


def test_hosted_tools_are_logged_once_each(caplog):
    with caplog.at_level(logging.INFO, logger="mitmrelay.core.request"):
        tr([user("u")], tools=[{"type": "web_search"}, {"type": "image_generation"}])
    logged = [r.getMessage() for r in caplog.records]
    assert sum("'web_search'" in m for m in logged) == 1
    assert sum("'image_generation'" in m for m in logged) == 1


@pytest.mark.parametrize("tools", [[], [{"type": "web_search"}], None])
def test_no_chat_tools_means_no_tools_tool_choice_or_parallel_flag(tools):
    chat, _ = tr([user("u")], tools=tools, tool_choice="auto", parallel_tool_calls=False)
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(chat)


def test_additional_tools_item_is_treated_like_tools():
    item = {
        "type": "additional_tools",
        "role": "developer",
        "tools": [
            {
                "type": "namespace",
                "name": "functions",
                "tools": [{"type": "custom", "name": "exec", "description": "Run JS."}],
            }
        ],
    }
    chat, ctx = tr([item, user("u")])
    assert [t["function"]["name"] for t in chat["tools"]] == ["functions__exec"]
    assert ctx.tools["functions__exec"].freeform
    assert chat["messages"] == [{"role": "user", "content": "u"}]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        (
            {"type": "function", "name": "exec_command"},
            {"type": "function", "function": {"name": "exec_command"}},
        ),
        (
            {"type": "custom", "name": "apply_patch"},
            {"type": "function", "function": {"name": "apply_patch"}},
        ),
        (
            {"type": "function", "name": "echo_tool", "namespace": "mcp__demo"},
            {"type": "function", "function": {"name": "mcp__demo__echo_tool"}},
        ),
        # A hosted or allowed-tools choice has no Chat form: the model chooses.
        ({"type": "allowed_tools", "mode": "auto", "tools": []}, "auto"),
        ({"type": "web_search_preview"}, "auto"),
    ],
)
def test_tool_choice(choice, expected):
    tools = [FN, {"type": "custom", "name": "apply_patch"}]
    chat, _ = tr([user("u")], tools=tools, tool_choice=choice, parallel_tool_calls=True)
    assert chat["tool_choice"] == expected
    assert chat["parallel_tool_calls"] is True


def test_tool_name_collision_is_a_client_error():
    with pytest.raises(ClientRequestError, match="both become"):
        tr(
            [user("u")],
            tools=[{"type": "function", "name": "a.b"}, {"type": "function", "name": "a_b"}],
        )


def test_long_namespaced_names_are_shortened_and_mapped_back():
    ns, name = "mcp__" + "s" * 40, "t" * 40
    chat, ctx = tr(
        [call("c1", name=name, namespace=ns), out("c1")],
        tools=[{"type": "namespace", "name": ns, "tools": [{"type": "function", "name": name}]}],
    )
    flat = chat["tools"][0]["function"]["name"]
    assert len(flat) <= 64 and (ctx.tools[flat].name, ctx.tools[flat].namespace) == (name, ns)
    assert chat["messages"][0]["tool_calls"][0]["function"]["name"] == flat


# ----------------------------------------------------------------------------- 6. parameters


SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}}


@pytest.mark.parametrize(
    ("fields", "profile", "expected", "absent"),
    [
        (
            {"reasoning": {"effort": "high", "summary": "auto"}},
            GENERIC,
            {"reasoning_effort": "high"},
            (),
        ),
        ({"reasoning": {"summary": "auto"}}, GENERIC, {}, ("reasoning_effort", "reasoning")),
        (
            {"reasoning": {"effort": "high"}},
            replace(GENERIC, thinking=None),
            {},
            ("reasoning_effort",),
        ),
        ({"max_output_tokens": 100}, GENERIC, {"max_tokens": 100}, ()),
        (
            {"max_output_tokens": 100},
            replace(GENERIC, max_tokens_field="max_completion_tokens"),
            {"max_completion_tokens": 100},
            ("max_tokens",),
        ),
        ({"temperature": 0.2, "top_p": 0.9}, GENERIC, {"temperature": 0.2, "top_p": 0.9}, ()),
        (
            {"stream": True},
            GENERIC,
            {"stream": True, "stream_options": {"include_usage": True}},
            (),
        ),
        (
            {"stream": True},
            replace(GENERIC, accepts_stream_options=False),
            {"stream": True},
            ("stream_options",),
        ),
        ({"stream": False}, GENERIC, {}, ("stream", "stream_options")),
        (
            {
                "text": {
                    "format": {
                        "type": "json_schema",
                        "name": "out",
                        "schema": SCHEMA,
                        "strict": True,
                    }
                }
            },
            GENERIC,
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "out", "schema": SCHEMA, "strict": True},
                }
            },
            (),
        ),
        (
            {"text": {"format": {"type": "json_object"}}},
            GENERIC,
            {"response_format": {"type": "json_object"}},
            (),
        ),
        (
            {"text": {"format": {"type": "text"}, "verbosity": "low"}},
            GENERIC,
            {},
            ("response_format", "text", "verbosity"),
        ),
        (
            {
                "store": False,
                "include": ["reasoning.encrypted_content"],
                "prompt_cache_key": "k",
                "client_metadata": {"a": "b"},
                "service_tier": "flex",
                "metadata": {"m": "1"},
                "previous_response_id": "resp_1",
                "truncation": "auto",
                "user": "u",
            },
            GENERIC,
            {},
            (
                "store",
                "include",
                "prompt_cache_key",
                "client_metadata",
                "service_tier",
                "metadata",
                "previous_response_id",
                "truncation",
                "user",
                "instructions",
                "input",
            ),
        ),
        (
            {},
            replace(GENERIC, extra_body={"thinking": {"type": "enabled"}}),
            {"thinking": {"type": "enabled"}},
            (),
        ),
        (
            {"temperature": 0.2, "stream": True},
            replace(GENERIC, drop_params=frozenset({"temperature", "stream_options"})),
            {"stream": True},
            ("temperature", "stream_options"),
        ),
    ],
)
def test_parameters(fields, profile, expected, absent):
    chat, _ = tr([user("u")], profile=profile, **fields)
    assert chat["model"] == "up"
    assert {k: chat[k] for k in expected if k in chat} == expected
    assert not set(absent) & set(chat)


@pytest.mark.parametrize(
    ("profile", "present"),
    [
        (GENERIC, True),
        (replace(GENERIC, accepts_parallel_tool_calls=False, accepts_tool_choice=False), False),
    ],
)
def test_tool_parameters_follow_the_profile(profile, present):
    chat, _ = tr(
        [user("u")], tools=[FN], tool_choice="required", parallel_tool_calls=False, profile=profile
    )
    assert ("tool_choice" in chat) is present and ("parallel_tool_calls" in chat) is present


def test_context_and_response_echo():
    fields = {
        "instructions": "I",
        "tools": [FN, {"type": "web_search"}],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"effort": "low", "summary": "auto"},
        "text": {"verbosity": "low"},
        "max_output_tokens": 50,
        "temperature": 1.0,
        "top_p": 1.0,
        "metadata": {"k": "v"},
        "previous_response_id": "resp_0",
        "store": False,
        "truncation": "disabled",
        "service_tier": "flex",
        "prompt_cache_key": "pck",
        "user": "me",
        "stream": True,
    }
    _, ctx = tr([user("u")], **fields)
    assert (ctx.client_model, ctx.upstream_model, ctx.stream) == ("client-model", "up", True)
    expected = {k: v for k, v in fields.items() if k != "stream"}
    assert dict(ctx.response_echo) == expected
    json.dumps(dict(ctx.response_echo))  # JSON-ready


def test_an_output_arriving_after_a_later_message_moves_right_after_its_call():
    # From the integrator's first version of this file: Chat needs the answer adjacent.
    messages = msgs([call("c1"), user("interjection"), out("c1")])
    assert [m["role"] for m in messages] == ["assistant", "tool", "user"]
    assert messages[1] == TOOL


def test_a_request_with_nothing_to_send_is_a_client_error():
    # 14d without its previous_response_id chain: the output answers no known call.
    with pytest.raises(ClientRequestError, match="no input the upstream can read"):
        tr([out("c1")], previous_response_id="resp_unknown")


def test_unknown_tools_inside_a_namespace_are_skipped_not_a_400():
    namespace = {
        "type": "namespace",
        "name": "mcp__demo",
        "tools": [
            {"type": "function", "name": "echo_tool"},
            {"type": "web_search"},
            {"type": "future_kind", "name": "z"},
        ],
    }
    chat, _ = tr([user("u")], tools=[namespace])
    assert [t["function"]["name"] for t in chat["tools"]] == ["mcp__demo__echo_tool"]


def test_an_image_beside_an_unreadable_part_keeps_the_image_and_the_text():
    parts = [
        {"type": "input_text", "text": "see"},
        {"type": "input_file", "file_id": "file-1"},
        {"type": "input_image", "image_url": "data:image/png;base64,AA==", "detail": "low"},
    ]
    message = msgs([{"type": "message", "role": "user", "content": parts}])[0]
    assert message["content"] == [
        {"type": "text", "text": "see"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA==", "detail": "low"}},
    ]


def test_reasoning_with_nothing_after_it_sends_nothing():
    assert msgs([user("u"), said("a"), reasoning("thinking, then interrupted")]) == [
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": "a"},
    ]
