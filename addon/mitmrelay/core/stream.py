"""Chat Completions SSE in, Responses SSE out: the incremental stream translator.

Theory of operation
-------------------
``feed()`` takes upstream bytes in any chunking; the SSE decoder turns them into events, each
``data:`` JSON is parsed once with ``json.loads`` (no pydantic per chunk: the hot-path budget in
DEVELOPERS.md), and the few fields we need are read off the dict. What comes out is Responses
events in the order OpenAI's API emits them, each with a ``sequence_number``.

Rules:

1. Items open in upstream order and get consecutive ``output_index`` values. Reasoning and text
   are single open items: a new kind of output closes the open one (``*.done`` events, then
   ``output_item.done``). Tool calls stay open until the upstream finishes, because parallel
   calls may interleave and a call is only whole once its arguments parse.
2. Codex records an item only on ``response.output_item.done`` (codex-contract.md §7.2), so no
   ``output_item.done`` is ever sent for a half-built item: a call without a name or with
   arguments that do not parse fails the whole response instead.
3. Exactly one terminal event per stream: ``response.completed``, ``response.incomplete``
   (``finish_reason`` length / content_filter) or ``response.failed``. A stream that ends
   without a ``finish_reason``, sends invalid JSON or an ``{"error": …}`` chunk, is failed:
   never a fake ``completed`` (providers.md §3, item 6).
4. Tool-call deltas are accumulated per (index, id): a delta without ``index`` (Gemini), or a
   new ``id`` at a used index (vLLM parallel calls on index 0), starts a new call
   (providers.md §1.3).
5. Nothing raises out of ``feed``/``finish``/``fail``: an internal error becomes
   ``response.failed`` (mitmproxy drops a chunk when a stream callable raises:
   mitmproxy-notes.md §5).
"""

from __future__ import annotations

import enum
import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

from .context import ToolOrigin, TranslationContext
from .errors import RelayError
from .freeform_input import FreeformInputDecoder
from .profiles import GENERIC, Profile
from .reasoning import ReasoningCarrier, ReasoningPayload
from .sse import SSEDecoder, encode_event
from .think_tags import ThinkTagSplitter
from .upstream_errors import map_error_payload
from .usage import responses_usage

logger = logging.getLogger(__name__)

ReasoningMode = Literal["summary", "raw", "hidden"]

# Codes a response.failed may carry: the ones Codex acts on (codex-contract.md §8) and the
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
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class Phase(enum.Enum):
    NEW = "new"  # nothing sent yet
    STREAMING = "streaming"  # response.created sent
    DONE = "done"  # a terminal event sent; everything after is ignored


