import json

import pytest

from mitmrelay.core.reasoning_recovery import (
    is_missing_reasoning_error,
    restoration_keys,
    with_reasoning_placeholders,
    with_restored_reasoning,
)


@pytest.mark.parametrize(
    "message",
    [
        "The reasoning_content in the thinking mode must be passed back to the API.",
        "Missing reasoning_content field in the assistant message at message index 2",
        "thinking is enabled but reasoning_content is missing in assistant tool call message at "
        "index 2",
    ],
)
def test_provider_wordings(message):
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()
    assert is_missing_reasoning_error(400, body)
    assert not is_missing_reasoning_error(500, body)


def test_other_400s_are_not_healed():
    assert not is_missing_reasoning_error(400, b'{"error":{"message":"bad tools"}}')


def test_placeholders_only_where_missing_and_input_untouched():
    chat = {
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "a"}]},
            {"role": "tool", "tool_call_id": "a", "content": "x"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "b"}],
                "reasoning_content": "kept",
            },
            {"role": "assistant", "content": "plain answer"},
        ]
    }
    healed, changed = with_reasoning_placeholders(chat)
    assert changed == 1
    assert healed["messages"][1]["reasoning_content"] == " "
    assert healed["messages"][3]["reasoning_content"] == "kept"
    assert "reasoning_content" not in healed["messages"][4]
    assert "reasoning_content" not in chat["messages"][1]


def test_reasoning_restored_from_the_call_id_map_only_where_missing():
    from mitmrelay.core.reasoning import ReasoningPayload
    from mitmrelay.core.reasoning_recovery import payload_record, with_restored_reasoning

    kept = {
        "a": payload_record(ReasoningPayload(text="why a", signatures={"a": "S"}, call_ids=("a",)))
    }
    chat = {
        "messages": [
            {"role": "assistant", "content": None, "tool_calls": [{"id": "a"}]},
            {"role": "tool", "tool_call_id": "a", "content": "x"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "b"}]},
            {"role": "tool", "tool_call_id": "b", "content": "y"},
        ]
    }
    restored, changed = with_restored_reasoning(chat, kept.get)
    assert changed == 1
    assert restored["messages"][0]["reasoning_content"] == "why a"
    assert restored["messages"][0]["tool_calls"][0]["extra_content"] == {
        "google": {"thought_signature": "S"}
    }
    assert "reasoning_content" not in restored["messages"][2]
    assert "reasoning_content" not in chat["messages"][0]


def test_turn_fingerprint_finds_reasoning_when_call_ids_were_rewritten():
    from mitmrelay.core.reasoning import ReasoningPayload
    from mitmrelay.core.reasoning_recovery import (
        payload_record,
        turn_fingerprint,
        with_restored_reasoning,
    )

    calls = [{"id": "orig", "function": {"name": "f", "arguments": '{"a":1}'}}]
    kept = {"turn:" + turn_fingerprint(calls): payload_record(ReasoningPayload(text="why"))}
    chat = {
        "messages": [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "client-renamed",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a":1}'},
                    }
                ],
            }
        ]
    }
    restored, changed = with_restored_reasoning(chat, kept.get)
    assert changed == 1 and restored["messages"][0]["reasoning_content"] == "why"
    other = {
        "messages": [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "x", "function": {"name": "f", "arguments": '{"a":2}'}}],
            }
        ]
    }
    assert with_restored_reasoning(other, kept.get)[1] == 0


def test_restoration_keys_are_the_lookups_restoring_would_make_in_order():
    chat = {
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f"}}]},
            {"role": "tool", "tool_call_id": "a", "content": "x"},
            {
                "role": "assistant",
                "reasoning_content": "kept",
                "tool_calls": [{"id": "b", "function": {"name": "f"}}],
            },
            {"role": "tool", "tool_call_id": "b", "content": "y"},
        ]
    }
    asked: list[str] = []
    with_restored_reasoning(chat, lambda key: asked.append(key), "reasoning_content")
    assert restoration_keys(chat) == asked
    assert asked[0] == "a" and asked[1].startswith("turn:") and len(asked) == 2


def test_restored_reasoning_brings_its_details_and_signatures():
    chat = {
        "messages": [
            {"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f"}}]},
            {"role": "tool", "tool_call_id": "a", "content": "x"},
        ]
    }
    record = {"text": "t", "details": [{"type": "reasoning.text"}], "signatures": {"a": "sig"}}
    restored, changed = with_restored_reasoning(chat, {"a": record}.get)
    message = restored["messages"][0]
    assert changed == 1 and message["reasoning_details"] == [{"type": "reasoning.text"}]
    assert message["tool_calls"][0]["extra_content"] == {"google": {"thought_signature": "sig"}}


def test_restoring_and_healing_share_what_they_do_not_change_and_leave_the_request_alone():
    call = {"id": "a", "function": {"name": "f", "arguments": "{}"}}
    chat = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "a", "content": "x"},
        ],
    }
    before = json.dumps(chat)
    record = {"text": "t", "details": [{"type": "reasoning.text"}], "signatures": {"a": "sig"}}
    restored, changed = with_restored_reasoning(chat, {"a": record}.get)
    healed, healed_count = with_reasoning_placeholders(chat)
    assert json.dumps(chat) == before  # the call did not get the signature either
    assert changed == healed_count == 1
    for new in (restored, healed):
        assert new["messages"][0] is chat["messages"][0]  # shared, not copied
        assert new["messages"][2] is chat["messages"][2]
    assert restored["messages"][1]["tool_calls"][0]["extra_content"]["google"] == {
        "thought_signature": "sig"
    }
    # Nothing kept, nothing missing: the very same request comes back.
    assert with_restored_reasoning(chat, {}.get) == (chat, 0)
    assert with_restored_reasoning(chat, {}.get)[0] is chat
    assert with_reasoning_placeholders(healed)[0] is healed
