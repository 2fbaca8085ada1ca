"""The translator's output, pinned byte for byte (tests/fixtures/stream-golden/).

Every upstream stream the stream tests use (``SCENARIOS`` in test_stream.py, plus the cases
below that reach the rules those do not), in each reasoning mode, without and with a sealed
carrier (a fixed key, a counting nonce source: AES-GCM is deterministic given both), is
translated whole, one byte at a time and in odd chunk sizes; every run must give the recorded
bytes. The non-streaming path (whole completions) is pinned the same way, as JSON.

Each case is a directory: ``chat.sse`` (or ``completion.json``) is the upstream's answer as
recorded, ``<mode>[-sealed].sse`` (or ``.json``) the translation. A case whose input no longer
matches its table entry here fails until it is re-recorded, so an edit to a scenario cannot
silently go unpinned.

Re-record (only when an output change is intended, and say why in the commit):

    .venv/bin/python tests/core/test_stream_golden.py --record

Which recordings the translator at another git revision would not reproduce (to show that a
refactor changed nothing, or exactly what a fix changed):

    .venv/bin/python tests/core/test_stream_golden.py --compare REV
"""

from __future__ import annotations

import importlib
import io
import itertools
import json
import logging
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # chat_streams, test_stream

from chat_streams import CTX, DONE, call, chunk, text_stream, usage
from test_stream import SCENARIOS

from mitmrelay.core.carrier import SealedReasoningCarrier
from mitmrelay.core.completion import translate_completion
from mitmrelay.core.context import TranslationContext
from mitmrelay.core.profiles import Profile
from mitmrelay.core.stream import StreamTranslator

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "stream-golden"
MODES = ("summary", "raw", "hidden")
VARIANTS = tuple(f"{mode}{suffix}" for mode in MODES for suffix in ("", "-sealed"))
CHUNKINGS = (None, 1, 7, 13, 61)  # whole, byte at a time, odd sizes
KEY = bytes(range(32))

COMPACTION_CTX = TranslationContext(
    client_model="gpt-5.5", upstream_model="deepseek-chat", compaction=True
)
THINK_TAGS = Profile(think_tags=True)
NO_THINK_TAGS = Profile(think_tags=False)


def _details(text: str) -> dict[str, Any]:
    return {"type": "reasoning.text", "text": text, "format": "anthropic-claude-v1"}


def _thinking(text: str) -> dict[str, Any]:
    return {"type": "thinking", "thinking": [{"type": "text", "text": text}]}


def _signed(signature: str) -> dict[str, Any]:
    return {"extra_content": {"google": {"thought_signature": signature}}}


