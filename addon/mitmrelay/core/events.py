"""Responses stream events: their names, and the writer that numbers and encodes them.

Theory of operation
-------------------
Every event name the relay emits is a constant here, so a name is spelled once and a test can
hold the list against the openai SDK's event union. An ``EventWriter`` belongs to one client
stream: it stamps each event with the next ``sequence_number`` and keeps the encoded SSE until
the host drains it.

Rules:

1. ``sequence_number`` starts at 0 and grows by one per event, across every item of the stream
   and across attempts that take over a stream (the openai SDK's events carry it; OpenAI's API
   numbers every event of a response).
2. A whole event is a dict encoded once by ``sse.encode_event`` (``sequence_number`` goes last).
   A delta, the one event sent per upstream chunk, is a byte template filled with the sequence
   number and the JSON-escaped text (``sequence_number`` second): no dict, no generic encode on
   the hot path. Both are compact JSON with non-ASCII text as is (``ensure_ascii=False``).
3. Codex dispatches on the JSON ``type``; the ``event:`` line repeats it for other clients
   (docs/codex-contract.md §7.1).
"""

from __future__ import annotations

from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any, Final

from .sse import encode_event, utf8

RESPONSE_CREATED: Final = "response.created"
RESPONSE_IN_PROGRESS: Final = "response.in_progress"
RESPONSE_COMPLETED: Final = "response.completed"
RESPONSE_INCOMPLETE: Final = "response.incomplete"
RESPONSE_FAILED: Final = "response.failed"

OUTPUT_ITEM_ADDED: Final = "response.output_item.added"
OUTPUT_ITEM_DONE: Final = "response.output_item.done"

CONTENT_PART_ADDED: Final = "response.content_part.added"
CONTENT_PART_DONE: Final = "response.content_part.done"
OUTPUT_TEXT_DELTA: Final = "response.output_text.delta"
OUTPUT_TEXT_DONE: Final = "response.output_text.done"

REASONING_SUMMARY_PART_ADDED: Final = "response.reasoning_summary_part.added"
REASONING_SUMMARY_PART_DONE: Final = "response.reasoning_summary_part.done"
REASONING_SUMMARY_TEXT_DELTA: Final = "response.reasoning_summary_text.delta"
REASONING_SUMMARY_TEXT_DONE: Final = "response.reasoning_summary_text.done"
REASONING_TEXT_DELTA: Final = "response.reasoning_text.delta"
REASONING_TEXT_DONE: Final = "response.reasoning_text.done"

FUNCTION_CALL_ARGUMENTS_DELTA: Final = "response.function_call_arguments.delta"
FUNCTION_CALL_ARGUMENTS_DONE: Final = "response.function_call_arguments.done"
CUSTOM_TOOL_CALL_INPUT_DELTA: Final = "response.custom_tool_call_input.delta"
CUSTOM_TOOL_CALL_INPUT_DONE: Final = "response.custom_tool_call_input.done"

# The statuses a response ends in, each with its own event (exactly one per stream).
TERMINAL_EVENTS: Final = {
    "completed": RESPONSE_COMPLETED,
    "incomplete": RESPONSE_INCOMPLETE,
    "failed": RESPONSE_FAILED,
}

ALL_EVENTS: Final = (
    RESPONSE_CREATED,
    RESPONSE_IN_PROGRESS,
    RESPONSE_COMPLETED,
    RESPONSE_INCOMPLETE,
    RESPONSE_FAILED,
    OUTPUT_ITEM_ADDED,
    OUTPUT_ITEM_DONE,
    CONTENT_PART_ADDED,
    CONTENT_PART_DONE,
    OUTPUT_TEXT_DELTA,
    OUTPUT_TEXT_DONE,
    REASONING_SUMMARY_PART_ADDED,
    REASONING_SUMMARY_PART_DONE,
    REASONING_SUMMARY_TEXT_DELTA,
    REASONING_SUMMARY_TEXT_DONE,
    REASONING_TEXT_DELTA,
    REASONING_TEXT_DONE,
    FUNCTION_CALL_ARGUMENTS_DELTA,
    FUNCTION_CALL_ARGUMENTS_DONE,
    CUSTOM_TOOL_CALL_INPUT_DELTA,
    CUSTOM_TOOL_CALL_INPUT_DONE,
)


class DeltaTemplate:
    """The bytes of one item's delta events around the two parts that change (rule 2):
    ``{"type":T,"sequence_number":N,"item_id":I,"output_index":X<fields>,"delta":D<tail>}``.

    ``fields`` and ``tail`` are JSON members written as they are (``',"content_index":0'``);
    ``item_id`` must need no JSON escaping (ids come from the host's ``new_id``)."""

    __slots__ = ("head", "middle", "tail")

    def __init__(
        self, event_type: str, item_id: str, output_index: int, fields: str = "", tail: str = ""
    ) -> None:
        self.head = b'event: %s\ndata: {"type":"%s","sequence_number":' % (
            event_type.encode(),
            event_type.encode(),
        )
        self.middle = b',"item_id":"%s","output_index":%d%s,"delta":' % (
            item_id.encode(),
            output_index,
            fields.encode(),
        )
        self.tail = tail.encode() + b"}\n\n"


class EventWriter:
    """Numbers and encodes the events of one client stream (rules 1, 2).

    ``seq`` is the next sequence number (a takeover copies it from the attempt it continues);
    ``drain()`` returns what was written since the last drain."""

    __slots__ = ("_out", "seq")

    def __init__(self) -> None:
        self.seq = 0
        self._out: list[bytes] = []

    def event(self, event: dict[str, Any]) -> None:
        """Writes ``event`` (its ``type`` and fields, in order), stamped last with its number.
        Mutates ``event``: it gains ``sequence_number``."""
        event["sequence_number"] = self.seq
        self.seq += 1
        self._out.append(encode_event(event))

    def delta(self, template: DeltaTemplate, text: str) -> None:
        """Writes one delta event carrying ``text``: the hot path (rule 2)."""
        text = encode_basestring(text)
        try:
            data = text.encode()
        except UnicodeEncodeError:  # a lone surrogate from upstream
            data = utf8(text)
        self._out.append(
            b"%b%d%b%b%b" % (template.head, self.seq, template.middle, data, template.tail)
        )
        self.seq += 1

    def drain(self) -> bytes:
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data
