"""The "LLM stream" view's text (core/stream_summary.py): one line per item, tool calls
accumulated as the translator accumulates them (core/stream.py rule 4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mitmrelay.core.request import parse_request, translate_request
from mitmrelay.core.sse import MAX_SSE_EVENT_BYTES
from mitmrelay.core.stream_summary import summarize_request, summarize_stream


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
        # No index and no id after the first delta: the same call goes on.
        (
            [call(None, id="g1", name="x"), call(None, args='{"a":'), call(None, args="1}")],
            ['call g1: x({"a":1})'],
        ),
    ],
    ids=["id-first-only", "parallel", "vllm-same-index", "gemini-no-index", "no-index-no-id"],
)
def test_chat_tool_calls_are_one_line_each(deltas, expected):
    assert call_lines(chat_stream(*deltas)) == expected


def test_chat_stream_lines_reasoning_text_and_finish():
    text = summarize_stream(
        chat_stream({"reasoning_content": "hmm"}, {"content": "hi"}, finish="stop")
    )
    assert text.splitlines() == ["reasoning: hmm", "text: hi", "== finish_reason: stop"]


# ----------------------------------------------------------------------------- deferred tools

CAPTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tool-search" / "codex-0.169"


def captured(name: str) -> dict:
    return json.loads((CAPTURES / f"{name}.request.json").read_text())["body"]


def test_a_search_call_in_a_responses_stream_shows_its_query():
    # What the relay sends Codex for the model's search (core/tool_search.py rule 5), as the
    # scripted server of the captures served it.
    stream = (CAPTURES / "search-01.served.sse").read_bytes()
    assert summarize_stream(stream).splitlines()[0] == (
        'search call_search_1: {"query": "echo text tool", "limit": 8}'
    )


def test_a_search_and_its_results_read_as_the_tools_found():
    lines = summarize_request(json.dumps(captured("search-03")).encode()).splitlines()
    assert lines[0].startswith("model: gpt-5.5 | stream | 13 tools: exec_command, write_stdin")
    assert lines[0].endswith("tool_search (client), web_search (hosted)")
    start = lines.index('search call_search_1: {"query": "echo text tool", "limit": 8}')
    assert lines[start + 1 : start + 5] == [
        "search results call_search_1: 1 tool",
        "  mcp__demo.echo_tool(text): Echo the given text back, prefixed with 'echo: '.",
        'call call_echo_1: mcp__demo.echo_tool({"text": "ping-42"})',
        "output call_echo_1: " + lines[start + 4].removeprefix("output call_echo_1: "),
    ]
    assert lines[start + 4].startswith("output call_echo_1: Wall time:")
    # The ~21 KB base prompt is one short line.
    assert lines[1].startswith("developer: You are Codex") and lines[1].endswith("chars)")
    assert len(lines[1]) < 120


def test_the_upstream_request_shows_the_answer_the_model_reads():
    req = parse_request(json.dumps(captured("search-02")).encode())
    chat, _ = translate_request(req, upstream_model="deepseek-chat")
    lines = summarize_request(json.dumps(chat).encode()).splitlines()
    assert lines[0].startswith("model: deepseek-chat | stream | 13 tools: exec_command")
    assert lines[0].endswith("tool_search, mcp__demo__echo_tool")
    assert lines[-3:] == [
        'call call_search_1: tool_search({"query": "echo text tool", "limit": 8})',
        "tool call_search_1: Found 1 tool, callable as functions from now on:",
        "  - mcp__demo__echo_tool(text): Echo the given text back, prefixed with 'echo: '.",
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"not json", ["(not JSON)"]),
        (b"[1]", ["(not an LLM request)"]),
        (b'{"model": "m"}', ["(not an LLM request)"]),
        (b'{"model": "m", "input": "hi"}', ["model: m", "user: hi"]),
        (b'{"model": "m", "input": 5}', ["model: m"]),
        (
            json.dumps(
                {
                    "model": "lite",
                    "input": [
                        {
                            "type": "additional_tools",
                            "tools": [
                                {
                                    "type": "namespace",
                                    "name": "functions",
                                    "tools": [{"type": "custom", "name": "exec"}],
                                },
                                {"type": "custom", "name": "patch"},
                                {"type": "tool_search"},
                            ],
                        },
                        {"role": "user", "content": [{"type": "input_image", "image_url": "x"}]},
                        {"type": "reasoning", "summary": [], "encrypted_content": "blob"},
                        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "t"}]},
                        {"type": "custom_tool_call", "call_id": "c", "name": "patch", "input": "p"},
                        {"type": "custom_tool_call_output", "call_id": "c", "output": "done"},
                        {"type": "tool_search_call", "call_id": "s", "arguments": '{"q": 1}'},
                        {"type": "tool_search_output", "call_id": "s", "tools": []},
                        {"type": "tool_search_output", "call_id": "t", "tools": "bad"},
                        {"type": "compaction", "encrypted_content": "x"},
                        "not an item",
                    ],
                }
            ).encode(),
            [
                "model: lite | 3 tools: functions.{exec}, patch (freeform), tool_search (hosted)",
                "user: [image]",
                "reasoning [sealed]: ",
                "reasoning: t",
                "custom call c: patch",
                "p",
                "output c: done",
                'search s: {"q": 1}',
                "search results s: no tools found",
                "search results t: no tools found",
                "compaction",
            ],
        ),
        (
            json.dumps(
                {
                    "model": "up",
                    "stream": True,
                    "tools": [{"type": "function", "function": {"name": "f"}}, "junk"],
                    "messages": [
                        {"role": "system", "content": "s" * 100},
                        {
                            "role": "user",
                            "content": [{"type": "image_url", "image_url": {}}, 5, {"type": "x"}],
                        },
                        {"role": "assistant", "content": "a\nb"},
                        {"role": "assistant", "content": None, "tool_calls": ["junk"]},
                        "junk",
                        {"role": "tool", "tool_call_id": "c", "content": 7},
                    ],
                }
            ).encode(),
            [
                "model: up | stream | 1 tools: f",
                "system: " + "s" * 80 + "… (100 chars)",
                "user: [image]",
                "assistant: a",
                "  b",
                "tool c: ",
            ],
        ),
    ],
    ids=["not-json", "not-object", "neither", "input-string", "input-junk", "items", "chat"],
)
def test_request_bodies_render_tolerantly(body, expected):
    assert summarize_request(body).splitlines() == expected


@given(st.binary(max_size=300))
def test_any_bytes_render_as_a_request(data):
    assert isinstance(summarize_request(data), str)


# ----------------------------------------------------------------------------- any shape


def sse(*events: object) -> bytes:
    return b"".join(b"data: %s\n\n" % json.dumps(e).encode() for e in events)


def test_responses_stream_lines_every_item_kind_and_the_terminal_event():
    done = "response.output_item.done"
    stream = sse(
        {"type": done, "item": {"type": "message", "content": [{"text": "hi"}]}},
        {"type": done, "item": {"type": "reasoning", "summary": [{"text": "r"}]}},
        {
            "type": done,
            "item": {"type": "reasoning", "content": [{"text": "raw"}], "encrypted_content": "b"},
        },
        {
            "type": done,
            "item": {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
        },
        {
            "type": done,
            "item": {
                "type": "function_call",
                "call_id": "d",
                "namespace": "ns",
                "name": "g",
                "arguments": "{}",
            },
        },
        {"type": done, "item": {"type": "compaction", "encrypted_content": "x"}},
        {"type": "response.output_text.delta", "delta": "ignored"},
        {
            "type": "response.failed",
            "response": {"status": "failed", "error": {"code": "server_error"}},
        },
        {
            "type": "response.incomplete",
            "response": {
                "status": "incomplete",
                "incomplete_details": {"reason": "max_output_tokens"},
                "usage": {"total_tokens": 3},
            },
        },
    )
    assert summarize_stream(stream).splitlines() == [
        "text: hi",
        "reasoning: r",
        "reasoning [sealed]: raw",
        "call c: f({})",
        "call d: ns.g({})",
        'compaction: {"type": "compaction", "encrypted_content": "x"}',
        "== failed {'code': 'server_error'}",
        "== incomplete {'reason': 'max_output_tokens'}",
        'usage: {"total_tokens": 3}',
    ]


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (b"", "(no JSON events)"),
        (b"data: not json\n\ndata: [1]\n\n", "(no JSON events)"),
        (sse({"type": "response.created"}), "(no finished items yet)"),
        # One event over the SSE decoder's bound (core/sse.py MAX_SSE_EVENT_BYTES).
        (b"data: " + b"x" * (MAX_SSE_EVENT_BYTES + 1) + b"\n\n", "(no JSON events)"),
        (sse({"error": {"message": "boom"}}), 'error: {"message": "boom"}'),
        (
            sse({"choices": [{"delta": {"content": "x"}}], "usage": {"total_tokens": 1}}),
            'text: x\n== finish_reason: None\nusage: {"total_tokens": 1}',
        ),
    ],
    ids=["empty", "not-objects", "no-items", "too-long", "chat-error", "chat-usage"],
)
def test_streams_without_items_render_as_such(stream, expected):
    assert summarize_stream(stream) == expected


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
KEYS = st.sampled_from(
    [
        "type",
        "item",
        "content",
        "summary",
        "choices",
        "delta",
        "tool_calls",
        "function",
        "index",
        "id",
        "response",
        "usage",
        "error",
        "input",
        "messages",
        "tools",
        "role",
        "output",
        "arguments",
        "call_id",
        "name",
        "namespace",
        "text",
    ]
)
SHAPED = st.recursive(
    st.none()
    | st.integers()
    | st.sampled_from(
        [
            "response.output_item.done",
            "response.completed",
            "message",
            "reasoning",
            "function_call",
            "tool_search_call",
            "tool_search_output",
            "namespace",
            "function",
            "user",
            "tool",
            "x",
        ]
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=20,
)


@given(st.lists(SHAPED | JSON, max_size=4))
def test_any_json_events_render_without_raising(events):
    assert isinstance(summarize_stream(sse(*events)), str)


@given(SHAPED)
def test_any_json_request_renders_without_raising(body):
    assert isinstance(summarize_request(json.dumps(body).encode()), str)
