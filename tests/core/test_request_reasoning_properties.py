"""Property tests of the request translator: reasoning placement, the sealed carrier, roles.

``test_request_properties.py`` checks the message-order invariant and that content is carried
exactly once. This file adds the properties it does not cover, over Codex-shaped turns
(a developer prompt first, then messages, reasoning items and tool turns whose outputs may be
missing, reversed or separated from their calls by a user message):

- every message text lands in its Chat role (developer -> system) and in input order;
- reasoning reaches the next assistant message or call of its turn, and never crosses a user
  turn (docs/providers.md §1.2: thinking models reject a tool loop without it);
- with a carrier, the opened payload wins over the readable text, the profile's reasoning field
  (``reasoning_content`` / ``reasoning`` / none) is the only one used, and Gemini
  ``thought_signature``s land on exactly their calls (docs/codex-contract.md §7.3);
- the result validates as a Chat Completions request and translation is deterministic.

The translator runs for real (``parse_request`` on JSON bytes, then ``translate_request``). The
carrier is a dictionary-backed ``ReasoningCarrier``: a seam input, not the code under test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mitmrelay.core.profiles import GENERIC
from mitmrelay.core.reasoning import ReasoningPayload
from mitmrelay.core.request import MISSING_OUTPUT, parse_request, translate_request
from mitmrelay.models.chat import ChatCompletionRequest

TOOLS = [
    {
        "type": "function",
        "name": "shell",
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
    },
    {"type": "custom", "name": "apply_patch", "description": "Patch files."},
]


class DictCarrier:
    """A real ReasoningCarrier backed by a dict: blobs it sealed open, others do not."""

    def __init__(self) -> None:
        self.sealed: dict[str, ReasoningPayload] = {}

    def seal(self, payload: ReasoningPayload) -> str:
        blob = f"sealed-{len(self.sealed)}"
        self.sealed[blob] = payload
        return blob

    def open(self, blob: str) -> ReasoningPayload | None:
        return self.sealed.get(blob)


# ----------------------------------------------------------------------------- generation

# A step is an abstract event; ``build`` turns steps into input items with unique tokens.
_message = st.tuples(st.sampled_from(["user", "developer", "assistant"]))
_reasoning = st.tuples(st.just("reasoning"), st.booleans())  # True: reasoning_text, else summary
_turn = st.tuples(
    st.just("turn"),
    st.lists(st.booleans(), min_size=1, max_size=3),  # per call: custom tool?
    st.lists(st.booleans(), min_size=3, max_size=3),  # per call: output present?
    st.booleans(),  # outputs sent in reverse order
    st.booleans(),  # an unrelated user message between the calls and their outputs
)
_orphan = st.tuples(st.just("orphan"))
steps = st.lists(st.one_of(_message, _reasoning, _turn, _orphan), min_size=1, max_size=14)


@dataclass
class Expected:
    items: list[dict[str, Any]] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)  # token -> Chat role it must land in
    text_order: list[str] = field(default_factory=list)
    calls: dict[str, tuple[str, str]] = field(default_factory=dict)  # call_id -> (name, arg)
    outputs: dict[str, str] = field(default_factory=dict)  # call_id -> output token
    orphans: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)


def build(seq: list[tuple[Any, ...]]) -> Expected:
    exp = Expected()
    counter = iter(range(10_000))

    def token(kind: str) -> str:
        return f"<{kind}{next(counter)}>"

    def message(role: str) -> None:
        text = token(role)
        part = "output_text" if role == "assistant" else "input_text"
        exp.items.append(
            {"type": "message", "role": role, "content": [{"type": part, "text": text}]}
        )
        exp.texts[text] = "system" if role == "developer" else role
        exp.text_order.append(text)

    # Codex always opens with its developer prompt (docs/codex-contract.md §4); a request with no
    # readable message at all is a client error, covered by test_request_rules.py.
    message("developer")
    for step in seq:
        kind = step[0]
        if kind in ("user", "developer", "assistant"):
            message(kind)
        elif kind == "reasoning":
            text = token("reasoning")
            item: dict[str, Any] = {"type": "reasoning", "summary": []}
            if step[1]:
                item["content"] = [{"type": "reasoning_text", "text": text}]
            else:
                item["summary"] = [{"type": "summary_text", "text": text}]
            exp.items.append(item)
            exp.reasoning.append(text)
        elif kind == "turn":
            customs, present, reverse, interleave = step[1:]
            calls, outputs = [], []
            for custom, has_output in zip(customs, present, strict=False):
                call_id, arg = token("call"), token("arg")
                if custom:
                    calls.append(
                        {
                            "type": "custom_tool_call",
                            "call_id": call_id,
                            "name": "apply_patch",
                            "input": arg,
                        }
                    )
                    exp.calls[call_id] = ("apply_patch", arg)
                else:
                    calls.append(
                        {
                            "type": "function_call",
                            "call_id": call_id,
                            "name": "shell",
                            "arguments": json.dumps({"cmd": arg}),
                        }
                    )
                    exp.calls[call_id] = ("shell", arg)
                if has_output:
                    out = token("out")
                    kind_out = "custom_tool_call_output" if custom else "function_call_output"
                    outputs.append({"type": kind_out, "call_id": call_id, "output": out})
                    exp.outputs[call_id] = out
            exp.items += calls
            if interleave:
                message("user")
            exp.items += reversed(outputs) if reverse else outputs
        else:
            call_id = token("ghost")
            exp.items.append({"type": "function_call_output", "call_id": call_id, "output": "x"})
            exp.orphans.append(call_id)
    return exp


def translate(exp: Expected, **kwargs: Any) -> dict[str, Any]:
    body = {"model": "gpt-5.4", "input": exp.items, "tools": TOOLS, "stream": True}
    chat, _ = translate_request(
        parse_request(json.dumps(body).encode()), upstream_model="up", **kwargs
    )
    return chat


def content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content)


def assert_order_invariant(messages: list[dict[str, Any]]) -> None:
    i = 0
    while i < len(messages):
        message = messages[i]
        assert message["role"] != "tool", f"tool message {i} answers no call right before it"
        calls = message.get("tool_calls") or []
        answers = messages[i + 1 : i + 1 + len(calls)]
        assert [m["role"] for m in answers] == ["tool"] * len(calls)
        assert [m["tool_call_id"] for m in answers] == [c["id"] for c in calls]
        i += 1 + len(calls)


# ----------------------------------------------------------------------------- properties


@settings(max_examples=150, deadline=None)
@given(steps)
def test_roles_order_arguments_and_a_valid_deterministic_chat_request(
    seq: list[tuple[Any, ...]],
) -> None:
    exp = build(seq)
    chat = translate(exp)
    messages = chat["messages"]
    assert_order_invariant(messages)

    # Every message text exactly once, in its role, in input order.
    seen: list[str] = []
    for message in messages:
        if message["role"] == "tool":
            continue
        text = content_text(message.get("content"))
        for tok, role in exp.texts.items():
            if tok in text:
                assert message["role"] == role, (tok, message)
                seen.append(tok)
    assert sorted(seen) == sorted(exp.text_order)
    assert seen == exp.text_order

    # Calls keep their upstream names; a custom call's raw input is its one string parameter.
    calls = [c for m in messages for c in m.get("tool_calls") or ()]
    assert sorted(c["id"] for c in calls) == sorted(exp.calls)
    for call in calls:
        name, arg = exp.calls[call["id"]]
        assert call["function"]["name"] == name
        args = json.loads(call["function"]["arguments"])
        assert args == ({"input": arg} if name == "apply_patch" else {"cmd": arg})

    answers = {m["tool_call_id"]: m["content"] for m in messages if m["role"] == "tool"}
    assert answers == {cid: exp.outputs.get(cid, MISSING_OUTPUT) for cid in exp.calls}
    dumped = json.dumps(chat)
    assert not any(ghost in dumped for ghost in exp.orphans)

    ChatCompletionRequest.model_validate_json(dumped)
    assert chat["stream_options"] == {"include_usage": True}
    assert translate(exp) == chat


@settings(max_examples=150, deadline=None)
@given(steps)
def test_reasoning_reaches_the_next_assistant_message_of_its_turn(
    seq: list[tuple[Any, ...]],
) -> None:
    """Reasoning followed (before any user message) by assistant text or a call replays on
    that assistant message; reasoning followed by a user message is dropped."""
    exp = build(seq)
    messages = translate(exp)["messages"]
    replayed = "".join(m.get("reasoning_content", "") for m in messages)
    visible = "".join(content_text(m.get("content")) for m in messages)
    assert all(m["role"] == "assistant" for m in messages if "reasoning_content" in m)
    pending: list[str] = []
    for item in exp.items:
        kind = item.get("type")
        if kind == "reasoning":
            pending.append((item.get("content") or item["summary"])[0]["text"])
        elif kind == "message" and item["role"] == "user":
            assert not any(tok in replayed for tok in pending)  # never crosses a user turn
            pending = []
        elif (kind == "message" and item["role"] == "assistant") or kind in (
            "function_call",
            "custom_tool_call",
        ):
            assert all(replayed.count(tok) == 1 for tok in pending)
            pending = []
    assert not any(tok in visible for tok in exp.reasoning)  # never visible text


@settings(max_examples=80, deadline=None)
@given(steps, st.sampled_from(["reasoning_content", "reasoning", "none"]))
def test_sealed_reasoning_and_signatures_follow_the_carrier(
    seq: list[tuple[Any, ...]], replay: str
) -> None:
    exp = build(seq)
    carrier = DictCarrier()
    sealed: dict[str, str] = {}  # sealed text -> the readable text it replaces
    for item in exp.items:
        if item.get("type") == "reasoning":
            readable = (item.get("content") or item["summary"])[0]["text"]
            secret = readable.replace("reasoning", "sealed")
            item["encrypted_content"] = carrier.seal(
                ReasoningPayload(text=secret, signatures={cid: f"sig-{cid}" for cid in exp.calls})
            )
            sealed[secret] = readable
    profile = replace(GENERIC, reasoning_replay=replay)  # type: ignore[arg-type]
    messages = translate(exp, carrier=carrier, profile=profile)["messages"]
    assert_order_invariant(messages)

    dumped = json.dumps(messages)
    for secret, readable in sealed.items():
        assert readable not in dumped  # the opened payload wins over the readable text
        if replay == "none":
            assert secret not in dumped
    for message in messages:
        for key in ("reasoning_content", "reasoning"):
            if key != replay:
                assert key not in message
        for call in message.get("tool_calls") or ():
            google = call.get("extra_content", {}).get("google")
            if google is not None:
                assert google == {"thought_signature": f"sig-{call['id']}"}
        # A call message that replays sealed reasoning carries every one of its signatures.
        if replay != "none" and message.get(replay) and message.get("tool_calls"):
            assert all("extra_content" in c for c in message["tool_calls"])
