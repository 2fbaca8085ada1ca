"""The strict fakes refuse what each provider refuses, in its words, and nothing else.

A fake that accepted everything would prove nothing about the profiles: each case here is a
request the real provider is known to refuse (docs/providers.md §2, where the wordings are
sourced), checked against the refusal, and the same request put right, checked to pass.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.strict_providers import STRICT, Memory, check

USER = {"role": "user", "content": "go"}
CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {"id": "abcDEF123", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    ],
}
TOOL = {"role": "tool", "tool_call_id": "abcDEF123", "content": "ok"}


def body(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": list(messages), **fields}


def with_(message: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {**message, **fields}


IMAGE = {"type": "image_url", "image_url": {"url": "https://example.test/a.png"}}
THOUGHT = {"type": "text", "text": "what it thought"}

CASES = [
    # (family, refused request, status, words in the answer, the request put right)
    (
        "deepseek",
        body(USER, CALL, TOOL),
        400,
        "The reasoning_content in the thinking mode must be passed back to the API.",
        body(USER, with_(CALL, reasoning_content=" "), TOOL),
    ),
    (
        "deepseek",
        body({"role": "user", "content": [{"type": "text", "text": "hi"}, IMAGE]}),
        400,
        "messages[0]: unknown variant `image_url`, expected `text`",
        body({"role": "user", "content": [{"type": "text", "text": "hi"}]}),
    ),
    (
        "kimi",
        body(USER, CALL, TOOL),
        400,
        "thinking is enabled but reasoning_content is missing in assistant tool call message "
        "at index 1",
        body(USER, with_(CALL, reasoning_content="why"), TOOL),
    ),
    (
        "groq",
        body(USER, with_(CALL, reasoning_content="why"), TOOL),
        400,
        "'messages.1' : for 'role:assistant' the following must be satisfied[('messages.1' : "
        "property 'reasoning_content' is unsupported)]",
        body(USER, CALL, TOOL),
    ),
    (
        "groq",
        body(USER, store=False),
        400,
        "property 'store' is unsupported",
        body(USER),
    ),
    (
        "mistral",
        body(USER, stream=True, stream_options={"include_usage": True}),
        422,
        '"loc": ["body", "stream_options"], "msg": "Extra inputs are not permitted"',
        body(USER, stream=True),
    ),
    (
        "mistral",
        body(USER, max_completion_tokens=5),
        422,
        '"loc": ["body", "max_completion_tokens"]',
        body(USER, max_tokens=5),
    ),
    (
        "mistral",
        body(USER, with_(CALL, reasoning_content="why"), TOOL),
        422,
        '"loc": ["body", "messages", 1, "assistant", "reasoning_content"]',
        body(USER, CALL, TOOL),
    ),
    (
        "mistral",
        body(USER, CALL, TOOL, USER),
        400,
        "Unexpected role 'user' after role 'tool'",
        body(USER, CALL, TOOL, {"role": "assistant", "content": "Done."}, USER),
    ),
    (
        "mistral",
        body(
            {"role": "system", "content": "a"},
            USER,
            {"role": "assistant", "content": "x"},
            {"role": "system", "content": "b"},
            USER,
        ),
        400,
        "Unexpected role 'system' after role 'assistant'",
        body(
            {"role": "system", "content": "a\n\nb"},
            USER,
            {"role": "assistant", "content": "x"},
            USER,
        ),
    ),
    (
        "mistral",
        body(
            USER,
            with_(CALL, tool_calls=[{**CALL["tool_calls"][0], "id": "call_1"}]),
            with_(TOOL, tool_call_id="call_1"),
        ),
        400,
        "Tool call id was call_1 but must be a-z, A-Z, 0-9, with a length of 9.",
        body(USER, CALL, TOOL),
    ),
    (
        "mistral",
        body(
            USER,
            with_(CALL, content=[{"type": "thinking", "thinking": [THOUGHT], "signature": "s"}]),
            TOOL,
        ),
        422,
        '"loc": ["body", "messages", 1, "assistant", "content", 0, "thinking", "signature"], '
        '"msg": "Extra inputs are not permitted"',
        body(USER, with_(CALL, content=[{"type": "thinking", "thinking": [THOUGHT]}]), TOOL),
    ),
    (
        "mistral",
        body(
            USER,
            with_(CALL, content=[{"type": "thinking", "thinking": [{**THOUGHT, "x": 1}]}]),
            TOOL,
        ),
        422,
        '"loc": ["body", "messages", 1, "assistant", "content", 0, "thinking", "thinking", 0, '
        '"text", "x"]',
        body(USER, with_(CALL, content=[{"type": "thinking", "thinking": [THOUGHT]}]), TOOL),
    ),
    (
        "gemini",
        body(USER, with_(CALL, reasoning_content="why"), TOOL),
        400,
        "Invalid JSON payload received. Unknown name \\\"reasoning_content\\\" at 'messages[1]'",
        body(USER, CALL, TOOL),
    ),
    (
        "ollama",
        body(USER, reasoning_effort="xhigh"),
        400,
        'invalid reasoning value: \'xhigh\' (must be \\"high\\", \\"medium\\", \\"low\\", or '
        '\\"none\\")',
        body(USER, reasoning_effort="high"),
    ),
    (
        "ollama",
        body({"role": "user", "content": [IMAGE]}),
        400,
        "invalid image input",
        body(
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}
                ],
            }
        ),
    ),
    (
        "generic",
        body(USER, CALL, USER),
        400,
        "must be followed by tool messages responding to each 'tool_call_id'",
        body(USER, CALL, TOOL, USER),
    ),
    (
        "generic",
        body(USER, tools=[]),
        400,
        "Invalid 'tools': empty array.",
        body(USER),
    ),
]


@pytest.mark.parametrize(
    ("family", "refused", "status", "words", "fixed"),
    CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)],
)
def test_each_fake_refuses_in_its_providers_words(
    family: str, refused: dict[str, Any], status: int, words: str, fixed: dict[str, Any]
) -> None:
    rejection, _ = check(family, refused, Memory())
    assert rejection is not None and rejection.status == status
    assert words in rejection.body.decode()
    json.loads(rejection.body)  # a real JSON body, as the provider sends
    assert check(family, fixed, Memory())[0] is None


def test_gemini_refuses_a_signed_call_without_its_signature_and_answers_in_a_list() -> None:
    memory = Memory(signatures={"abcDEF123": "sig"})
    rejection, _ = check("gemini", body(USER, CALL, TOOL), memory)
    assert rejection is not None and rejection.status == 400
    error = json.loads(rejection.body)[0]["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert "missing a thought_signature" in error["message"] and "default_api:f" in error["message"]
    signed = {**CALL["tool_calls"][0], "extra_content": {"google": {"thought_signature": "sig"}}}
    assert check("gemini", body(USER, with_(CALL, tool_calls=[signed]), TOOL), memory)[0] is None


def test_openrouter_refuses_encrypted_reasoning_it_did_not_issue() -> None:
    ours = {"type": "reasoning.encrypted", "data": "ours", "id": "rs_1", "index": 0}
    theirs = {**ours, "data": "another key's", "id": "rs_2"}
    memory = Memory(encrypted={"ours"})
    refused = body(USER, with_(CALL, reasoning_details=[ours, theirs]), TOOL)
    rejection, _ = check("openrouter", refused, memory)
    assert rejection is not None and rejection.status == 400
    error = json.loads(rejection.body)["error"]
    assert error["code"] == "invalid_encrypted_content"
    assert error["message"].startswith("The encrypted content for item rs_2 could not be verified")
    text = {"type": "reasoning.text", "text": "why"}  # readable blocks verify nothing
    fixed = body(USER, with_(CALL, reasoning_details=[ours, text]), TOOL)
    assert check("openrouter", fixed, memory)[0] is None


@pytest.mark.parametrize(
    ("family", "request_", "memory", "breach"),
    [
        (
            "qwen",
            body(USER, with_(CALL, reasoning_content="why"), TOOL),
            Memory(),
            "without preserve_thinking",
        ),
        (
            "glm",
            body(USER, stream=True, tools=[{"type": "function"}]),
            Memory(),
            "no tool_stream",
        ),
        (
            "glm",
            body(USER, thinking={"type": "enabled"}),
            Memory(),
            "without clear_thinking",
        ),
        (
            "kimi",
            body(USER, with_(CALL, reasoning_content="why"), TOOL),
            Memory(call_ids={"functions.f:0"}),
            "is not one Kimi gave",
        ),
        (
            "deepseek",
            body(USER, with_(CALL, reasoning_content="other"), TOOL),
            Memory(reasoning={"abcDEF123": "what it thought"}),
            "did not come back",
        ),
        (
            "mistral",
            body(USER, CALL, TOOL),
            Memory(reasoning={"abcDEF123": "what it thought"}),
            "did not come back as a thinking chunk (got '')",
        ),
        (
            "mistral",
            body(
                USER,
                with_(CALL, content=[{"type": "text", "text": "what it thought"}]),
                TOOL,
            ),
            Memory(reasoning={"abcDEF123": "what it thought"}),
            "did not come back as a thinking chunk",
        ),
        ("openrouter", body(USER, reasoning={"effort": "max"}), Memory(), "not on this provider"),
        ("generic", body(USER, stream=True), Memory(), "include_usage"),
        ("groq", body({"role": "user", "content": [IMAGE]}), Memory(), "text-only"),
    ],
)
def test_silent_penalties_are_recorded(
    family: str, request_: dict[str, Any], memory: Memory, breach: str
) -> None:
    _, violations = check(family, request_, memory)
    assert any(breach in v for v in violations), violations


def test_every_family_has_a_strict_mode() -> None:
    from mitmrelay.core.profiles import PROFILES

    assert set(STRICT) == set(PROFILES)
