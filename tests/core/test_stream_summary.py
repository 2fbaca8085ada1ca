"""The "LLM stream" view's text (core/stream_summary.py): one line per item, tool calls
accumulated as the translator accumulates them (core/stream.py rule 4)."""

from __future__ import annotations

import json

import pytest

from mitmrelay.core.stream_summary import summarize_stream


def chat_stream(*deltas: dict, finish: str = "tool_calls") -> bytes:
    chunks = [{"choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    return b"".join(b"data: %s\n\n" % json.dumps(c).encode() for c in chunks) + b"data: [DONE]\n\n"


def call(index: int | None, *, id: str | None = None, name: str = "", args: str = "") -> dict:
    tc: dict = {"function": {"name": name, "arguments": args}}
    if index is not None:
        tc["index"] = index
    if id is not None:
        tc["id"] = id
    return {"tool_calls": [tc]}


def call_lines(stream: bytes) -> list[str]:
    return [line for line in summarize_stream(stream).splitlines() if line.startswith("call ")]


@pytest.mark.parametrize(
    ("deltas", "expected"),
    [
        # OpenAI / DeepSeek: the id and name in the first delta only, arguments by index.
        (
            [call(0, id="call_a", name="ls"), call(0, args='{"p":'), call(0, args='"."}')],
            ['call call_a: ls({"p":"."})'],
        ),
        # Two parallel calls, interleaved.
        (
            [
                call(0, id="a", name="x"),
                call(1, id="b", name="y"),
                call(0, args="{}"),
                call(1, args="[]"),
            ],
            ["call a: x({})", "call b: y([])"],
        ),
        # vLLM: a new id at a used index is a new call.
        (
            [call(0, id="a", name="x", args="{}"), call(0, id="b", name="y", args="{}")],
            ["call a: x({})", "call b: y({})"],
        ),
        # Gemini: no index; each call whole, with its own id.
        (
            [call(None, id="g1", name="x", args="{}"), call(None, id="g2", name="y", args="{}")],
            ["call g1: x({})", "call g2: y({})"],
        ),
    ],
    ids=["id-first-only", "parallel", "vllm-same-index", "gemini-no-index"],
)
def test_chat_tool_calls_are_one_line_each(deltas, expected):
    assert call_lines(chat_stream(*deltas)) == expected


def test_chat_stream_lines_reasoning_text_and_finish():
    text = summarize_stream(
        chat_stream({"reasoning_content": "hmm"}, {"content": "hi"}, finish="stop")
    )
    assert text.splitlines() == ["reasoning: hmm", "text: hi", "== finish_reason: stop"]
