"""Gemini's thought signatures survive the round trip: stream -> Codex's replay -> request.

Gemini's OpenAI-compatible endpoint signs tool calls (``extra_content.google.thought_signature``)
without sending thought text, and refuses the next request when a signed call comes back
unsigned (docs/providers.md §1.2). Each upstream shape of ``test_stream_golden.py``'s Gemini
cases is translated with the real sealed carrier; the output items are replayed as Codex
replays them (verbatim, each call answered: docs/codex-contract.md §7.3); the next request,
translated for the Gemini profile, must pass the strict Gemini fake's rules
(``support/strict_providers.py``) with exactly the signatures the upstream gave, on exactly
their calls, and no thought text anywhere.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from support.strict_providers import Memory, check

sys.path.insert(0, str(Path(__file__).resolve().parent))  # chat_streams, test_stream_golden

from chat_streams import CTX
from test_stream_golden import CASES

from mitmrelay.core.carrier import SealedReasoningCarrier
from mitmrelay.core.profiles import PROFILES
from mitmrelay.core.request import parse_request, translate_request
from mitmrelay.core.stream import StreamTranslator

GEMINI = PROFILES["gemini"]
# The golden cases whose upstream signs calls, and the signatures it gave.
SIGNED = {
    "gemini_no_index_stop": {"g1": "sig=="},
    "gemini_signed_parallel_calls": {"g1": "S1"},
    "gemini_text_then_signed_call": {"g1": "S1"},
    "gemini_thought_then_signed_calls": {"g1": "S1", "g2": "S2"},
    "gemini_signature_after_the_call_opened": {"g1": "S1"},
}
EXEC = {
    "type": "function",
    "name": "exec_command",
    "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
}


def carrier() -> SealedReasoningCarrier:
    nonces = itertools.count()
    return SealedReasoningCarrier(bytes(range(32)), lambda n: next(nonces).to_bytes(n, "big"))


def answered(raw: bytes, mode: str, sealed: SealedReasoningCarrier) -> list[dict[str, Any]]:
    ids = itertools.count(1)
    t = StreamTranslator(
        CTX,
        response_id="resp_1",
        created_at=1,
        new_id=lambda prefix: f"{prefix}_{next(ids)}",
        reasoning_mode=mode,  # type: ignore[arg-type]
        carrier=sealed,
        profile=GEMINI,
        upstream="gemini",
    )
    t.feed(raw)
    t.finish()
    assert t.response["status"] == "completed", t.response
    return t.response["output"]


def replay(output: list[dict[str, Any]]) -> bytes:
    """The next request as Codex sends it: the turn so far, the items verbatim, each call's
    output."""
    outputs = [
        {"type": "function_call_output", "call_id": i["call_id"], "output": "ok"}
        for i in output
        if i["type"] == "function_call"
    ]
    user = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go"}]}
    request = {
        "model": "gemini-model",
        "input": [user, *output, *outputs],
        "tools": [EXEC],
        "stream": True,
    }
    return json.dumps(request).encode()


@pytest.mark.parametrize("mode", ["summary", "raw", "hidden"])
@pytest.mark.parametrize("name", sorted(SIGNED))
def test_every_signature_goes_back_on_its_call_and_gemini_accepts_it(name: str, mode: str):
    sealed = carrier()
    output = answered(CASES[name].raw, mode, sealed)
    chat, _ = translate_request(
        parse_request(replay(output)),
        upstream_model="gemini-2.5-flash",
        profile=GEMINI,
        carrier=sealed,
    )
    rejection, violations = check("gemini", chat, Memory(signatures=SIGNED[name]))
    assert rejection is None, rejection.body
    assert violations == []
    calls = [c for m in chat["messages"] for c in m.get("tool_calls") or ()]
    sent = {
        c["id"]: c["extra_content"]["google"]["thought_signature"]
        for c in calls
        if "extra_content" in c
    }
    assert sent == SIGNED[name]
    assert len(calls) == sum(i["type"] == "function_call" for i in output)
    assert not any("reasoning_content" in m or "reasoning" in m for m in chat["messages"])


def test_without_the_relays_blob_the_strict_fake_refuses_the_replay():
    """The control: the same replay with the sealed blob stripped is what Gemini refuses."""
    sealed = carrier()
    output = answered(CASES["gemini_signed_parallel_calls"].raw, "summary", sealed)
    stripped = [{k: v for k, v in i.items() if k != "encrypted_content"} for i in output]
    chat, _ = translate_request(
        parse_request(replay(stripped)), upstream_model="g", profile=GEMINI, carrier=sealed
    )
    rejection, _ = check("gemini", chat, Memory(signatures={"g1": "S1"}))
    assert rejection is not None and b"missing a thought_signature" in rejection.body
