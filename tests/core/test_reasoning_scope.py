"""Reasoning is scoped to the provider that produced it (core/reasoning.py, core/request.py
rule 4): its text goes to any provider, its ``reasoning_details`` and Gemini signatures only back
to the one that made them. OpenRouter refuses encrypted details it did not issue with a 400 that
does not fall back (docs/providers.md §1.2), so a leak would reach the client.

Pure tests here: the carrier stamp, the request side per origin, and the exchange that seals
each attempt as its provider and sends each request its own. The same through a real mitmdump
with two strict OpenRouter fakes: tests/addon/test_reasoning_scope_mitmdump.py.
"""

from __future__ import annotations

import itertools
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from support.strict_providers import Memory, check

sys.path.insert(0, str(Path(__file__).resolve().parent))  # chat_streams

from chat_streams import chunk, usage

from mitmrelay.core.attempts import Failure
from mitmrelay.core.carrier import SealedReasoningCarrier
from mitmrelay.core.exchange import Exchange
from mitmrelay.core.profiles import PROFILES
from mitmrelay.core.reasoning import ReasoningPayload, ScopedCarrier, scoped
from mitmrelay.core.request import parse_request, translate_request
from mitmrelay.core.routes import parse_routes
from mitmrelay.core.upstream_errors import map_upstream_error

ENCRYPTED = {"type": "reasoning.encrypted", "data": "opaque-a", "id": "rs_a", "index": 1}
TEXT_DETAIL = {"type": "reasoning.text", "text": "why", "index": 0}


def carrier() -> SealedReasoningCarrier:
    nonces = itertools.count()
    return SealedReasoningCarrier(bytes(range(32)), lambda n: next(nonces).to_bytes(n, "big"))


def sealed_turn(blob: str) -> bytes:
    """A Codex request replaying one sealed reasoning item, its call and the call's output."""
    body = {
        "model": "m",
        "input": [
            {"type": "message", "role": "user", "content": "go"},
            {"type": "reasoning", "summary": [], "encrypted_content": blob},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "done"},
        ],
        "tools": [{"type": "function", "name": "f", "parameters": {}}],
    }
    return json.dumps(body).encode()


def assistant(chat: dict[str, Any]) -> dict[str, Any]:
    return next(m for m in chat["messages"] if m.get("tool_calls"))


PAYLOAD = ReasoningPayload(
    text="why", details=(TEXT_DETAIL, ENCRYPTED), signatures={"c1": "SIG"}, call_ids=("c1",)
)


# ----------------------------------------------------------------------------- the stamp


def test_the_scoped_carrier_stamps_its_origin_unless_the_payload_names_one():
    inner = carrier()
    stamped = ScopedCarrier(inner, "alpha")
    assert inner.open(stamped.seal(PAYLOAD)).origin == "alpha"
    named = ReasoningPayload(text="x", origin="beta")
    assert inner.open(stamped.seal(named)).origin == "beta"
    assert stamped.open(inner.seal(PAYLOAD)) == PAYLOAD  # opening is the inner carrier's
    assert inner.open_compaction(stamped.seal_compaction("sum")) == "sum"
    assert stamped.open_compaction(inner.seal_compaction("sum")) == "sum"
    assert scoped(None, "alpha") is None and scoped(inner, "alpha") == stamped


# ----------------------------------------------------------------------------- the request side


@pytest.mark.parametrize(
    ("sealed_by", "sent_to", "whole"),
    [
        ("alpha", "alpha", True),  # its own provider: everything
        ("alpha", "beta", False),  # another: the text alone
        ("alpha", None, True),  # a caller that names no provider: as before
        ("", "beta", True),  # sealed before origins were: as it always went
    ],
)
def test_details_and_signatures_go_only_back_to_their_provider(sealed_by, sent_to, whole):
    sealer = carrier()
    blob = sealer.seal(replace(PAYLOAD, origin=sealed_by))
    for profile in (PROFILES["openrouter"], PROFILES["generic"]):
        chat, _ = translate_request(
            parse_request(sealed_turn(blob)),
            upstream_model="up",
            profile=profile,
            carrier=sealer,
            origin=sent_to,
        )
        message = assistant(chat)
        assert message[profile.reasoning_replay] == "why"  # the text goes anywhere
        call = message["tool_calls"][0]
        if whole:
            assert message["reasoning_details"] == [TEXT_DETAIL, ENCRYPTED]
            assert call["extra_content"] == {"google": {"thought_signature": "SIG"}}
        else:
            assert "reasoning_details" not in message and "extra_content" not in call
            assert "opaque-a" not in json.dumps(chat) and "SIG" not in json.dumps(chat)


def test_gemini_signatures_of_another_provider_are_not_sent_to_gemini():
    # A thread whose calls another Gemini route signed (another key): the signature is that
    # route's; Gemini's strict fake here holds no memory of it, so nothing signed is demanded.
    sealer = carrier()
    blob = sealer.seal(replace(PAYLOAD, origin="gemini-a"))
    chat, _ = translate_request(
        parse_request(sealed_turn(blob)),
        upstream_model="up",
        profile=PROFILES["gemini"],
        carrier=sealer,
        origin="gemini-b",
    )
    assert "extra_content" not in assistant(chat)["tool_calls"][0]
    assert check("gemini", chat, Memory()) == (None, [])


