"""Provider rows of the profile table change exactly the switches their quirks call for."""

import json

import pytest

from mitmrelay.core.profiles import PROFILES, guess_profile
from mitmrelay.core.request import parse_request, translate_request

LOST_REASONING = {
    "model": "m",
    "input": [
        {"type": "message", "role": "user", "content": "go"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
    ],
}
KEPT_REASONING = {
    "model": "m",
    "input": [
        LOST_REASONING["input"][0],
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "why"}]},
        *LOST_REASONING["input"][1:],
    ],
}


def assistant(body, profile):
    chat, _ = translate_request(
        parse_request(json.dumps(body).encode()), upstream_model="up", profile=PROFILES[profile]
    )
    return chat["messages"][1]


@pytest.mark.parametrize(
    ("profile", "lost", "kept"),
    [
        ("generic", {}, {"reasoning_content": "why"}),
        ("deepseek", {"reasoning_content": " "}, {"reasoning_content": "why"}),
        ("kimi", {"reasoning_content": " "}, {"reasoning_content": "why"}),
        ("groq", {}, {}),
        ("openrouter", {}, {"reasoning": "why"}),
    ],
)
def test_reasoning_policy(profile, lost, kept):
    fields = ("reasoning_content", "reasoning")
    got_lost = {k: v for k, v in assistant(LOST_REASONING, profile).items() if k in fields}
    got_kept = {k: v for k, v in assistant(KEPT_REASONING, profile).items() if k in fields}
    assert (got_lost, got_kept) == (lost, kept)


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://api.deepseek.com/v1", "deepseek"),
        ("https://API.Moonshot.cn/v1", "kimi"),
        ("https://eu.openrouter.ai/api/v1", "openrouter"),
        ("https://notopenrouter.ai/v1", "generic"),
        ("http://127.0.0.1:8000/v1", "generic"),
    ],
)
def test_the_profile_is_guessed_from_the_host(url: str, name: str) -> None:
    assert guess_profile(url).name == name