def _choice_chunk(choice: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps({"id": "c", "choices": [choice]}).encode() + b"\n\n"


@dataclass(frozen=True)
class Case:
    """One upstream stream and how it is driven.

    script: "feed" (feed, then finish), "keepalive" (start and keepalive before the first
    byte, another keepalive halfway), "fail" (feed, then the host's fail() instead of finish),
    "takeover" (a first attempt sent response.created and a keepalive, then this translator
    continues its stream).
    """

    raw: bytes
    ctx: TranslationContext = CTX
    profile: Profile = THINK_TAGS
    script: str = "feed"


EXTRA: dict[str, Case] = {
    # Two reasoning items, each with its own reasoning_details: each sealed blob holds its own.
    "two_reasoning_items_with_details": Case(
        chunk({"reasoning": "first", "reasoning_details": [_details("first")]})
        + chunk({"content": "between"})
        + chunk({"reasoning": "second", "reasoning_details": [_details("second")]})
        + chunk({"tool_calls": [call(0, "call_x", "exec_command", '{"cmd":"ls"}')]})
        + chunk(finish="tool_calls")
        + DONE
    ),
    "reasoning_call_reasoning_call": Case(
        chunk({"reasoning_content": "look first"})
        + chunk({"tool_calls": [call(0, "call_1", "exec_command", '{"cmd":"ls"}')]})
        + chunk({"reasoning_content": "then read"})
        + chunk({"tool_calls": [call(1, "call_2", "exec_command", '{"cmd":"cat a"}')]})
        + chunk(finish="tool_calls")
        + usage()
        + DONE
    ),
    "reasoning_text_then_call": Case(
        chunk({"reasoning_content": "plan"})
        + chunk({"content": "I will run it."})
        + chunk({"tool_calls": [call(0, "call_1", "exec_command", '{"cmd":"ls"}')]})
        + chunk(finish="tool_calls")
        + DONE
    ),
    "encrypted_details_alone": Case(
        chunk({"reasoning_details": [{"type": "reasoning.encrypted", "data": "b3BhcXVl"}]})
        + chunk({"content": "ok"})
        + chunk(finish="stop")
        + DONE
    ),
    "reasoning_field_and_message_shape": Case(
        _choice_chunk({"index": 0, "message": {"reasoning": "r"}, "finish_reason": None})
        + _choice_chunk({"index": 0, "message": {"content": "m"}, "finish_reason": "stop"})
        + DONE
    ),
    # Gemini signs calls without thought text: a reasoning item without text goes before the
    # first signed call and carries the signatures of the calls after it (stream.py rule 5).
    "gemini_signed_parallel_calls": Case(
        chunk({"tool_calls": [call(None, "g1", "exec_command", '{"cmd":"ls"}', **_signed("S1"))]})
        + chunk({"tool_calls": [call(None, "g2", "exec_command", '{"cmd":"pwd"}')]})
        + chunk(finish="stop")
        + usage()
        + DONE
    ),
    "gemini_text_then_signed_call": Case(
        chunk({"content": "Looking."})
        + chunk({"tool_calls": [call(None, "g1", "exec_command", "{}", **_signed("S1"))]})
        + chunk(finish="stop")
        + DONE
    ),
    # A thought before the call already carries its signature: no second item.
    "gemini_thought_then_signed_calls": Case(
        chunk({"reasoning_content": "list first"})
        + chunk({"tool_calls": [call(None, "g1", "exec_command", "{}", **_signed("S1"))]})
        + chunk({"reasoning_content": "then print"})
        + chunk({"tool_calls": [call(None, "g2", "exec_command", "{}", **_signed("S2"))]})
        + chunk(finish="stop")
        + DONE
    ),
    # The signature comes after the call opened: the item goes at the end.
    "gemini_signature_after_the_call_opened": Case(
        chunk({"tool_calls": [call(0, "g1", "exec_command", '{"cmd":')]})
        + chunk({"tool_calls": [call(0, args='"ls"}', **_signed("S1"))]})
        + chunk({"reasoning_content": "and then"})
        + chunk({"tool_calls": [call(1, "g2", "exec_command", "{}")]})
        + chunk(finish="tool_calls")
        + DONE
    ),
    # Mistral: thinking as typed content chunks, then plain strings (docs/providers.md §1.1).
    "mistral_thinking_chunks": Case(
        chunk({"content": [_thinking("Two lines, ")]})
        + chunk({"content": [_thinking("one each."), {"type": "text", "text": "On it"}]})
        + chunk({"content": ", running it."})
        + chunk({"tool_calls": [call(0, "abcDEF123", "exec_command", '{"cmd":"ls"}')]})
        + chunk(finish="tool_calls", usage={"prompt_tokens": 9, "completion_tokens": 3})
        + DONE
    ),
    "text_then_call": Case(
        chunk({"content": "Running ls."})
        + chunk({"tool_calls": [call(0, "call_1", "exec_command", '{"cmd":"ls"}')]})
        + chunk(finish="tool_calls")
        + DONE
    ),
    "call_without_arguments": Case(
        chunk({"tool_calls": [call(0, "call_1", "list_mcp_resources")]})
        + chunk(finish="tool_calls")
        + DONE
    ),
    "arguments_with_whitespace": Case(
        chunk({"tool_calls": [call(0, "call_1", "exec_command", '  {"cmd": "ls"}\n')]})
        + chunk(finish="tool_calls")
        + DONE
    ),
    "name_after_arguments": Case(
        chunk({"tool_calls": [call(0, "call_1", None, '{"cmd":')]})
        + chunk({"tool_calls": [call(0, name="exec_command", args='"ls"}')]})
        + chunk(finish="tool_calls")
        + DONE
    ),
    "renamed_mid_stream": Case(
        chunk({"tool_calls": [call(0, "call_1", "exec", "{")]})
        + chunk({"tool_calls": [call(0, name="exec_command", args="}")]})
        + chunk(finish="tool_calls")
        + DONE
    ),
    "repeated_name_and_late_id": Case(
        chunk({"tool_calls": [call(0, None, "exec_command", '{"cmd":')]})
        + chunk({"tool_calls": [call(0, "call_late", "exec_command", '"ls"}')]})
        + chunk(finish="tool_calls")
        + DONE
    ),
    "gemini_continuations": Case(
        chunk({"tool_calls": [call(None, "g1", "exec_command", '{"cmd":')]})
        + chunk({"tool_calls": [call(None, args='"pwd"')]})
        + chunk({"tool_calls": [call(None, "g1", args="}")]})
        + chunk({"tool_calls": [call(None, "g2", "exec_command", '{"cmd":"ls"}')]})
        + chunk(finish="stop")
        + DONE
    ),
    "ids_normalised_or_made": Case(
        chunk({"tool_calls": [call(0, "functions.exec_command:0" + "x" * 80, "exec_command")]})
        + chunk({"tool_calls": [call(1, None, "exec_command", "{}")]})
        + chunk(finish="tool_calls")
        + DONE
    ),
    "freeform_other_param_name": Case(
        chunk({"tool_calls": [call(0, "call_p", "apply_patch", '{"patch": "*** Begin')]})
        + chunk({"tool_calls": [call(0, args=' Patch\\n*** End Patch"}')]})
        + chunk(finish="tool_calls")
        + DONE
    ),
    "freeform_bare_string": Case(
        chunk({"tool_calls": [call(0, "call_p", "apply_patch", '"*** Begin Patch"')]})
        + chunk(finish="tool_calls")
        + DONE
    ),
    "freeform_without_a_string": Case(
        chunk({"tool_calls": [call(0, "call_p", "apply_patch", '{"input": 3}')]})
        + chunk(finish="tool_calls")
        + DONE
    ),
    "freeform_escapes_cut": Case(
        chunk({"tool_calls": [call(0, "call_p", "apply_patch", '{"input": "a\\')]})
        + chunk({"tool_calls": [call(0, args="n\\ud83d")]})
        + chunk({"tool_calls": [call(0, args='\\ude00 \\u00e9"}')]})
        + chunk(finish="tool_calls")
        + DONE
    ),
    # A backslash then "ud83d" as text, cut right after it: not half a surrogate pair.
    "freeform_escaped_backslash_u": Case(
        chunk({"tool_calls": [call(0, "call_p", "apply_patch", '{"input": "s = \'\\\\ud83d')]})
        + chunk({"tool_calls": [call(0, args="'\\n\"}")]})
        + chunk(finish="tool_calls")
        + DONE
    ),
    "length_keeps_a_whole_call": Case(
        chunk({"tool_calls": [call(0, "c1", "exec_command", '{"cmd":"ls"}')]})
        + chunk({"tool_calls": [call(1, "c2", "exec_command", '{"cmd": "l')]})
        + chunk(finish="length")
        + DONE
    ),
    "reasoning_then_length_cut_call": Case(
        chunk({"reasoning_content": "go"})
        + chunk({"tool_calls": [call(0, "c1", "exec_command", '{"cmd": "l')]})
        + chunk(finish="length")
        + DONE
    ),
    "think_tags_unfinished": Case(text_stream("<think>never closed", " <thi")),
    "think_tag_cut_at_the_end": Case(text_stream("<think>a</thi")),
    "last_chunk_without_blank_line": Case(
        chunk({"content": "ok"}) + chunk(finish="stop").removesuffix(b"\n\n")
    ),
    "finish_reason_error_alone": Case(chunk({"content": "a"}) + chunk(finish="error")),
    "tool_call_not_an_object": Case(
        chunk({"tool_calls": ["junk", call(0, "c1", "exec_command", "{}")]})
        + chunk(finish="tool_calls")
        + DONE
    ),
    "name_repeated_without_arguments": Case(
        chunk({"tool_calls": [call(0, "c1", "exec_command", '{"cmd":"ls"}')]})
        + chunk({"tool_calls": [call(0, "c1", "exec_command")]})
        + chunk(finish="tool_calls")
        + DONE
    ),
    "malformed_function_field": Case(
        chunk({"content": "a"}) + chunk({"tool_calls": [{"index": 0, "function": "oops"}]})
    ),
    "freeform_duplicate_keys": Case(
        chunk({"tool_calls": [call(0, "call_p", "apply_patch", '{"input": "first", ')]})
        + chunk({"tool_calls": [call(0, args='"input": "second"}')]})
        + chunk(finish="tool_calls")
        + DONE
    ),
    "freeform_list_arguments": Case(
        chunk({"tool_calls": [call(0, "call_p", "apply_patch", '["*** Begin Patch"]')]})
        + chunk(finish="tool_calls")
        + DONE
    ),
    # Valid JSON, not UTF-8: U+FFFD goes out in place of each lone surrogate.
    "lone_surrogates": Case(
        chunk({"reasoning_content": "a\ud83d"})
        + chunk({"content": "\ude00b"})
        + chunk({"tool_calls": [call(0, "c1", "exec_command", '{"cmd": "\ud83d"}')]})
        + chunk(finish="tool_calls")
        + DONE
    ),
    "compaction_ignores_details": Case(
        chunk({"reasoning_details": [_details("no")], "content": "Summary."})
        + chunk(finish="stop")
        + DONE,
        ctx=COMPACTION_CTX,
    ),
    "think_tags_off": Case(text_stream("<think>kept</think>as text"), profile=NO_THINK_TAGS),
    "error_as_string": Case(chunk({"content": "a"}) + b'data: {"error": "overloaded"}\n\n'),
    "error_with_code": Case(
        b'data: {"error": {"message": "maximum context length is 8192 tokens", '
        b'"code": "context_length_exceeded"}}\n\n'
    ),
    "not_an_object": Case(b"data: [1, 2]\n\n"),
    "usage_incomplete_and_details": Case(
        chunk({"content": "a"})
        + chunk(finish="stop")
        + b'data: {"choices": [], "usage": {"prompt_tokens": 5}}\n\n'
        + DONE
    ),
    "empty_stream": Case(b""),
    "only_done": Case(DONE),
    "compaction": Case(
        chunk({"reasoning_content": "hmm"})
        + chunk({"content": "Summary: "})
        + chunk({"tool_calls": [call(0, "c1", "exec_command", "{}")]})
        + chunk({"content": "half built."})
        + chunk(finish="stop")
        + usage()
        + DONE,
        ctx=COMPACTION_CTX,
    ),
    "compaction_length": Case(
        chunk({"content": "Summary"}) + chunk(finish="length") + DONE, ctx=COMPACTION_CTX
    ),
    "compaction_empty": Case(
        chunk({"content": " "}) + chunk(finish="stop") + DONE, ctx=COMPACTION_CTX
    ),
    "keepalives": Case(
        chunk({"reasoning_content": "a"}) + chunk({"content": "b"}) + chunk(finish="stop") + DONE,
        script="keepalive",
    ),
    "host_fails_mid_stream": Case(
        chunk({"reasoning_content": "a"})
        + chunk({"content": "b"})
        + chunk({"tool_calls": [call(0, "c1", "exec_command", "{}")]}),
        script="fail",
    ),
    "takeover": Case(text_stream("after ", "a retry"), script="takeover"),
}

CASES: dict[str, Case] = {**{name: Case(raw) for name, raw in SCENARIOS.items()}, **EXTRA}

COMPLETIONS: dict[str, bytes] = {
    "completion_message_reasoning_calls": json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "up",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "reasoning_content": "think",
                        "content": "hello",
                        "tool_calls": [
                            {
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "exec_command", "arguments": '{"cmd":"ls"}'},
                            },
                            {
                                "id": "c2",
                                "type": "function",
                                "function": {
                                    "name": "apply_patch",
                                    "arguments": '{"input":"*** Begin Patch"}',
                                },
                            },
                            {
                                "id": "c3",
                                "type": "function",
                                "function": {
                                    "name": "mcp__demo__echo_tool",
                                    "arguments": '{"text":"hi"}',
                                },
                            },
                        ],
                    },
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        }
    ).encode(),
    # Mistral's whole answer: the message's content is the list of typed chunks.
    "completion_mistral_thinking": json.dumps(
        {
            "id": "cmpl-m",
            "object": "chat.completion",
            "created": 1,
            "model": "mistral-medium-3-5",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": [_thinking("Add it up."), {"type": "text", "text": "4"}],
                        "tool_calls": None,
                    },
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        }
    ).encode(),
    "completion_length": json.dumps(
        {
            "choices": [
                {"index": 0, "message": {"content": "cut"}, "finish_reason": "length"},
                {"index": 1, "message": {"content": "second choice"}, "finish_reason": "stop"},
            ]
        }
    ).encode(),
    "completion_no_choices": b'{"id": "x", "choices": []}',
    "completion_not_json": b"<html>",
    "completion_not_an_object": b"[]",
}


