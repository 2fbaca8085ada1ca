"""StreamTranslator: each rule of core/stream.py, provider shapes, fail-closed cases."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from chat_streams import (
    CTX,
    DONE,
    call,
    chunk,
    events,
    run,
    terminal,
    text_stream,
    translator,
    types,
    usage,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mitmrelay.core.carrier import SealedReasoningCarrier
from mitmrelay.core.reasoning import ReasoningPayload

PATCH = '*** Begin Patch\n*** Add File: a.txt\n+héllo "q" \\ 😀\n*** End Patch\n'

PATCH_ARGS = json.dumps({"input": PATCH})
OPENROUTER_ERROR = (
    b'data: {"error":{"code":502,"message":"provider died"},'
    b'"choices":[{"index":0,"delta":{},"finish_reason":"error"}]}\n\n'
)


def _pieces(text: str, size: int = 5) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


SCENARIOS: dict[str, bytes] = {
    "text": text_stream("Hel", "lo ", "wörld"),
    "deepseek_reasoning_then_call": (
        chunk({"role": "assistant", "reasoning_content": "I should "})
        + chunk({"reasoning_content": "list files."})
        + chunk({"tool_calls": [call(0, "call_1", "exec_command", "")]})
        + chunk({"tool_calls": [call(0, args='{"cmd": ')]})
        + chunk({"tool_calls": [call(0, args='"ls -la"}')]})
        + chunk(finish="tool_calls")
        + usage(50, 10, prompt_cache_hit_tokens=30)
        + DONE
    ),
    "openrouter_reasoning_details": (
        chunk(
            {
                "reasoning": "plan",
                "reasoning_details": [{"type": "reasoning.text", "text": "plan", "format": "x"}],
            }
        )
        + chunk({"reasoning_details": [{"type": "reasoning.encrypted", "data": "opaque=="}]})
        + chunk({"content": "answer"})
        + chunk(finish="stop")
        + usage(
            prompt_tokens_details={"cached_tokens": 7},
            completion_tokens_details={"reasoning_tokens": 3},
        )
        + DONE
    ),
    "vllm_think_tags": text_stream("<thi", "nk>deep ", "thought</th", "ink>visible <b>"),
    "parallel_calls": (
        chunk({"tool_calls": [call(0, "call_a", "exec_command", '{"cmd":"a"}')]})
        + chunk({"tool_calls": [call(1, "call_b", "exec_command", '{"cmd":"b"}')]})
        + chunk(finish="tool_calls")
        + usage()
        + DONE
    ),
    "vllm_two_calls_on_index_0": (
        chunk({"tool_calls": [call(0, "call_a", "exec_command", '{"cmd":"a"}')]})
        + chunk({"tool_calls": [call(0, "call_b", "exec_command", '{"cmd":"b"}')]})
        + chunk(finish="tool_calls")
        + usage()
        + DONE
    ),
    "gemini_no_index_stop": (
        chunk(
            {
                "tool_calls": [
                    call(
                        None,
                        "g1",
                        "exec_command",
                        '{"cmd":"pwd"}',
                        extra_content={"google": {"thought_signature": "sig=="}},
                    )
                ]
            }
        )
        + chunk(finish="stop")
        + usage()
        + DONE
    ),
    "kimi_ids_usage_in_choice": (
        chunk({"reasoning_content": "hmm"})
        + chunk({"tool_calls": [call(0, "functions.exec_command:0", "exec_command", "{}")]})
        + b"data: "
        + json.dumps(
            {
                "choices": [
                    {
                        "index": 0,
                        "delta": {},
                        "finish_reason": "tool_calls",
                        "usage": {
                            "prompt_tokens": 9,
                            "completion_tokens": 4,
                            "total_tokens": 13,
                            "cached_tokens": 2,
                        },
                    }
                ]
            }
        ).encode()
        + b"\n\n"
        + DONE
    ),
    "freeform_apply_patch": (
        chunk({"tool_calls": [call(0, "call_p", "apply_patch", "")]})
        + b"".join(chunk({"tool_calls": [call(0, args=piece)]}) for piece in _pieces(PATCH_ARGS))
        + chunk(finish="tool_calls")
        + usage()
        + DONE
    ),
    "namespaced_mcp_call": (
        chunk({"tool_calls": [call(0, "call_m", "mcp__demo__echo_tool", '{"text":"hi"}')]})
        + chunk(finish="tool_calls")
        + usage()
        + DONE
    ),
    "length": text_stream("partial", finish="length"),
    "content_filter": text_stream("nope", finish="content_filter"),
    "done_without_newline": chunk({"content": "ok"}) + chunk(finish="stop") + b"data: [DONE]",
    "crlf_and_comments": (
        b": keepalive\r\n\r\n"
        + chunk({"content": "a"}).replace(b"\n", b"\r\n")
        + chunk(finish="stop")
        + DONE
    ),
    "error_chunk": chunk({"content": "par"}) + OPENROUTER_ERROR,
    "cut_without_finish": chunk({"content": "half"}),
    "invalid_json": chunk({"content": "a"}) + b"data: {not json\n\n",
    "call_without_name": chunk({"tool_calls": [call(0, "c1", None, "{}")]})
    + chunk(finish="tool_calls")
    + DONE,
    "invalid_arguments": chunk({"tool_calls": [call(0, "c1", "exec_command", '{"cmd": ')]})
    + chunk(finish="tool_calls")
    + DONE,
    # A raw newline inside a JSON string: not JSON, whatever the live decoder saw of it.
    "freeform_raw_control_character": chunk(
        {"tool_calls": [call(0, "c1", "apply_patch", '{"input": "a\nb"}')]}
    )
    + chunk(finish="tool_calls")
    + DONE,
    "length_cuts_a_call": (
        chunk({"content": "x"})
        + chunk({"tool_calls": [call(0, "c1", "exec_command", '{"cmd": "l')]})
        + chunk(finish="length")
        + DONE
    ),
}


def test_text_lifecycle_is_openais_order():
    out = run(SCENARIOS["text"])
    assert types(out) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    evs = events(out)
    assert [e["sequence_number"] for e in evs] == list(range(len(evs)))
    assert all(e["logprobs"] == [] for e in evs if e["type"] == "response.output_text.delta")
    done = terminal(out)["response"]
    assert done["output"][0]["content"][0]["text"] == "Hello wörld"
    assert done["usage"] == {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 20,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 120,
    }


def test_completed_output_equals_the_items_done():
    for name in (
        "text",
        "deepseek_reasoning_then_call",
        "parallel_calls",
        "freeform_apply_patch",
        "openrouter_reasoning_details",
    ):
        evs = events(run(SCENARIOS[name]))
        done_items = [e["item"] for e in evs if e["type"] == "response.output_item.done"]
        assert evs[-1]["response"]["output"] == done_items, name


def test_arguments_stream_live_not_batched():
    evs = events(run(SCENARIOS["deepseek_reasoning_then_call"]))
    deltas = [e["delta"] for e in evs if e["type"] == "response.function_call_arguments.delta"]
    assert deltas == ['{"cmd": ', '"ls -la"}']
    added = next(
        e
        for e in evs
        if e["type"] == "response.output_item.added" and e["item"]["type"] == "function_call"
    )
    assert added["item"]["name"] == "exec_command" and added["item"]["call_id"] == "call_1"
    # added comes before the first argument delta: the UI sees the call start at once
    assert evs.index(added) < next(
        i for i, e in enumerate(evs) if e["type"] == "response.function_call_arguments.delta"
    )


def test_reasoning_is_a_summary_item_before_the_call_with_cached_tokens():
    done = terminal(run(SCENARIOS["deepseek_reasoning_then_call"]))["response"]
    rs, fc = done["output"]
    assert rs["type"] == "reasoning"
    assert rs["summary"] == [{"type": "summary_text", "text": "I should list files."}]
    assert fc["arguments"] == '{"cmd": "ls -la"}'
    assert done["usage"]["input_tokens_details"]["cached_tokens"] == 30


def test_raw_and_hidden_reasoning_modes():
    raw = events(run(SCENARIOS["deepseek_reasoning_then_call"], reasoning_mode="raw"))
    assert [e["delta"] for e in raw if e["type"] == "response.reasoning_text.delta"] == [
        "I should ",
        "list files.",
    ]
    hidden = events(run(SCENARIOS["deepseek_reasoning_then_call"], reasoning_mode="hidden"))
    assert not [e for e in hidden if "reasoning" in e["type"] and "delta" in e["type"]]
    item = hidden[-1]["response"]["output"][0]
    assert item["summary"] == [] and item["content"][0]["text"] == "I should list files."


def test_openrouter_reasoning_and_details_and_usage_details():
    done = terminal(run(SCENARIOS["openrouter_reasoning_details"]))["response"]
    assert done["output"][0]["summary"][0]["text"] == "plan"
    assert done["output"][1]["content"][0]["text"] == "answer"
    assert done["usage"]["input_tokens_details"]["cached_tokens"] == 7
    assert done["usage"]["output_tokens_details"]["reasoning_tokens"] == 3


def test_think_tags_are_split_out_across_chunks():
    done = terminal(run(SCENARIOS["vllm_think_tags"], step=3))["response"]
    assert done["output"][0]["summary"][0]["text"] == "deep thought"
    assert done["output"][1]["content"][0]["text"] == "visible <b>"


def test_parallel_and_same_index_calls_are_separate_items():
    for name in ("parallel_calls", "vllm_two_calls_on_index_0"):
        out = terminal(run(SCENARIOS[name]))["response"]["output"]
        assert [(i["call_id"], i["arguments"]) for i in out] == [
            ("call_a", '{"cmd":"a"}'),
            ("call_b", '{"cmd":"b"}'),
        ], name


def test_gemini_call_without_index_and_stop_is_a_call():
    out = terminal(run(SCENARIOS["gemini_no_index_stop"]))
    assert out["type"] == "response.completed"
    assert out["response"]["output"][0]["name"] == "exec_command"


def test_kimi_ids_are_normalised_and_usage_read_from_the_choice():
    done = terminal(run(SCENARIOS["kimi_ids_usage_in_choice"]))["response"]
    call_id = done["output"][1]["call_id"]
    assert call_id == "call_functions_exec_command_0"
    assert done["usage"]["input_tokens"] == 9
    assert done["usage"]["input_tokens_details"]["cached_tokens"] == 2


def test_freeform_call_is_a_custom_tool_call_streamed_incrementally():
    evs = events(run(SCENARIOS["freeform_apply_patch"]))
    deltas = [e["delta"] for e in evs if e["type"] == "response.custom_tool_call_input.delta"]
    assert len(deltas) > 5 and "".join(deltas) == PATCH
    item = evs[-1]["response"]["output"][0]
    assert item == {
        "id": item["id"],
        "type": "custom_tool_call",
        "status": "completed",
        "call_id": "call_p",
        "name": "apply_patch",
        "input": PATCH,
    }


def test_namespaced_call_is_restored():
    item = terminal(run(SCENARIOS["namespaced_mcp_call"]))["response"]["output"][0]
    assert (item["name"], item["namespace"]) == ("echo_tool", "mcp__demo")


@pytest.mark.parametrize(
    ("name", "status", "detail"),
    [
        ("length", "incomplete", {"reason": "max_output_tokens"}),
        ("content_filter", "incomplete", {"reason": "content_filter"}),
        ("length_cuts_a_call", "incomplete", {"reason": "max_output_tokens"}),
    ],
)
def test_incomplete(name, status, detail):
    out = terminal(run(SCENARIOS[name]))
    assert out["type"] == f"response.{status}"
    assert out["response"]["incomplete_details"] == detail
    # the half-written call never gets an output_item.done
    assert all(i["type"] == "message" for i in out["response"]["output"])


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("error_chunk", "server_error"),
        ("cut_without_finish", "upstream_stream_incomplete"),
        ("invalid_json", "upstream_invalid_json"),
        ("call_without_name", "invalid_tool_call"),
        ("invalid_arguments", "invalid_tool_call"),
        ("freeform_raw_control_character", "invalid_tool_call"),
    ],
)
def test_fail_closed(name, code):
    out = run(SCENARIOS[name])
    last = terminal(out)
    assert last["type"] == "response.failed"
    assert last["response"]["error"]["code"] == "server_error"  # retried by Codex
    assert last["response"]["error"]["message"].startswith(code if code != "server_error" else "")
    assert "response.completed" not in types(out)
    # nothing half-built was ever recorded
    assert not [
        e
        for e in events(out)
        if e["type"] == "response.output_item.done" and e["item"]["type"] != "reasoning"
    ]


def test_error_chunk_mentions_the_upstream_message():
    last = terminal(run(SCENARIOS["error_chunk"]))
    assert "provider died" in last["response"]["error"]["message"]


def test_tolerant_framing():
    assert terminal(run(SCENARIOS["done_without_newline"]))["type"] == "response.completed"
    assert terminal(run(SCENARIOS["crlf_and_comments"]))["type"] == "response.completed"


@pytest.mark.parametrize("mode", ["summary", "raw", "hidden"])
def test_a_lone_surrogate_from_upstream_never_raises(mode):
    """Valid JSON, not UTF-8: the text goes out with U+FFFD in its place (rule 6)."""
    raw = (
        b'data: {"choices":[{"index":0,"delta":{"reasoning_content":"a\\ud83d"}}]}\n\n'
        + b'data: {"choices":[{"index":0,"delta":{"content":"\\udc00b"}}]}\n\n'
        + chunk(finish="stop")
        + DONE
    )
    done = terminal(run(raw, reasoning_mode=mode))
    assert done["type"] == "response.completed"
    rs, msg = done["response"]["output"]
    assert (rs["summary"] or rs["content"])[0]["text"] == "a\ufffd"
    assert msg["content"][0]["text"] == "\ufffdb"


def test_a_lone_surrogate_is_sealed_exactly_as_the_upstream_sent_it():
    """With the real carrier, half a surrogate pair in the reasoning does not fail the stream
    (sealing raised, so it failed as relay_internal_error): Codex is shown U+FFFD, and the
    sealed payload holds the upstream's text unchanged, to go back to it."""
    carrier = SealedReasoningCarrier(bytes(32), lambda n: bytes(n))
    raw = (
        b'data: {"choices":[{"index":0,"delta":{"reasoning_content":"a\\ud83d"}}]}\n\n'
        + chunk({"tool_calls": [call(0, "call_1", "exec_command", "{}")]})
        + chunk(finish="tool_calls")
        + DONE
    )
    done = terminal(run(raw, carrier=carrier))
    assert done["type"] == "response.completed"
    rs = done["response"]["output"][0]
    assert rs["summary"][0]["text"] == "a\ufffd"
    assert carrier.open(rs["encrypted_content"]) == ReasoningPayload(
        text="a\ud83d", call_ids=("call_1",)
    )


