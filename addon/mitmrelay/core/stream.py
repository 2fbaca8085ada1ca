"""Chat Completions SSE in, Responses SSE out: the incremental stream translator.

Theory of operation
-------------------
``feed()`` takes upstream bytes in any chunking; the SSE decoder turns them into events, each
``data:`` JSON is parsed once (plain ``json``: no pydantic per chunk) and the few fields we
need are read off the dict. ``StreamTranslator`` is a small coordinator over output items
(``core/output_items.py``: reasoning, message, function call, custom tool call, compaction):
it decides which item each delta feeds, opens and closes items, and owns what spans items:
output indexes, the event writer's sequence numbers (``core/events.py``), sealing reasoning,
and the terminal event. What comes out is Responses events in the order OpenAI's API emits
them.

Rules:

1. Items open in upstream order and get consecutive ``output_index`` values. Reasoning and text
   are single open items: a new kind of output closes the open one (its ``*.done`` events, then
   ``output_item.done``). Tool calls stay open until the upstream finishes, because parallel
   calls may interleave and a call is only whole once its arguments parse.
2. Codex records an item only on ``response.output_item.done`` (docs/codex-contract.md §7.2), so
   no ``output_item.done`` is ever sent for a half-built item: a call without a name or with
   arguments that do not parse fails the whole response instead. A call cut by the length limit
   is left out (it was never whole, and no sealed payload names it) and the response is
   ``incomplete``.
3. Exactly one terminal event per stream: ``response.completed``, ``response.incomplete``
   (``finish_reason`` length / content_filter) or ``response.failed``. A stream that ends
   without a ``finish_reason``, sends invalid JSON or an ``{"error": …}`` chunk, is failed:
   never a fake ``completed`` (docs/providers.md §3, item 6).
4. Tool-call deltas are accumulated per (index, id): a delta without ``index`` (Gemini), or a
   new ``id`` at a used index (vLLM parallel calls on index 0), starts a new call
   (docs/providers.md §1.3). A call opens as an item once its name is known; which item it
   becomes is ``CALL_ITEMS`` keyed by the tool's kind (how the client declared it).
5. With a reasoning carrier, a reasoning item's ``output_item.done`` waits until the upstream
   finishes: its sealed blob names the calls that follow it up to the next reasoning item, with
   their Gemini signatures, and carries the ``reasoning_details`` that came with this item
   alone (docs/codex-contract.md §7.3: Codex replays the item verbatim). Gemini signs calls
   without sending thought text (docs/providers.md §1.2), so a signed call that no reasoning
   item precedes gets one without text (``SignatureItem``), opened right before it; a call
   signed only after it opened gets one at the end, after the calls. Either way the signature
   travels in a blob Codex replays, and the request side puts it back on its call by id.
6. Nothing raises out of ``feed``/``feed_chunk``/``finish``/``fail``/``keepalive``: an internal
   error becomes ``response.failed`` (mitmproxy drops a chunk when a stream callable raises:
   docs/mitmproxy-notes.md §5), and text UTF-8 cannot carry (a lone surrogate, valid in JSON)
   goes out as U+FFFD (``sse.utf8``).
7. The upstream's shapes are checked where they are read, so a malformed chunk is the
   upstream's fault, never a ``relay_internal_error``: a field the translator descends into
   (``choices``, a choice's delta, ``tool_calls``, a call's ``function``, ``extra_content``,
   ``reasoning_details``, a thinking chunk's ``thinking``) holding anything but the object or
   list its schema has fails the response as ``upstream_protocol_error``; a list element that
   is not an object is skipped, and a scalar of another type (a numeric ``id``) counts as
   absent.
"""

from __future__ import annotations

