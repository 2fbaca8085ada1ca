"""The output items of a streamed Response, each with its own lifecycle of events.

Theory of operation
-------------------
An item is opened, takes deltas, and is closed; each step writes the item's own events through
the stream's ``EventWriter``. What an item does not decide is left to whoever drives it (the
Chat translator in ``core/stream.py``, or any other source of Responses items): which item is
open, the output indexes, ids, when ``response.output_item.done`` goes out, sealing, and the
terminal event.

Rules:

1. ``open()`` writes ``response.output_item.added`` with the item in progress, then the part
   events that announce where its deltas go (``content_part.added``,
   ``reasoning_summary_part.added``), as OpenAI's API orders them.
2. Deltas are written as they arrive, never batched (the live view and Codex's UI show them;
   docs/codex-contract.md §7.2). Items keep only what their done events need: text pieces as a
   list, joined once at the end.
3. ``close()`` writes the item's done events (``*.done`` of its parts) and returns the finished
   item. It does not write ``response.output_item.done``: Codex records an item only there
   (docs/codex-contract.md §7.2), so the driver sends it once the item is whole, and may hold a
   reasoning item's back until its sealed blob is known.
4. One builder per kind (``_item``) makes both the in-progress and the finished item, so the two
   cannot drift apart.
5. A call item checks what only its kind can (a freeform call needs a string input); a failure
   raises ``StreamFailure`` and the driver ends the response with ``response.failed``.

Which item a tool call becomes is ``CALL_ITEMS``, keyed by the tool's ``ToolKind`` (how the
client declared it, ``core/context.py``). To add a kind: a ``ToolKind`` member, a ``CallItem``
subclass here, a row in ``CALL_ITEMS``; the translators need no change.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from .context import ToolKind, ToolOrigin
from .events import (
    CONTENT_PART_ADDED,
    CONTENT_PART_DONE,
    CUSTOM_TOOL_CALL_INPUT_DELTA,
    CUSTOM_TOOL_CALL_INPUT_DONE,
    FUNCTION_CALL_ARGUMENTS_DELTA,
    FUNCTION_CALL_ARGUMENTS_DONE,
    OUTPUT_ITEM_ADDED,
    OUTPUT_TEXT_DELTA,
    OUTPUT_TEXT_DONE,
    REASONING_SUMMARY_PART_ADDED,
    REASONING_SUMMARY_PART_DONE,
    REASONING_SUMMARY_TEXT_DELTA,
    REASONING_SUMMARY_TEXT_DONE,
    REASONING_TEXT_DELTA,
    REASONING_TEXT_DONE,
    DeltaTemplate,
    EventWriter,
)
from .freeform_input import FreeformInputDecoder
from .tool_search import codex_search_arguments, search_call_item

logger = logging.getLogger(__name__)


class StreamFailure(Exception):
    """Ends the response with ``response.failed``: ``code`` is the specific reason (mapped to
    a wire code by the driver), ``message`` says what the upstream did."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _joined(parts: list[str]) -> str:
    """The pieces as one string, left in ``parts`` as its only piece: the pieces are freed
    before the done events copy the text again, and a second read costs nothing."""
    if len(parts) != 1:
        parts[:] = ["".join(parts)]
    return parts[0]


class OutputItem:
    """Base: an item at ``output_index`` with id ``item_id``, writing through ``writer``."""

    __slots__ = ("_w", "item_id", "output_index")

    def __init__(self, writer: EventWriter, item_id: str, output_index: int) -> None:
        self._w = writer
        self.item_id = item_id
        self.output_index = output_index

    def _added(self, item: dict[str, Any]) -> None:
        self._w.event({"type": OUTPUT_ITEM_ADDED, "output_index": self.output_index, "item": item})


# ----------------------------------------------------------------------------- reasoning


class ReasoningItem(OutputItem):
    """The upstream's thinking, shown as the reasoning mode says (``REASONING_ITEMS``); this
    base class is the hidden mode.

    Events: ``output_item.added`` (summary ``[]``); no deltas. Finished item: ``summary`` empty,
    the text in ``content`` as one ``reasoning_text`` part.

    ``details`` are the provider's ``reasoning_details`` blocks that arrived with this item's
    deltas, and only those: they go back upstream with this item (its sealed payload). Hidden
    mode: no deltas; the text rides in the finished item's ``content`` all the same, so Codex
    replays it (docs/codex-contract.md §7.3) and the next request can send it back."""

    __slots__ = ("_parts", "details")

    def __init__(self, writer: EventWriter, item_id: str, output_index: int) -> None:
        super().__init__(writer, item_id, output_index)
        self._parts: list[str] = []
        self.details: list[Mapping[str, Any]] = []

    @property
    def text(self) -> str:
        return _joined(self._parts)

    def open(self) -> None:
        # An empty summary is a valid item to Codex (docs/codex-contract.md §7.5).
        self._added({"id": self.item_id, "type": "reasoning", "summary": []})

    def add(self, text: str) -> None:
        self._parts.append(text)

    def close(self) -> dict[str, Any]:
        return {
            "id": self.item_id,
            "type": "reasoning",
            "summary": [],
            "content": [{"type": "reasoning_text", "text": self.text}],
        }