def _mistral(*parts: dict[str, Any] | str) -> bytes:
    """One chunk whose content is Mistral's: a list of typed chunks, or a plain string."""
    content = parts[0] if len(parts) == 1 and isinstance(parts[0], str) else list(parts)
    return chunk({"content": content})


def _thinking(text: str) -> dict[str, Any]:
    return {"type": "thinking", "thinking": [{"type": "text", "text": text}]}


@pytest.mark.parametrize("mode", ["summary", "raw", "hidden"])
def test_mistral_thinking_chunks_are_reasoning_and_text_chunks_are_text(mode):
    """Mistral's reasoning models stream content as typed chunks while they think, plain
    strings after (docs/providers.md §1.1): the thinking is Codex's reasoning, sealed to go
    back; text chunks and strings are the answer."""
    carrier = FakeCarrier()
    raw = (
        _mistral(_thinking("Two lines, "))
        + _mistral(_thinking("one command each."), {"type": "text", "text": "On it"})
        + _mistral(", running it.")
        + chunk({"tool_calls": [call(0, "abcDEF123", "exec_command", '{"cmd":"ls"}')]})
        + chunk(finish="tool_calls")
        + DONE
    )
    out = run(raw, carrier=carrier, reasoning_mode=mode)
    rs, msg, fc = terminal(out)["response"]["output"]
    assert (rs["summary"] or rs["content"])[0]["text"] == "Two lines, one command each."
    assert msg["content"][0]["text"] == "On it, running it."
    assert fc["call_id"] == "abcDEF123"
    assert carrier.sealed == [
        ReasoningPayload(text="Two lines, one command each.", call_ids=("abcDEF123",))
    ]
    if mode == "summary":
        deltas = [e["delta"] for e in events(out) if e["type"].endswith("summary_text.delta")]
        assert deltas == ["Two lines, ", "one command each."]


