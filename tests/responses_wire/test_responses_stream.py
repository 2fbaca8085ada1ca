"""The Responses stream normaliser: every family's dialect in, the lifecycle Codex and the
openai SDK rely on out; one test per rule; chunking and hostile bytes by hypothesis."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from support.fake_responses import Call, Reasoning, Text, Turn, response_for, stream_for
from wire_helpers import (
    FAMILIES,
    TERMINAL,
    assert_lifecycle,
    carrier,
    events,
    ids,
    normaliser,
    run,
    types,
)
from wire_streams import (
    COMPACTION_CTX,
    CTX,
    PATCH,
    SUCCESSFUL,
    failed,
    native_custom,
    scenarios,
    stream,
)

from mitmrelay.core.context import ToolOrigin
from mitmrelay.core.responses_wire import RULES, map_http_error, normalise_response
from mitmrelay.core.responses_wire.usage import normalised_usage
from mitmrelay.core.stream import StreamTranslator

SCENARIO_NAMES = sorted(scenarios("generic"))


def _final(out: bytes) -> dict[str, Any]:
    return events(out)[-1]


def _output(out: bytes) -> list[dict[str, Any]]:
    return _final(out)["response"]["output"]


# ----------------------------------------------------------------------------- rule 1


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_every_family_and_scenario_gives_the_full_lifecycle(family, name):
    out = run(stream(family, name), family, ctx=CTX, carrier=carrier())
    assert_lifecycle(events(out))
    expected = "response.incomplete" if name == "incomplete" else "response.completed"
    assert types(out)[-1] == expected


@pytest.mark.parametrize("family", FAMILIES)
def test_the_response_is_the_relays(family):
    evs = events(run(stream(family, "text"), family, ctx=CTX))
    for e in evs:
        if "response" in e:
            assert e["response"]["id"] == "resp_relay" and e["response"]["model"] == "gpt-5.5"
    item_ids = {e["item"]["id"] for e in evs if e["type"].startswith("response.output_item")}
    assert item_ids == {"msg_1"}


def test_missing_and_gappy_sequence_numbers_come_out_contiguous():
    raw = stream("glm", "reasoning_then_text")
    upstream = [
        json.loads(line[6:]) for line in raw.decode().split("\n") if line.startswith("data: {")
    ]
    assert any("sequence_number" not in e for e in upstream)  # Z.ai's quirk is in the input
    out = run(raw, "glm", ctx=CTX)
    assert [e["sequence_number"] for e in events(out)] == list(range(len(events(out))))


def test_done_sentinel_after_the_terminal_event_is_ignored():
    out = run(stream("glm", "text"), "glm", ctx=CTX)
    assert types(out)[-1] == "response.completed" and types(out).count("response.completed") == 1


def test_unknown_events_and_comments_are_dropped():
    out = run(stream("openrouter", "text"), "openrouter", ctx=CTX)
    assert "response.output_text.annotation.mystery" not in types(out)
    assert b"OPENROUTER PROCESSING" not in out
    assert_lifecycle(events(out))


def test_missing_item_events_are_supplied_from_the_done_item():
    """A server that streams nothing but each item's done (and no deltas) still gives the
    client every event of the item."""
    evs = [
        {"type": "response.created", "response": {"id": "u"}},
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "whole"}],
            },
        },
        {
            "type": "response.output_item.done",
            "output_index": 1,
            "item": {
                "type": "function_call",
                "call_id": "c",
                "name": "exec_command",
                "arguments": '{"cmd":"x"}',
            },
        },
        {"type": "response.completed", "response": {"id": "u"}},
    ]
    out = run(b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in evs), ctx=CTX)
    assert_lifecycle(events(out))
    assert types(out)[2:] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert _output(out)[0]["content"][0]["text"] == "whole"


def test_items_left_open_are_finished_at_completion():
    raw = stream("generic", "text_then_call")
    upstream = raw.split(b"\n\n")
    kept = [e for e in upstream if b"response.output_item.done" not in e]  # no done at all
    out = run(b"\n\n".join(kept), ctx=CTX)
    assert_lifecycle(events(out))
    assert [i["type"] for i in _output(out)] == ["message", "function_call"]
    assert _output(out)[0]["content"][0]["text"] == "Let me look."


def test_final_text_is_authoritative_and_its_missing_end_is_streamed():
    evs = [
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"type": "message", "id": "m"},
        },
        {"type": "response.output_text.delta", "output_index": 0, "item_id": "m", "delta": "Hel"},
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": {
                "type": "message",
                "id": "m",
                "content": [{"type": "output_text", "text": "Hello"}],
            },
        },
        {"type": "response.completed", "response": {}},
    ]
    out = run(b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in evs), ctx=CTX)
    deltas = [e["delta"] for e in events(out) if e["type"] == "response.output_text.delta"]
    assert deltas == ["Hel", "lo"]
    assert _output(out)[0]["content"][0]["text"] == "Hello"


# ----------------------------------------------------------------------------- rule 2


def test_a_call_whose_arguments_do_not_parse_fails_the_response():
    out = run(stream_for(Turn([Call("exec_command", '{"cmd": ')]), "generic"), ctx=CTX)
    final = _final(out)
    assert final["type"] == "response.failed"
    assert final["response"]["error"]["code"] == "server_error"
    assert final["response"]["error"]["message"].startswith("invalid_tool_call")
    assert "response.output_item.done" not in types(out)


def test_an_incomplete_response_leaves_a_cut_call_unfinished():
    turn = Turn([Text("Trying"), Call("exec_command", '{"cmd": "l')], status="incomplete")
    out = run(stream_for(turn, "generic"), ctx=CTX)
    assert _final(out)["type"] == "response.incomplete"
    assert _final(out)["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert [i["type"] for i in _output(out)] == ["message"]


def test_a_call_named_only_at_its_done_is_announced_then():
    evs = [
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"type": "function_call", "id": "f", "call_id": "c"},
        },
        {
            "type": "response.function_call_arguments.delta",
            "output_index": 0,
            "item_id": "f",
            "delta": '{"cmd"',
        },
        {
            "type": "response.function_call_arguments.delta",
            "output_index": 0,
            "item_id": "f",
            "delta": ':"x"}',
        },
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": {
                "type": "function_call",
                "id": "f",
                "call_id": "c",
                "name": "exec_command",
                "arguments": '{"cmd":"x"}',
            },
        },
        {"type": "response.completed", "response": {}},
    ]
    out = run(b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in evs), ctx=CTX)
    assert_lifecycle(events(out))
    assert _output(out)[0]["name"] == "exec_command"
    deltas = [
        e["delta"] for e in events(out) if e["type"] == "response.function_call_arguments.delta"
    ]
    assert "".join(deltas) == '{"cmd":"x"}'


def test_a_call_that_never_gets_a_name_fails():
    evs = [
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"type": "function_call", "id": "f", "call_id": "c"},
        },
        {"type": "response.completed", "response": {}},
    ]
    out = run(b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in evs), ctx=CTX)
    assert _final(out)["type"] == "response.failed"


# ----------------------------------------------------------------------------- rule 3


@pytest.mark.parametrize("family", FAMILIES)
def test_flattened_names_go_back_with_their_namespace(family):
    out = run(stream(family, "namespaced_call"), family, ctx=CTX)
    (item,) = _output(out)
    assert (item["type"], item["name"], item["namespace"]) == (
        "function_call",
        "echo_tool",
        "mcp__demo",
    )
    added = next(e for e in events(out) if e["type"] == "response.output_item.added")
    assert added["item"]["namespace"] == "mcp__demo"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("step", [None, 1, 7])
def test_a_wrapped_freeform_call_goes_back_as_a_custom_tool_call(family, step):
    out = run(stream(family, "freeform_patch"), family, ctx=CTX, step=step)
    item = _output(out)[-1]
    assert item == {
        "id": item["id"],
        "type": "custom_tool_call",
        "status": "completed",
        "call_id": "call_1",
        "name": "apply_patch",
        "input": PATCH,
    }
    live = "".join(
        e["delta"] for e in events(out) if e["type"] == "response.custom_tool_call_input.delta"
    )
    assert live == PATCH
    assert "response.function_call_arguments.delta" not in types(out)


def test_a_freeform_call_without_its_string_fails():
    turn = Turn([Call("apply_patch", {"patch": 1, "other": 2})])
    out = run(stream_for(turn, "generic"), ctx=CTX)
    assert _final(out)["response"]["error"]["message"].startswith("invalid_tool_call")


@pytest.mark.parametrize(
    ("arguments", "text"),
    [({"input": "x"}, "x"), ({"patch": "y"}, "y"), ('"bare"', "bare")],
)
def test_a_freeform_input_under_another_name_or_bare_is_still_read(arguments, text):
    out = run(stream_for(Turn([Call("apply_patch", arguments)]), "generic"), ctx=CTX)
    assert _output(out)[0]["input"] == text


def test_a_providers_own_custom_tool_call_passes():
    out = run(stream_for(native_custom(), "generic"), ctx=CTX)
    assert_lifecycle(events(out))
    assert _output(out)[0]["type"] == "custom_tool_call" and _output(out)[0]["input"] == PATCH


def test_calls_of_tools_the_relay_did_not_rename_keep_their_name():
    out = run(stream("generic", "parallel_calls"), ctx=CTX)
    assert [(i["name"], i["call_id"]) for i in _output(out)] == [
        ("exec_command", "call_a"),
        ("exec_command", "call_b"),
    ]
    assert all("namespace" not in i for i in _output(out))


# ----------------------------------------------------------------------------- rule 4


@pytest.mark.parametrize("family", FAMILIES)
def test_reasoning_shows_as_a_summary_and_seals_the_providers_item(family):
    c = carrier()
    out = run(
        stream(family, "reasoning_then_call"), family, ctx=CTX, carrier=c, origin=f"{family}-route"
    )
    item = _output(out)[0]
    assert item["summary"] == [{"type": "summary_text", "text": "I should list the files."}]
    payload = c.open(item["encrypted_content"])
    assert payload.text == "I should list the files."
    assert payload.origin == f"{family}-route"
    assert payload.item["id"]  # the provider's own id, for its replay
    shown = "".join(
        e["delta"] for e in events(out) if e["type"] == "response.reasoning_summary_text.delta"
    )
    assert shown == "I should list the files."


def test_without_a_carrier_reasoning_carries_its_text_only():
    out = run(stream("openrouter", "reasoning_then_text"), "openrouter", ctx=CTX)
    item = _output(out)[0]
    assert (
        "encrypted_content" not in item
        and item["summary"][0]["text"] == "Think first. Then answer."
    )


@pytest.mark.parametrize(
    ("mode", "delta_type", "shape"),
    [
        ("raw", "response.reasoning_text.delta", "content"),
        ("hidden", None, "content"),
        ("summary", "response.reasoning_summary_text.delta", "summary"),
    ],
)
def test_reasoning_modes(mode, delta_type, shape):
    out = run(stream("deepseek", "reasoning_then_text"), "deepseek", ctx=CTX, reasoning_mode=mode)
    assert_lifecycle(events(out))
    reasoning_deltas = [
        t for t in types(out) if t.startswith("response.reasoning") and t.endswith(".delta")
    ]
    assert set(reasoning_deltas) == ({delta_type} if delta_type else set())
    item = _output(out)[0]
    part = item[shape][0]
    assert part["text"] == "Think first. Then answer."


def test_several_upstream_summary_parts_become_one_part():
    base = {"output_index": 0, "item_id": "r"}
    evs = [
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"type": "reasoning", "id": "r", "summary": []},
        },
        {
            "type": "response.reasoning_summary_text.delta",
            **base,
            "summary_index": 0,
            "delta": "one",
        },
        {
            "type": "response.reasoning_summary_text.delta",
            **base,
            "summary_index": 1,
            "delta": "two",
        },
        {
            "type": "response.reasoning_text.delta",
            **base,
            "content_index": 0,
            "delta": "ignored raw",
        },
        {"type": "response.completed", "response": {}},
    ]
    out = run(b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in evs), ctx=CTX)
    assert _output(out)[0]["summary"][0]["text"] == "one\n\ntwo"


# ----------------------------------------------------------------------------- rule 5


@pytest.mark.parametrize(
    ("error", "code", "message_part"),
    [
        (
            {"code": "context_length_exceeded", "message": "too long"},
            "context_length_exceeded",
            "context window",
        ),
        (
            {
                "code": "invalid_prompt",
                "message": "This endpoint's maximum context length is 8192 tokens.",
            },
            "context_length_exceeded",
            "8192",
        ),
        (
            {"code": "invalid_prompt", "message": "bad", "error_type": "context_length_exceeded"},
            "context_length_exceeded",
            "bad",
        ),
        (
            {"code": "rate_limit_exceeded", "message": "Slow down. Please try again in 2s."},
            "rate_limit_exceeded",
            "try again in 2s",
        ),
        ({"code": "insufficient_quota", "message": "no credit"}, "insufficient_quota", "quota"),
        ({"code": "server_error", "message": "model crashed"}, "server_error", "model crashed"),
    ],
)
def test_failures_map_to_what_codex_acts_on(error, code, message_part):
    out = run(stream_for(failed(error), "openrouter"), "openrouter", ctx=CTX)
    final = _final(out)
    assert final["type"] == "response.failed"
    assert final["response"]["error"]["code"] == code
    assert message_part in final["response"]["error"]["message"]
    assert_lifecycle(events(out))
    assert [i["type"] for i in final["response"]["output"]] == ["message"]  # finished items stay


def test_a_streamed_error_event_fails_at_once():
    turn = failed(
        {"code": "server_error", "message": "later"},
        error_event={"code": "rate_limit_exceeded", "message": "Please try again in 1.5s."},
    )
    out = run(stream_for(turn, "generic"), ctx=CTX)
    assert types(out).count("response.failed") == 1
    assert _final(out)["response"]["error"]["code"] == "rate_limit_exceeded"


@pytest.mark.parametrize("cut_after", [0, 3, 9])
def test_a_cut_stream_fails_and_never_completes(cut_after):
    out = run(stream("deepseek", "reasoning_then_call", cut_after=cut_after), "deepseek", ctx=CTX)
    final = _final(out)
    assert final["type"] == "response.failed"
    assert final["response"]["error"]["message"].startswith("upstream_stream_incomplete")
    assert "response.completed" not in types(out)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"data: {not json\n\n", "upstream_invalid_json"),
        (b"data: [1, 2]\n\n", "upstream_invalid_json"),
        (b"data: [DONE]\n\n", "upstream_stream_incomplete"),
    ],
)
def test_garbage_and_early_done_fail(raw, reason):
    out = run(raw, ctx=CTX)
    assert _final(out)["response"]["error"]["message"].startswith(reason)


def test_an_internal_error_is_a_failed_response_not_an_exception(monkeypatch):
    n = normaliser(ctx=CTX)
    monkeypatch.setattr(n, "_open_message", lambda m: 1 / 0)
    out = n.feed(stream("generic", "text")) + n.finish()
    assert _final(out)["response"]["error"]["message"].startswith("relay_internal_error")


# ----------------------------------------------------------------------------- rule 6


def test_a_compaction_answer_becomes_one_sealed_compaction_item():
    c = carrier()
    turn = Turn([Reasoning("thinking is not summary"), Text("Summary: did X.")])
    out = run(stream_for(turn, "deepseek"), "deepseek", ctx=COMPACTION_CTX, carrier=c)
    assert_lifecycle(events(out))
    (item,) = _output(out)
    assert item["type"] == "compaction"
    assert c.open_compaction(item["encrypted_content"]) == "Summary: did X."
    assert "response.output_text.delta" not in types(out)


@pytest.mark.parametrize(
    ("turn", "with_carrier", "reason"),
    [
        (Turn([Text("  ")]), True, "empty_compaction"),
        (Turn([Text("s")]), False, "relay_misconfigured"),
    ],
)
def test_a_compaction_that_cannot_be_sealed_fails(turn, with_carrier, reason):
    out = run(
        stream_for(turn, "generic"), ctx=COMPACTION_CTX, carrier=carrier() if with_carrier else None
    )
    assert _final(out)["response"]["error"]["message"].startswith(reason)


# ----------------------------------------------------------------------------- rule 7


def test_items_the_relay_did_not_ask_for_are_dropped_with_their_events():
    base = {"output_index": 0, "item_id": "ws"}
    evs = [
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"type": "web_search_call", "id": "ws"},
        },
        {"type": "response.web_search_call.searching", **base},
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": {"type": "web_search_call", "id": "ws", "status": "completed"},
        },
        {
            "type": "response.output_item.added",
            "output_index": 1,
            "item": {"type": "message", "id": "m"},
        },
        {"type": "response.output_text.delta", "output_index": 1, "item_id": "m", "delta": "hi"},
        {
            "type": "response.output_item.done",
            "output_index": 1,
            "item": {
                "type": "message",
                "id": "m",
                "content": [{"type": "output_text", "text": "hi"}],
            },
        },
        {"type": "response.completed", "response": {}},
    ]
    out = run(b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in evs), ctx=CTX)
    assert_lifecycle(events(out))
    assert [i["type"] for i in _output(out)] == ["message"]
    assert _output(out)[0]["id"] == "msg_1"


# ----------------------------------------------------------------------------- rule 8 & API


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
@example(b'data: {"type": "response.output_item.added"}\n\n')
@example(b'data: {"type": "response.completed", "response": 3}\n\n')
@example(
    b'data: {"type": "response.output_item.done", "item": {"type": "message", "content": 5}}\n\n'
)
def test_any_bytes_give_exactly_one_terminal_event(raw):
    out = run(raw, ctx=CTX)
    assert sum(t in TERMINAL for t in types(out)) == 1
    assert types(out)[-1] in TERMINAL


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32), st.sampled_from(FAMILIES))
def test_a_mutated_stream_still_gives_exactly_one_terminal_event(seed, family):
    import random

    raw = bytearray(stream(family, "reasoning_then_call"))
    rnd = random.Random(seed)
    for _ in range(rnd.randint(1, 6)):
        raw[rnd.randrange(len(raw))] = rnd.randrange(256)
    out = run(bytes(raw), family, ctx=CTX, carrier=carrier())
    assert sum(t in TERMINAL for t in types(out)) == 1


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(FAMILIES),
    st.sampled_from(SCENARIO_NAMES),
    st.lists(st.integers(0, 4000), max_size=30),
)
def test_output_does_not_depend_on_chunking(family, name, cuts):
    raw = stream(family, name)
    whole = run(raw, family, ctx=CTX, carrier=carrier())
    bounds = [0, *sorted(c % (len(raw) + 1) for c in cuts), len(raw)]
    n = normaliser(family, ctx=CTX, carrier=carrier())
    out = b"".join(n.feed(raw[a:b]) for a, b in itertools.pairwise(bounds)) + n.finish()
    assert out == whole


def test_byte_at_a_time_is_the_same_stream():
    raw = stream("kimi", "reasoning_then_call")
    assert run(raw, "kimi", ctx=CTX, step=1) == run(raw, "kimi", ctx=CTX)


def test_start_keepalive_fail_and_finish_are_idempotent_where_they_should_be():
    n = normaliser(ctx=CTX)
    assert types(n.keepalive()) == ["response.created", "response.in_progress"]
    assert n.start() == b""
    assert types(n.keepalive()) == ["response.in_progress"]
    assert not n.has_output and not n.done
    failed_out = n.fail("timeout", "the provider went quiet")
    assert types(failed_out) == ["response.failed"] and n.done
    assert n.fail("x", "y") == n.finish() == n.keepalive() == n.feed(b"data: {}\n\n") == b""
    assert n.feed(b"") == b""


def test_a_normaliser_takes_over_a_chat_attempt_that_failed_before_output():
    chat = StreamTranslator(CTX, response_id="resp_relay", created_at=1, new_id=ids())
    first = chat.start() + chat.keepalive()
    n = normaliser(ctx=CTX)
    n.continue_from(chat)
    second = n.feed(stream("generic", "text")) + n.finish()
    evs = events(first + second)
    assert types(first + second).count("response.created") == 1
    assert [e["sequence_number"] for e in evs] == list(range(len(evs)))
    assert_lifecycle(evs)


def test_a_chat_translator_takes_over_a_normaliser_that_failed_before_output():
    n = normaliser(ctx=CTX)
    first = n.keepalive()
    chat = StreamTranslator(CTX, response_id="ignored", created_at=1, new_id=ids())
    chat.continue_from(n)
    second = (
        chat.feed(b'data: {"choices":[{"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n')
        + chat.finish()
    )
    evs = events(first + second)
    assert types(first + second).count("response.created") == 1
    assert [e["sequence_number"] for e in evs] == list(range(len(evs)))
    assert evs[-1]["response"]["id"] == "resp_relay"


@pytest.mark.parametrize("takes_over", ["normaliser", "chat"])
def test_a_failed_attempts_withheld_terminal_event_leaves_no_gap_in_the_numbers(takes_over):
    """The link withholds a replaceable attempt's response.failed (link/call.py rule 5): the
    next attempt numbers its events from that event's number, so the client's sequence is
    contiguous whichever wire takes over."""
    failed = normaliser(ctx=CTX)
    out = failed.feed(stream_for(Turn(status="failed"), "generic")) + failed.finish()
    assert failed.done and not failed.has_output
    shown = out[: out.rindex(b"event: response.failed")]  # what the client got
    if takes_over == "chat":
        nxt: Any = StreamTranslator(CTX, response_id="x", created_at=1, new_id=ids())
        nxt.continue_from(failed)
        rest = nxt.feed(
            b'data: {"choices":[{"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n'
        )
    else:
        nxt = normaliser(ctx=CTX)
        nxt.continue_from(failed)
        rest = nxt.feed(stream("generic", "text"))
    evs = events(shown + rest + nxt.finish())
    assert [e["sequence_number"] for e in evs] == list(range(len(evs)))
    assert types(shown + rest).count("response.created") == 1
    assert evs[-1]["type"] == "response.completed"


def test_continue_from_refuses_an_attempt_with_output_or_a_started_normaliser():
    sent = normaliser(ctx=CTX)
    sent.feed(stream("generic", "text"))
    assert sent.has_output
    with pytest.raises(ValueError):
        normaliser(ctx=CTX).continue_from(sent)
    started = normaliser(ctx=CTX)
    started.start()
    with pytest.raises(ValueError):
        started.continue_from(normaliser(ctx=CTX))


def test_a_takeover_before_anything_was_sent_starts_the_stream_itself():
    n = normaliser(ctx=CTX)
    n.continue_from(normaliser(ctx=CTX))
    assert types(n.feed(stream("generic", "text")))[:2] == [
        "response.created",
        "response.in_progress",
    ]


# ----------------------------------------------------------------------------- usage


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (
            {"input_tokens": 10, "output_tokens": 20, "total_tokens": 30},
            (10, 0, 0, 20, 0, 30),
        ),  # Z.ai
        (
            {
                "input_tokens": 120,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 120},
                "output_tokens": 80,
                "output_tokens_details": {"reasoning_tokens": 30},
                "total_tokens": 200,
            },
            (120, 0, 120, 80, 30, 200),
        ),  # Kimi
        (
            {
                "input_tokens": 296,
                "input_tokens_details": {"cached_tokens": 256, "input_tokens_per_turn": [1]},
                "output_tokens": 64,
                "output_tokens_details": {"reasoning_tokens": 20},
                "total_tokens": 360,
            },
            (296, 256, 0, 64, 20, 360),
        ),  # DeepSeek, vLLM extra
        (
            {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 9}, "output_tokens": 1},
            (5, 5, 0, 1, 0, 6),
        ),  # cached clamped, total added
        (
            {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
            (7, 0, 0, 3, 0, 10),
        ),  # Chat-shaped
    ],
)
def test_usage_comes_out_in_openais_complete_shape(usage, expected):
    u = normalised_usage(usage)
    got = (
        u["input_tokens"],
        u["input_tokens_details"]["cached_tokens"],
        u["input_tokens_details"]["cache_write_tokens"],
        u["output_tokens"],
        u["output_tokens_details"]["reasoning_tokens"],
        u["total_tokens"],
    )
    assert got == expected


@pytest.mark.parametrize(
    "usage",
    [
        None,
        "x",
        {"input_tokens": 3},
        {"input_tokens": -1, "output_tokens": 2},
        {"input_tokens": True, "output_tokens": 2},
    ],
)
def test_incomplete_usage_is_left_out(usage):
    assert normalised_usage(usage) is None


@pytest.mark.parametrize("family", FAMILIES)
def test_each_familys_usage_reaches_the_completed_event(family):
    out = run(stream(family, "text"), family, ctx=CTX)
    usage = _final(out)["response"]["usage"]
    assert (
        usage["input_tokens"] == 100
        and usage["output_tokens"] == 20
        and usage["total_tokens"] == 120
    )
    assert set(usage["input_tokens_details"]) == {"cached_tokens", "cache_write_tokens"}


# ----------------------------------------------------------------------------- non-streaming


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", SUCCESSFUL)
def test_a_whole_response_follows_the_same_rules_as_its_stream(family, name):
    turn = scenarios(family)[name]
    body = json.dumps(response_for(turn, family)).encode()
    whole = normalise_response(
        body,
        CTX,
        RULES[family],
        response_id="resp_relay",
        created_at=1795530000,
        new_id=ids(),
        carrier=carrier(),
        origin=family,
    )
    streamed = _final(run(stream_for(turn, family), family, ctx=CTX, carrier=carrier()))["response"]
    assert whole["status"] == "completed"
    assert [(i["type"], i.get("name")) for i in whole["output"]] == [
        (i["type"], i.get("name")) for i in streamed["output"]
    ]
    assert whole["usage"] == streamed["usage"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"nope", "upstream_invalid_json"),
        (b"[]", "upstream_invalid_json"),
        (b'{"status": "queued", "output": []}', "server_error"),
    ],
)
def test_a_whole_response_that_is_no_answer_fails(body, reason):
    response = normalise_response(body, CTX, response_id="r", created_at=1, new_id=ids())
    assert response["status"] == "failed"
    assert response["error"]["message"].startswith(reason) or response["error"]["code"] == reason


def test_a_whole_incomplete_response_keeps_its_reason():
    turn = Turn([Text("cut")], status="incomplete", reason="content_filter")
    response = normalise_response(
        json.dumps(response_for(turn, "kimi")).encode(),
        CTX,
        RULES["kimi"],
        response_id="r",
        created_at=1,
        new_id=ids(),
    )
    assert response["status"] == "incomplete" and response["incomplete_details"] == {
        "reason": "content_filter"
    }


# ----------------------------------------------------------------------------- HTTP errors


@pytest.mark.parametrize(
    ("status", "headers", "body", "code", "http"),
    [
        (
            429,
            {"retry-after": "7"},
            {"error": {"message": "Too many requests", "code": "rate_limit_exceeded"}},
            "rate_limit_exceeded",
            429,
        ),
        (
            400,
            {},
            {
                "error": {"code": "invalid_prompt", "message": "Invalid Responses API request"},
                "error_type": "context_length_exceeded",
            },
            "context_length_exceeded",
            400,
        ),
        (
            400,
            {},
            {
                "object": "error",
                "message": "This model's maximum context length is 8192 tokens. However, "
                "you requested 9000 tokens.",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            },
            "context_length_exceeded",
            400,
        ),
        (
            422,
            {},
            {
                "error": {
                    "message": "Failed to deserialize the JSON body into the target type: "
                    "tools[3]: unknown variant `custom`",
                    "type": "invalid_request_error",
                    "code": "invalid_request_error",
                }
            },
            "invalid_request_error",
            422,
        ),
        (402, {}, {"error": {"message": "Insufficient Balance"}}, "insufficient_quota", 429),
        (503, {}, b"<html>down</html>", "server_error", 503),
    ],
)
def test_http_errors_map_as_on_the_chat_wire(status, headers, body, code, http):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    mapped = map_http_error(status, headers, raw, upstream="provider")
    assert (mapped.code, mapped.status) == (code, http)
    if status == 429:
        assert mapped.headers()["retry-after"] == "7"


def test_namespaced_origins_are_found_by_their_flat_key_on_long_names():
    ns = "mcp__" + "n" * 70
    from mitmrelay.core.toolnames import upstream_name

    flat = upstream_name("t", ns)
    ctx = CTX.__class__(
        client_model="m", upstream_model="u", tools={flat: ToolOrigin("t", ns)}, response_echo={}
    )
    out = run(stream_for(Turn([Call("t", "{}", namespace=ns)]), "kimi"), "kimi", ctx=ctx)
    assert (_output(out)[0]["name"], _output(out)[0]["namespace"]) == ("t", ns)


# ----------------------------------------------------------------------------- edges


def _sse(*evs: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in evs)


def test_a_last_event_without_its_blank_line_still_counts():
    raw = stream("generic", "text").rstrip(b"\n")
    assert types(run(raw, ctx=CTX))[-1] == "response.completed"


def test_an_oversized_event_fails_the_stream():
    from mitmrelay.core.sse import SSEDecoder

    n = normaliser(ctx=CTX)
    n._decoder = SSEDecoder(max_event_bytes=64)
    out = n.feed(stream("generic", "text"))
    assert _final(out)["response"]["error"]["message"].startswith("upstream_event_too_large")


def test_events_without_the_fields_they_need_are_ignored():
    raw = _sse(
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"type": "message", "id": "m"},
        },
        {"type": "response.output_text.delta", "output_index": 0, "item_id": "m", "delta": ""},
        {"type": "response.output_text.delta", "output_index": 0, "item_id": "m"},
        {
            "type": "response.output_text.delta",
            "output_index": 7,
            "item_id": "nobody",
            "delta": "lost",
        },
        {"type": "response.output_item.done", "output_index": 0},
        {
            "type": "response.reasoning_text.delta",
            "output_index": 0,
            "delta": "not a reasoning item",
        },
        {"type": "response.function_call_arguments.done", "output_index": 0, "arguments": "{}"},
        {"type": "response.function_call_arguments.delta", "output_index": 0, "delta": "{}"},
        {"type": "response.output_text.delta", "item_id": "m", "delta": "found by id"},
        {"type": "response.completed", "response": {"usage": "nonsense"}},
    )
    out = run(raw, ctx=CTX)
    assert_lifecycle(events(out))
    assert _output(out)[0]["content"][0]["text"] == "found by id"
    assert _final(out)["response"]["usage"] is None


def test_a_final_text_that_disagrees_with_its_deltas_wins():
    raw = _sse(
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"type": "message", "id": "m"},
        },
        {"type": "response.output_text.delta", "output_index": 0, "item_id": "m", "delta": "Hex"},
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": {"type": "message", "content": [{"type": "output_text", "text": "Hello"}]},
        },
        {"type": "response.completed", "response": {}},
    )
    out = run(raw, ctx=CTX)
    assert _output(out)[0]["content"][0]["text"] == "Hello"
    assert [e["delta"] for e in events(out) if e["type"] == "response.output_text.delta"] == ["Hex"]


def test_an_incomplete_response_drops_a_call_that_never_got_a_name():
    raw = _sse(
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"type": "function_call", "id": "f", "call_id": "c"},
        },
        {
            "type": "response.incomplete",
            "response": {"incomplete_details": {"reason": "max_output_tokens"}},
        },
    )
    out = run(raw, ctx=CTX)
    assert _final(out)["type"] == "response.incomplete" and _output(out) == []


def test_a_freeform_call_whose_arguments_are_not_an_object_or_string_fails():
    out = run(stream_for(Turn([Call("apply_patch", "[1, 2]")]), "generic"), ctx=CTX)
    assert _final(out)["response"]["error"]["message"].startswith("invalid_tool_call")


def test_an_error_event_may_carry_its_error_nested():
    out = run(
        _sse(
            {
                "type": "error",
                "error": {"code": "rate_limit_exceeded", "message": "Please try again in 3s."},
            }
        ),
        ctx=CTX,
    )
    assert _final(out)["response"]["error"]["code"] == "rate_limit_exceeded"


@pytest.mark.parametrize(("mode", "shown"), [("hidden", []), ("raw", ["Thi", "nk"])])
def test_reasoning_completed_by_its_done_item_is_shown_only_where_it_streams(mode, shown):
    raw = _sse(
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"type": "reasoning", "id": "r"},
        },
        {
            "type": "response.reasoning_text.delta",
            "output_index": 0,
            "content_index": 0,
            "delta": "Thi",
        },
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": {
                "type": "reasoning",
                "id": "r",
                "content": [{"type": "reasoning_text", "text": "Think"}],
            },
        },
        {"type": "response.completed", "response": {}},
    )
    out = run(raw, ctx=CTX, reasoning_mode=mode)
    assert [e["delta"] for e in events(out) if e["type"].endswith(".delta")] == shown
    assert _output(out)[0]["content"] == [{"type": "reasoning_text", "text": "Think"}]