class SummaryReasoningItem(ReasoningItem):
    """Reasoning as summary text: what Codex renders (docs/providers.md §1.1).

    Events: ``output_item.added``, ``reasoning_summary_part.added`` (summary index 0),
    ``reasoning_summary_text.delta``*, ``reasoning_summary_text.done``,
    ``reasoning_summary_part.done``. Finished item: one ``summary_text`` part."""

    __slots__ = ("_delta",)

    def __init__(self, writer: EventWriter, item_id: str, output_index: int) -> None:
        super().__init__(writer, item_id, output_index)
        self._delta = DeltaTemplate(
            REASONING_SUMMARY_TEXT_DELTA, item_id, output_index, ',"summary_index":0'
        )

    def open(self) -> None:
        super().open()
        self._w.event(
            {
                "type": REASONING_SUMMARY_PART_ADDED,
                "item_id": self.item_id,
                "output_index": self.output_index,
                "summary_index": 0,
                "part": {"type": "summary_text", "text": ""},
            }
        )

    def add(self, text: str) -> None:
        self._parts.append(text)
        self._w.delta(self._delta, text)

    def close(self) -> dict[str, Any]:
        text = self.text
        part = {"type": "summary_text", "text": text}
        base = {"item_id": self.item_id, "output_index": self.output_index, "summary_index": 0}
        self._w.event({"type": REASONING_SUMMARY_TEXT_DONE, **base, "text": text})
        self._w.event({"type": REASONING_SUMMARY_PART_DONE, **base, "part": part})
        return {"id": self.item_id, "type": "reasoning", "summary": [part]}


class RawReasoningItem(ReasoningItem):
    """Reasoning as raw ``reasoning_text`` (Codex shows it with ``show_raw_agent_reasoning``:
    docs/codex-contract.md §7.2).

    Events: ``output_item.added`` (``content`` ``[]``), ``reasoning_text.delta``* (content index
    0), ``reasoning_text.done``. Finished item: as in hidden mode."""

    __slots__ = ("_delta",)

    def __init__(self, writer: EventWriter, item_id: str, output_index: int) -> None:
        super().__init__(writer, item_id, output_index)
        self._delta = DeltaTemplate(
            REASONING_TEXT_DELTA, item_id, output_index, ',"content_index":0'
        )

    def open(self) -> None:
        self._added({"id": self.item_id, "type": "reasoning", "summary": [], "content": []})

    def add(self, text: str) -> None:
        self._parts.append(text)
        self._w.delta(self._delta, text)

    def close(self) -> dict[str, Any]:
        self._w.event(
            {
                "type": REASONING_TEXT_DONE,
                "item_id": self.item_id,
                "output_index": self.output_index,
                "content_index": 0,
                "text": self.text,
            }
        )
        return super().close()


class SignatureItem(ReasoningItem):
    """A reasoning item without text, in every reasoning mode: it exists for its sealed blob.
    Gemini signs each tool call (``extra_content.google.thought_signature``) without sending
    any thought text, and refuses the next request if a signed call comes back unsigned
    (docs/providers.md §1.2); the blob is where the signature travels, since Codex replays a
    reasoning item verbatim (docs/codex-contract.md §7.3).

    Events: ``output_item.added`` (summary ``[]``); no parts, no deltas (nothing to show).
    Finished item: ``summary`` empty; the driver adds ``encrypted_content``."""

    __slots__ = ()

    def close(self) -> dict[str, Any]:
        return {"id": self.item_id, "type": "reasoning", "summary": []}


# The relay's reasoning modes (option relay_reasoning) -> the item that shows reasoning so.
REASONING_ITEMS: Mapping[str, type[ReasoningItem]] = {
    "summary": SummaryReasoningItem,
    "raw": RawReasoningItem,
    "hidden": ReasoningItem,
}


# ----------------------------------------------------------------------------- message