def test_other_typed_chunks_show_nothing_and_fail_nothing():
    """References and images (Mistral's other chunk kinds), unknown kinds and junk elements
    carry no text to show; a thinking chunk may hold a reference beside its text."""
    reference = {"type": "reference", "reference_ids": [1]}
    raw = (
        _mistral(
            {"type": "thinking", "thinking": [reference, {"type": "text", "text": "hm"}]},
            reference,
            {"type": "image_url", "image_url": "https://example.test/a.png"},
            {"type": "future_kind", "text": "no"},
            "junk",
            {"type": "text", "text": "ok"},
        )
        + chunk(finish="stop")
        + DONE
    )
    rs, msg = terminal(run(raw))["response"]["output"]
    assert rs["summary"][0]["text"] == "hm"
    assert msg["content"][0]["text"] == "ok"


# Any characters, lone surrogates and think tags among them.
ANY_TEXT = st.lists(
    st.characters() | st.sampled_from(["\ud83d", "\ude00", "<think>", "</think>"]), max_size=8
).map("".join)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.sampled_from(["reasoning_content", "content", "args", "name"]).flatmap(
            lambda field: st.tuples(st.just(field), ANY_TEXT)
        ),
        max_size=6,
    ),
    st.sampled_from(["summary", "raw", "hidden"]),
    st.sampled_from(["stop", "tool_calls", "length", None]),
)
@example([("reasoning_content", "\ud83d")], "hidden", "stop")  # no delta shows it: done does
@example([("args", '{"a": "\ud83d'), ("args", '"}'), ("name", "f")], "summary", "tool_calls")
def test_any_strings_from_upstream_end_in_exactly_one_terminal_event(deltas, mode, finish):
    """Whatever text valid JSON carries (lone surrogates, control characters, think tags
    cut anywhere), the translator answers with events and one terminal event, never raises."""
    raw = b""
    for field, text in deltas:
        if field in ("args", "name"):
            tc = call(0, "c1", text if field == "name" else None, text if field == "args" else None)
            raw += chunk({"tool_calls": [tc]})
        else:
            raw += chunk({field: text})
    out = run(raw + chunk(finish=finish) + DONE, reasoning_mode=mode, carrier=FakeCarrier())
    tys = types(out)
    assert (
        sum(ty in ("response.completed", "response.failed", "response.incomplete") for ty in tys)
        == 1
    )
    assert tys[-1] in ("response.completed", "response.failed", "response.incomplete")