def _carrier(sealed: bool) -> SealedReasoningCarrier | None:
    if not sealed:
        return None
    nonces = itertools.count()
    return SealedReasoningCarrier(KEY, lambda n: next(nonces).to_bytes(n, "big"))


def _new_id() -> Callable[[str], str]:
    ids = itertools.count(1)
    return lambda prefix: f"{prefix}_{next(ids)}"


def _translator(case: Case, variant: str) -> StreamTranslator:
    mode, _, sealed = variant.partition("-")
    return StreamTranslator(
        case.ctx,
        response_id="resp_1",
        created_at=1700000000,
        new_id=_new_id(),
        reasoning_mode=mode,  # type: ignore[arg-type]
        carrier=_carrier(bool(sealed)),
        profile=case.profile,
        upstream="deepseek",
    )


def _feed(t: StreamTranslator, raw: bytes, step: int | None) -> bytes:
    if step is None:
        return t.feed(raw)
    return b"".join(t.feed(raw[i : i + step]) for i in range(0, len(raw), step))


def translate(case: Case, variant: str, step: int | None = None) -> bytes:
    """The bytes the client gets for ``case`` when the upstream's are cut every ``step``."""
    t = _translator(case, variant)
    if case.script == "feed":
        return _feed(t, case.raw, step) + t.finish()
    if case.script == "fail":
        return _feed(t, case.raw, step) + t.fail("upstream_timeout", "deepseek went silent")
    if case.script == "keepalive":
        half = len(case.raw) // 2
        out = t.start() + t.keepalive() + _feed(t, case.raw[:half], step) + t.keepalive()
        return out + _feed(t, case.raw[half:], step) + t.finish()
    assert case.script == "takeover", case.script
    first = _translator(case, variant)
    out = first.start() + first.keepalive()
    t.continue_from(first)
    return out + _feed(t, case.raw, step) + t.finish()


