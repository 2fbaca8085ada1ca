"""A provider's ``usage`` -> the complete OpenAI-shaped object Codex and the openai SDK take.

Codex rejects a usage object without ``total_tokens`` or with an ``input_tokens_details``
lacking ``cached_tokens`` (docs/codex-contract.md §7.4), and the SDK's ``ResponseUsage``
requires both details objects: so the answer is a complete object or none. Shapes read:
OpenAI's (DeepSeek's Responses API answers in it, vercel/ai deepseek-tool-call fixture);
details missing (Z.ai's ``{"input_tokens", "output_tokens", "total_tokens"}``, captured
2026-10-01); Kimi's ``cache_write_tokens`` beside ``cached_tokens`` (platform.kimi.com
Responses reference); and a Chat-shaped object from gateways that mix the two
(core/usage.py converts it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mitmrelay.core.usage import responses_usage


def _count(value: object) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if ok else None


def _detail(usage: Mapping[str, Any], details: str, name: str) -> int:
    block = usage.get(details)
    return (_count(block.get(name)) if isinstance(block, Mapping) else None) or 0


def normalised_usage(usage: object) -> dict[str, Any] | None:
    """The Responses ``usage`` object, or None when the provider's is missing or incomplete."""
    if not isinstance(usage, Mapping):
        return None
    if "input_tokens" not in usage and "prompt_tokens" in usage:
        return responses_usage(usage)
    prompt, completion = _count(usage.get("input_tokens")), _count(usage.get("output_tokens"))
    if prompt is None or completion is None:
        return None
    total = _count(usage.get("total_tokens"))
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": min(_detail(usage, "input_tokens_details", "cached_tokens"), prompt),
            "cache_write_tokens": _detail(usage, "input_tokens_details", "cache_write_tokens"),
        },
        "output_tokens": completion,
        "output_tokens_details": {
            "reasoning_tokens": _detail(usage, "output_tokens_details", "reasoning_tokens")
        },
        "total_tokens": total if total is not None else prompt + completion,
    }