def test_exactly_one_terminal_event_and_nothing_after():
    from chat_streams import translator

    t = translator()
    out = t.feed(SCENARIOS["text"]) + t.finish() + t.fail("x", "y") + t.feed(b"data: {}\n\n")
    assert sum(ty.startswith(("response.completed", "response.failed")) for ty in types(out)) == 1


def test_fail_after_start_is_response_failed():
    from chat_streams import translator

    t = translator()
    out = t.start() + t.feed(chunk({"content": "a"})) + t.fail("server_error", "timed out")
    assert terminal(out)["response"]["error"] == {"code": "server_error", "message": "timed out"}


class FakeCarrier:
    def __init__(self):
        self.sealed: list[ReasoningPayload] = []

    def seal(self, payload: ReasoningPayload) -> str:
        self.sealed.append(payload)
        return f"blob{len(self.sealed)}"

    def open(self, blob: str):
        return None


def test_reasoning_payload_names_the_calls_and_gemini_signatures():
    carrier = FakeCarrier()
    raw = (
        chunk({"reasoning_content": "why"})
        + chunk(
            {
                "tool_calls": [
                    call(
                        None,
                        "g1",
                        "exec_command",
                        "{}",
                        extra_content={"google": {"thought_signature": "S1"}},
                    )
                ]
            }
        )
        + chunk(finish="tool_calls")
        + DONE
    )
    evs = events(run(raw, carrier=carrier))
    assert carrier.sealed == [
        ReasoningPayload(text="why", signatures={"g1": "S1"}, call_ids=("g1",))
    ]
    done = [e for e in evs if e["type"] == "response.output_item.done"]
    assert done[0]["item"]["encrypted_content"] == "blob1"
    assert [d["output_index"] for d in done] == [0, 1]


