"""Chat Completions usage -> Responses usage, for every shape providers send.

Codex rejects a usage object missing ``total_tokens`` or a details object missing
``cached_tokens`` (docs/codex-contract.md §7.4), and the openai SDK's ``ResponseUsage`` requires
both details objects: so we emit a complete object or none at all.

Shapes read (docs/providers.md §1.4), each field from the first place that holds it:

- cached input: ``prompt_tokens_details.cached_tokens`` (OpenAI style: OpenRouter, Qwen, GLM,
  Gemini, vLLM, Groq), DeepSeek's ``prompt_cache_hit_tokens``, Kimi's ``cached_tokens`` (its
  usage sits inside ``choices[0]``: the caller finds it, this module only converts);
- cache writes: OpenRouter's ``prompt_tokens_details.cache_write_tokens``;
- reasoning output: ``completion_tokens_details.reasoning_tokens``, part of the output count as
  providers bill it (docs/providers.md §1.6).

A count that is missing, negative or not an integer counts as absent; cached and written
tokens never exceed the input, so a provider's inconsistent numbers cannot make Codex's context
arithmetic go negative.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# (details object or None for the usage object itself, field) in order of preference.
_CACHED = (
    ("prompt_tokens_details", "cached_tokens"),
    (None, "prompt_cache_hit_tokens"),  # DeepSeek
    (None, "cached_tokens"),  # Kimi, inside choices[0].usage
)
_CACHE_WRITE = (("prompt_tokens_details", "cache_write_tokens"),)  # OpenRouter
_REASONING = (("completion_tokens_details", "reasoning_tokens"),)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _first(chat: Mapping[str, Any], places: tuple[tuple[str | None, str], ...]) -> int:
    for details, name in places:
        holder = chat if details is None else chat.get(details)
        if isinstance(holder, Mapping):
            value = _int(holder.get(name))
            if value is not None:
                return value
    return 0


def responses_usage(chat: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The Responses ``usage`` object, or None when the upstream's is missing or incomplete."""
    if not isinstance(chat, Mapping):
        return None
    prompt = _int(chat.get("prompt_tokens"))
    completion = _int(chat.get("completion_tokens"))
    if prompt is None or completion is None:
        return None
    total = _int(chat.get("total_tokens"))
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": min(_first(chat, _CACHED), prompt),
            "cache_write_tokens": min(_first(chat, _CACHE_WRITE), prompt),
        },
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": _first(chat, _REASONING)},
        "total_tokens": total if total is not None else prompt + completion,
    }
