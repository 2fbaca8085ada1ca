"""Conversation history for ``previous_response_id`` (Responses API chaining).

A client that sends ``previous_response_id`` sends only the new items; the relay keeps, per
response it produced, the full input of that request plus its output, and the next request's
history is exactly that: previous input + previous output, then the new input. (The seed relay's
streaming path stored the history without the current input, so the second hop lost a turn:
providers.md §3, item 13.) Codex over HTTP always sends its full history and never needs this.

Records are plain JSON values, so any store can keep them; sizes are their JSON length.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter

from mitmrelay.models.responses import InputItem

_ITEMS = TypeAdapter(list[InputItem])


def conversation_record(input_items: Sequence[Any], output: Sequence[Any]) -> tuple[dict, int]:
    """The record to keep for a finished response, and its size in bytes."""
    record = {
        "input": [_plain(i) for i in input_items],
        "output": [dict(o) for o in output],
    }
    return record, len(json.dumps(record, separators=(",", ":")))


def history_items(record: dict[str, Any]) -> list[Any]:
    """The items the next request continues from: previous input, then previous output."""
    return _ITEMS.validate_python([*record["input"], *record["output"]])


def _plain(item: Any) -> Any:
    dump = getattr(item, "model_dump", None)
    return dump(mode="json", exclude_none=True) if dump else item