def test_a_call_cut_by_the_length_limit_is_not_named_in_the_sealed_payload():
    """The cut call never reaches the client (rule 2), so the reasoning before it names only
    the whole call; the addon keys kept reasoning by these ids."""
    carrier = FakeCarrier()
    raw = (
        chunk({"reasoning_content": "go"})
        + chunk({"tool_calls": [call(0, "c1", "exec_command", '{"cmd":"ls"}')]})
        + chunk({"tool_calls": [call(1, "c2", "exec_command", '{"cmd": "l')]})
        + chunk(finish="length")
        + DONE
    )
    done = terminal(run(raw, carrier=carrier))
    assert done["type"] == "response.incomplete"
    assert [i.get("call_id") for i in done["response"]["output"]] == [None, "c1"]
    assert carrier.sealed == [ReasoningPayload(text="go", call_ids=("c1",))]


def _signed(signature: str) -> dict[str, Any]:
    return {"extra_content": {"google": {"thought_signature": signature}}}


@pytest.mark.parametrize("mode", ["summary", "raw", "hidden"])
def test_a_signed_call_without_thought_text_gets_a_reasoning_item_for_its_signature(mode):
    """Gemini signs calls and sends no thought text: the signature must still reach a blob
    Codex replays, so a reasoning item without text opens before the first signed call and
    carries the signatures of the calls after it. It shows nothing, in any mode."""
    carrier = FakeCarrier()
    raw = (
        chunk({"tool_calls": [call(None, "g1", "exec_command", '{"cmd":"ls"}', **_signed("S1"))]})
        + chunk({"tool_calls": [call(None, "g2", "exec_command", '{"cmd":"pwd"}')]})
        + chunk(finish="stop")
        + DONE
    )
    out = run(raw, carrier=carrier, reasoning_mode=mode)
    done = terminal(out)
    assert done["type"] == "response.completed"
    rs, fc1, fc2 = done["response"]["output"]
    assert rs == {"id": "rs_1", "type": "reasoning", "summary": [], "encrypted_content": "blob1"}
    assert (fc1["call_id"], fc2["call_id"]) == ("g1", "g2")
    assert carrier.sealed == [ReasoningPayload(signatures={"g1": "S1"}, call_ids=("g1", "g2"))]
    assert not [t for t in types(out) if "reasoning" in t]  # no parts, no deltas


