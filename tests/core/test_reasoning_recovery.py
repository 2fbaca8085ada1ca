import json

import pytest

from mitmrelay.core.reasoning_recovery import (
    is_missing_reasoning_error,
    with_reasoning_placeholders,
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
