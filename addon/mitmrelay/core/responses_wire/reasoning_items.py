"""Reasoning items on the Responses wire: what the relay keeps of a provider's item, and the
item each provider gets back.

Codex replays every reasoning item verbatim on every later call, ``encrypted_content``
included (docs/codex-contract.md §7.3). On this wire the relay seals into that blob (the
carrier of core/carrier.py) the reasoning text plus a *record* of the provider's own item:
its ``id``, an opaque ``encrypted_content`` that only it can read (OpenRouter's, scoped to the
key that made it: docs/providers.md §1.2), and where it put the text. On replay:

- to the provider that made it (``origin`` matches): its item, rebuilt as it gave it;
- to any other: only the readable text, in the shape the receiving row takes
  (``ResponsesRules.reasoning_form``). A blob never crosses providers.

Text forms: ``content`` (a ``reasoning_text`` part; DeepSeek, Z.ai and vLLM emit and read it),
``summary`` (OpenAI's reference shape), ``encrypted_text`` (Ollama writes and reads the plain
thinking in ``encrypted_content``: ollama/ollama openai/responses.go).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .rules import ReasoningForm


def _parts(value: object) -> list[Mapping[str, Any]]:
    return [p for p in value if isinstance(p, Mapping)] if isinstance(value, list) else []


def _text_of(parts: list[Mapping[str, Any]], separator: str) -> str:
    return separator.join(p["text"] for p in parts if isinstance(p.get("text"), str))


def readable_text(item: Mapping[str, Any]) -> str:
    """The reasoning text an item shows: its raw ``content`` if any, else its summary."""
    return _text_of(_parts(item.get("content")), "") or _text_of(
        _parts(item.get("summary")), "\n\n"
    )


def native_record(item: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(text, record) of a provider's finished reasoning item: what ``native_item`` needs to
    give the provider its item back, besides the text. Parts the text alone cannot rebuild (a
    summary beside raw content, several parts) are kept as they were."""
    content, summary = _parts(item.get("content")), _parts(item.get("summary"))
    record: dict[str, Any] = {}
    if isinstance(item.get("id"), str):
        record["id"] = item["id"]
    text = _text_of(content, "")
    if text:
        record["form"] = "content"
        if len(content) > 1:
            record["content"] = [dict(p) for p in content]
        if summary:
            record["summary"] = [dict(p) for p in summary]
    else:
        text, record["form"] = _text_of(summary, "\n\n"), "summary"
        if len(summary) > 1:
            record["summary"] = [dict(p) for p in summary]
    blob = item.get("encrypted_content")
    if isinstance(blob, str) and blob:
        if blob == text:
            record["form"] = "encrypted_text"
        else:
            record["encrypted_content"] = blob
    return text, record


def shaped(text: str, form: ReasoningForm) -> dict[str, Any]:
    """A reasoning input item carrying ``text`` in ``form``."""
    if form == "content":
        return {"type": "reasoning", "summary": [], "content": [_part("reasoning_text", text)]}
    item: dict[str, Any] = {"type": "reasoning", "summary": [_part("summary_text", text)]}
    if form == "encrypted_text":
        item["encrypted_content"] = text
    return item


def native_item(text: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """The provider's own item again, from ``native_record``'s output."""
    form = record.get("form")
    item = shaped(text, form if form in ("content", "encrypted_text") else "summary")
    if not text and form not in ("content", "encrypted_text"):
        item["summary"] = []  # an opaque blob alone (no readable text) had an empty summary
    for parts in ("summary", "content"):
        if parts in record:
            item[parts] = [dict(p) for p in record[parts]]
    if "encrypted_content" in record:
        item["encrypted_content"] = record["encrypted_content"]
    if "id" in record:
        item = {"type": "reasoning", "id": record["id"], **item}
    return item


def _part(kind: str, text: str) -> dict[str, str]:
    return {"type": kind, "text": text}
