"""A provider's Responses SSE in, the Responses SSE that Codex and the openai SDK validate out.

Theory of operation
-------------------
``feed()`` takes the provider's bytes in any chunking; core/sse.py splits them into events
(bounded, split before decoding); each ``data:`` JSON is parsed once with ``json.loads`` and
dispatched on its ``type`` through ``_EVENTS``. Nothing upstream is trusted to be complete or
in order: every output item the client sees is an ``_Item`` with an explicit stage (PENDING ->
OPEN -> DONE, or DROPPED), and the client's events are written from the relay's own state:
its item ids, output indexes and sequence numbers. The hot path (a text, reasoning or argument
delta) reads the delta and the item it belongs to and writes one byte template; no dict is
built and no generic encoder runs for it (``bench/responses_wire.py``).

Rules (each cites the fact it rests on):

1. Lifecycle as OpenAI sends it: response.created and response.in_progress first (the relay's
   response id, the request's parameters echoed); per item output_item.added, its part and
   delta events, their .done events, output_item.done; then exactly one terminal event.
   Upstream events that are missing are supplied (Z.ai omits sequence_number on
   output_text.done; servers that send only output_item.done get the rest), and every
   sequence_number is the relay's, contiguous from the first event.
2. Codex records an item only from output_item.done (docs/codex-contract.md §7.2), so no done
   is sent for a half-built item: a call without a name or whose arguments do not parse fails
   the response; at response.incomplete such a call is left unfinished.
3. Names (core/toolnames.py): a flattened name goes back as ``{name, namespace}``, which Codex
   needs for MCP tools (docs/codex-contract.md §6); a wrapped freeform tool's call goes back
   as a ``custom_tool_call`` with its raw input, decoded live from the streamed arguments
   (core/freeform_input.py) and taken from the whole parse at the end; a call of the function
   that stands for Codex's ``tool_search`` goes back as the ``tool_search_call`` Codex runs,
   its arguments the JSON object Codex parses (core/tool_search.py rule 5,
   docs/tool-search.md §3), with no argument events.
4. Reasoning is shown per ``reasoning_mode`` as on the Chat wire: summary parts (what Codex
   renders), raw ``reasoning_text``, or hidden; whatever the provider streams (reasoning_text
   from DeepSeek, Z.ai, vLLM; summary parts from Kimi, Ollama) feeds it. With a carrier the
   item's ``encrypted_content`` seals the text, this provider's name and its own item record,
   so the next request gives the provider its item back (reasoning_items.py).
5. Failures end in response.failed with the code Codex acts on, mapped by the Chat wire's
   table (errors.py, docs/codex-contract.md §8): response.failed, an ``error`` event, a chunk
   that is not JSON, a stream that ends (or sends ``[DONE]``) before its terminal event. Never
   a fake response.completed. response.incomplete keeps its reason.
6. A remote-compaction answer (the request ended in compaction_trigger) is gathered silently
   and sealed into the one ``compaction`` item Codex requires (docs/codex-contract.md §9).
7. Unknown event types, and every event of an item the relay did not ask for (hosted calls,
   unknown item types), are dropped.
8. Nothing raises out of feed, finish, fail or keepalive: an internal error becomes
   response.failed (docs/mitmproxy-notes.md §5: a raising stream callable loses the chunk).
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring
from typing import Any

from mitmrelay.core.context import ToolKind, TranslationContext
from mitmrelay.core.errors import RelayError
from mitmrelay.core.freeform_input import FreeformInputDecoder
from mitmrelay.core.reasoning import ReasoningCarrier, ReasoningPayload
from mitmrelay.core.sse import SSEDecoder, encode_event
from mitmrelay.core.stream import WIRE_ERROR_CODES, Handover, HandsOver, Phase, ReasoningMode
from mitmrelay.core.tool_search import codex_search_arguments, search_call_item
from mitmrelay.core.toolnames import upstream_name

from .errors import map_error_event, map_failed_response
from .reasoning_items import native_record
from .rules import GENERIC, ResponsesRules
from .usage import normalised_usage

logger = logging.getLogger(__name__)

# A delta event is written from one template (the hot path: no dict, no generic encoder):
# the kind's constant head, the relay's sequence number, the item's constant ``where``, the
# delta as a JSON string (the C string encoder behind ``json.dumps``), the kind's tail.
_quote = encode_basestring
_Delta = tuple[bytes, bytes]
_scan_json = json.JSONDecoder().scan_once


def _loads(text: str) -> Any:
    """``json.loads`` without its wrapper layers when ``text`` is exactly one JSON value (an
    event's data always is; a third of the parse per event, ``bench/responses_wire.py``);
    anything else takes the full path, errors included."""
    try:
        value, end = _scan_json(text, 0)
    except (StopIteration, ValueError):
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def _delta_kind(kind: str, tail: str = "") -> _Delta:
    head = b'event: %s\ndata: {"type":"%s","sequence_number":' % (kind.encode(), kind.encode())
    return head, tail.encode()


TEXT_DELTA = _delta_kind("response.output_text.delta", ',"content_index":0,"logprobs":[]')
SUMMARY_DELTA = _delta_kind("response.reasoning_summary_text.delta", ',"summary_index":0')
RAW_REASONING_DELTA = _delta_kind("response.reasoning_text.delta", ',"content_index":0')
ARGUMENTS_DELTA = _delta_kind("response.function_call_arguments.delta")
INPUT_DELTA = _delta_kind("response.custom_tool_call_input.delta")
_REASONING_DELTAS: dict[str, _Delta | None] = {
    "summary": SUMMARY_DELTA,
    "raw": RAW_REASONING_DELTA,
    "hidden": None,
}


class _Failure(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class _Stage(enum.Enum):
    PENDING = "pending"  # seen upstream, not announced yet (a call whose name has not come)
    OPEN = "open"  # output_item.added sent
    DONE = "done"  # output_item.done sent
    DROPPED = "dropped"  # never shown: an item type the relay did not ask for


class _Item:
    """One upstream output item and what the client has seen of it."""

    __slots__ = ("index", "item_id", "stage", "text", "upstream", "where")

    def __init__(self, upstream: Mapping[str, Any]) -> None:
        self.upstream = upstream  # the item of output_item.added
        self.stage = _Stage.PENDING
        self.index = -1  # the client's output_index once announced
        self.item_id = ""
        self.where = b""  # ',"item_id":…,"output_index":…' of its delta events
        self.text: list[str] = []

    def announce(self, item_id: str, index: int) -> None:
        self.item_id, self.index, self.stage = item_id, index, _Stage.OPEN
        self.where = b',"item_id":"%s","output_index":%d' % (item_id.encode(), index)


class _Message(_Item):
    __slots__ = ()


class _Reasoning(_Item):
    __slots__ = ("part", "source")

    def __init__(self, upstream: Mapping[str, Any]) -> None:
        super().__init__(upstream)
        self.source = ""  # the delta family shown: "reasoning_text" or "summary"
        self.part: object = None  # the upstream part the last delta belonged to


class _Call(_Item):
    __slots__ = (
        "call_id",
        "custom",
        "decoder",
        "emitted",
        "final",
        "name",
        "origin",
        "search",
        "streamed",
    )

    def __init__(self, upstream: Mapping[str, Any]) -> None:
        super().__init__(upstream)
        self.custom = upstream.get("type") == "custom_tool_call"  # the provider's own freeform
        self.name = upstream.get("name") if isinstance(upstream.get("name"), str) else ""
        self.call_id = ""
        # Arguments (or a native custom call's input) received so far, as pieces: joined only
        # when needed, so a long call costs linear time (the freeform decoder, too, takes each
        # piece once: core/freeform_input.py).
        self.streamed: list[str] = []
        self.final: str | None = None  # from a *.done event, authoritative
        self.origin: Any = None  # the client's ToolOrigin, when the relay renamed the tool
        self.decoder: FreeformInputDecoder | None = None
        self.emitted: list[str] = []  # freeform input already sent as deltas
        self.search = False  # a call of Codex's tool_search, offered as a function (rule 3)

    @property
    def arguments(self) -> str:
        return "".join(self.streamed)


_ITEM_KINDS: dict[str, type[_Item]] = {
    "message": _Message,
    "reasoning": _Reasoning,
    "function_call": _Call,
    "custom_tool_call": _Call,
}


class ResponsesNormaliser:
    """One provider Responses stream -> one Responses event stream for the client.

    The same shape as core/stream.py's ``StreamTranslator`` (``start``, ``feed``, ``finish``,
    ``keepalive``, ``fail``, ``done``, ``has_output``, ``continue_from``, ``response``), so the
    upstream link runs either, and either may take over the other's stream. ``new_id(prefix)``
    makes item ids and ``created_at`` is the response's unix time, both injected; ``origin``
    names the provider for the reasoning it seals; ``upstream`` names it in error messages.
    """

    def __init__(
        self,
        ctx: TranslationContext,
        rules: ResponsesRules = GENERIC,
        *,
        response_id: str,
        created_at: int,
        new_id: Callable[[str], str],
        origin: str = "",
        reasoning_mode: ReasoningMode = "summary",
        carrier: ReasoningCarrier | None = None,
        upstream: str = "upstream",
    ) -> None:
        self._ctx = ctx
        self._rules = rules
        self._response_id = response_id
        self._created_at = created_at
        self._new_id = new_id
        self._origin = origin or rules.name
        self._mode = reasoning_mode
        self._carrier = carrier
        self._upstream = upstream
        self._decoder = SSEDecoder()
        self.phase = Phase.NEW
        self._seq = 0
        self._out: list[bytes] = []
        self._items: list[_Item] = []
        self._by_index: dict[int, _Item] = {}
        self._by_id: dict[str, _Item] = {}
        self._next_index = 0
        self._finished: dict[int, dict[str, Any]] = {}  # client output_index -> final item
        self._usage: dict[str, Any] | None = None
        self._summary: list[str] | None = [] if ctx.compaction else None
        self.upstream_response_id: str | None = None
        self.response: dict[str, Any] = self._response_object("in_progress")

    # ----------------------------------------------------------------- public API

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    @property
    def has_output(self) -> bool:
        """Whether an output item was announced to the client (``output_item.added``)."""
        return self._next_index > 0

    @property
    def output(self) -> list[dict[str, Any]]:
        """Items whose output_item.done was sent, in output_index order."""
        return [self._finished[i] for i in sorted(self._finished)]

    def handover(self) -> Handover:
        """Where the client's stream stands, for the next attempt's translator (core/stream.py's
        ``Handover``). Raises ``ValueError`` once an output item went out."""
        if self.has_output:
            raise ValueError("the previous attempt already sent output items")
        # A terminal event (response.failed) of an attempt being replaced never reached the
        # client: the link withholds it (link/call.py rule 5), so numbering resumes at its
        # number and the client's sequence has no gap (core/stream.py ``handover``).
        return Handover(
            started=self.phase is not Phase.NEW,
            next_sequence=self._seq - 1 if self.phase is Phase.DONE else self._seq,
            response_id=self._response_id,
            created_at=self._created_at,
        )

    def continue_from(self, previous: HandsOver) -> None:
        """Take over the client's stream from ``previous`` (this class or core/stream.py's
        ``StreamTranslator``), an attempt that failed before any output item: what it sent
        stands, so no second response.created, and sequence numbers go on. Raises
        ``ValueError`` if ``previous`` sent an output item or this normaliser has started."""
        handover = previous.handover()
        if self.phase is not Phase.NEW:
            raise ValueError("this normaliser has already started")
        if handover.started:
            self.phase = Phase.STREAMING
        self._seq = handover.next_sequence
        self._response_id = handover.response_id
        self._created_at = handover.created_at
        self.response = self._response_object("in_progress")

    def start(self) -> bytes:
        """response.created + response.in_progress; idempotent."""
        self._start()
        return self._drain()

    def feed(self, data: bytes) -> bytes:
        """Provider bytes in, client SSE bytes out (``b""`` when nothing is complete)."""
        if self.phase is Phase.DONE or not data:
            return b""
        return self._guarded(self._feed_events, data)

    def finish(self) -> bytes:
        """The provider's body ended: whatever has no terminal event yet is failed."""
        if self.phase is Phase.DONE:
            return b""

        def end() -> None:
            self._events(self._decoder.close())
            if self.phase is not Phase.DONE:
                raise _Failure(
                    "upstream_stream_incomplete",
                    f"{self._upstream} ended the stream before the response finished",
                )

        return self._guarded(end)

    def keepalive(self) -> bytes:
        """A sign of life through upstream silence: response.created if nothing was sent yet,
        else response.in_progress again (Codex's idle timer counts events, not comments:
        docs/codex-contract.md §7.1)."""
        if self.phase is Phase.NEW:
            return self.start()
        if self.phase is Phase.DONE:
            return b""
        self._emit(
            {"type": "response.in_progress", "response": self._response_object("in_progress")}
        )
        return self._drain()

    def fail(self, code: str, message: str) -> bytes:
        """A failure outside the stream (timeout, connection cut): response.failed."""
        if self.phase is Phase.DONE:
            return b""
        self._start()
        self._fail(code, message)
        return self._drain()

    # ----------------------------------------------------------------- dispatch

    def _guarded(self, step: Callable[..., None], *args: Any) -> bytes:
        try:
            self._start()
            step(*args)
        except _Failure as f:
            self._fail(f.code, f.message)
        except RelayError as e:
            self._fail(e.code, e.message)
        except Exception as e:  # rule 8: never raise into the host
            logger.exception("Responses stream normalisation failed")
            self._fail("relay_internal_error", f"relay failed to normalise the stream: {e!r}")
        return self._drain()

    def _feed_events(self, data: bytes) -> None:
        self._events(self._decoder.feed(data))

    def _events(self, events: list[Any]) -> None:
        for event in events:
            self._on_data(event.data)
            if self.phase is Phase.DONE:
                return

    def _on_data(self, data: str) -> None:
        if data == "[DONE]":
            raise _Failure(
                "upstream_stream_incomplete",
                f"{self._upstream} sent [DONE] before the response finished",
            )
        try:
            event = _loads(data)
        except ValueError:
            raise _Failure(
                "upstream_invalid_json", f"{self._upstream} sent an event that is not JSON"
            ) from None
        if not isinstance(event, dict):
            raise _Failure("upstream_invalid_json", f"{self._upstream} sent a non-object event")
        handler = _EVENTS.get(event.get("type"))
        if handler is not None:
            handler(self, event)

    def _item_for(self, event: Mapping[str, Any], kind: type[_Item]) -> Any:
        index = event.get("output_index")
        item = self._by_index.get(index) if isinstance(index, int) else None
        if item is None:
            item_id = event.get("item_id")
            item = self._by_id.get(item_id) if isinstance(item_id, str) else None
        if type(item) is not kind or item.stage in (_Stage.DONE, _Stage.DROPPED):
            return None
        return item

    # ----------------------------------------------------------------- items

    def _on_lifecycle(self, event: Mapping[str, Any]) -> None:
        response = event.get("response")
        if isinstance(response, Mapping) and isinstance(response.get("id"), str):
            self.upstream_response_id = response["id"]

    def _on_added(self, event: Mapping[str, Any]) -> None:
        up = event.get("item")
        if not isinstance(up, Mapping):
            return
        kind = _ITEM_KINDS.get(up.get("type"), _Item)
        item = kind(up)
        self._items.append(item)
        if isinstance(event.get("output_index"), int):
            self._by_index[event["output_index"]] = item
        if isinstance(up.get("id"), str):
            self._by_id[up["id"]] = item
        if kind is _Item or (self._summary is not None and kind is not _Message):
            item.stage = _Stage.DROPPED  # rule 7; rule 6: a summary is text only
            logger.debug("dropped %s item from %s", up.get("type"), self._upstream)
            return
        self._open(item)

    def _open(self, item: _Item) -> None:
        if type(item) is _Message:
            self._open_message(item)
        elif type(item) is _Reasoning:
            self._open_reasoning(item)
        elif type(item) is _Call and item.name:
            self._open_call(item)

    def _on_done(self, event: Mapping[str, Any]) -> None:
        up = event.get("item")
        if not isinstance(up, Mapping):
            return
        kind = _ITEM_KINDS.get(up.get("type"), _Item)
        item = self._item_for(event, kind)
        if item is None:  # a done without its added: announce it first
            self._on_added(event)
            item = self._item_for(event, kind)
            if item is None:
                return
        # An item cut by the token limit comes back "incomplete" (OpenAI's item status): it is
        # closed as at response.incomplete, where a call that does not parse stays unfinished.
        self._close(item, up, truncated=up.get("status") == "incomplete")

    def _close(self, item: _Item, up: Mapping[str, Any] | None, truncated: bool = False) -> None:
        if type(item) is _Message:
            self._close_message(item, up)
        elif type(item) is _Reasoning:
            self._close_reasoning(item, up)
        else:  # only items of the three kinds are ever opened
            self._close_call(item, up, truncated)

    # ----------------------------------------------------------------- messages

    def _open_message(self, m: _Message) -> None:
        m.stage = _Stage.OPEN
        if self._summary is not None:
            return  # rule 6: gathered, not shown
        m.announce(self._new_id("msg"), self._take_index())
        self._emit(
            {
                "type": "response.output_item.added",
                "output_index": m.index,
                "item": {
                    "id": m.item_id,
                    "type": "message",
                    "status": "in_progress",
                    "role": "assistant",
                    "content": [],
                },
            }
        )
        base = {"item_id": m.item_id, "output_index": m.index, "content_index": 0}
        self._emit({"type": "response.content_part.added", **base, "part": _output_text("")})

    def _on_text_delta(self, event: Mapping[str, Any]) -> None:
        m = self._item_for(event, _Message)
        delta = event.get("delta")
        if m is None or not isinstance(delta, str) or not delta:
            return
        m.text.append(delta)
        if self._summary is None:
            self._emit_delta(TEXT_DELTA, m, delta)

    def _close_message(self, m: _Message, up: Mapping[str, Any] | None) -> None:
        parts = [p for p in (up or {}).get("content") or () if isinstance(p, Mapping)]
        final = (
            "".join(p["text"] for p in parts if isinstance(p.get("text"), str)) if parts else None
        )
        text = self._settle(m, final, TEXT_DELTA)
        m.stage = _Stage.DONE
        if self._summary is not None:
            self._summary.append(text)
            return
        # The provider's annotations are not passed on: Codex does not read them, and a shape
        # its parser refuses would drop the whole item silently (docs/codex-contract.md §7.2).
        part = _output_text(text)
        base = {"item_id": m.item_id, "output_index": m.index, "content_index": 0}
        self._emit({"type": "response.output_text.done", **base, "text": text, "logprobs": []})
        self._emit({"type": "response.content_part.done", **base, "part": part})
        item = {
            "id": m.item_id,
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [part],
        }
        self._finish_item(m.index, item)

    def _settle(self, item: _Item, final: str | None, kind: _Delta | None) -> str:
        """The item's whole text: the provider's final text when it gave one (authoritative),
        its missing end sent as one more delta when the deltas were a prefix of it."""
        text = "".join(item.text)
        if not final or final == text:
            return text
        if not final.startswith(text):
            logger.debug("item %s: its final text differs from its deltas; kept", item.item_id)
        elif kind is not None and self._summary is None:  # shown live: the rest follows
            self._emit_delta(kind, item, final[len(text) :])
        return final

    # ----------------------------------------------------------------- reasoning

    def _open_reasoning(self, r: _Reasoning) -> None:
        r.stage = _Stage.OPEN
        r.announce(self._new_id("rs"), self._take_index())
        item: dict[str, Any] = {"id": r.item_id, "type": "reasoning", "summary": []}
        if self._mode == "raw":
            item["content"] = []
        self._emit({"type": "response.output_item.added", "output_index": r.index, "item": item})
        if self._mode == "summary":
            self._emit(
                {
                    "type": "response.reasoning_summary_part.added",
                    "item_id": r.item_id,
                    "output_index": r.index,
                    "summary_index": 0,
                    "part": {"type": "summary_text", "text": ""},
                }
            )

    def _on_reasoning_delta(self, event: Mapping[str, Any]) -> None:
        r = self._item_for(event, _Reasoning)
        delta = event.get("delta")
        if r is None or not isinstance(delta, str) or not delta:
            return
        source = "reasoning_text" if event["type"] == "response.reasoning_text.delta" else "summary"
        if r.source and source != r.source:
            return  # a server streaming both forms: the first one shown is the one kept
        r.source = source
        part = event.get("summary_index", event.get("content_index", 0))
        if r.part is not None and part != r.part and r.text:
            self._reasoning_piece(r, "\n\n")  # a new upstream part: our one part goes on
        r.part = part
        self._reasoning_piece(r, delta)

    def _reasoning_piece(self, r: _Reasoning, text: str) -> None:
        r.text.append(text)
        kind = _REASONING_DELTAS[self._mode]
        if kind is not None:
            self._emit_delta(kind, r, text)

    def _close_reasoning(self, r: _Reasoning, up: Mapping[str, Any] | None) -> None:
        final, record = native_record(up if up is not None else r.upstream)
        text = self._settle(r, final, _REASONING_DELTAS[self._mode])
        r.stage = _Stage.DONE
        item: dict[str, Any] = {"id": r.item_id, "type": "reasoning", "summary": []}
        if self._mode == "summary":
            item["summary"] = [self._summary_done(r, text)]
        else:
            if self._mode == "raw":
                base = {"item_id": r.item_id, "output_index": r.index, "content_index": 0}
                self._emit({"type": "response.reasoning_text.done", **base, "text": text})
            # Hidden or raw: the text rides in the item, as on the Chat wire, so Codex replays
            # it (docs/codex-contract.md §7.3).
            item["content"] = [{"type": "reasoning_text", "text": text}]
        if self._carrier is not None:
            payload = ReasoningPayload(text=text, origin=self._origin, item=record)
            item["encrypted_content"] = self._carrier.seal(payload)
        self._finish_item(r.index, item)

    def _summary_done(self, r: _Reasoning, text: str) -> dict[str, str]:
        """The summary part's done events; returns the part."""
        part = {"type": "summary_text", "text": text}
        base = {"item_id": r.item_id, "output_index": r.index, "summary_index": 0}
        self._emit({"type": "response.reasoning_summary_text.done", **base, "text": text})
        self._emit({"type": "response.reasoning_summary_part.done", **base, "part": part})
        return part

    # ----------------------------------------------------------------- calls

    def _open_call(self, call: _Call) -> None:
        up = call.upstream
        namespace = up.get("namespace") if isinstance(up.get("namespace"), str) else None
        if namespace:  # the provider took the namespace (Kimi): the relay's key for the pair
            key = upstream_name(call.name, namespace, max_len=self._rules.max_tool_name_len)
        else:
            key = call.name
        origin = call.origin = self._ctx.tools.get(key)
        call_id = up.get("call_id")
        call.call_id = call_id if isinstance(call_id, str) and call_id else self._new_id("call")
        if origin is not None and origin.kind is ToolKind.TOOL_SEARCH and not call.custom:
            self._open_search(call)
            return
        freeform = call.custom or (origin is not None and origin.freeform)
        call.announce(self._new_id("ctc" if freeform else "fc"), self._take_index())
        if freeform:
            if not call.custom:
                call.decoder = FreeformInputDecoder(origin.input_param)
            item: dict[str, Any] = {"type": "custom_tool_call", "input": ""}
        else:
            item = {"type": "function_call", "arguments": ""}
        item = {
            "id": call.item_id,
            **item,
            "status": "in_progress",
            "call_id": call.call_id,
            "name": origin.name if origin is not None else call.name,
        }
        namespace = origin.namespace if origin is not None and origin.namespace else namespace
        if namespace:
            item["namespace"] = namespace
        self._emit({"type": "response.output_item.added", "output_index": call.index, "item": item})
        if call.streamed:  # arrived while the call waited for its name
            self._call_progress(call, call.arguments)

    def _open_search(self, call: _Call) -> None:
        """A call of the search function goes back as the ``tool_search_call`` Codex runs
        (core/tool_search.py rule 5). It opens with empty arguments (the SDK requires them)
        and streams nothing: the Responses API has no argument events for this item."""
        call.search = True
        call.announce(self._new_id("tsc"), self._take_index())
        item = search_call_item(
            item_id=call.item_id, call_id=call.call_id, arguments={}, status="in_progress"
        )
        self._emit({"type": "response.output_item.added", "output_index": call.index, "item": item})

    def _on_args_delta(self, event: Mapping[str, Any]) -> None:
        call = self._item_for(event, _Call)
        delta = event.get("delta")
        if call is None or not isinstance(delta, str) or not delta:
            return
        call.streamed.append(delta)
        if call.stage is _Stage.OPEN:
            self._call_progress(call, delta)

    def _on_args_done(self, event: Mapping[str, Any]) -> None:
        call = self._item_for(event, _Call)
        final = event.get("input" if event["type"].startswith("response.custom") else "arguments")
        if call is not None and isinstance(final, str):
            call.final = final

    def _call_progress(self, call: _Call, delta: str) -> None:
        if call.search:
            return  # its arguments go out whole, on close
        if call.decoder is not None:
            piece = call.decoder.feed(delta)
            if piece:
                call.emitted.append(piece)
                self._emit_delta(INPUT_DELTA, call, piece)
        else:
            self._emit_delta(INPUT_DELTA if call.custom else ARGUMENTS_DELTA, call, delta)

    def _announce_late(self, call: _Call, up: Mapping[str, Any] | None, truncated: bool) -> bool:
        """A call whose name comes only with its done item is announced then. False: it never
        got a name, and the response was cut (rule 2)."""
        name = (up or {}).get("name")
        if not isinstance(name, str) or not name:
            if truncated:
                return False
            raise _Failure("invalid_tool_call", f"{self._upstream} sent a tool call without a name")
        call.name = name
        call.upstream = {**call.upstream, **(up or {})}
        self._open_call(call)
        return True

    def _close_call(self, call: _Call, up: Mapping[str, Any] | None, truncated: bool) -> None:
        if call.stage is _Stage.PENDING and not self._announce_late(call, up, truncated):
            return
        field_name = "input" if call.custom else "arguments"
        final = (up or {}).get(field_name)
        final = final if isinstance(final, str) else call.final
        body = final if final is not None else call.arguments
        if call.custom:
            self._finish_custom(call, body)
            return
        arguments = body.strip() or "{}"
        try:
            parsed = json.loads(arguments)
        except ValueError:
            if truncated:
                return  # rule 2: cut off by the token limit, never recorded
            raise _Failure(
                "invalid_tool_call",
                f"{self._upstream} sent tool call {call.name!r} with arguments that are not "
                "valid JSON",
            ) from None
        if call.decoder is not None:
            self._finish_freeform(call, parsed)
            return
        if call.search:
            call.stage = _Stage.DONE
            item = search_call_item(
                item_id=call.item_id,
                call_id=call.call_id,
                arguments=codex_search_arguments(parsed),
            )
            self._finish_item(call.index, item)
            return
        base = {"item_id": call.item_id, "output_index": call.index}
        self._emit(
            {"type": "response.function_call_arguments.done", **base, "arguments": arguments}
        )
        item = self._call_item(call, "function_call", "arguments", arguments)
        self._finish_item(call.index, item)

    def _finish_freeform(self, call: _Call, parsed: object) -> None:
        param = call.origin.input_param
        text = freeform_text(parsed, param)
        if text is None:
            raise _Failure(
                "invalid_tool_call",
                f"{self._upstream} called freeform tool {call.origin.name!r} without a string "
                f"{param!r} argument",
            )
        emitted = "".join(call.emitted)
        if text.startswith(emitted) and text != emitted:
            rest = text[len(emitted) :]
            self._emit_delta(INPUT_DELTA, call, rest)
        self._finish_custom(call, text)

    def _finish_custom(self, call: _Call, text: str) -> None:
        base = {"item_id": call.item_id, "output_index": call.index}
        self._emit({"type": "response.custom_tool_call_input.done", **base, "input": text})
        self._finish_item(call.index, self._call_item(call, "custom_tool_call", "input", text))

    def _call_item(self, call: _Call, kind: str, field_name: str, value: str) -> dict[str, Any]:
        call.stage = _Stage.DONE
        origin = call.origin
        item: dict[str, Any] = {
            "id": call.item_id,
            "type": kind,
            "status": "completed",
            "call_id": call.call_id,
            "name": origin.name if origin is not None else call.name,
            field_name: value,
        }
        namespace = origin.namespace if origin is not None else None
        namespace = namespace or call.upstream.get("namespace")
        if isinstance(namespace, str) and namespace:
            item["namespace"] = namespace
        return item

    # ----------------------------------------------------------------- terminal events

    def _on_completed(self, event: Mapping[str, Any]) -> None:
        self._end(event, "completed")

    def _on_incomplete(self, event: Mapping[str, Any]) -> None:
        self._end(event, "incomplete")

    def _end(self, event: Mapping[str, Any], status: str) -> None:
        response = event.get("response")
        response = response if isinstance(response, Mapping) else {}
        self._usage = normalised_usage(response.get("usage")) or self._usage
        truncated = status == "incomplete"
        for item in sorted(self._items, key=lambda i: (i.stage is _Stage.PENDING, i.index)):
            if item.stage in (_Stage.PENDING, _Stage.OPEN):
                self._close(item, None, truncated)
        if self._summary is not None:
            self._compaction_item()
        incomplete = None
        if truncated:
            details = response.get("incomplete_details")
            reason = details.get("reason") if isinstance(details, Mapping) else None
            incomplete = {"reason": reason if isinstance(reason, str) else "max_output_tokens"}
        self.response = self._response_object(status, incomplete=incomplete)
        self._emit({"type": f"response.{status}", "response": self.response})
        self.phase = Phase.DONE

    def _on_failed(self, event: Mapping[str, Any]) -> None:
        response = event.get("response")
        mapped = map_failed_response(
            response if isinstance(response, Mapping) else {}, upstream=self._upstream
        )
        raise _Failure(mapped.code, mapped.message)

    def _on_error(self, event: Mapping[str, Any]) -> None:
        mapped = map_error_event(event, upstream=self._upstream)
        raise _Failure(mapped.code, mapped.message)

    def _compaction_item(self) -> None:
        """Codex's built-in provider needs exactly one ``compaction`` item back
        (docs/codex-contract.md §9); its blob is the provider's summary, sealed."""
        summary = "".join(self._summary or ())
        if not summary.strip():
            raise _Failure("empty_compaction", f"{self._upstream} returned an empty summary")
        if self._carrier is None:
            raise _Failure("relay_misconfigured", "remote compaction needs the relay's key")
        index = self._take_index()
        item = {
            "id": self._new_id("cmp"),
            "type": "compaction",
            "encrypted_content": self._carrier.seal_compaction(summary),
        }
        self._emit({"type": "response.output_item.added", "output_index": index, "item": item})
        self._finish_item(index, item)

    def _fail(self, reason: str, message: str) -> None:
        # Callers never reach here once a terminal event went out (``fail`` and ``_guarded``
        # check first, and nothing raises after ``_end``): exactly one terminal event.
        self.phase = Phase.STREAMING
        code = reason if reason in WIRE_ERROR_CODES else "server_error"
        if code != reason and not message.startswith(reason):
            message = f"{reason}: {message}"
        self.response = self._response_object("failed", error={"code": code, "message": message})
        self._emit({"type": "response.failed", "response": self.response})
        self.phase = Phase.DONE
        logger.debug("response %s failed: %s: %s", self._response_id, code, message)

    # ----------------------------------------------------------------- plumbing

    def _start(self) -> None:
        if self.phase is Phase.NEW:
            self.phase = Phase.STREAMING
            snapshot = self._response_object("in_progress")
            self._emit({"type": "response.created", "response": snapshot})
            self._emit({"type": "response.in_progress", "response": snapshot})

    def _take_index(self) -> int:
        index = self._next_index
        self._next_index += 1
        return index

    def _finish_item(self, index: int, item: dict[str, Any]) -> None:
        self._finished[index] = item
        self._emit({"type": "response.output_item.done", "output_index": index, "item": item})

    def _emit(self, event: dict[str, Any]) -> None:
        event["sequence_number"] = self._seq
        self._seq += 1
        self._out.append(encode_event(event))

    def _emit_delta(self, kind: _Delta, item: _Item, delta: str) -> None:
        head, tail = kind
        self._out.append(
            b'%s%d%s,"delta":%s%s}\n\n'
            % (head, self._seq, item.where, _quote(delta).encode(), tail)
        )
        self._seq += 1

    def _drain(self) -> bytes:
        if not self._out:
            return b""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def _response_object(
        self,
        status: str,
        *,
        error: Mapping[str, str] | None = None,
        incomplete: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """A Response object as OpenAI's API sends it: the relay's id, the client's model,
        the request's parameters echoed (the Chat wire's layout)."""
        echo = self._ctx.response_echo
        response: dict[str, Any] = {
            "id": self._response_id,
            "object": "response",
            "created_at": self._created_at,
            "status": status,
            "error": dict(error) if error else None,
            "incomplete_details": dict(incomplete) if incomplete else None,
            "instructions": echo.get("instructions"),
            "max_output_tokens": echo.get("max_output_tokens"),
            "model": self._ctx.client_model,
            "output": self.output if status != "in_progress" else [],
            "parallel_tool_calls": echo.get("parallel_tool_calls", True),
            "previous_response_id": echo.get("previous_response_id"),
            "reasoning": echo.get("reasoning"),
            "store": echo.get("store", False),
            "temperature": echo.get("temperature"),
            "text": echo.get("text"),
            "tool_choice": echo.get("tool_choice", "auto"),
            "tools": echo.get("tools", []),
            "top_p": echo.get("top_p"),
            "truncation": echo.get("truncation", "disabled"),
            "usage": self._usage if status in ("completed", "incomplete") else None,
            "metadata": echo.get("metadata") or {},
        }
        for key, value in echo.items():
            response.setdefault(key, value)
        return response


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def freeform_text(parsed: object, param: str) -> str | None:
    """The raw input of a wrapped freeform call: the expected parameter, or the only string
    value when the model named it differently, or a bare JSON string (the Chat wire's rule)."""
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


_EVENTS: dict[str, Callable[[ResponsesNormaliser, Mapping[str, Any]], None]] = {
    "response.created": ResponsesNormaliser._on_lifecycle,
    "response.in_progress": ResponsesNormaliser._on_lifecycle,
    "response.queued": ResponsesNormaliser._on_lifecycle,
    "response.output_item.added": ResponsesNormaliser._on_added,
    "response.output_item.done": ResponsesNormaliser._on_done,
    "response.output_text.delta": ResponsesNormaliser._on_text_delta,
    "response.reasoning_text.delta": ResponsesNormaliser._on_reasoning_delta,
    "response.reasoning_summary_text.delta": ResponsesNormaliser._on_reasoning_delta,
    "response.function_call_arguments.delta": ResponsesNormaliser._on_args_delta,
    "response.function_call_arguments.done": ResponsesNormaliser._on_args_done,
    "response.custom_tool_call_input.delta": ResponsesNormaliser._on_args_delta,
    "response.custom_tool_call_input.done": ResponsesNormaliser._on_args_done,
    "response.completed": ResponsesNormaliser._on_completed,
    "response.incomplete": ResponsesNormaliser._on_incomplete,
    "response.failed": ResponsesNormaliser._on_failed,
    "error": ResponsesNormaliser._on_error,
}
