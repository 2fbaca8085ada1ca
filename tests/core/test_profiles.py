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
        ("glm", {}, {"reasoning_content": "why"}),
        ("qwen", {}, {"reasoning_content": "why"}),
        ("mistral", {}, {}),
        ("gemini", {}, {}),
        ("ollama", {}, {"reasoning": "why"}),
        ("vllm", {}, {"reasoning": "why"}),
        ("llamacpp", {}, {"reasoning_content": "why"}),
        ("lmstudio", {}, {"reasoning_content": "why"}),
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
        ("https://api.deepseek.com", "deepseek"),
        ("https://API.Moonshot.cn/v1", "kimi"),
        ("https://api.moonshot.ai/v1", "kimi"),
        ("https://api.kimi.com/coding/v1", "kimi"),
        ("https://api.z.ai/api/paas/v4", "glm"),
        ("https://open.bigmodel.cn/api/paas/v4", "glm"),
        ("https://dashscope.aliyuncs.com/compatible-mode/v1", "qwen"),
        ("https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "qwen"),
        ("https://openrouter.ai/api/v1", "openrouter"),
        ("https://eu.openrouter.ai/api/v1", "openrouter"),
        ("https://api.groq.com/openai/v1", "groq"),
        ("https://api.mistral.ai/v1", "mistral"),
        ("https://codestral.mistral.ai/v1", "mistral"),
        ("https://generativelanguage.googleapis.com/v1beta/openai/", "gemini"),
        ("https://ollama.com/v1", "ollama"),
        ("https://notopenrouter.ai/v1", "generic"),
        ("https://api.deepseek.com.evil.example/v1", "generic"),
        # Local servers listen anywhere: a route names their profile.
        ("http://127.0.0.1:11434/v1", "generic"),
        ("http://127.0.0.1:8000/v1", "generic"),
        ("not a url", "generic"),
    ],
)
def test_the_profile_is_guessed_from_the_host(url: str, name: str) -> None:
    assert guess_profile(url).name == name