class MessageItem(OutputItem):
    """The assistant's visible text: one ``output_text`` part at content index 0.

    Events: ``output_item.added`` (status in_progress, no content), ``content_part.added``,
    ``output_text.delta``* (``logprobs: []``, as the SDK's event requires),
    ``output_text.done``, ``content_part.done``. Finished item: status completed, the text
    whole (docs/codex-contract.md §7.3: text sent only as deltas is lost)."""

    __slots__ = ("_delta", "_parts")

    def __init__(self, writer: EventWriter, item_id: str, output_index: int) -> None:
        super().__init__(writer, item_id, output_index)
        self._parts: list[str] = []
        self._delta = DeltaTemplate(
            OUTPUT_TEXT_DELTA, item_id, output_index, ',"content_index":0', ',"logprobs":[]'
        )

    def _item(self, status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.item_id,
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content,
        }

    def open(self) -> None:
        self._added(self._item("in_progress", []))
        self._w.event(
            {
                "type": CONTENT_PART_ADDED,
                "item_id": self.item_id,
                "output_index": self.output_index,
                "content_index": 0,
                "part": output_text(""),
            }
        )

    def add(self, text: str) -> None:
        self._parts.append(text)
        self._w.delta(self._delta, text)

    def close(self) -> dict[str, Any]:
        text = _joined(self._parts)
        base = {"item_id": self.item_id, "output_index": self.output_index, "content_index": 0}
        self._w.event({"type": OUTPUT_TEXT_DONE, **base, "text": text, "logprobs": []})
        self._w.event({"type": CONTENT_PART_DONE, **base, "part": output_text(text)})
        return self._item("completed", [output_text(text)])


# ----------------------------------------------------------------------------- tool calls


class CallItem(OutputItem, abc.ABC):
    """A tool call as the client declared the tool (``origin``; None for a tool the client
    did not declare under another name, passed through as a function call).

    ``name`` and ``namespace`` are the client's: Codex must get ``{name, namespace}`` back for
    MCP tools (docs/codex-contract.md §6). ``upstream`` names the upstream in failures.

    ``add(piece)`` takes the arguments as the upstream streams them (the first call may carry
    everything received before the item could open). ``close(arguments, parsed)`` takes them
    whole: ``arguments`` stripped ("" when none came), ``parsed`` their JSON value (``{}`` for
    none), checked by the driver before any call closes."""

    __slots__ = ("call_id", "name", "namespace", "origin", "upstream")

    ID_PREFIX: ClassVar[str]

    def __init__(
        self,
        writer: EventWriter,
        item_id: str,
        output_index: int,
        *,
        call_id: str,
        upstream_name: str,
        origin: ToolOrigin | None,
        upstream: str,
    ) -> None:
        super().__init__(writer, item_id, output_index)
        self.call_id = call_id
        self.origin = origin
        self.name = origin.name if origin is not None else upstream_name
        self.namespace = origin.namespace if origin is not None else None
        self.upstream = upstream

    def _call_item(self, kind: str, status: str, payload: str, value: Any) -> dict[str, Any]:
        item = {
            "id": self.item_id,
            "type": kind,
            "status": status,
            "call_id": self.call_id,
            "name": self.name,
            payload: value,
        }
        if self.namespace:
            item["namespace"] = self.namespace
        return item

    @abc.abstractmethod
    def open(self) -> None: ...

    @abc.abstractmethod
    def add(self, piece: str) -> None: ...

    @abc.abstractmethod
    def close(self, arguments: str, parsed: object) -> dict[str, Any]: ...


class FunctionCallItem(CallItem):
    """``function_call``: ``arguments`` is a JSON string (docs/codex-contract.md §7.3).

    Events: ``output_item.added`` (arguments ``""``), ``function_call_arguments.delta``* as the
    upstream streams them, ``function_call_arguments.done``. A call that streamed no arguments
    gets ``{}``, sent as its one delta so the deltas always add up to the arguments."""

    __slots__ = ("_delta",)

    ID_PREFIX = "fc"

    def __init__(self, writer: EventWriter, item_id: str, output_index: int, **kw: Any) -> None:
        super().__init__(writer, item_id, output_index, **kw)
        self._delta = DeltaTemplate(FUNCTION_CALL_ARGUMENTS_DELTA, item_id, output_index)

    def _item(self, status: str, arguments: str) -> dict[str, Any]:
        return self._call_item("function_call", status, "arguments", arguments)

    def open(self) -> None:
        self._added(self._item("in_progress", ""))

    def add(self, piece: str) -> None:
        self._w.delta(self._delta, piece)

    def close(self, arguments: str, parsed: object) -> dict[str, Any]:
        if not arguments:  # none streamed: the empty object we assume is sent as its delta
            arguments = "{}"
            self._w.delta(self._delta, arguments)
        self._w.event(
            {
                "type": FUNCTION_CALL_ARGUMENTS_DONE,
                "item_id": self.item_id,
                "output_index": self.output_index,
                "arguments": arguments,
            }
        )
        return self._item("completed", arguments)


