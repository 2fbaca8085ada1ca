"""Kept reasoning on the Responses wire: the call_id -> reasoning map, for clients that drop
reasoning items.

Codex replays every reasoning item with its sealed blob (docs/codex-contract.md §7.3), so the
carrier alone brings a provider's reasoning back. A client that drops reasoning items loses it,
and DeepSeek then refuses the turn ("The reasoning_text in the thinking mode must be passed back
to the API.", docs/providers.md §5). As on the Chat wire (core/reasoning_recovery.py), the
relay keeps, after each answer, the reasoning that preceded each tool call, under the call's id
and under a key made from what the turn's calls do (for clients that replay calls under ids of
their own); the next request's turns that come without reasoning get it back.

- ``kept_records(output, open_blob)``: what to keep from an answer's output items, as
  ``(key, record)`` pairs; the caller scopes keys to the provider (one provider's reasoning is
  no answer to another's demand).
- ``restored_item(record, form)``: the reasoning input item a record stands for: the
  provider's own item when the record holds it, else its text in the row's form.
- ``call_view(item)`` and ``turn_key(views)``: a turn's key, from the client's view of its
  calls (name, namespace, arguments or input), the same on both sides.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mitmrelay.core.reasoning import ReasoningPayload
from mitmrelay.core.tool_search import history_arguments

from .reasoning_items import native_item, shaped
from .rules import ReasoningForm

# A lookup of the caller's map: a key (a call id, or "turn:" + ``turn_key``) -> its record.
Kept = Callable[[str], Mapping[str, Any] | None]
CallView = tuple[str, str | None, str]
TURN_PREFIX = "turn:"
_CALL_TYPES = frozenset({"function_call", "custom_tool_call", "tool_search_call"})


def call_view(item: Mapping[str, Any]) -> CallView:
    """A call as the client sees it: its name, namespace, and arguments (or raw input)."""
    kind = item.get("type")
    if kind == "tool_search_call":
        return ("tool_search", None, history_arguments(item.get("arguments")))
    value = item.get("input") if kind == "custom_tool_call" else item.get("arguments")
    namespace = item.get("namespace")
    return (
        str(item.get("name")),
        namespace if isinstance(namespace, str) else None,
        value if isinstance(value, str) else json.dumps(value),
    )


def turn_key(views: Sequence[CallView]) -> str:
    """What a turn's calls do, ids left out."""
    return hashlib.sha256(json.dumps(list(views)).encode()).hexdigest()[:32]


def kept_records(
    output: Sequence[Mapping[str, Any]], open_blob: Callable[[str], ReasoningPayload | None]
) -> list[tuple[str, dict[str, Any]]]:
    """``(key, record)`` for each reasoning item of ``output`` followed by tool calls: under
    each call's id and under its turn's key. ``open_blob`` opens a sealed blob (the carrier)."""
    out: list[tuple[str, dict[str, Any]]] = []
    record: dict[str, Any] | None = None
    calls: list[Mapping[str, Any]] = []

    def flush() -> None:
        if record is not None and calls:
            call_ids = [c["call_id"] for c in calls if isinstance(c.get("call_id"), str)]
            kept = {**record, "call_ids": call_ids}
            out.extend((call_id, kept) for call_id in call_ids)
            out.append((TURN_PREFIX + turn_key([call_view(c) for c in calls]), kept))

    for item in output:
        kind = item.get("type")
        if kind in _CALL_TYPES:
            calls.append(item)
            continue
        flush()
        record, calls = None, []
        blob = item.get("encrypted_content") if kind == "reasoning" else None
        payload = open_blob(blob) if isinstance(blob, str) and blob else None
        if payload is not None:
            record = {"text": payload.text, "item": dict(payload.item)}
    flush()
    return out


def restored_item(record: Mapping[str, Any], form: ReasoningForm) -> dict[str, Any] | None:
    """The reasoning item a kept record stands for, or None when it holds nothing readable.
    Records are kept per provider, so a record's own item goes back to the provider that
    made it; a record without one (kept on the Chat wire) gives its text."""
    text = record.get("text")
    text = text if isinstance(text, str) else ""
    item = record.get("item")
    if isinstance(item, Mapping) and item:
        return native_item(text, item)
    return shaped(text, form) if text else None