def translate_whole(body: bytes, variant: str) -> bytes:
    mode, _, sealed = variant.partition("-")
    response = translate_completion(
        body,
        CTX,
        response_id="resp_9",
        created_at=5,
        new_id=_new_id(),
        reasoning_mode=mode,  # type: ignore[arg-type]
        carrier=_carrier(bool(sealed)),
        upstream="vllm",
    )
    return json.dumps(response, ensure_ascii=False, indent=1).encode() + b"\n"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_stream_output_is_the_recorded_bytes(name: str, variant: str) -> None:
    case = CASES[name]
    folder = GOLDEN / name
    assert (folder / "chat.sse").read_bytes() == case.raw, f"{name}: input changed, re-record"
    expected = (folder / f"{variant}.sse").read_bytes()
    for step in CHUNKINGS:
        assert translate(case, variant, step) == expected, (name, variant, step)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", sorted(COMPLETIONS))
def test_completion_output_is_the_recorded_json(name: str, variant: str) -> None:
    folder = GOLDEN / name
    body = COMPLETIONS[name]
    assert (folder / "completion.json").read_bytes() == body, f"{name}: input changed, re-record"
    assert translate_whole(body, variant) == (folder / f"{variant}.json").read_bytes()


def test_every_recorded_case_is_still_a_case() -> None:
    """A renamed or dropped case must take its recording with it."""
    assert sorted(p.name for p in GOLDEN.iterdir()) == sorted({*CASES, *COMPLETIONS})


