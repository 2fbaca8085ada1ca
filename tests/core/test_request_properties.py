"""Property: for any item sequence Codex could replay, the Chat messages keep the order
invariant (core/request.py rule 3) and carry every piece of content exactly once.

Items are generated as a shape (kind + which call an output answers); every text is then made
unique by its position, so "exactly once" can be checked by searching for it. Call ids of calls
are unique (Codex never reuses one); outputs may answer any call, come late, twice, or answer a
call that does not exist.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mitmrelay.core.errors import ClientRequestError
from mitmrelay.core.request import MISSING_OUTPUT, parse_request, translate_request

KINDS = (
    "user",
    "developer",
    "assistant",
    "reasoning",
    "call",
    "ns_call",
    "custom_call",
    "output",
    "array_output",
    "custom_output",
)

shape = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 6)), max_size=20)


def build(spec: list[tuple[str, int]]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for n, (kind, target) in enumerate(spec):
        text = f"T{n}x"
        if kind in ("user", "developer"):
            items.append(
                {"type": "message", "role": kind, "content": [{"type": "input_text", "text": text}]}
            )
        elif kind == "assistant":
            items.append(
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}],
                }
            )
        elif kind == "reasoning":
            items.append({"type": "reasoning", "summary": [{"type": "summary_text", "text": text}]})
        elif kind in ("call", "ns_call"):
            item = {
                "type": "function_call",
                "call_id": f"call{n}",
                "name": "echo_tool" if kind == "ns_call" else "exec_command",
                "arguments": json.dumps({"cmd": text}),
            }
            if kind == "ns_call":
                item["namespace"] = "mcp__demo"
            items.append(item)
        elif kind == "custom_call":
            items.append(
                {
                    "type": "custom_tool_call",
                    "call_id": f"call{n}",
                    "name": "apply_patch",
                    "input": text,
                }
            )
        else:
            # Answers the target-th call so far (or an unknown call when there are fewer).
            calls = [i["call_id"] for i in items if i["type"].endswith("call")]
            call_id = calls[target] if target < len(calls) else f"ghost{n}"
            if kind == "array_output":
                output: Any = [
                    {"type": "input_text", "text": text},
                    {"type": "input_image", "image_url": f"data:image/png;base64,I{n}x"},
                ]
            else:
                output = text
            kind_name = (
                "custom_tool_call_output" if kind == "custom_output" else ("function_call_output")
            )
            items.append({"type": kind_name, "call_id": call_id, "output": output})
    return items


def visible_texts(messages: list[dict[str, Any]]) -> str:
    """Everything the model sees as content or call arguments (not the reasoning fields)."""
    return json.dumps(
        [[m.get("content"), m.get("tool_calls")] for m in messages], ensure_ascii=False
    )


@settings(max_examples=400, deadline=None)
@given(shape)
def test_order_invariant_and_no_content_lost_or_duplicated(spec):
    items = build(spec)
    body = json.dumps({"model": "m", "input": items}).encode()
    try:
        chat, _ = translate_request(parse_request(body), upstream_model="up")
    except ClientRequestError as e:
        # Only when nothing at all has a Chat form (e.g. orphan outputs only).
        assert "no input" in e.message
        assert not any(i["type"] == "message" or i["type"].endswith("call") for i in items)
        return
    messages = chat["messages"]

    # Rule 3: each assistant's calls are answered right after it, in order, exactly once;
    # a tool message appears nowhere else.
    expected_tool_at: dict[int, str] = {}
    for i, m in enumerate(messages):
        for k, call in enumerate(m.get("tool_calls") or ()):
            expected_tool_at[i + 1 + k] = call["id"]
    tool_at = {i: m["tool_call_id"] for i, m in enumerate(messages) if m["role"] == "tool"}
    assert tool_at == expected_tool_at

    calls_sent = [c["id"] for m in messages for c in m.get("tool_calls") or ()]
    call_items = [i["call_id"] for i in items if i["type"].endswith("call")]
    assert calls_sent == call_items  # every call once, in order

    first_output: dict[str, dict[str, Any]] = {}
    for item in items:
        if item["type"].endswith("output"):
            first_output.setdefault(item["call_id"], item)
    for m in messages:
        if m["role"] != "tool":
            continue
        answer = first_output.get(m["tool_call_id"])
        if answer is None:
            assert m["content"] == MISSING_OUTPUT
        else:
            text = (
                answer["output"]
                if isinstance(answer["output"], str)
                else (answer["output"][0]["text"])
            )
            assert m["content"] == text

    seen = visible_texts(messages)
    for n, (kind, _) in enumerate(spec):
        text = f"T{n}x"
        item = items[n]
        if kind == "reasoning":
            assert text not in seen  # never visible text
            carried = [m.get("reasoning_content", "") for m in messages]
            assert sum(text in c for c in carried) <= 1
            continue
        if item["type"].endswith("output"):
            counted = first_output.get(item["call_id"]) is item and item["call_id"] in call_items
            expect = 1 if counted else 0
            assert seen.count(text) == expect, (kind, text)
            if kind == "array_output":
                assert seen.count(f"I{n}x") == expect  # the image moved, once
            continue
        assert seen.count(text) == 1, (kind, text)
    # images sit in a user message that directly follows a tool message
    for i, m in enumerate(messages):
        if m["role"] == "user" and "image_url" in json.dumps(m.get("content")):
            assert messages[i - 1]["role"] == "tool"