def test_without_a_carrier_no_reasoning_item_is_made_for_a_signature():
    raw = (
        chunk({"tool_calls": [call(None, "g1", "exec_command", "{}", **_signed("S1"))]})
        + chunk(finish="stop")
        + DONE
    )
    output = terminal(run(raw))["response"]["output"]
    assert [i["type"] for i in output] == ["function_call"]


def test_a_thought_before_a_signed_call_carries_its_signature_alone():
    carrier = FakeCarrier()
    raw = (
        chunk({"content": "Looking."})
        + chunk({"reasoning_content": "list first"})
        + chunk({"tool_calls": [call(None, "g1", "exec_command", "{}", **_signed("S1"))]})
        + chunk(finish="stop")
        + DONE
    )
    output = terminal(run(raw, carrier=carrier))["response"]["output"]
    assert [i["type"] for i in output] == ["message", "reasoning", "function_call"]
    assert carrier.sealed == [
        ReasoningPayload(text="list first", signatures={"g1": "S1"}, call_ids=("g1",))
    ]


def test_a_signature_that_comes_after_its_call_opened_is_sealed_at_the_end():
    """The call's output_item.added went out before the signature came: a reasoning item is
    added after the calls for it (the request side puts signatures back by call id)."""
    carrier = FakeCarrier()
    raw = (
        chunk({"tool_calls": [call(0, "g1", "exec_command", '{"cmd":')]})
        + chunk({"tool_calls": [call(0, args='"ls"}', **_signed("S1"))]})
        + chunk({"reasoning_content": "and then"})
        + chunk({"tool_calls": [call(1, "g2", "exec_command", "{}", **_signed("S2"))]})
        + chunk(finish="tool_calls")
        + DONE
    )
    output = terminal(run(raw, carrier=carrier))["response"]["output"]
    assert [(i["type"], i.get("call_id")) for i in output] == [
        ("function_call", "g1"),
        ("reasoning", None),
        ("function_call", "g2"),
        ("reasoning", None),
    ]
    assert carrier.sealed == [
        ReasoningPayload(text="and then", signatures={"g2": "S2"}, call_ids=("g2",)),
        ReasoningPayload(signatures={"g1": "S1"}, call_ids=("g1",)),
    ]
    assert output[3]["encrypted_content"] == "blob2" and output[3]["summary"] == []


def test_each_reasoning_item_is_sealed_with_its_own_details():
    """OpenRouter/MiniMax reasoning_details go back upstream with the reasoning item they came
    with: two items in one stream, two payloads, neither holding the other's blocks."""
    first = {"type": "reasoning.text", "text": "first", "signature": "s1"}
    second = {"type": "reasoning.encrypted", "data": "b3BhcXVl"}
    carrier = FakeCarrier()
    raw = (
        chunk({"reasoning": "first", "reasoning_details": [first]})
        + chunk({"content": "between"})
        + chunk({"reasoning_details": [second]})
        + chunk({"reasoning": "second"})
        + chunk({"tool_calls": [call(0, "call_x", "exec_command", "{}")]})
        + chunk(finish="tool_calls")
        + DONE
    )
    out = terminal(run(raw, carrier=carrier))["response"]["output"]
    assert [i["type"] for i in out] == ["reasoning", "message", "reasoning", "function_call"]
    assert carrier.sealed == [
        ReasoningPayload(text="first", details=(first,)),
        ReasoningPayload(text="second", details=(second,), call_ids=("call_x",)),
    ]
    assert [i.get("encrypted_content") for i in out] == ["blob1", None, "blob2", None]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(SCENARIOS)), st.lists(st.integers(0, 10_000), max_size=40))
