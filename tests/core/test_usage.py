"""Every usage shape the provider families send becomes one complete Responses usage object."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.responses import ResponseUsage

from mitmrelay.core.usage import responses_usage


def usage(
    input_: int, cached: int, output: int, reasoning: int, *, write: int = 0, total: int = 0
) -> dict[str, Any]:
    return {
        "input_tokens": input_,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": write},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": total or input_ + output,
    }


BASE = {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}


@pytest.mark.parametrize(
    ("chat", "expected"),
    [
        pytest.param(BASE, usage(100, 0, 10, 0), id="plain (Ollama, Mistral, llama.cpp)"),
        pytest.param(
            {
                **BASE,
                "prompt_tokens_details": {"cached_tokens": 40},
                "completion_tokens_details": {"reasoning_tokens": 4},
            },
            usage(100, 40, 10, 4),
            id="OpenAI style (Qwen, GLM, Gemini, vLLM, Groq)",
        ),
        pytest.param(
            {
                **BASE,
                "prompt_cache_hit_tokens": 40,
                "prompt_cache_miss_tokens": 60,
                "completion_tokens_details": {"reasoning_tokens": 4},
            },
            usage(100, 40, 10, 4),
            id="DeepSeek",
        ),
        pytest.param(
            {
                **BASE,
                "prompt_tokens_details": {"cached_tokens": 40},
                "prompt_cache_hit_tokens": 40,
            },
            usage(100, 40, 10, 0),
            id="DeepSeek with both forms",
        ),
        pytest.param({**BASE, "cached_tokens": 40}, usage(100, 40, 10, 0), id="Kimi"),
        pytest.param(
            {
                **BASE,
                "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 30},
                "completion_tokens_details": {"reasoning_tokens": 4},
                "cost": 0.95,
            },
            usage(100, 0, 10, 4, write=30),
            id="OpenRouter",
        ),
        pytest.param(
            {"prompt_tokens": 100, "completion_tokens": 10},
            usage(100, 0, 10, 0),
            id="no total",
        ),
        pytest.param(
            {**BASE, "prompt_tokens_details": {"cached_tokens": 500}},
            usage(100, 100, 10, 0),
            id="cached never exceeds the input",
        ),
        pytest.param(
            {
                **BASE,
                "prompt_tokens_details": {"cached_tokens": -1},
                "prompt_cache_hit_tokens": 7,
            },
            usage(100, 7, 10, 0),
            id="an invalid count falls through to the next form",
        ),
        pytest.param(
            {**BASE, "prompt_tokens_details": None, "completion_tokens_details": "x"},
            usage(100, 0, 10, 0),
            id="details that are not objects",
        ),
    ],
)
def test_usage_shapes(chat: dict[str, Any], expected: dict[str, Any]) -> None:
    got = responses_usage(chat)
    assert got == expected
    ResponseUsage.model_validate(got)  # the openai SDK's own model accepts it


@pytest.mark.parametrize(
    "chat",
    [
        None,
        "usage",
        {},
        {"prompt_tokens": 100},
        {"completion_tokens": 10},
        {"prompt_tokens": True, "completion_tokens": 10},
        {"prompt_tokens": -1, "completion_tokens": 10},
        {"prompt_tokens": 1.5, "completion_tokens": 10},
    ],
)
def test_incomplete_usage_is_none_rather_than_a_guess(chat: Any) -> None:
    assert responses_usage(chat) is None
