"""Self-healing for thinking providers whose reasoning did not survive.

DeepSeek and Kimi reject an assistant tool-call message that lacks the ``reasoning_content``
they produced. The sealed carrier brings it back whenever the relay emitted it; it cannot when a
thread began on another model or before the relay. Then the relay retries once, with a
placeholder on every assistant tool-call message that has none (the remedy LiteLLM's DeepSeek
adapter uses: BerriAI/litellm#26660). The wordings are the providers' own (docs/providers.md §1.2).

Both remedies return a new request and leave the one they were given as it was, without copying
it: a Codex request is megabytes of messages and only a few assistant messages change, so the
new request is a new top-level dict and ``messages`` list that share every message it does not
change (a deep copy of a 2 MB request was 40 % of the relay's CPU for it: notes/link.md).
"""

from __future__ import annotations

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
    """The Chat request with ``placeholder`` on every assistant tool-call message lacking
    ``field``, and how many messages changed (``chat`` is left as it is)."""
    messages = list(chat.get("messages", ()))
    changed = 0
    for n, message in enumerate(messages):
        if (
            message.get("role") == "assistant"
            and message.get("tool_calls")
            and not message.get(field)
        ):
            messages[n] = {**message, field: placeholder}
            changed += 1
    return ({**chat, "messages": messages} if changed else chat), changed


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
    """The Chat request where each assistant tool-call message that lacks reasoning gets what
    the relay kept for it (``lookup`` -> a ``payload_record``): by its first call id, else by
    its turn fingerprint (``"turn:" + turn_fingerprint(calls)``); and how many messages
    changed (``chat`` is left as it is). For clients that drop reasoning items (Codex replays
    them, and the sealed carrier needs no map)."""
    messages = list(chat.get("messages", ()))
    changed = 0
    for n, message in enumerate(messages):
        calls = message.get("tool_calls") if message.get("role") == "assistant" else None
        if not calls or (message.get(field) or "").strip():
            continue
        record = lookup(calls[0].get("id", "")) or lookup("turn:" + turn_fingerprint(calls))
        if record and record.get("text"):
            messages[n] = _restored(message, calls, record, field)
            changed += 1
    return ({**chat, "messages": messages} if changed else chat), changed


def _restored(
    message: Mapping[str, Any],
    calls: list[Mapping[str, Any]],
    record: Mapping[str, Any],
    field: str,
) -> dict[str, Any]:
    """``message`` with a kept record's text, details and Gemini signatures (on new call dicts:
    the request's own are shared)."""
    restored = {**message, field: record["text"]}
    if record.get("details"):
        restored["reasoning_details"] = record["details"]
    signatures = record.get("signatures") or {}
    if any(signatures.get(call.get("id")) for call in calls):
        restored["tool_calls"] = [
            {**call, "extra_content": {"google": {"thought_signature": signature}}}
            if (signature := signatures.get(call.get("id")))
            else call
            for call in calls
        ]
    return restored