def test_output_does_not_depend_on_chunking(name, cuts):
    raw = SCENARIOS[name]
    expected = run(raw)
    bounds = [0, *sorted(c % (len(raw) + 1) for c in cuts), len(raw)]
    from chat_streams import translator

    t = translator()
    out = b"".join(t.feed(raw[a:b]) for a, b in itertools.pairwise(bounds))
    assert out + t.finish() == expected


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_byte_at_a_time(name):
    assert run(SCENARIOS[name], step=1) == run(SCENARIOS[name])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_end_in_exactly_one_terminal_event(data):
    from chat_streams import translator

    t = translator()
    out = t.feed(data) + t.finish()
    tys = types(out)
    assert tys[-1] in ("response.completed", "response.failed", "response.incomplete")
    assert (
        sum(ty in ("response.completed", "response.failed", "response.incomplete") for ty in tys)
        == 1
    )


# A chunk with every field the translator reads, each well-formed; the test below puts any JSON
# value in place of any of them.
WELL_FORMED = {
    "choices": [
        {
            "index": 0,
            "delta": {
                "reasoning_content": "r",
                "reasoning": "r",
                "reasoning_details": [{"type": "reasoning.text", "text": "t", "summary": "s"}],
                "content": [  # Mistral's typed chunks; any string stands in for them too
                    {"type": "thinking", "thinking": [{"type": "text", "text": "t"}]},
                    {"type": "text", "text": "a"},
                ],
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "exec_command", "arguments": "{}"},
                        "extra_content": {"google": {"thought_signature": "sig"}},
                    }
                ],
            },
            "finish_reason": None,
            "usage": {"prompt_tokens": 1, "completion_tokens": 1},
        }
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1},
}
CALL = ("choices", 0, "delta", "tool_calls", 0)
FIELD_PATHS = [
    ("choices",),
    ("choices", 0),
    ("choices", 0, "delta"),
    ("choices", 0, "delta", "reasoning_content"),
    ("choices", 0, "delta", "reasoning"),
    ("choices", 0, "delta", "reasoning_details"),
    ("choices", 0, "delta", "reasoning_details", 0),
    ("choices", 0, "delta", "reasoning_details", 0, "text"),
    ("choices", 0, "delta", "reasoning_details", 0, "summary"),
    ("choices", 0, "delta", "content"),
    ("choices", 0, "delta", "content", 0),
    ("choices", 0, "delta", "content", 0, "type"),
    ("choices", 0, "delta", "content", 0, "thinking"),
    ("choices", 0, "delta", "content", 0, "thinking", 0),
    ("choices", 0, "delta", "content", 0, "thinking", 0, "type"),
    ("choices", 0, "delta", "content", 0, "thinking", 0, "text"),
    ("choices", 0, "delta", "content", 1, "text"),
    ("choices", 0, "delta", "tool_calls"),
    CALL,
    (*CALL, "index"),
    (*CALL, "id"),
    (*CALL, "function"),
    (*CALL, "function", "name"),
    (*CALL, "function", "arguments"),
    (*CALL, "extra_content"),
    (*CALL, "extra_content", "google"),
    (*CALL, "extra_content", "google", "thought_signature"),
    ("choices", 0, "finish_reason"),
    ("choices", 0, "usage"),
    ("usage",),
]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=4,
)


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """``value`` with the field at ``path`` set to ``new``; unchanged where an earlier change
    took the path away."""
    if not path:
        return new
    key, rest = path[0], path[1:]
    if isinstance(value, list) and isinstance(key, int) and key < len(value):
        copy: Any = list(value)
    elif isinstance(value, dict) and key in value:
        copy = dict(value)
    else:
        return value
    copy[key] = _replaced(value[key], rest, new)
    return copy


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(FIELD_PATHS), JSON_VALUES), min_size=1, max_size=3),
    st.sampled_from(["summary", "raw", "hidden"]),
)
@example([((*CALL, "function"), "oops")], "summary")
@example([((*CALL, "id"), 7)], "summary")
@example([(("choices", 0, "delta", "reasoning_details", 0, "text"), 1)], "summary")
@example([(("choices", 0, "delta", "content", 0, "type"), ["thinking"])], "summary")
def test_any_json_in_any_field_is_the_upstreams_fault_never_an_internal_error(changes, mode):
    """h11's fuzz invariant for parsed chunks: whatever JSON value stands where the translator
    reads a field, the stream ends in exactly one terminal event and a failure names the
    upstream (``upstream_protocol_error`` and its kin), never ``relay_internal_error`` (which
    logs a traceback and blames the relay)."""
    body: Any = WELL_FORMED
    for path, value in changes:
        body = _replaced(body, path, value)
    raw = b"data: " + json.dumps(body).encode() + b"\n\n" + chunk(finish="stop") + DONE
    out = run(raw, reasoning_mode=mode, carrier=FakeCarrier())
    last = terminal(out)
    assert (
        sum(
            ty.startswith(("response.completed", "response.failed", "response.incomplete"))
            for ty in types(out)
        )
        == 1
    )
    if last["type"] == "response.failed":
        assert not last["response"]["error"]["message"].startswith("relay_internal_error"), last


