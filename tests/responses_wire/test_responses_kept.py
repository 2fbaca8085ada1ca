"""Kept reasoning on the Responses wire (core/responses_wire/kept.py): what the relay keeps of an
answer's reasoning, per tool call, and how a next request whose client dropped its reasoning
items gets it back; checked by each family's strict fake (DeepSeek refuses a tool call without
its reasoning in thinking mode)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.fake_responses import (
    Call,
    CustomCall,
    FakeResponses,
    Reasoning,
    Text,
    Turn,
    stream_for,
)
from wire_helpers import carrier, clean, normaliser

from mitmrelay.core.context import ToolOrigin
from mitmrelay.core.responses_wire.kept import (
    TURN_PREFIX,
    call_view,
    kept_records,
    restored_item,
    turn_key,
)

KEY = carrier()
TOOLS = [
    {"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
    {"type": "custom", "name": "apply_patch", "description": "patch"},
]


def answer(family: str, turn: Turn) -> list[dict[str, Any]]:
    """The output items Codex receives for ``turn`` from ``family``'s provider."""
    _, ctx = clean({"model": "m", "tools": TOOLS, "input": "go"}, family)
    n = normaliser(family, ctx=ctx, carrier=KEY)
    n.feed(stream_for(turn, family))
    n.finish()
    assert n.response["status"] == "completed", n.response
    return n.output


THINK_AND_CALL = Turn(
    [
        Reasoning("I should list the files."),
        Call("exec_command", {"cmd": "ls"}, call_id="call_ls"),
        CustomCall("apply_patch", "*** Begin Patch\n*** End Patch\n", call_id="call_patch"),
    ]
)


def next_request(output: list[dict[str, Any]], *, drop_reasoning: bool, **ids: str) -> dict:
    """Codex's next request after ``output``, its reasoning items dropped as some clients do;
    ``ids`` renames call ids (a client that replays calls under ids of its own)."""
    items: list[dict[str, Any]] = [{"type": "message", "role": "user", "content": "go"}]
    outputs = []
    for item in output:
        if drop_reasoning and item["type"] == "reasoning":
            continue
        if "call_id" in item:
            item = {**item, "call_id": ids.get(item["call_id"], item["call_id"])}
            outputs.append({"type": f"{item['type']}_output", "call_id": item["call_id"]})
        items.append(item)
    items += [{**o, "output": "done"} for o in outputs]  # Codex: the turn's calls, then outputs
    return {"model": "m", "tools": TOOLS, "input": items, "reasoning": {"effort": "high"}}


def store_of(output: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return dict(kept_records(output, KEY.open))


def test_each_call_and_its_turn_keep_the_reasoning_that_preceded_them():
    output = answer("deepseek", THINK_AND_CALL)
    store = store_of(output)
    calls = [i for i in output if i["type"] != "reasoning"]
    turn = TURN_PREFIX + turn_key([call_view(c) for c in calls])
    assert set(store) == {"call_ls", "call_patch", turn}
    record = store["call_ls"]
    assert record["text"] == "I should list the files."
    assert record["call_ids"] == ["call_ls", "call_patch"]
    assert record["item"]["form"] == "content"  # DeepSeek's own item, for its replay


def test_nothing_is_kept_for_reasoning_without_calls_or_calls_without_reasoning():
    text_only = answer("deepseek", Turn([Reasoning("hmm"), Text("no tool needed")]))
    assert store_of(text_only) == {}
    unreasoned = answer("generic", Turn([Call("exec_command", "{}")]))
    assert store_of(unreasoned) == {}
    assert (
        kept_records([{"type": "reasoning", "encrypted_content": "gAAAA-openai"}], KEY.open) == []
    )


def test_a_client_that_dropped_the_reasoning_gets_it_back_by_call_id():
    output = answer("deepseek", THINK_AND_CALL)
    request = next_request(output, drop_reasoning=True)
    bare, _ = clean(request, "deepseek")
    # Without the map, DeepSeek would get only the placeholder...
    (placeholder,) = [i for i in bare["input"] if i["type"] == "reasoning"]
    assert placeholder["content"] == [{"type": "reasoning_text", "text": " "}]
    # ...with it, its own reasoning, where it was.
    store = store_of(output)
    body, _ = clean(request, "deepseek", kept=store.get)
    kinds = [i["type"] for i in body["input"]]
    assert kinds[:3] == ["message", "reasoning", "function_call"]
    restored = body["input"][1]
    assert restored["content"] == [{"type": "reasoning_text", "text": "I should list the files."}]
    assert FakeResponses("deepseek").validate(body) is None


def test_a_client_with_ids_of_its_own_gets_it_back_by_what_the_calls_do():
    output = answer("deepseek", THINK_AND_CALL)
    request = next_request(output, drop_reasoning=True, call_ls="mine_1", call_patch="mine_2")
    asked: list[str] = []
    store = store_of(output)

    def lookup(key: str) -> Any:
        asked.append(key)
        return store.get(key)

    body, _ = clean(request, "deepseek", kept=lookup)
    assert asked[0] == "mine_1" and asked[1].startswith(TURN_PREFIX)
    (restored,) = [i for i in body["input"] if i["type"] == "reasoning"]
    assert restored["content"][0]["text"] == "I should list the files."


def test_turns_that_kept_their_reasoning_ask_for_nothing():
    output = answer("deepseek", THINK_AND_CALL)
    asked: list[str] = []
    body, _ = clean(next_request(output, drop_reasoning=False), "deepseek", kept=asked.append)
    assert asked == []
    assert FakeResponses("deepseek").validate(body) is None


def test_a_model_that_does_not_reason_gets_no_placeholder_and_no_effort():
    output = answer("deepseek", THINK_AND_CALL)
    body, _ = clean(next_request(output, drop_reasoning=True), "deepseek", reasoning=False)
    assert "reasoning" not in body
    assert [i for i in body["input"] if i["type"] == "reasoning"] == []


@pytest.mark.parametrize(
    ("family", "expected"),
    [
        (
            "deepseek",
            {
                "type": "reasoning",
                "summary": [],
                "content": [{"type": "reasoning_text", "text": "t"}],
            },
        ),
        ("generic", {"type": "reasoning", "summary": [{"type": "summary_text", "text": "t"}]}),
    ],
)
def test_a_record_kept_on_the_chat_wire_gives_its_text_in_the_rows_form(family, expected):
    record = {"text": "t", "details": [], "signatures": {}, "call_ids": ["c"]}
    from mitmrelay.core.responses_wire import RULES

    assert restored_item(record, RULES[family].reasoning_form) == expected
    assert restored_item({"text": ""}, "summary") is None


def test_views_are_the_same_from_the_request_and_from_the_answer():
    function = {"type": "function_call", "name": "f", "arguments": '{"a": 1}', "call_id": "c"}
    custom = {"type": "custom_tool_call", "name": "p", "namespace": "n", "input": "x"}
    search = {"type": "tool_search_call", "call_id": "s", "arguments": {"query": "q"}}
    assert call_view(function) == ("f", None, '{"a": 1}')
    assert call_view(custom) == ("p", "n", "x")
    assert call_view(search) == ("tool_search", None, json.dumps({"query": "q"}))
    assert ToolOrigin("p").name == "p"