def test_two_reasoning_items_of_two_providers_join_with_only_the_own_extras():
    sealer = carrier()
    mine = sealer.seal(replace(PAYLOAD, origin="alpha"))
    theirs = sealer.seal(
        ReasoningPayload(
            text="their why",
            details=({"type": "reasoning.encrypted", "data": "opaque-b"},),
            signatures={"c1": "THEIRS"},
            origin="beta",
        )
    )
    body = json.loads(sealed_turn(mine))
    body["input"].insert(2, {"type": "reasoning", "summary": [], "encrypted_content": theirs})
    chat, _ = translate_request(
        parse_request(json.dumps(body).encode()),
        upstream_model="up",
        profile=PROFILES["openrouter"],
        carrier=sealer,
        origin="alpha",
    )
    message = assistant(chat)
    assert message["reasoning"] == "why\n\ntheir why"
    assert message["reasoning_details"] == [TEXT_DETAIL, ENCRYPTED]
    assert message["tool_calls"][0]["extra_content"]["google"]["thought_signature"] == "SIG"


# ----------------------------------------------------------------------------- the exchange

ROUTES = """
[providers.alpha]
base_url = "https://openrouter.ai/api/v1"
api_key_env = "ALPHA_KEY"

[providers.beta]
base_url = "https://openrouter.ai/api/v1"
api_key_env = "BETA_KEY"

[models.m]
provider = "alpha"
fallbacks = ["m-beta"]

[models.m-beta]
provider = "beta"
"""
ENV = {"ALPHA_KEY": "sk-a", "BETA_KEY": "sk-b"}
FIRST_TURN = json.dumps(
    {
        "model": "m",
        "input": [{"type": "message", "role": "user", "content": "go"}],
        "tools": [{"type": "function", "name": "f", "parameters": {}}],
        "stream": True,
    }
).encode()


def exchange(body: bytes, sealer: SealedReasoningCarrier) -> Exchange:
    ids = itertools.count(1)
    plan = parse_routes(ROUTES, source="routes.toml", env=ENV).plan("m")
    return Exchange(
        parse_request(body),
        plan,
        response_id="resp_1",
        started_at=1.0,
        new_id=lambda kind: f"{kind}_{next(ids)}",
        carrier=sealer,
    )


def answer(ex: Exchange, data: str, call_id: str) -> str:
    """The latest attempt's translator fed an OpenRouter answer (reasoning, an encrypted
    detail, a call); the sealed blob of its reasoning item."""
    translator = ex.translator(ex.calls[-1])
    translator.feed(
        chunk({"reasoning": "why", "reasoning_details": [TEXT_DETAIL]})
        + chunk({"reasoning_details": [{**ENCRYPTED, "data": data}]})
        + chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": call_id,
                        "type": "function",
                        "function": {"name": "f", "arguments": "{}"},
                    }
                ]
            }
        )
        + chunk(finish="tool_calls")
        + usage()
    )
    translator.finish()
    (item,) = [i for i in translator.response["output"] if i["type"] == "reasoning"]
    return item["encrypted_content"]


def test_each_attempt_seals_as_its_provider_and_sends_each_provider_its_own():
    sealer = carrier()
    first = exchange(FIRST_TURN, sealer)
    first.first_call()
    blob_a = answer(first, "opaque-a", "c1")
    assert sealer.open(blob_a).origin == "alpha"

    # The next turn: alpha fails, beta takes over and gets the text alone.
    second = exchange(sealed_turn(blob_a), sealer)
    assert "opaque-a" in second.first_call().body.decode()  # alpha gets its own back
    failure = Failure(503, map_upstream_error(503, {}, b"{}", upstream="alpha"))
    _, fallback = second.next_call(failure)
    sent = json.loads(fallback.body)
    assert fallback.label == "beta" and "opaque-a" not in fallback.body.decode()
    assert assistant(sent)["reasoning"] == "why"
    blob_b = answer(second, "opaque-b", "c2")
    assert sealer.open(blob_b).origin == "beta"

    # And back to alpha: its own details on its turn, only the text of beta's.
    third_body = json.loads(sealed_turn(blob_a))
    third_body["input"] += [
        {"type": "reasoning", "summary": [], "encrypted_content": blob_b},
        {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c2", "output": "done"},
    ]
    third = exchange(json.dumps(third_body).encode(), sealer)
    messages = [m for m in json.loads(third.first_call().body)["messages"] if m.get("tool_calls")]
    assert [m.get("reasoning_details") for m in messages] == [
        [TEXT_DETAIL, {**ENCRYPTED, "data": "opaque-a"}],
        None,
    ]
    assert [m["reasoning"] for m in messages] == ["why", "why"]
