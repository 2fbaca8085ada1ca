"""Self-healing for thinking providers whose reasoning did not survive.

DeepSeek and Kimi reject an assistant tool-call message that lacks the ``reasoning_content``
they produced. The sealed carrier brings it back whenever the relay emitted it; it cannot when a
thread began on another model or before the relay. Then the relay retries once, with a
placeholder on every assistant tool-call message that has none (the remedy LiteLLM's DeepSeek
adapter uses: BerriAI/litellm#26660). The wordings are the providers' own (providers.md §1.2).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from .reasoning import ReasoningPayload

MISSING_REASONING = re.compile(
    "|".join(
        (
            # DeepSeek V4 thinking mode
            r"reasoning_content in the thinking mode must be passed back",
            # older deepseek-reasoner
            r"Missing reasoning_content field in the assistant message",
            # Kimi / Moonshot, also via OpenRouter
            r"reasoning_content is missing in assistant tool call message",
        )
    ),
    re.IGNORECASE,
)
PLACEHOLDER = " "


def is_missing_reasoning_error(status: int, body: bytes) -> bool:
    return status == 400 and bool(MISSING_REASONING.search(body.decode("utf-8", "replace")))


def with_reasoning_placeholders(
    chat: dict[str, Any], field: str = "reasoning_content", placeholder: str = PLACEHOLDER
) -> tuple[dict[str, Any], int]:
    """A copy of the Chat request with ``placeholder`` on every assistant tool-call message
    lacking ``field``, and how many messages changed."""
    healed = copy.deepcopy(chat)
    changed = 0
    for message in healed.get("messages", ()):
        if (
            message.get("role") == "assistant"
            and message.get("tool_calls")
            and not message.get(field)
        ):
            message[field] = placeholder
            changed += 1
    return healed, changed


def payload_record(payload: ReasoningPayload) -> dict[str, Any]:
    """A payload as a JSON-able store record (the call_id -> reasoning map)."""
    return {
        "text": payload.text,
        "details": [dict(d) for d in payload.details],
        "signatures": dict(payload.signatures),
        "call_ids": list(payload.call_ids),
    }


def turn_fingerprint(calls: list[Mapping[str, Any]]) -> str:
    """A key for an assistant turn from what its calls do (names and arguments, ids left out),
    for clients that replay calls under ids of their own."""
    canonical = [
        [(c.get("function") or {}).get("name"), (c.get("function") or {}).get("arguments")]
        for c in calls
    ]
    return hashlib.sha256(json.dumps(canonical).encode()).hexdigest()[:32]


def restoration_keys(chat: Mapping[str, Any], field: str = "reasoning_content") -> list[str]:
    """The lookups ``with_restored_reasoning`` would make, in its order (each assistant
    tool-call message lacking reasoning: its first call id, then ``"turn:"`` + its turn
    fingerprint), without copying the request: for fetching them from a store first."""
    keys: list[str] = []
    for message in chat.get("messages", ()):
        calls = message.get("tool_calls") if message.get("role") == "assistant" else None
        if not calls or message.get(field, "").strip():
            continue
        keys += [calls[0].get("id", ""), "turn:" + turn_fingerprint(calls)]
    return keys


def with_restored_reasoning(
    chat: dict[str, Any],
    lookup: Callable[[str], Mapping[str, Any] | None],
    field: str = "reasoning_content",
) -> tuple[dict[str, Any], int]:
    """A copy of the Chat request where each assistant tool-call message that lacks reasoning
    gets what the relay kept for it (``lookup`` -> a ``payload_record``): by its first call id,
    else by its turn fingerprint (``"turn:" + turn_fingerprint(calls)``); and how many messages
    changed. For clients that drop reasoning items (Codex replays them, and the sealed carrier
    needs no map)."""
    restored = copy.deepcopy(chat)
    changed = 0
    for message in restored.get("messages", ()):
        calls = message.get("tool_calls") if message.get("role") == "assistant" else None
        if not calls or message.get(field, "").strip():
            continue
        record = lookup(calls[0].get("id", "")) or lookup("turn:" + turn_fingerprint(calls))
        if not record or not record.get("text"):
            continue
        message[field] = record["text"]
        if record.get("details"):
            message["reasoning_details"] = record["details"]
        for call in calls:
            signature = (record.get("signatures") or {}).get(call.get("id"))
            if signature:
                call["extra_content"] = {"google": {"thought_signature": signature}}
        changed += 1
    return restored, changed