class _Failure(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class _ToolCall:
    __slots__ = (
        "arguments",
        "call_id",
        "decoder",
        "emitted_input",
        "item_id",
        "name",
        "origin",
        "output_index",
        "signature",
        "upstream_id",
    )

    def __init__(self, upstream_id: str | None):
        self.upstream_id = upstream_id
        self.name = ""
        self.arguments = ""
        self.call_id = ""
        self.item_id = ""
        self.output_index = -1  # -1 until output_item.added was sent (needs the name)
        self.origin: ToolOrigin | None = None
        self.decoder: FreeformInputDecoder | None = None
        self.emitted_input = ""
        self.signature: str | None = None


class StreamTranslator:
    """One upstream Chat Completions stream -> one Responses event stream.

    ``new_id(prefix)`` makes item ids, ``created_at`` is the response's unix time: both
    injected, so output is byte-identical for identical input. ``upstream`` names the upstream
    in error messages.
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
        self._ctx = ctx
        self._response_id = response_id
        self._created_at = created_at
        self._new_id = new_id
        self._mode = reasoning_mode
        self._carrier = carrier
        self._upstream = upstream
        self._decoder = SSEDecoder()
        self._think = ThinkTagSplitter() if profile.think_tags else None
        self.phase = Phase.NEW
        self._seq = 0
        self._out: list[bytes] = []
        self._finished: dict[int, dict[str, Any]] = {}  # output_index -> finished item
        self._deferred: list[int] = []  # reasoning items waiting for their sealed blob
        self._next_index = 0
        # open reasoning item
        self._rs_id: str | None = None
        self._rs_index = -1
        self._rs_text: list[str] = []
        self._rs_details: list[Mapping[str, Any]] = []
        # open message item
        self._msg_id: str | None = None
        self._msg_index = -1
        self._msg_text: list[str] = []
        # tool calls
        self._calls: list[_ToolCall] = []
        self._by_index: dict[int, _ToolCall] = {}
        self._by_upstream_id: dict[str, _ToolCall] = {}
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
        return self._next_index > 0

    def continue_from(self, previous: StreamTranslator) -> None:
        """Take over the client's stream from ``previous``, an attempt that failed before any
        output item: what it sent (``response.created``, keep-alives) stands, so this
        translator sends no second ``response.created`` and numbers its events on from there.
        Raises ``ValueError`` if ``previous`` already sent an output item or if this
        translator has started."""
        if previous.has_output:
            raise ValueError("the previous attempt already sent output items")
        if self.phase is not Phase.NEW:
            raise ValueError("this translator has already started")
        if previous.phase is not Phase.NEW:
            self.phase = Phase.STREAMING
        self._seq = previous._seq
        if previous.phase is Phase.DONE:
            # Its terminal event (response.failed) never reached the client: a stream has one,
            # and this one goes on. The link withholds it, so numbering resumes at its number.
            self._seq -= 1
        self._response_id = previous._response_id
        self._created_at = previous._created_at
        self.response = self._response_object("in_progress")

    def start(self) -> bytes:
        """``response.created`` + ``response.in_progress``; idempotent. May be sent before the
        upstream's first byte so the client sees progress at once."""
        self._start()
        return self._drain()

    def _start(self) -> None:
        if self.phase is Phase.NEW:
            self.phase = Phase.STREAMING
            snapshot = self._response_object("in_progress")
            self._emit({"type": "response.created", "response": snapshot})
            self._emit({"type": "response.in_progress", "response": snapshot})

    def feed(self, data: bytes) -> bytes:
        """Upstream bytes in, Responses SSE bytes out (``b""`` when nothing is complete)."""
        if self.phase is Phase.DONE or not data:
            return b""
        try:
            self._start()
            for event in self._decoder.feed(data):
                self._on_event(event.data)
                if self.phase is Phase.DONE:
                    break
        except _Failure as f:
            self._fail(f.code, f.message)
        except RelayError as e:
            self._fail(e.code, e.message)
        except Exception as e:  # rule 5: never raise into the host
            logger.exception("stream translation failed")
            self._fail("relay_internal_error", f"relay failed to translate the stream: {e!r}")
        return self._drain()

    def finish(self) -> bytes:
        """The upstream body ended. Emits the terminal event if none was sent."""
        if self.phase is Phase.DONE:
            return b""
        try:
            self._start()
            for event in self._decoder.close():
                self._on_event(event.data)
                if self.phase is Phase.DONE:
                    return self._drain()
            self._complete()
        except _Failure as f:
            self._fail(f.code, f.message)
        except RelayError as e:
            self._fail(e.code, e.message)
        except Exception as e:
            logger.exception("stream translation failed at the end")
            self._fail("relay_internal_error", f"relay failed to translate the stream: {e!r}")
        return self._drain()

    def keepalive(self) -> bytes:
        """A sign of life for a client waiting through upstream silence: ``response.created``
        if nothing was sent yet, else ``response.in_progress`` again (its output left empty,
        as in the first one). An SSE comment would not do: Codex's idle timer only counts
        events its SSE parser yields, and comments yield none (codex-contract.md §7.1)."""
        if self.phase is Phase.NEW:
            return self.start()
        if self.phase is Phase.DONE:
            return b""
        self._emit(
            {"type": "response.in_progress", "response": self._response_object("in_progress")}
        )
        return self._drain()

    def fail(self, code: str, message: str) -> bytes:
        """A failure outside the stream (timeout, connection cut): ``response.failed``."""
        if self.phase is Phase.DONE:
            return b""
        self._start()
        self._fail(code, message)
        return self._drain()

    # ----------------------------------------------------------------- upstream events

    def _on_event(self, data: str) -> None:
        if data == "[DONE]":
            self._complete()
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            raise _Failure(
                "upstream_invalid_json", f"{self._upstream} sent a stream chunk that is not JSON"
            ) from None
        if not isinstance(chunk, dict):
            raise _Failure("upstream_invalid_json", f"{self._upstream} sent a non-object chunk")
        error = chunk.get("error")
        if error:
            mapped = map_error_payload(
                error if isinstance(error, Mapping) else {"message": str(error)},
                upstream=self._upstream,
            )
            raise _Failure(mapped.code, mapped.message)
        usage = chunk.get("usage")
        if usage:
            self._usage = responses_usage(usage) or self._usage
        for choice in chunk.get("choices") or ():
            self._on_choice(choice)

    def _on_choice(self, choice: Mapping[str, Any]) -> None:
        delta = choice.get("delta") or choice.get("message") or {}
        reasoning = delta.get("reasoning_content")
        if reasoning is None:
            reasoning = delta.get("reasoning")  # OpenRouter, GLM-5, newer vLLM
        details = delta.get("reasoning_details")
        if details:
            self._rs_details.extend(d for d in details if isinstance(d, Mapping))
            if not isinstance(reasoning, str) or not reasoning:
                reasoning = "".join(
                    d.get("text") or d.get("summary") or ""
                    for d in details
                    if isinstance(d, Mapping)
                )
                if not reasoning:
                    self._reasoning("")  # an encrypted block alone still opens the item
        if isinstance(reasoning, str) and reasoning:
            self._reasoning(reasoning)
        content = delta.get("content")
        if isinstance(content, str) and content:
            if self._think is None:
                self._text(content)
            else:
                for kind, piece in self._think.feed(content):
                    self._reasoning(piece) if kind == "reasoning" else self._text(piece)
        tool_calls = delta.get("tool_calls")
        if tool_calls:
            for tc in tool_calls:
                if isinstance(tc, Mapping):
                    self._tool_call_delta(tc)
        usage = choice.get("usage")  # Kimi puts usage inside the choice
        if usage:
            self._usage = responses_usage(usage) or self._usage
        reason = choice.get("finish_reason")
        if reason:
            if reason == "error":  # OpenRouter: a provider died mid-stream
                raise _Failure("server_error", f"{self._upstream} reported an error mid-stream")
            self._finish_reason = reason

    # ----------------------------------------------------------------- reasoning

    def _reasoning(self, text: str) -> None:
        if self._summary is not None:
            return  # a compaction answer is one summary item: thinking is not part of it
        if self._msg_id is not None:
            self._close_message()
        if self._rs_id is None:
            self._rs_id = self._new_id("rs")
            self._rs_index = self._take_index()
            item: dict[str, Any] = {"id": self._rs_id, "type": "reasoning", "summary": []}
            if self._mode == "raw":
                item["content"] = []
            self._emit(
                {"type": "response.output_item.added", "output_index": self._rs_index, "item": item}
            )
            if self._mode == "summary":
                self._emit(
                    {
                        "type": "response.reasoning_summary_part.added",
                        "item_id": self._rs_id,
                        "output_index": self._rs_index,
                        "summary_index": 0,
                        "part": {"type": "summary_text", "text": ""},
                    }
                )
        if not text:
            return
        self._rs_text.append(text)
        if self._mode == "summary":
            self._emit_delta(
                "response.reasoning_summary_text.delta",
                self._rs_id,
                self._rs_index,
                text,
                ',"summary_index":0',
            )
        elif self._mode == "raw":
            self._emit_delta(
                "response.reasoning_text.delta",
                self._rs_id,
                self._rs_index,
                text,
                ',"content_index":0',
            )

    def _close_reasoning(self) -> None:
        if self._rs_id is None:
            return
        text = "".join(self._rs_text)
        item_id, index = self._rs_id, self._rs_index
        item: dict[str, Any] = {"id": item_id, "type": "reasoning", "summary": []}
        if self._mode == "summary":
            part = {"type": "summary_text", "text": text}
            base = {"item_id": item_id, "output_index": index, "summary_index": 0}
            self._emit({"type": "response.reasoning_summary_text.done", **base, "text": text})
            self._emit({"type": "response.reasoning_summary_part.done", **base, "part": part})
            item["summary"] = [part]
        else:
            if self._mode == "raw":
                self._emit(
                    {
                        "type": "response.reasoning_text.done",
                        "item_id": item_id,
                        "output_index": index,
                        "content_index": 0,
                        "text": text,
                    }
                )
            # Hidden or raw: the text still rides in the item, so Codex replays it
            # (codex-contract.md §7.3) and the next request can send it back.
            item["content"] = [{"type": "reasoning_text", "text": text}]
        self._rs_id = None
        self._rs_text = []
        if self._carrier is None:
            self._finish_item(index, item)
        else:
            # The sealed blob names the calls this reasoning precedes: its output_item.done
            # waits until they are known (summary deltas already showed the text live).
            self._finished[index] = item
            self._deferred.append(index)

    # ----------------------------------------------------------------- text

    def _text(self, text: str) -> None:
        if self._summary is not None:
            self._summary.append(text)  # becomes the sealed compaction item at the end
            return
        if self._rs_id is not None:
            self._close_reasoning()
        if self._msg_id is None:
            self._msg_id = self._new_id("msg")
            self._msg_index = self._take_index()
            self._emit(
                {
                    "type": "response.output_item.added",
                    "output_index": self._msg_index,
                    "item": {
                        "id": self._msg_id,
                        "type": "message",
                        "status": "in_progress",
                        "role": "assistant",
                        "content": [],
                    },
                }
            )
            self._emit(
                {
                    "type": "response.content_part.added",
                    "item_id": self._msg_id,
                    "output_index": self._msg_index,
                    "content_index": 0,
                    "part": _output_text(""),
                }
            )
        self._msg_text.append(text)
        self._emit_delta(
            "response.output_text.delta",
            self._msg_id,
            self._msg_index,
            text,
            ',"content_index":0',
            ',"logprobs":[]',
        )

    def _close_message(self) -> None:
        if self._msg_id is None:
            return
        text = "".join(self._msg_text)
        item_id, index = self._msg_id, self._msg_index
        base = {"item_id": item_id, "output_index": index, "content_index": 0}
        self._emit({"type": "response.output_text.done", **base, "text": text, "logprobs": []})
        self._emit({"type": "response.content_part.done", **base, "part": _output_text(text)})
        item = {
            "id": item_id,
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [_output_text(text)],
        }
        self._msg_id, self._msg_text = None, []
        self._finish_item(index, item)

    # ----------------------------------------------------------------- tool calls

    def _tool_call_delta(self, tc: Mapping[str, Any]) -> None:
        if self._summary is not None:
            return  # no tools were offered for a compaction; a stray call is not a summary
        call = self._call_for(tc)
        fn = tc.get("function") or {}
        name = fn.get("name")
        if isinstance(name, str) and name and name != call.name:
            if call.output_index >= 0:
                # Some servers repeat the name on every delta; a different one mid-call is a
                # protocol error we cannot represent.
                raise _Failure(
                    "invalid_tool_call",
                    f"{self._upstream} renamed tool call {call.call_id} mid-stream",
                )
            call.name += name
        signature = ((tc.get("extra_content") or {}).get("google") or {}).get("thought_signature")
        if isinstance(signature, str):
            call.signature = signature  # Gemini: must go back with this call (providers.md §1.2)
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            call.arguments += args
        if call.output_index < 0 and call.name:
            self._open_call(call)
            if call.arguments:
                self._call_progress(call, call.arguments)
        elif call.output_index >= 0 and isinstance(args, str) and args:
            self._call_progress(call, args)

    def _call_for(self, tc: Mapping[str, Any]) -> _ToolCall:
        index = tc.get("index")
        upstream_id = tc.get("id") or None
        if not isinstance(index, int):
            # Gemini sends no index: an id names the call; a delta with neither continues
            # the last call.
            if upstream_id and upstream_id in self._by_upstream_id:
                return self._by_upstream_id[upstream_id]
            if not upstream_id and self._calls and not (tc.get("function") or {}).get("name"):
                return self._calls[-1]
            return self._new_call(upstream_id, None)
        call = self._by_index.get(index)
        if call is None or (upstream_id and call.upstream_id and upstream_id != call.upstream_id):
            return self._new_call(upstream_id, index)
        if upstream_id and not call.upstream_id:
            call.upstream_id = upstream_id
        return call

    def _new_call(self, upstream_id: str | None, index: int | None) -> _ToolCall:
        call = _ToolCall(upstream_id)
        self._calls.append(call)
        if index is not None:
            self._by_index[index] = call
        if upstream_id:
            self._by_upstream_id[upstream_id] = call
        return call

    def _open_call(self, call: _ToolCall) -> None:
        if self._rs_id is not None:
            self._close_reasoning()
        if self._msg_id is not None:
            self._close_message()
        call.call_id = self._client_call_id(call.upstream_id)
        call.origin = self._ctx.tools.get(call.name)
        call.output_index = self._take_index()
        origin = call.origin
        if origin is not None and origin.freeform:
            call.item_id = self._new_id("ctc")
            call.decoder = FreeformInputDecoder(origin.input_param)
            item: dict[str, Any] = {
                "id": call.item_id,
                "type": "custom_tool_call",
                "status": "in_progress",
                "call_id": call.call_id,
                "name": origin.name,
                "input": "",
            }
        else:
            call.item_id = self._new_id("fc")
            item = {
                "id": call.item_id,
                "type": "function_call",
                "status": "in_progress",
                "call_id": call.call_id,
                "name": origin.name if origin else call.name,
                "arguments": "",
            }
        if origin is not None and origin.namespace:
            item["namespace"] = origin.namespace
        self._emit(
            {"type": "response.output_item.added", "output_index": call.output_index, "item": item}
        )

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

    def _call_progress(self, call: _ToolCall, args: str) -> None:
        if call.decoder is not None:
            piece = call.decoder.feed(call.arguments)
            if piece:
                call.emitted_input += piece
                self._emit_delta(
                    "response.custom_tool_call_input.delta", call.item_id, call.output_index, piece
                )
            return
        self._emit_delta(
            "response.function_call_arguments.delta", call.item_id, call.output_index, args
        )

    def _check_call(self, call: _ToolCall) -> None:
        if not call.name:
            raise _Failure(
                "invalid_tool_call", f"{self._upstream} sent a tool call without a function name"
            )
        if not _parses(call.arguments):
            raise _Failure(
                "invalid_tool_call",
                f"{self._upstream} sent tool call {call.name!r} with arguments that are not "
                "valid JSON",
            )
        if call.output_index < 0:
            self._open_call(call)

    def _close_call(self, call: _ToolCall) -> None:
        arguments = call.arguments.strip() or "{}"
        parsed = json.loads(arguments)
        origin = call.origin
        item: dict[str, Any]
        if call.decoder is not None and origin is not None:
            text = _freeform_input(parsed, origin.input_param)
            if text is None:
                raise _Failure(
                    "invalid_tool_call",
                    f"{self._upstream} called freeform tool {origin.name!r} without a string "
                    f"{origin.input_param!r} argument",
                )
            if text.startswith(call.emitted_input):
                rest = text[len(call.emitted_input) :]
                if rest:
                    self._emit_delta(
                        "response.custom_tool_call_input.delta",
                        call.item_id,
                        call.output_index,
                        rest,
                    )
            else:  # unreachable for well-formed JSON; the final parse is authoritative
                logger.debug("freeform input prefix mismatch for %s", call.call_id)
            self._emit(
                {
                    "type": "response.custom_tool_call_input.done",
                    "item_id": call.item_id,
                    "output_index": call.output_index,
                    "input": text,
                }
            )
            item = {
                "id": call.item_id,
                "type": "custom_tool_call",
                "status": "completed",
                "call_id": call.call_id,
                "name": origin.name,
                "input": text,
            }
        else:
            if not call.arguments.strip():  # no arguments streamed: send what we assume
                self._emit_delta(
                    "response.function_call_arguments.delta",
                    call.item_id,
                    call.output_index,
                    arguments,
                )
            self._emit(
                {
                    "type": "response.function_call_arguments.done",
                    "item_id": call.item_id,
                    "output_index": call.output_index,
                    "arguments": arguments,
                }
            )
            item = {
                "id": call.item_id,
                "type": "function_call",
                "status": "completed",
                "call_id": call.call_id,
                "name": origin.name if origin else call.name,
                "arguments": arguments,
            }
        if origin is not None and origin.namespace:
            item["namespace"] = origin.namespace
        self._finish_item(call.output_index, item)

    # ----------------------------------------------------------------- terminal events

    def _complete(self) -> None:
        if self.phase is Phase.DONE:
            return
        if self._think is not None:
            for kind, piece in self._think.flush():
                self._reasoning(piece) if kind == "reasoning" else self._text(piece)
        reason = self._finish_reason
        if reason is None and not self._calls:
            raise _Failure(
                "upstream_stream_incomplete",
                f"{self._upstream} ended the stream without a finish_reason",
            )
        truncated = reason == "length"
        if reason is None:
            # Even with calls whose arguments parse, a stream without any finish_reason was
            # cut (rule 3).
            raise _Failure(
                "upstream_stream_incomplete",
                f"{self._upstream} ended the stream without a finish_reason",
            )
        if self._summary is not None:
            self._compaction_item()
            self._terminal(
                "incomplete" if truncated else "completed",
                {"reason": "max_output_tokens"} if truncated else None,
            )
            return
        self._close_reasoning()
        self._close_message()
        calls = [c for c in self._calls if not (truncated and not _parses(c.arguments))]
        for call in calls:  # validate and open every call before anything is sealed
            self._check_call(call)
        self._seal_reasoning()
        for call in calls:
            self._close_call(call)
        if truncated:
            self._terminal("incomplete", {"reason": "max_output_tokens"})
        elif reason == "content_filter":
            self._terminal("incomplete", {"reason": "content_filter"})
        else:
            # "stop" with tool calls is Gemini's way (providers.md §1.3): a call is a call.
            self._terminal("completed", None)

    def _compaction_item(self) -> None:
        """Codex's built-in provider needs exactly one ``compaction`` item back
        (codex-contract.md §9); its blob is the upstream's summary, sealed."""
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
        if self.phase is Phase.DONE:
            return
        self.phase = Phase.STREAMING
        code = reason if reason in WIRE_ERROR_CODES else "server_error"
        if code != reason and not message.startswith(reason):
            message = f"{reason}: {message}"
        # Only items already finished stay in the output (rule 2).
        self.response = self._response_object("failed", error={"code": code, "message": message})
        self._emit({"type": "response.failed", "response": self.response})
        self.phase = Phase.DONE
        logger.debug("response %s failed: %s: %s", self._response_id, code, message)

    def _terminal(self, status: str, incomplete: Mapping[str, str] | None) -> None:
        self.response = self._response_object(status, incomplete_details=incomplete)
        self._emit({"type": f"response.{status}", "response": self.response})
        self.phase = Phase.DONE

    def _seal_reasoning(self) -> None:
        """Seal each deferred reasoning item with what the next request must send back: its
        text, the provider extras and the calls that follow it; then send its done event."""
        starts = sorted(self._deferred)
        for n, index in enumerate(starts):
            bound = starts[n + 1] if n + 1 < len(starts) else self._next_index
            calls = sorted(
                (c for c in self._calls if index < c.output_index < bound),
                key=lambda c: c.output_index,
            )
            item = self._finished[index]
            assert self._carrier is not None
            item["encrypted_content"] = self._carrier.seal(
                ReasoningPayload(
                    text=_reasoning_text(item),
                    details=tuple(self._rs_details),
                    signatures={c.call_id: c.signature for c in calls if c.signature},
                    call_ids=tuple(c.call_id for c in calls),
                )
            )
            self._emit({"type": "response.output_item.done", "output_index": index, "item": item})
        self._deferred.clear()

    # ----------------------------------------------------------------- plumbing

    def _take_index(self) -> int:
        index = self._next_index
        self._next_index += 1
        return index

    def _finish_item(self, index: int, item: dict[str, Any]) -> None:
        self._finished[index] = item
        self._emit({"type": "response.output_item.done", "output_index": index, "item": item})

    @property
    def output(self) -> list[dict[str, Any]]:
        """Items whose output_item.done was sent, in output_index order."""
        deferred = set(self._deferred)
        return [self._finished[i] for i in sorted(self._finished) if i not in deferred]

    def _emit(self, event: dict[str, Any]) -> None:
        event["sequence_number"] = self._seq
        self._seq += 1
        self._out.append(encode_event(event))

    def _emit_delta(
        self, kind: str, item_id: str, index: int, delta: str, extra: str = "", tail: str = ""
    ) -> None:
        # The hot path: one template instead of a dict and a generic encode per delta.
        self._out.append(
            b'event: %s\ndata: {"type":"%s","sequence_number":%d,"item_id":"%s",'
            b'"output_index":%d%s,"delta":%s%s}\n\n'
            % (
                kind.encode(),
                kind.encode(),
                self._seq,
                item_id.encode(),
                index,
                extra.encode(),
                _dumps(delta).encode(),
                tail.encode(),
            )
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
            "output": list(self.output) if status != "in_progress" else [],
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


def _parses(arguments: str) -> bool:
    try:
        json.loads(arguments.strip() or "{}")
    except ValueError:
        return False
    return True


def _freeform_input(parsed: object, param: str) -> str | None:
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


def _reasoning_text(item: Mapping[str, Any]) -> str:
    parts = item.get("summary") or item.get("content") or ()
    return "".join(p.get("text", "") for p in parts)
