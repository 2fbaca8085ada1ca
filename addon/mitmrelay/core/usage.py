"""Chat Completions usage -> Responses usage, for every shape providers send.

Codex rejects a usage object missing ``total_tokens`` or a details object missing
``cached_tokens`` (codex-contract.md §7.4), and the openai SDK's ``ResponseUsage`` requires both
details objects: so we emit a complete object or none at all.

Shapes read (providers.md §1.4): OpenAI-style ``prompt_tokens_details.cached_tokens`` and
``completion_tokens_details.reasoning_tokens``; DeepSeek ``prompt_cache_hit_tokens``; Kimi's
usage inside ``choices[0]`` (the caller finds it, this module only converts).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def responses_usage(chat: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The Responses ``usage`` object, or None when the upstream's is missing or incomplete."""
    if not isinstance(chat, Mapping):
        return None
    prompt = _int(chat.get("prompt_tokens"))
    completion = _int(chat.get("completion_tokens"))
    if prompt is None or completion is None:
        return None
    total = _int(chat.get("total_tokens"))
    prompt_details = chat.get("prompt_tokens_details")
    completion_details = chat.get("completion_tokens_details")
    cached = None
    if isinstance(prompt_details, Mapping):
        cached = _int(prompt_details.get("cached_tokens"))
    if cached is None:
        cached = _int(chat.get("prompt_cache_hit_tokens"))  # DeepSeek
    if cached is None:
        cached = _int(chat.get("cached_tokens"))  # Kimi, inside choices[0].usage
    reasoning = None
    if isinstance(completion_details, Mapping):
        reasoning = _int(completion_details.get("reasoning_tokens"))
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": min(cached or 0, prompt),
            "cache_write_tokens": 0,
        },
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning or 0},
        "total_tokens": total if total is not None else prompt + completion,
    }