import enum
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from .context import ToolKind, TranslationContext
from .errors import RelayError
from .events import (
    OUTPUT_ITEM_DONE,
    RESPONSE_CREATED,
    RESPONSE_IN_PROGRESS,
    TERMINAL_EVENTS,
    EventWriter,
)
from .output_items import (
    CALL_ITEMS,
    REASONING_ITEMS,
    CallItem,
    CompactionItem,
    MessageItem,
    ReasoningItem,
    SignatureItem,
    StreamFailure,
)
from .profiles import GENERIC, Profile
from .reasoning import ReasoningCarrier, ReasoningPayload
from .sse import SSEDecoder
from .think_tags import ThinkTagSplitter
from .upstream_errors import map_error_payload
from .usage import responses_usage

logger = logging.getLogger(__name__)

ReasoningMode = Literal["summary", "raw", "hidden"]

# Codes a response.failed may carry: the ones Codex acts on (docs/codex-contract.md §8) and the
# openai SDK's ResponseError code enum. Any other failure goes out as "server_error" (which
# Codex retries) with its specific reason as a stable prefix of the message.
WIRE_ERROR_CODES = frozenset(
    {
        "context_length_exceeded",
        "insufficient_quota",
        "rate_limit_exceeded",
        "server_error",
        "invalid_prompt",
    }
)

_VALID_CALL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_INVALID_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_scan_json = json.JSONDecoder().scan_once
_UNPARSED = object()
_NO_FIELDS: dict[str, Any] = {}  # an absent object field, read as empty (never written)


def _detail_text(detail: dict[str, Any]) -> str:
    """The readable text of one ``reasoning_details`` block (an encrypted one has none)."""
    for key in ("text", "summary"):
        text = detail.get(key)
        if text and isinstance(text, str):
            return text
    return ""


def _loads(text: str) -> Any:
    """``json.loads``, without its wrapper layers when ``text`` is exactly one JSON value (an
    upstream chunk always is); anything else takes the full path, errors included."""
    try:
        value, end = _scan_json(text, 0)
    except (StopIteration, ValueError):
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


class Phase(enum.Enum):
    NEW = "new"  # nothing sent yet
    STREAMING = "streaming"  # response.created sent
    DONE = "done"  # a terminal event sent; everything after is ignored


@dataclass(frozen=True, slots=True)
class Handover:
    """What the next attempt's translator needs to continue a client's stream: whether
    ``response.created`` went out, the next ``sequence_number``, and the response's id and
    creation time (the client already saw them)."""

    started: bool
    next_sequence: int
    response_id: str
    created_at: int


class HandsOver(Protocol):
    def handover(self) -> Handover: ...


class _UpstreamCall:
    """A tool call as the upstream streams it (rule 4), and its output item once open."""

    __slots__ = ("args", "item", "name", "signature", "upstream_id")

    def __init__(self, upstream_id: str | None) -> None:
        self.upstream_id = upstream_id
        self.name = ""
        self.args: list[str] = []
        self.item: CallItem | None = None  # opened once the name is known
        self.signature: str | None = None  # Gemini: back with this call (docs/providers.md §1.2)