class CustomToolCallItem(CallItem):
    """``custom_tool_call`` for a freeform tool (apply_patch): the upstream called a function
    with one string parameter (``origin.input_param``); Codex gets the raw text as ``input``
    (docs/codex-contract.md §6), decoded live from the JSON-wrapped arguments.

    Events: ``output_item.added`` (input ``""``), ``custom_tool_call_input.delta``* as the input
    decodes, ``custom_tool_call_input.done``. The input is taken from the full parse at the
    end; what the live decoder had not sent yet goes out as a last delta."""

    __slots__ = ("_decoder", "_delta", "_sent")

    ID_PREFIX = "ctc"

    def __init__(self, writer: EventWriter, item_id: str, output_index: int, **kw: Any) -> None:
        super().__init__(writer, item_id, output_index, **kw)
        assert self.origin is not None  # only a declared freeform tool becomes this item
        self._decoder = FreeformInputDecoder(self.origin.input_param)
        self._delta = DeltaTemplate(CUSTOM_TOOL_CALL_INPUT_DELTA, item_id, output_index)
        self._sent: list[str] = []

    def _item(self, status: str, text: str) -> dict[str, Any]:
        return self._call_item("custom_tool_call", status, "input", text)

    def open(self) -> None:
        self._added(self._item("in_progress", ""))

    def add(self, piece: str) -> None:
        text = self._decoder.feed(piece)
        if text:
            self._sent.append(text)
            self._w.delta(self._delta, text)

    def close(self, arguments: str, parsed: object) -> dict[str, Any]:
        assert self.origin is not None
        param = self.origin.input_param
        text = freeform_input(parsed, param)
        if text is None:
            raise StreamFailure(
                "invalid_tool_call",
                f"{self.upstream} called freeform tool {self.name!r} without a string "
                f"{param!r} argument",
            )
        sent = "".join(self._sent)
        if text.startswith(sent):
            if len(text) > len(sent):
                self._w.delta(self._delta, text[len(sent) :])
        else:  # unreachable for well-formed JSON; the final parse is authoritative
            logger.debug("freeform input prefix mismatch for %s", self.call_id)
        self._w.event(
            {
                "type": CUSTOM_TOOL_CALL_INPUT_DONE,
                "item_id": self.item_id,
                "output_index": self.output_index,
                "input": text,
            }
        )
        return self._item("completed", text)


def freeform_input(parsed: object, param: str) -> str | None:
    """The raw input of a freeform call: the expected parameter, or the only string value
    when the model named it differently, or a bare JSON string."""
    if isinstance(parsed, str):
        return parsed
    if isinstance(parsed, dict):
        value = parsed.get(param)
        if isinstance(value, str):
            return value
        strings = [v for v in parsed.values() if isinstance(v, str)]
        if len(strings) == 1:
            return strings[0]
    return None


class ToolSearchCallItem(CallItem):
    """``tool_search_call`` for Codex's client-executed search, which the upstream was offered
    as a function (core/tool_search.py): Codex runs the search itself and needs this item, not
    a ``function_call`` (docs/tool-search.md §3). ``arguments`` is a JSON object, normalised to
    what Codex parses (``codex_search_arguments``). The Responses API streams no argument
    deltas for it (openai-python's stream events have none), so it only opens and closes."""

    __slots__ = ()

    ID_PREFIX = "tsc"

    def _item(self, status: str, arguments: object) -> dict[str, Any]:
        return search_call_item(
            item_id=self.item_id, call_id=self.call_id, arguments=arguments, status=status
        )

    def open(self) -> None:
        self._added(self._item("in_progress", {}))

    def add(self, piece: str) -> None:
        """Nothing streams for a search: its arguments go out whole, on close."""

    def close(self, arguments: str, parsed: object) -> dict[str, Any]:
        return self._item("completed", codex_search_arguments(parsed))


# How the client declared a tool -> the item its calls become.
CALL_ITEMS: Mapping[ToolKind, type[CallItem]] = {
    ToolKind.FUNCTION: FunctionCallItem,
    ToolKind.CUSTOM: CustomToolCallItem,
    ToolKind.TOOL_SEARCH: ToolSearchCallItem,
}


# ----------------------------------------------------------------------------- compaction


class CompactionItem(OutputItem):
    """Remote compaction's answer: exactly one ``compaction`` item whose ``encrypted_content``
    is the sealed summary (docs/codex-contract.md §9). It is whole when it opens."""

    __slots__ = ("_item",)

    def __init__(self, writer: EventWriter, item_id: str, output_index: int, blob: str) -> None:
        super().__init__(writer, item_id, output_index)
        self._item = {"id": item_id, "type": "compaction", "encrypted_content": blob}

    def open(self) -> None:
        self._added(self._item)

    def close(self) -> dict[str, Any]:
        return self._item