def record() -> None:
    for name, case in CASES.items():
        folder = GOLDEN / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "chat.sse").write_bytes(case.raw)
        for variant in VARIANTS:
            (folder / f"{variant}.sse").write_bytes(translate(case, variant))
    for name, body in COMPLETIONS.items():
        folder = GOLDEN / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "completion.json").write_bytes(body)
        for variant in VARIANTS:
            (folder / f"{variant}.json").write_bytes(translate_whole(body, variant))


def compare(rev: str) -> list[str]:
    """The cases whose recordings differ from what the translator at ``rev`` sends (its
    ``addon/mitmrelay`` imported under another name; an exception counts as a difference)."""
    global StreamTranslator, translate_completion
    archive = subprocess.run(
        ["git", "-C", str(GOLDEN.parents[2]), "archive", rev, "addon/mitmrelay"],
        capture_output=True,
        check=True,
    ).stdout
    folder = Path(tempfile.mkdtemp(prefix="stream-golden-"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    (folder / "addon" / "mitmrelay").rename(folder / "mitmrelay_at_rev")
    sys.path.insert(0, str(folder))
    StreamTranslator = importlib.import_module("mitmrelay_at_rev.core.stream").StreamTranslator
    translate_completion = importlib.import_module(
        "mitmrelay_at_rev.core.completion"
    ).translate_completion
    logging.disable(logging.CRITICAL)  # internal errors of either version are logged, not news
    differ = []
    runs = [(n, "sse", lambda v, c=c: translate(c, v)) for n, c in CASES.items()]
    runs += [(n, "json", lambda v, b=b: translate_whole(b, v)) for n, b in COMPLETIONS.items()]
    for name, ext, run in runs:
        for variant in VARIANTS:
            try:
                same = run(variant) == (GOLDEN / name / f"{variant}.{ext}").read_bytes()
            except Exception:
                same = False
            if not same:
                differ.append(name)
                break
    return differ


if __name__ == "__main__":
    if sys.argv[1:] == ["--record"]:
        record()
    elif sys.argv[1:2] == ["--compare"] and len(sys.argv) == 3:
        print("\n".join(compare(sys.argv[2])) or "every recording reproduced")
    else:
        sys.exit(__doc__)