def test_a_fallback_translator_continues_the_stream_a_failed_attempt_began() -> None:
    """An attempt that failed before any output item hands the client's stream over: one
    ``response.created``, contiguous sequence numbers, the first attempt's response id."""
    first = translator()
    sent = first.start() + first.keepalive()
    assert not first.has_output
    second = translator(ctx=CTX, upstream="kimi")
    second._response_id = "resp_other"  # whatever the second was built with, the first's wins
    second.continue_from(first)
    sent += second.feed(text_stream("ok")) + second.finish()
    evs = events(sent)
    assert [e["sequence_number"] for e in evs] == list(range(len(evs)))
    assert types(sent).count("response.created") == 1
    assert terminal(sent)["response"]["id"] == "resp_1"
    assert terminal(sent)["type"] == "response.completed"


def test_no_takeover_after_an_output_item_or_of_a_started_translator() -> None:
    first = translator()
    first.feed(chunk({"content": "partial"}))
    assert first.has_output
    with pytest.raises(ValueError):
        translator().continue_from(first)
    fresh, started = translator(), translator()
    started.start()
    with pytest.raises(ValueError):
        started.continue_from(fresh)


def _in_phase(phase: str):
    t = translator()
    if phase in ("streaming", "done"):
        t.start()
    if phase == "done":
        t.fail("server_error", "gone")
    assert t.phase.value == phase
    return t


CREATED = ["response.created", "response.in_progress"]
TEXT = ["response.output_item.added", "response.content_part.added", "response.output_text.delta"]
CALLS = {
    "start": lambda t: t.start(),
    "feed_empty": lambda t: t.feed(b""),
    "feed": lambda t: t.feed(chunk({"content": "a"})),
    "keepalive": lambda t: t.keepalive(),
    "finish": lambda t: t.finish(),
    "fail": lambda t: t.fail("server_error", "x"),
}


@pytest.mark.parametrize(
    ("call", "new", "streaming"),
    [
        ("start", CREATED, []),
        ("feed_empty", [], []),
        ("feed", CREATED + TEXT, TEXT),
        ("keepalive", CREATED, ["response.in_progress"]),
        ("finish", [*CREATED, "response.failed"], ["response.failed"]),  # no finish_reason
        ("fail", [*CREATED, "response.failed"], ["response.failed"]),
    ],
)
def test_the_phase_table(call, new, streaming):
    """StreamTranslator's docstring table: what each call sends in each phase."""
    assert types(CALLS[call](_in_phase("new"))) == new
    assert types(CALLS[call](_in_phase("streaming"))) == streaming
    assert CALLS[call](_in_phase("done")) == b""
    if call == "feed_empty":
        t = _in_phase("new")
        t.feed(b"")
        assert t.phase.value == "new"


def test_an_unknown_reasoning_mode_is_refused_at_once():
    with pytest.raises(ValueError, match="reasoning mode"):
        translator(reasoning_mode="loud")


def test_done_once_the_terminal_event_is_sent():
    t = translator()
    t.feed(chunk({"content": "a"}) + chunk(finish="stop"))
    assert not t.done
    t.feed(DONE)
    assert t.done and t.response["status"] == "completed"


def test_a_takeover_before_anything_was_sent_starts_the_stream_itself():
    first, second = translator(), translator(upstream="kimi")
    second.continue_from(first)  # the first attempt failed before response.created
    out = second.feed(text_stream("ok")) + second.finish()
    assert types(out)[:2] == ["response.created", "response.in_progress"]
    assert [e["sequence_number"] for e in events(out)] == list(range(len(events(out))))


def test_a_parsed_chunk_that_is_not_an_object_fails_the_response():
    t = translator()
    t.start()
    out = t.feed_chunk(["not", "an", "object"])
    assert terminal(out)["response"]["error"]["message"].startswith("upstream_invalid_json")
