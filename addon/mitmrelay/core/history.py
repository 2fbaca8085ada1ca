"""Conversation history for ``previous_response_id`` (Responses API chaining).

A client that sends ``previous_response_id`` sends only the new items; the relay keeps, per
response it produced, the full input of that request plus its output, and the next request's
history is exactly that: previous input + previous output, then the new input. (The seed relay's
streaming path stored the history without the current input, so the second hop lost a turn:
docs/providers.md §3, item 13.) Codex over HTTP always sends its full history with ``store: false``
and never needs this (docs/codex-contract.md §4): the exchange keeps no record for such a
request (core/exchange.py).

Records are plain JSON values, so any store can keep them. Validated items are plain dicts
already (models/responses.py); only the tools some items carry are pydantic models, dumped here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import TypeAdapter
from pydantic_core import to_jsonable_python

from mitmrelay.models.responses import InputItem

_ITEMS = TypeAdapter(list[InputItem])
# Item types whose ``tools`` validate into pydantic models (models/responses.py).
_WITH_TOOLS = frozenset({"additional_tools", "tool_search_output"})


def conversation(input_items: Sequence[Mapping[str, Any]], output: Sequence[Any]) -> dict:
    """The record to keep for a finished response: its whole input (history included), then
    its output. Shares the items' dicts: the caller serialises it at once."""
    return {"input": [_plain(i) for i in input_items], "output": [dict(o) for o in output]}


def conversation_record(
    input_items: Sequence[Mapping[str, Any]], output: Sequence[Any]
) -> tuple[dict, int]:
    """``conversation``, and its size in bytes as compact JSON."""
    record = conversation(input_items, output)
    return record, len(json.dumps(record, separators=(",", ":")))


def history_items(record: dict[str, Any]) -> list[Any]:
    """The items the next request continues from: previous input, then previous output."""
    return _ITEMS.validate_python([*record["input"], *record["output"]])


def _plain(item: Mapping[str, Any]) -> Mapping[str, Any]:
    tools = item.get("tools") if item.get("type") in _WITH_TOOLS else None
    if not tools:
        return item
    return {**item, "tools": to_jsonable_python(tools, exclude_none=True)}