class StreamTranslator:
    """One upstream Chat Completions stream -> one Responses event stream.

    ``new_id(prefix)`` makes item ids, ``created_at`` is the response's unix time: both
    injected, so output is byte-identical for identical input. ``upstream`` names the upstream
    in error messages. Raises ``ValueError`` for an unknown ``reasoning_mode``.

    After the terminal event, ``response`` is the final Response object (``output``: the items
    whose ``output_item.done`` was sent) and ``call_id_map`` maps each call id the relay had to
    rewrite back to the upstream's.

    What each call does in each phase (every call returns the bytes to send, maybe ``b""``):

    ===============  ==========================  ==================  ======
    call             NEW                         STREAMING           DONE
    ===============  ==========================  ==================  ======
    ``start``        created + in_progress       nothing             b""
    ``feed``         start, then translate       translate           b""
    ``feed_chunk``   start, then translate       translate           b""
    ``keepalive``    start                       in_progress again   b""
    ``finish``       start, then terminal event  terminal event      b""
    ``fail``         start, then failed          failed              b""
    ===============  ==========================  ==================  ======

    ``feed(b"")`` does nothing in any phase. The terminal event moves to DONE (rule 3).
    """

    def __init__(
        self,
        ctx: TranslationContext,
        *,
        response_id: str,
        created_at: int,
        new_id: Callable[[str], str],
        reasoning_mode: ReasoningMode = "summary",
        carrier: ReasoningCarrier | None = None,
        profile: Profile = GENERIC,
        upstream: str = "upstream",
    ) -> None:
        if reasoning_mode not in REASONING_ITEMS:
            raise ValueError(f"unknown reasoning mode {reasoning_mode!r}")
        self._ctx = ctx
        self._response_id = response_id
        self._created_at = created_at
        self._new_id = new_id
        self._reasoning_item = REASONING_ITEMS[reasoning_mode]
        self._carrier = carrier
        self._upstream = upstream
        self._decoder = SSEDecoder()
        self._think = ThinkTagSplitter() if profile.think_tags else None
        self.phase = Phase.NEW
        self._w = EventWriter()
        self._opened = 0  # items opened: the next output_index
        self._done: dict[int, dict[str, Any]] = {}  # output_index -> item sent in output_item.done
        self._open: ReasoningItem | MessageItem | None = None  # rule 1
        self._unsealed: list[tuple[ReasoningItem, dict[str, Any]]] = []  # rule 5
        self._calls: list[_UpstreamCall] = []
        self._by_index: dict[int, _UpstreamCall] = {}
        self._by_upstream_id: dict[str, _UpstreamCall] = {}
        self.call_id_map: dict[str, str] = {}  # client call_id -> upstream id, when changed
        self._finish_reason: str | None = None
        self._summary: list[str] | None = [] if ctx.compaction else None  # remote compaction
        self._usage: dict[str, Any] | None = None
        self.response: dict[str, Any] = self._response_object("in_progress")

    # ----------------------------------------------------------------- public API

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    @property
    def has_output(self) -> bool:
        """Whether an output item was opened (``output_item.added`` sent). Until then a failed
        attempt may be replaced by another upstream without the client noticing."""
        return self._opened > 0

    @property
    def output(self) -> list[dict[str, Any]]:
        """Items whose output_item.done was sent, in output_index order."""
        return [self._done[i] for i in sorted(self._done)]

    def handover(self) -> Handover:
        """Where the client's stream stands, for the translator of the next attempt (this one
        failed before any output item). Raises ``ValueError`` once an output item went out:
        from then on no other upstream may take over."""
        if self.has_output:
            raise ValueError("the previous attempt already sent output items")
        # A terminal event (response.failed) of an attempt being replaced never reached the
        # client: a stream has one, and this one goes on. The link withholds it, so numbering
        # resumes at its number.
        return Handover(
            started=self.phase is not Phase.NEW,
            next_sequence=self._w.seq - 1 if self.phase is Phase.DONE else self._w.seq,
            response_id=self._response_id,
            created_at=self._created_at,
        )

    def continue_from(self, previous: HandsOver) -> None:
        """Take over the client's stream from ``previous`` (this class, or any translator with
        ``handover()``, e.g. the Responses wire's normaliser), an attempt that failed before any
        output item: what it sent (``response.created``, keep-alives) stands, so this
        translator sends no second ``response.created`` and numbers its events on from there.
        Raises ``ValueError`` if ``previous`` already sent an output item or if this
        translator has started."""
        handover = previous.handover()
        if self.phase is not Phase.NEW:
            raise ValueError("this translator has already started")
        if handover.started:
            self.phase = Phase.STREAMING
        self._w.seq = handover.next_sequence
        self._response_id = handover.response_id
        self._created_at = handover.created_at
        self.response = self._response_object("in_progress")

    def start(self) -> bytes:
        """``response.created`` + ``response.in_progress``; idempotent. May be sent before the
        upstream's first byte so the client sees progress at once."""
        self._start()
        return self._w.drain()

    def feed(self, data: bytes) -> bytes:
        """Upstream bytes in, Responses SSE bytes out (``b""`` when nothing is complete)."""
        if not data or self.phase is Phase.DONE:
            return b""
        if self.phase is Phase.NEW:
            self._start()
        try:
            for event in self._decoder.feed(data):
                self._on_event(event.data)
                if self.phase is Phase.DONE:
                    break
        except Exception as e:  # rule 6: never raise into the host
            self._fail_on(e, "stream translation failed")
        return self._w.drain()

    def feed_chunk(self, chunk: object) -> bytes:
        """One upstream chunk already parsed from JSON, taken as ``feed`` takes a ``data:``
        line's: the non-streaming path hands over a whole completion as its one chunk
        (core/completion.py) without writing it out as SSE to parse it again."""
        if self.phase is Phase.DONE:
            return b""
        if self.phase is Phase.NEW:
            self._start()
        try:
            self._on_chunk(chunk)
        except Exception as e:  # rule 6
            self._fail_on(e, "stream translation failed")
        return self._w.drain()

    def finish(self) -> bytes:
        """The upstream body ended. Emits the terminal event if none was sent."""
        if self.phase is Phase.DONE:
            return b""
        self._start()
        try:
            for event in self._decoder.close():
                self._on_event(event.data)
                if self.phase is Phase.DONE:
                    return self._w.drain()
            self._complete()
        except Exception as e:  # rule 6
            self._fail_on(e, "stream translation failed at the end")
        return self._w.drain()

    def keepalive(self) -> bytes:
        """A sign of life for a client waiting through upstream silence: ``response.created``
        if nothing was sent yet, else ``response.in_progress`` again (its output left empty,
        as in the first one). An SSE comment would not do: Codex's idle timer only counts
        events its SSE parser yields, and comments yield none (docs/codex-contract.md §7.1)."""
        if self.phase is Phase.NEW:
            return self.start()
        if self.phase is Phase.DONE:
            return b""
        self._w.event(
            {"type": RESPONSE_IN_PROGRESS, "response": self._response_object("in_progress")}
        )
        return self._w.drain()

    def fail(self, code: str, message: str) -> bytes:
        """A failure outside the stream (timeout, connection cut): ``response.failed``."""
        if self.phase is Phase.DONE:
            return b""
        self._start()
        self._fail(code, message)
        return self._w.drain()

    # ----------------------------------------------------------------- upstream events

    def _start(self) -> None:
        if self.phase is Phase.NEW:
            self.phase = Phase.STREAMING
            snapshot = self._response_object("in_progress")
            self._w.event({"type": RESPONSE_CREATED, "response": snapshot})
            self._w.event({"type": RESPONSE_IN_PROGRESS, "response": snapshot})

    def _on_event(self, data: str) -> None:
        if data == "[DONE]":
            self._complete()
            return
        try:
            chunk = _loads(data)
        except ValueError:
            raise StreamFailure(
                "upstream_invalid_json", f"{self._upstream} sent a stream chunk that is not JSON"
            ) from None
        self._on_chunk(chunk)

    def _on_chunk(self, chunk: object) -> None:
        if not isinstance(chunk, dict):
            raise StreamFailure(
                "upstream_invalid_json", f"{self._upstream} sent a non-object chunk"
            )
        error = chunk.get("error")
        if error:
            mapped = map_error_payload(
                error if isinstance(error, Mapping) else {"message": str(error)},
                upstream=self._upstream,
            )
            raise StreamFailure(mapped.code, mapped.message)
        usage = chunk.get("usage")
        if usage:
            self._usage = responses_usage(usage) or self._usage
        choices = chunk.get("choices")
        if choices:
            if not isinstance(choices, list):
                raise self._malformed("choices", "a list")
            for choice in choices:
                if isinstance(choice, dict):  # rule 7
                    self._on_choice(choice)

    def _on_choice(self, choice: dict[str, Any]) -> None:
        delta = choice.get("delta") or choice.get("message")  # a whole completion: the message
        if delta:
            if not isinstance(delta, dict):
                raise self._malformed("a choice's delta", "an object")
            reasoning = delta.get("reasoning_content")
            if reasoning is None:
                reasoning = delta.get("reasoning")  # OpenRouter, GLM-5, newer vLLM
            details = delta.get("reasoning_details")
            if details:
                self._reasoning_details(details, reasoning)
            elif reasoning and isinstance(reasoning, str):
                self._reasoning(reasoning)
            content = delta.get("content")
            if content:
                if isinstance(content, str):
                    self._content(content)
                elif isinstance(content, list):
                    self._content_chunks(content)
            tool_calls = delta.get("tool_calls")
            if tool_calls:
                if not isinstance(tool_calls, list):
                    raise self._malformed("tool_calls", "a list")
                for tc in tool_calls:
                    if isinstance(tc, dict):  # rule 7
                        self._tool_call_delta(tc)
        usage = choice.get("usage")  # Kimi puts usage inside the choice
        if usage:
            self._usage = responses_usage(usage) or self._usage
        reason = choice.get("finish_reason")
        if reason and isinstance(reason, str):
            if reason == "error":  # OpenRouter: a provider died mid-stream
                raise StreamFailure(
                    "server_error", f"{self._upstream} reported an error mid-stream"
                )
            self._finish_reason = reason

    def _reasoning_details(self, details: object, reasoning: object) -> None:
        """OpenRouter's typed ``reasoning_details``: kept with the reasoning item they came with
        (rule 5); their text is the reasoning when no plain field carries it."""
        if not isinstance(details, list):
            raise self._malformed("reasoning_details", "a list")
        kept = [d for d in details if isinstance(d, dict)]
        if not isinstance(reasoning, str) or not reasoning:
            reasoning = "".join(map(_detail_text, kept))
        item = self._reasoning(reasoning)  # "": an encrypted block alone opens the item
        if item is not None:
            item.details += kept  # this item's own (rule 5)

    def _malformed(self, what: str, shape: str) -> StreamFailure:
        return StreamFailure(
            "upstream_protocol_error", f"{self._upstream} sent {what} that is not {shape}"
        )

    # ----------------------------------------------------------------- reasoning and text

    def _reasoning(self, text: str) -> ReasoningItem | None:
        """Feeds the open reasoning item, opening one first if needed (rule 1)."""
        if self._summary is not None:
            return None  # a compaction answer is one summary item: thinking is not part of it
        item = self._open
        if not isinstance(item, ReasoningItem):
            self._close_open()
            item = self._reasoning_item(self._w, self._new_id("rs"), self._take_index())
            item.open()
            self._open = item
        if text:
            item.add(text)
        return item

    def _content(self, text: str) -> None:
        """Visible text as the upstream streams it: split at think tags first if the profile
        says its server leaves them in (core/think_tags.py)."""
        think = self._think
        if think is None:
            self._text(text)
            return
        for kind, piece in think.feed(text):
            self._reasoning(piece) if kind == "reasoning" else self._text(piece)

    def _content_chunks(self, chunks: list[Any]) -> None:
        """``content`` as a list of typed chunks: Mistral's reasoning models stream their
        thinking so (``[{"type": "thinking", "thinking": [{"type": "text", "text": …}]}]``),
        then plain strings (docs/providers.md §1.1). A ``thinking`` chunk is reasoning, a
        ``text`` chunk is content; other kinds (references, images) have nothing to show."""
        for part in chunks:
            if isinstance(part, dict):
                kind = part.get("type")
                if kind == "text":
                    text = part.get("text")
                    if text and isinstance(text, str):
                        self._content(text)
                elif kind == "thinking":
                    self._thinking_chunk(part.get("thinking"))

    def _thinking_chunk(self, thinking: object) -> None:
        if not thinking:
            return
        if not isinstance(thinking, list):
            raise self._malformed("a thinking chunk's thinking", "a list")
        for inner in thinking:
            if isinstance(inner, dict) and inner.get("type") == "text":
                text = inner.get("text")
                if text and isinstance(text, str):
                    self._reasoning(text)

    def _text(self, text: str) -> None:
        if self._summary is not None:
            self._summary.append(text)  # becomes the sealed compaction item at the end
            return
        item = self._open
        if not isinstance(item, MessageItem):
            self._close_open()
            item = MessageItem(self._w, self._new_id("msg"), self._take_index())
            item.open()
            self._open = item
        item.add(text)

    def _close_open(self) -> None:
        item, self._open = self._open, None
        if item is None:
            return
        finished = item.close()
        if self._carrier is not None and isinstance(item, ReasoningItem):
            self._unsealed.append((item, finished))  # rule 5: done once its calls are known
        else:
            self._finish(item.output_index, finished)

    # ----------------------------------------------------------------- tool calls

    def _tool_call_delta(self, tc: dict[str, Any]) -> None:
        if self._summary is not None:
            return  # no tools were offered for a compaction; a stray call is not a summary
        fn = tc.get("function") or _NO_FIELDS
        if not isinstance(fn, dict):
            raise self._malformed("a tool call's function", "an object")
        call = self._call_for(tc, fn)
        name = fn.get("name")
        if isinstance(name, str) and name and name != call.name:
            if call.item is not None:
                # Some servers repeat the name on every delta; a different one mid-call is a
                # protocol error we cannot represent.
                raise StreamFailure(
                    "invalid_tool_call",
                    f"{self._upstream} renamed tool call {call.item.call_id} mid-stream",
                )
            call.name += name
        extra = tc.get("extra_content")
        if extra:
            signature = self._thought_signature(extra)
            if signature is not None:
                call.signature = signature
        args = fn.get("arguments")
        if not isinstance(args, str):
            args = ""
        if args:
            call.args.append(args)
        if call.item is not None:
            if args:
                call.item.add(args)
        elif call.name:
            call.item = self._open_call(call)
            if call.args:
                call.item.add("".join(call.args))  # what came before the name

    def _thought_signature(self, extra: object) -> str | None:
        """Gemini's ``extra_content.google.thought_signature`` on a call
        (docs/providers.md §1.2), or None."""
        if not isinstance(extra, dict):
            raise self._malformed("a tool call's extra_content", "an object")
        google = extra.get("google")
        if not google:
            return None
        if not isinstance(google, dict):
            raise self._malformed("a tool call's extra_content.google", "an object")
        signature = google.get("thought_signature")
        return signature if isinstance(signature, str) else None

    def _call_for(self, tc: dict[str, Any], fn: dict[str, Any]) -> _UpstreamCall:
        index = tc.get("index")
        upstream_id = tc.get("id")
        if not upstream_id or not isinstance(upstream_id, str):
            upstream_id = None  # rule 7: a scalar of another type counts as absent
        if not isinstance(index, int):
            # Gemini sends no index: an id names the call; a delta with neither continues
            # the last call.
            if upstream_id and upstream_id in self._by_upstream_id:
                return self._by_upstream_id[upstream_id]
            if not upstream_id and self._calls and not fn.get("name"):
                return self._calls[-1]
            return self._new_call(upstream_id, None)
        call = self._by_index.get(index)
        if call is None or (upstream_id and call.upstream_id and upstream_id != call.upstream_id):
            return self._new_call(upstream_id, index)
        if upstream_id and not call.upstream_id:
            call.upstream_id = upstream_id
        return call

    def _new_call(self, upstream_id: str | None, index: int | None) -> _UpstreamCall:
        call = _UpstreamCall(upstream_id)
        self._calls.append(call)
        if index is not None:
            self._by_index[index] = call
        if upstream_id:
            self._by_upstream_id[upstream_id] = call
        return call

    def _open_call(self, call: _UpstreamCall) -> CallItem:
        self._close_open()
        if call.signature is not None and self._carrier is not None and not self._unsealed:
            self._unsealed.append(self._signature_item())  # rule 5: none precedes this call
        call_id = self._client_call_id(call.upstream_id)
        origin = self._ctx.tools.get(call.name)
        index = self._take_index()
        kind = CALL_ITEMS[origin.kind if origin is not None else ToolKind.FUNCTION]
        item = kind(
            self._w,
            self._new_id(kind.ID_PREFIX),
            index,
            call_id=call_id,
            upstream_name=call.name,
            origin=origin,
            upstream=self._upstream,
        )
        item.open()
        return item

    def _client_call_id(self, upstream_id: str | None) -> str:
        """A valid Responses call id. Kimi's ``functions.name:0`` is not one; the map lets the
        request side restore the upstream's id if a provider needs it back."""
        if upstream_id and _VALID_CALL_ID.match(upstream_id):
            return upstream_id
        if upstream_id:
            call_id = "call_" + _INVALID_ID_CHARS.sub("_", upstream_id)[:59]
            self.call_id_map[call_id] = upstream_id
            return call_id
        return self._new_id("call")

    def _whole_calls(self, truncated: bool) -> list[tuple[CallItem, str | None, str, object]]:
        """Every call that is whole: its item, Gemini signature, stripped arguments and their
        JSON value, checked before any call closes (rule 2). Raises ``StreamFailure`` for a
        call that is not."""
        whole = []
        for call in self._calls:
            arguments = "".join(call.args).strip()
            try:
                parsed = _loads(arguments or "{}")
            except ValueError:
                parsed = _UNPARSED
            if truncated and parsed is _UNPARSED:
                continue  # cut by the length limit: never whole, never sent
            if not call.name:
                raise StreamFailure(
                    "invalid_tool_call",
                    f"{self._upstream} sent a tool call without a function name",
                )
            if parsed is _UNPARSED:
                raise StreamFailure(
                    "invalid_tool_call",
                    f"{self._upstream} sent tool call {call.name!r} with arguments that are "
                    "not valid JSON",
                )
            assert call.item is not None  # a call opens as soon as it has a name
            whole.append((call.item, call.signature, arguments, parsed))
        return whole

    # ----------------------------------------------------------------- terminal events

    def _complete(self) -> None:
        assert self.phase is Phase.STREAMING  # every caller stops once the stream is DONE
        if self._think is not None:
            for kind, piece in self._think.flush():
                self._reasoning(piece) if kind == "reasoning" else self._text(piece)
        reason = self._finish_reason
        if reason is None:  # even calls whose arguments parse were cut (rule 3)
            raise StreamFailure(
                "upstream_stream_incomplete",
                f"{self._upstream} ended the stream without a finish_reason",
            )
        truncated = reason == "length"
        if self._summary is not None:
            self._compaction_item()
            self._terminal(
                "incomplete" if truncated else "completed",
                {"reason": "max_output_tokens"} if truncated else None,
            )
            return
        self._close_open()
        calls = self._whole_calls(truncated)
        self._seal_reasoning([(item, signature) for item, signature, _, _ in calls])
        for item, _, arguments, parsed in calls:
            self._finish(item.output_index, item.close(arguments, parsed))
        if truncated:
            self._terminal("incomplete", {"reason": "max_output_tokens"})
        elif reason == "content_filter":
            self._terminal("incomplete", {"reason": "content_filter"})
        else:
            # "stop" with tool calls is Gemini's way (docs/providers.md §1.3): a call is a call.
            self._terminal("completed", None)

    def _compaction_item(self) -> None:
        """Codex's built-in provider needs exactly one ``compaction`` item back
        (docs/codex-contract.md §9); its blob is the upstream's summary, sealed."""
        summary = "".join(self._summary or ())
        if not summary.strip():
            raise StreamFailure("empty_compaction", f"{self._upstream} returned an empty summary")
        if self._carrier is None:
            raise StreamFailure("relay_misconfigured", "remote compaction needs the relay's key")
        index = self._take_index()
        item = CompactionItem(
            self._w, self._new_id("cmp"), index, self._carrier.seal_compaction(summary)
        )
        item.open()
        self._finish(index, item.close())

    def _signature_item(self) -> tuple[ReasoningItem, dict[str, Any]]:
        """A reasoning item without text, opened and closed, to be sealed like any other."""
        item = SignatureItem(self._w, self._new_id("rs"), self._take_index())
        item.open()
        return item, item.close()

    def _seal_reasoning(self, whole: list[tuple[CallItem, str | None]]) -> None:
        """Seal each reasoning item held back with what the next request must send back: its
        text, its own provider details and the whole calls that follow it (rule 5; a call cut
        by the length limit is never sent, so never named); then send its output_item.done."""
        carrier = self._carrier
        if carrier is None:
            return  # nothing is held back without a carrier
        opened = sorted(whole, key=lambda pair: pair[0].output_index)
        held = self._unsealed
        groups = []
        for n, (reasoning, finished) in enumerate(held):
            start = reasoning.output_index
            bound = held[n + 1][0].output_index if n + 1 < len(held) else self._opened
            calls = [(c, s) for c, s in opened if start < c.output_index < bound]
            groups.append((reasoning, finished, calls))
        first = held[0][0].output_index if held else self._opened
        before = [(c, s) for c, s in opened if c.output_index < first]
        if any(s for _, s in before):  # signed only after the call opened (rule 5)
            groups.append((*self._signature_item(), before))
        for reasoning, finished, calls in groups:
            finished["encrypted_content"] = carrier.seal(
                ReasoningPayload(
                    text=reasoning.text,
                    details=tuple(reasoning.details),
                    signatures={c.call_id: s for c, s in calls if s},
                    call_ids=tuple(c.call_id for c, _ in calls),
                )
            )
            self._finish(reasoning.output_index, finished)
        held.clear()

    def _fail_on(self, error: Exception, what: str) -> None:
        if isinstance(error, StreamFailure | RelayError):
            self._fail(error.code, error.message)
            return
        logger.exception(what)
        self._fail("relay_internal_error", f"relay failed to translate the stream: {error!r}")

    def _fail(self, reason: str, message: str) -> None:
        assert self.phase is Phase.STREAMING  # every caller stops once the stream is DONE
        code = reason if reason in WIRE_ERROR_CODES else "server_error"
        if code != reason and not message.startswith(reason):
            message = f"{reason}: {message}"
        # Only items already finished stay in the output (rule 2).
        self.response = self._response_object("failed", error={"code": code, "message": message})
        self._w.event({"type": TERMINAL_EVENTS["failed"], "response": self.response})
        self.phase = Phase.DONE
        logger.debug("response %s failed: %s: %s", self._response_id, code, message)

    def _terminal(self, status: str, incomplete: Mapping[str, str] | None) -> None:
        self.response = self._response_object(status, incomplete_details=incomplete)
        self._w.event({"type": TERMINAL_EVENTS[status], "response": self.response})
        self.phase = Phase.DONE

    # ----------------------------------------------------------------- plumbing

    def _take_index(self) -> int:
        index = self._opened
        self._opened += 1
        return index

    def _finish(self, index: int, item: dict[str, Any]) -> None:
        self._done[index] = item
        self._w.event({"type": OUTPUT_ITEM_DONE, "output_index": index, "item": item})

    def _response_object(
        self,
        status: str,
        *,
        error: Mapping[str, str] | None = None,
        incomplete_details: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """A Response object as OpenAI's API sends it, the request's parameters echoed."""
        echo = self._ctx.response_echo
        response: dict[str, Any] = {
            "id": self._response_id,
            "object": "response",
            "created_at": self._created_at,
            "status": status,
            "error": dict(error) if error else None,
            "incomplete_details": dict(incomplete_details) if incomplete_details else None,
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
