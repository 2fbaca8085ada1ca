"""Each request-translation rule on minimal inputs, plus the property test of rule 3."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mitmrelay.core.errors import ClientRequestError
from mitmrelay.core.profiles import GENERIC
from mitmrelay.core.request import MISSING_OUTPUT, parse_request, translate_request


def chat_for(body: dict, profile=GENERIC) -> dict:
    body = {"model": "m", **body}
    return translate_request(
        parse_request(json.dumps(body).encode()), upstream_model="up", profile=profile
    )[0]


def user(text):
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def fc(call_id, name="exec_command", args='{"cmd":"ls"}'):
    return {"type": "function_call", "call_id": call_id, "name": name, "arguments": args}


def out(call_id, output="done"):
    return {"type": "function_call_output", "call_id": call_id, "output": output}


def reasoning(text):
    return {"type": "reasoning", "summary": [{"type": "summary_text", "text": text}]}


def test_plain_string_input_and_instructions():
    chat = chat_for({"instructions": "be brief", "input": "hi"})
    assert chat["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]


def test_consecutive_calls_are_one_assistant_message_with_empty_args_as_object():
    chat = chat_for({"input": [user("go"), fc("a", args=""), fc("b"), out("a"), out("b")]})
    assistant = chat["messages"][1]
    assert [c["id"] for c in assistant["tool_calls"]] == ["a", "b"]
    assert assistant["tool_calls"][0]["function"]["arguments"] == "{}"
    assert [m.get("tool_call_id") for m in chat["messages"][2:]] == ["a", "b"]


def test_missing_output_is_synthesized_and_orphans_dropped():
    chat = chat_for({"input": [user("go"), fc("a"), out("zzz"), user("next")]})
    assert chat["messages"][2] == {"role": "tool", "tool_call_id": "a", "content": MISSING_OUTPUT}
    assert "zzz" not in json.dumps(chat)


def test_outputs_arriving_late_are_moved_right_after_their_call():
    chat = chat_for({"input": [fc("a"), user("interjection"), out("a")]})
    assert [m["role"] for m in chat["messages"]] == ["assistant", "tool", "user"]


def test_reasoning_goes_to_the_next_assistant_message_not_text():
    chat = chat_for({"input": [user("q"), reasoning("plan"), fc("a"), out("a")]})
    assert chat["messages"][1]["reasoning_content"] == "plan"
    assert "plan" not in json.dumps([m.get("content") for m in chat["messages"]])


def test_reasoning_before_a_user_turn_is_dropped():
    chat = chat_for({"input": [reasoning("stale"), user("q")]})
    assert "stale" not in json.dumps(chat)


@pytest.mark.parametrize(
    ("profile", "key"),
    [
        (replace(GENERIC, reasoning_replay="reasoning"), "reasoning"),
        (replace(GENERIC, reasoning_replay="none"), None),
    ],
)
def test_reasoning_field_follows_the_profile(profile, key):
    msg = chat_for({"input": [reasoning("plan"), fc("a"), out("a")]}, profile)["messages"][0]
    assert "reasoning_content" not in msg
    assert (msg.get(key) == "plan") if key else ("reasoning" not in msg)


def test_placeholder_for_tool_calls_without_reasoning():
    profile = replace(GENERIC, reasoning_placeholder=" ")
    msg = chat_for({"input": [fc("a"), out("a")]}, profile)["messages"][0]
    assert msg["reasoning_content"] == " "


def test_profile_switches():
    profile = replace(
        GENERIC,
        max_tokens_field="max_completion_tokens",
        accepts_stream_options=False,
        accepts_reasoning_effort=False,
        merge_system_messages=True,
        extra_body={"thinking": {"type": "enabled"}},
        drop_params=frozenset({"temperature"}),
    )
    chat = chat_for(
        {
            "input": [
                {"type": "message", "role": "developer", "content": "a"},
                {"type": "message", "role": "developer", "content": "b"},
            ],
            "stream": True,
            "max_output_tokens": 99,
            "temperature": 0.2,
            "reasoning": {"effort": "high"},
        },
        profile,
    )
    assert chat["messages"] == [{"role": "system", "content": "a\n\nb"}]
    assert chat["max_completion_tokens"] == 99 and "stream_options" not in chat
    assert "reasoning_effort" not in chat and "temperature" not in chat
    assert chat["thinking"] == {"type": "enabled"}


def test_tool_choice_named_function_and_custom_and_hosted_tools_dropped():
    chat = chat_for(
        {
            "tools": [
                {"type": "function", "name": "f", "parameters": {"type": "object"}},
                {"type": "custom", "name": "apply_patch", "description": "patch"},
                {"type": "web_search"},
                {"type": "something_new"},
            ],
            "tool_choice": {"type": "custom", "name": "apply_patch"},
            "input": "x",
        }
    )
    assert [t["function"]["name"] for t in chat["tools"]] == ["f", "apply_patch"]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "apply_patch"}}


def test_unknown_items_are_skipped_not_fatal():
    chat = chat_for({"input": [{"type": "web_search_call", "id": "x"}, user("q")]})
    assert chat["messages"] == [{"role": "user", "content": "q"}]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (b"{not json", "not valid JSON"),
        (
            b'{"model": "m", "input": [{"type": "message", "role": "user", "content": '
            b'[{"type": "input_image", "image_url": 5}]}]}',
            "input[0].content[0].image_url",
        ),
        (b'{"input": "x"}', "model"),
    ],
)
def test_invalid_bodies_name_the_field(body, path):
    with pytest.raises(ClientRequestError, match=path.replace("[", r"\[").replace("]", r"\]")):
        parse_request(body)


def test_tool_name_collision_is_a_client_error():
    with pytest.raises(ClientRequestError, match="both become"):
        chat_for(
            {
                "tools": [{"type": "function", "name": "a.b"}, {"type": "function", "name": "a_b"}],
                "input": "x",
            }
        )


# ------------------------------------------------------------------ property: rule 3

ids = st.sampled_from(["c1", "c2", "c3", "c4"])
items = st.one_of(
    st.builds(user, st.text(min_size=1, max_size=5)),
    st.builds(fc, ids),
    st.builds(out, ids, st.text(min_size=1, max_size=5)),
    st.builds(reasoning, st.text(min_size=1, max_size=5)),
    st.builds(
        lambda t: {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": t}],
        },
        st.text(min_size=1, max_size=5),
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(items, max_size=14))
def test_message_order_invariant_and_nothing_lost_or_duplicated(seq):
    try:
        messages = chat_for({"input": seq})["messages"]
    except ClientRequestError:
        return
    answered = []
    for i, m in enumerate(messages):
        calls = m.get("tool_calls") or []
        for k, call in enumerate(calls):
            nxt = messages[i + 1 + k]
            assert nxt["role"] == "tool" and nxt["tool_call_id"] == call["id"]
            answered.append(call["id"])
        if m["role"] == "tool":
            prev_calls = [c["id"] for mm in messages[:i] for c in mm.get("tool_calls") or ()]
            assert m["tool_call_id"] in prev_calls
    # every call item is sent exactly once (by call id, the first occurrence of an id wins a
    # single answer), every user text exactly once
    call_items = [it["call_id"] for it in seq if it["type"] == "function_call"]
    sent_calls = [c["id"] for m in messages for c in m.get("tool_calls") or ()]
    assert sent_calls == call_items
    user_texts = [
        it["content"][0]["text"] for it in seq if it["type"] == "message" and it["role"] == "user"
    ]
    assert [m["content"] for m in messages if m["role"] == "user"] == user_texts
    outputs = {
        it["call_id"]: it["output"] for it in reversed(seq) if it["type"] == "function_call_output"
    }
    for m in messages:
        if m["role"] == "tool" and m["content"] != MISSING_OUTPUT:
            assert m["content"] == outputs[m["tool_call_id"]]
