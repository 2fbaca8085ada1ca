"""A strict fake of the providers that serve ``/responses`` themselves: the only thing the
Responses-wire tests fake.

One ``Mode`` per family row of core/responses_wire/rules.py. A mode does two things the real
provider does:

- it **rejects** what that provider rejects, with its status and wording where a source gives
  them (cited at each check; ``[invented]`` marks a wording no source gives, where only the
  rejection itself is documented);
- it **answers** in that provider's dialect: its item ids, its reasoning shape
  (``reasoning_text`` content, summary parts, Ollama's plain thinking in
  ``encrypted_content``, OpenRouter's opaque blob), its usage shape, its sequence numbers
  (Z.ai leaves gaps and omits one), extra event types and SSE comments, ``[DONE]``, streamed
  or as one JSON Response.

What a model "says" is scripted as a ``Turn`` (reasoning, text, calls, and how the answer
ends); the pure renderers ``stream_for`` and ``response_for`` are used by the unit tests too,
so both test levels speak the same dialects. The server speaks HTTP/1.1 on 127.0.0.1 (port 0)
and records every request: ``with FakeResponses("deepseek") as fake: fake.url``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

# ----------------------------------------------------------------------------- the script


@dataclass(frozen=True)
class Reasoning:
    text: str


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Call:
    name: str
    arguments: str | dict[str, Any] = "{}"
    call_id: str = "call_1"
    namespace: str | None = None

    @property
    def args(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass(frozen=True)
class CustomCall:
    name: str
    input: str
    call_id: str = "call_1"


Output = Reasoning | Text | Call | CustomCall


@dataclass
class Turn:
    """One scripted answer.

    outputs:  what the model produces, in order.
    status:   how the response ends: completed, incomplete (``reason``) or failed (``error``).
    error_event: a streamed ``{"type": "error", ...}`` event sent before response.failed.
    cut_after: stop the stream after this many events, with no terminal event.
    http_status / body / headers: an HTTP error answer instead of a response.
    """

    outputs: list[Output] = field(default_factory=list)
    status: Literal["completed", "incomplete", "failed"] = "completed"
    reason: str = "max_output_tokens"
    error: dict[str, Any] | None = None
    error_event: dict[str, Any] | None = None
    cut_after: int | None = None
    usage: tuple[int, int, int, int] = (100, 20, 40, 7)  # input, output, cached, reasoning
    http_status: int = 200
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def say(text: str, *, reasoning: str = "") -> Turn:
    return Turn([*([Reasoning(reasoning)] if reasoning else []), Text(text)])


def call(name: str, arguments: dict[str, Any] | str, *, reasoning: str = "", **kw: Any) -> Turn:
    return Turn([*([Reasoning(reasoning)] if reasoning else []), Call(name, arguments, **kw)])


def http_error(
    status: int, body: dict[str, Any] | str, headers: dict[str, str] | None = None
) -> Turn:
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return Turn(http_status=status, body=raw, headers=headers or {})


# ----------------------------------------------------------------------------- dialects


@dataclass(frozen=True)
class Dialect:
    """How a family writes its answers.

    reasoning:  ``content`` (reasoning_text parts), ``summary`` (summary parts),
                ``encrypted_text`` (summary + the plain text again in encrypted_content),
                ``summary_blob`` (summary + an opaque encrypted_content only it can read).
    ids:        item id style: ``openai`` (rs_/msg_/fc_), ``uuid`` (DeepSeek), ``zai``.
    usage:      ``openai`` (with details), ``bare`` (no details), ``kimi`` (cache writes),
                ``vllm`` (an extra per-turn list in the details).
    sequence:   ``all`` (contiguous) or ``zai`` (gaps, none on output_text.done).
    """

    reasoning: Literal["content", "summary", "encrypted_text", "summary_blob"] = "summary"
    ids: Literal["openai", "uuid", "zai"] = "openai"
    usage: Literal["openai", "bare", "kimi", "vllm"] = "openai"
    sequence: Literal["all", "zai"] = "all"
    done_sentinel: bool = False
    comments: bool = False
    extra_events: bool = False
    namespaces: bool = False  # namespaced calls come back with their namespace


def _ids(dialect: Dialect, kind: str, n: int) -> str:
    if dialect.ids == "uuid":  # DeepSeek: bare UUIDs (vercel/ai deepseek-tool-call fixture)
        digest = hashlib.sha256(f"{kind}{n}".encode()).hexdigest()
        return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
    if dialect.ids == "zai":  # Z.ai: rs_resp_…, msg_resp_… (captured 2026-10-01)
        return f"{kind}_resp_{n}"
    return f"{kind}_{n}"


def _usage(dialect: Dialect, usage: tuple[int, int, int, int]) -> dict[str, Any]:
    i, o, cached, reasoning = usage
    if dialect.usage == "bare":  # Z.ai
        return {"input_tokens": i, "output_tokens": o, "total_tokens": i + o}
    details: dict[str, Any] = {"cached_tokens": cached}
    if dialect.usage == "kimi":  # platform.kimi.com Responses reference
        details["cache_write_tokens"] = i - cached
    if dialect.usage == "vllm":  # vLLM's InputTokensDetails.input_tokens_per_turn
        details["input_tokens_per_turn"] = [i]
    return {
        "input_tokens": i,
        "input_tokens_details": details,
        "output_tokens": o,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": i + o,
    }


def _pieces(text: str, size: int = 5) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


class _Renderer:
    """The events of one scripted turn in one dialect."""

    def __init__(self, dialect: Dialect, model: str, blobs: set[str]) -> None:
        self.d = dialect
        self.model = model
        self.blobs = blobs  # opaque reasoning blobs this provider made (summary_blob)
        self.events: list[dict[str, Any]] = []
        self.output: list[dict[str, Any]] = []
        self.truncated_at = -1  # the output index of an item cut by the token limit

    def response(self, status: str, **extra: Any) -> dict[str, Any]:
        return {
            "id": _ids(self.d, "resp", 0),
            "object": "response",
            "created_at": 1795530147,
            "model": self.model,
            "status": status,
            "output": list(self.output) if status != "in_progress" else [],
            **extra,
        }

    def add(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def item(self, index: int, out: Output) -> None:
        {Reasoning: self.reasoning, Text: self.text, Call: self.call, CustomCall: self.custom}[
            type(out)
        ](index, out)

    def reasoning(self, index: int, out: Reasoning) -> None:
        rid = _ids(self.d, "rs", index)
        as_content = self.d.reasoning == "content"
        item: dict[str, Any] = {
            "type": "reasoning",
            "id": rid,
            "status": "in_progress",
            "summary": [],
        }
        if as_content:
            item["content"] = []
        self.add({"type": "response.output_item.added", "output_index": index, "item": item})
        base = {"item_id": rid, "output_index": index}
        if as_content:
            part = {"type": "reasoning_text", "text": ""}
            self.add(
                {"type": "response.content_part.added", **base, "content_index": 0, "part": part}
            )
            for piece in _pieces(out.text):
                self.add(
                    {
                        "type": "response.reasoning_text.delta",
                        **base,
                        "content_index": 0,
                        "delta": piece,
                    }
                )
            self.add(
                {
                    "type": "response.reasoning_text.done",
                    **base,
                    "content_index": 0,
                    "text": out.text,
                }
            )
            done_part = {"type": "reasoning_text", "text": out.text}
            self.add(
                {
                    "type": "response.content_part.done",
                    **base,
                    "content_index": 0,
                    "part": done_part,
                }
            )
            final = {**item, "status": "completed", "content": [done_part]}
        else:
            part = {"type": "summary_text", "text": ""}
            self.add(
                {
                    "type": "response.reasoning_summary_part.added",
                    **base,
                    "summary_index": 0,
                    "part": part,
                }
            )
            for piece in _pieces(out.text):
                self.add(
                    {
                        "type": "response.reasoning_summary_text.delta",
                        **base,
                        "summary_index": 0,
                        "delta": piece,
                    }
                )
            self.add(
                {
                    "type": "response.reasoning_summary_text.done",
                    **base,
                    "summary_index": 0,
                    "text": out.text,
                }
            )
            done_part = {"type": "summary_text", "text": out.text}
            self.add(
                {
                    "type": "response.reasoning_summary_part.done",
                    **base,
                    "summary_index": 0,
                    "part": done_part,
                }
            )
            final = {**item, "status": "completed", "summary": [done_part]}
        final["encrypted_content"] = self.blob(out.text)
        self.done(index, final)

    def blob(self, text: str) -> str | None:
        if self.d.reasoning == "encrypted_text":  # Ollama: the plain thinking, again
            return text
        if self.d.reasoning == "summary_blob":
            blob = "gAAAAB-or-" + hashlib.sha256(text.encode()).hexdigest()[:24]
            self.blobs.add(blob)
            return blob
        return None

    def text(self, index: int, out: Text) -> None:
        mid = _ids(self.d, "msg", index)
        item = {
            "type": "message",
            "id": mid,
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        self.add({"type": "response.output_item.added", "output_index": index, "item": item})
        base = {"item_id": mid, "output_index": index, "content_index": 0}
        empty = {"type": "output_text", "text": "", "annotations": []}
        self.add({"type": "response.content_part.added", **base, "part": empty})
        if self.d.extra_events:  # an event type no client knows: must be dropped
            self.add({"type": "response.output_text.annotation.mystery", **base})
        for piece in _pieces(out.text):
            self.add({"type": "response.output_text.delta", **base, "delta": piece})
        self.add({"type": "response.output_text.done", **base, "text": out.text})
        part = {"type": "output_text", "text": out.text, "annotations": []}
        self.add({"type": "response.content_part.done", **base, "part": part})
        self.done(index, {**item, "status": "completed", "content": [part]})

    def call(self, index: int, out: Call) -> None:
        fid = _ids(self.d, "fc", index)
        item: dict[str, Any] = {
            "type": "function_call",
            "id": fid,
            "status": "in_progress",
            "call_id": out.call_id,
            "name": out.name,
            "arguments": "",
        }
        if out.namespace and self.d.namespaces:
            item["namespace"] = out.namespace
        self.add({"type": "response.output_item.added", "output_index": index, "item": item})
        base = {"item_id": fid, "output_index": index}
        for piece in _pieces(out.args, 7):
            self.add({"type": "response.function_call_arguments.delta", **base, "delta": piece})
        self.add({"type": "response.function_call_arguments.done", **base, "arguments": out.args})
        self.done(index, {**item, "status": "completed", "arguments": out.args})

    def custom(self, index: int, out: CustomCall) -> None:
        cid = _ids(self.d, "ctc", index)
        item = {
            "type": "custom_tool_call",
            "id": cid,
            "status": "in_progress",
            "call_id": out.call_id,
            "name": out.name,
            "input": "",
        }
        self.add({"type": "response.output_item.added", "output_index": index, "item": item})
        base = {"item_id": cid, "output_index": index}
        for piece in _pieces(out.input, 9):
            self.add({"type": "response.custom_tool_call_input.delta", **base, "delta": piece})
        self.add({"type": "response.custom_tool_call_input.done", **base, "input": out.input})
        self.done(index, {**item, "status": "completed", "input": out.input})

    def done(self, index: int, item: dict[str, Any]) -> None:
        if self.truncated_at == index:  # cut by the token limit: OpenAI's item status
            item = {**item, "status": "incomplete"}
        self.output.append(item)
        self.add({"type": "response.output_item.done", "output_index": index, "item": item})

    def ending(self, turn: Turn) -> dict[str, Any]:
        usage = _usage(self.d, turn.usage)
        if turn.status == "completed":
            return {
                "type": "response.completed",
                "response": self.response("completed", usage=usage),
            }
        if turn.status == "incomplete":
            details = {"reason": turn.reason}
            response = self.response("incomplete", usage=usage, incomplete_details=details)
            return {"type": "response.incomplete", "response": response}
        error = turn.error or {"code": "server_error", "message": "The model failed."}
        response = self.response("failed", error=error)
        if "error_type" in error:  # OpenRouter puts the precise kind beside the error
            response["error_type"] = error["error_type"]
            response["error"] = {k: v for k, v in error.items() if k != "error_type"}
        return {"type": "response.failed", "response": response}


def events_for(
    turn: Turn, dialect: Dialect, model: str, blobs: set[str] | None = None
) -> list[dict[str, Any]]:
    r = _Renderer(dialect, model, blobs if blobs is not None else set())
    r.add({"type": "response.created", "response": r.response("in_progress")})
    r.add({"type": "response.in_progress", "response": r.response("in_progress")})
    if turn.status == "incomplete":
        r.truncated_at = len(turn.outputs) - 1
    for index, out in enumerate(turn.outputs):
        r.item(index, out)
    if turn.error_event is not None:
        r.add({"type": "error", **turn.error_event})
    r.add(r.ending(turn))
    return r.events


def encode_stream(events: Iterable[dict[str, Any]], dialect: Dialect) -> bytes:
    chunks: list[bytes] = []
    seq = 0
    for event in events:
        if dialect.sequence == "zai" and event["type"] == "response.output_text.done":
            pass  # Z.ai sends this one without a sequence_number
        else:
            event = {**event, "sequence_number": seq}
        seq += 10 if dialect.sequence == "zai" and event["type"].endswith("text.done") else 1
        if dialect.comments:
            chunks.append(b": OPENROUTER PROCESSING\n\n")
        data = json.dumps(event, separators=(",", ":")).encode()
        chunks.append(b"event: %s\ndata: %s\n\n" % (event["type"].encode(), data))
    if dialect.done_sentinel:
        chunks.append(b"data: [DONE]\n\n")
    return b"".join(chunks)


def stream_for(turn: Turn, mode: str, model: str = "model-x") -> bytes:
    """The SSE body ``mode``'s provider streams for ``turn`` (cut short if scripted so)."""
    dialect = MODES[mode].dialect
    events = events_for(turn, dialect, model)
    if turn.cut_after is not None:
        events = events[: turn.cut_after]
        return encode_stream(events, Dialect(**{**dialect.__dict__, "done_sentinel": False}))
    return encode_stream(events, dialect)


def response_for(turn: Turn, mode: str, model: str = "model-x") -> dict[str, Any]:
    """The JSON Response ``mode``'s provider answers with for ``turn`` when not streaming."""
    return events_for(turn, MODES[mode].dialect, model)[-1]["response"]


# ----------------------------------------------------------------------------- rejections


@dataclass(frozen=True)
class Rejection:
    status: int
    body: dict[str, Any]


def _openai_error(
    message: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    }


Check = Callable[["FakeResponses", dict[str, Any]], Rejection | None]


def _tools(req: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    return [(n, t) for n, t in enumerate(req.get("tools") or ()) if isinstance(t, dict)]


def _items(req: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    raw = req.get("input")
    return [
        (n, i) for n, i in enumerate(raw if isinstance(raw, list) else ()) if isinstance(i, dict)
    ]


def _kind(item: dict[str, Any]) -> str:
    return item.get("type") or ("message" if "role" in item else "")


def tool_types(allowed: Iterable[str], refuse: Callable[[int, str], Rejection]) -> Check:
    allowed = frozenset(allowed)

    def check(fake: FakeResponses, req: dict[str, Any]) -> Rejection | None:
        for n, tool in _tools(req):
            kind = tool.get("type", "")
            if kind not in allowed:
                return refuse(n, kind)
            for inner in tool.get("tools") or () if kind == "namespace" else ():
                if inner.get("type") != "function":
                    return refuse(n, inner.get("type", ""))
        return None

    return check


def item_types(allowed: Iterable[str], refuse: Callable[[int, str], Rejection]) -> Check:
    allowed = frozenset(allowed)

    def check(fake: FakeResponses, req: dict[str, Any]) -> Rejection | None:
        for n, item in _items(req):
            kind = _kind(item)
            if kind not in allowed:
                return refuse(n, kind)
            if kind == "function_call" and "namespace" in item and "namespace" not in allowed:
                return refuse(n, "function_call.namespace")
        return None

    return check


def stateless(refuse: Rejection) -> Check:
    def check(fake: FakeResponses, req: dict[str, Any]) -> Rejection | None:
        if req.get("previous_response_id") is not None or req.get("store") is True:
            return refuse
        return None

    return check


def efforts(allowed: Iterable[str], refuse: Callable[[str], Rejection]) -> Check:
    allowed = frozenset(allowed)

    def check(fake: FakeResponses, req: dict[str, Any]) -> Rejection | None:
        effort = (req.get("reasoning") or {}).get("effort")
        return refuse(effort) if effort is not None and effort not in allowed else None

    return check


def string_outputs(refuse: Callable[[int], Rejection]) -> Check:
    def check(fake: FakeResponses, req: dict[str, Any]) -> Rejection | None:
        for n, item in _items(req):
            if _kind(item) == "function_call_output" and not isinstance(item.get("output"), str):
                return refuse(n)
        return None

    return check


def calls_before_outputs(refuse: Callable[[str], Rejection]) -> Check:
    def check(fake: FakeResponses, req: dict[str, Any]) -> Rejection | None:
        seen: set[str] = set()
        for _, item in _items(req):
            if _kind(item) == "function_call":
                seen.add(item.get("call_id", ""))
            elif _kind(item) == "function_call_output" and item.get("call_id") not in seen:
                return refuse(item.get("call_id", ""))
        return None

    return check


def every_call_answered(refuse: Callable[[str], Rejection]) -> Check:
    def check(fake: FakeResponses, req: dict[str, Any]) -> Rejection | None:
        items = [i for _, i in _items(req)]
        answered = {i.get("call_id") for i in items if _kind(i) == "function_call_output"}
        for item in items:
            if _kind(item) == "function_call" and item.get("call_id") not in answered:
                return refuse(item.get("call_id", ""))
        return None

    return check


def reasoning_shape(form: str, refuse: Callable[[int], Rejection]) -> Check:
    """Reasoning input items must carry their text where the provider reads it."""

    def check(fake: FakeResponses, req: dict[str, Any]) -> Rejection | None:
        for n, item in _items(req):
            if _kind(item) != "reasoning":
                continue
            content = item.get("content")
            ok = {
                # DeepSeek: plain content only; summary and encrypted_content not supported.
                "content_only": isinstance(content, list)
                and len(content) >= 1
                and not item.get("summary")
                and not item.get("encrypted_content"),
                # vLLM harmony: content[0].text, exactly one part (a KeyError / assert: 500).
                "one_content": isinstance(content, list) and len(content) == 1,
            }[form]
            if not ok:
                return refuse(n)
        return None

    return check


def own_blobs(refuse: Callable[[str], Rejection]) -> Check:
    """OpenRouter: an encrypted reasoning blob made under another key does not verify."""

    def check(fake: FakeResponses, req: dict[str, Any]) -> Rejection | None:
        for _, item in _items(req):
            blob = item.get("encrypted_content") if _kind(item) == "reasoning" else None
            if blob and blob not in fake.blobs:
                return refuse(item.get("id", "rs_?"))
        return None

    return check


def thinking_rule(refuse: Rejection) -> Check:
    """DeepSeek thinking mode: a turn's tool calls need its reasoning back, as plain content."""

    def check(fake: FakeResponses, req: dict[str, Any]) -> Rejection | None:
        if (req.get("reasoning") or {}).get("effort") == "none":
            return None
        reasoned = False
        for _, item in _items(req):
            kind = _kind(item)
            if kind == "reasoning":
                reasoned = any(p.get("text") for p in item.get("content") or ())
            elif kind == "function_call":
                if not reasoned:
                    return refuse
            elif kind == "function_call_output" or item.get("role") != "assistant":
                reasoned = False  # a new user turn, or the model's next response
        return None

    return check


def tool_choices(allowed: Iterable[str], refuse: Rejection) -> Check:
    allowed = frozenset(allowed)

    def check(fake: FakeResponses, req: dict[str, Any]) -> Rejection | None:
        choice = req.get("tool_choice")
        return refuse if choice is not None and choice not in allowed else None

    return check


def data_url_images(refuse: Callable[[str], Rejection]) -> Check:
    """Kimi: an ``input_image`` must carry a data URL (platform.kimi.com/docs/api/responses)."""

    def check(fake: FakeResponses, req: dict[str, Any]) -> Rejection | None:
        for n, item in _items(req):
            parts = item.get("content") if _kind(item) == "message" else item.get("output")
            for part in parts if isinstance(parts, list) else ():
                url = part.get("image_url") if isinstance(part, dict) else None
                if part.get("type") == "input_image" and not str(url).startswith("data:"):
                    return refuse(f"input[{n}]")
        return None

    return check


def no_empty_tools(fake: FakeResponses, req: dict[str, Any]) -> Rejection | None:
    if req.get("tools") == []:  # docs/providers.md §1.5
        return Rejection(
            400,
            _openai_error("Invalid 'tools': empty array. Expected an array with minimum length 1."),
        )
    return None


def _serde(status: int, path: str, message: str) -> Rejection:
    # DeepSeek's deserialisation errors: 422 "Failed to deserialize the JSON body into the
    # target type: messages[1]: invalid type: sequence, expected a string" (CosmosShadow/gptpdf#41).
    return Rejection(
        status,
        _openai_error(
            f"Failed to deserialize the JSON body into the target type: {path}: {message}",
            "invalid_request_error",
        ),
    )


def _deepseek_checks() -> tuple[Check, ...]:
    return (
        no_empty_tools,
        tool_types(
            {"function", "web_search"},
            lambda n, k: _serde(
                422, f"tools[{n}]", f"unknown variant `{k}`, expected `function` or `web_search`"
            ),
        ),
        item_types(
            {"message", "reasoning", "function_call", "function_call_output", "web_search_call"},
            lambda n, k: _serde(422, f"input[{n}]", f"unknown variant `{k}`"),
        ),
        string_outputs(
            lambda n: _serde(422, f"input[{n}].output", "invalid type: sequence, expected a string")
        ),
        # Stateless (api-docs.deepseek.com/guides/responses_api). [invented] wording.
        stateless(
            Rejection(
                400,
                _openai_error(
                    "previous_response_id and store are not supported", "invalid_request_error"
                ),
            )
        ),
        efforts(
            {"low", "high", "max", "none"},
            lambda e: _serde(422, "reasoning.effort", f"unknown variant `{e}`"),
        ),
        # Reasoning input items take plain content only. [invented] wording.
        reasoning_shape(
            "content_only",
            lambda n: Rejection(
                400, _openai_error(f"input[{n}]: reasoning items support only content")
            ),
        ),
        # Real wording, seen by several DeepSeek Responses clients.
        thinking_rule(
            Rejection(
                400,
                _openai_error(
                    "The reasoning_text in the thinking mode must be passed back to the API.",
                    "invalid_request_error",
                ),
            )
        ),
        every_call_answered(
            lambda cid: Rejection(400, _openai_error(f"No tool output found for tool call {cid}."))
        ),
    )


def _kimi_checks() -> tuple[Check, ...]:
    # platform.kimi.com/docs/api/responses; wordings [invented].
    def refuse_tool(n: int, kind: str) -> Rejection:
        message = f"tools[{n}].type: unsupported tool type {kind!r}"
        return Rejection(400, _openai_error(message, param=f"tools.{n}.type"))

    return (
        no_empty_tools,
        tool_types({"function", "namespace"}, refuse_tool),
        item_types(
            {
                "message",
                "reasoning",
                "function_call",
                "function_call_output",
                "additional_tools",
                "namespace",
            },
            lambda n, k: Rejection(
                400, _openai_error(f"input[{n}]: Invalid input item type {k!r}")
            ),
        ),
        stateless(
            Rejection(400, _openai_error("store and previous_response_id are not supported"))
        ),
        tool_choices(
            {"auto"}, Rejection(400, _openai_error("tool_choice: only 'auto' is supported"))
        ),
        data_url_images(
            lambda where: Rejection(400, _openai_error(f"{where}: image_url must be a data URL"))
        ),
        efforts(
            {"low", "high", "max"},
            lambda e: Rejection(400, _openai_error(f"reasoning.effort: invalid value {e!r}")),
        ),
    )


def _openrouter_checks() -> tuple[Check, ...]:
    # openai/codex#12114: HTTP 400 {"error":{"code":"invalid_prompt","message":"Invalid
    # Responses API request"},"metadata":{"raw":"[...invalid_union...]"}}.
    def invalid(path: str) -> Rejection:
        raw = json.dumps(
            [{"code": "invalid_union", "path": path.split("."), "message": "Invalid input"}]
        )
        return Rejection(
            400,
            {
                "error": {"code": "invalid_prompt", "message": "Invalid Responses API request"},
                "metadata": {"raw": raw},
            },
        )

    return (
        tool_types(
            {"function", "openrouter:web_search", "openrouter:datetime"},
            lambda n, k: invalid(f"tools.{n}.type"),
        ),
        item_types(
            {"message", "reasoning", "function_call", "function_call_output"},
            lambda n, k: invalid(f"input.{n}.type"),
        ),
        # openrouter.ai/docs/api_reference/responses: "store: true or a non-null
        # previous_response_id are rejected with a 400".
        stateless(
            Rejection(
                400,
                {
                    "error": {
                        "code": "invalid_prompt",
                        "message": "This API is stateless: store and previous_response_id "
                        "are not supported.",
                    }
                },
            )
        ),
        # anomalyco/opencode#4608.
        own_blobs(
            lambda rid: Rejection(
                400,
                {
                    "error": {
                        "code": "invalid_prompt",
                        "message": f"The encrypted content for item {rid} could not be verified.",
                    }
                },
            )
        ),
    )


def _ollama_checks() -> tuple[Check, ...]:
    # ollama/ollama openai/responses.go: `input[3]: unknown input item type: "…"`, and
    # `invalid reasoning value: "xhigh" (must be "high", "medium", "low", "max", or "none")`.
    return (
        item_types(
            {"message", "reasoning", "function_call", "function_call_output"},
            lambda n, k: Rejection(
                400, _openai_error(f'input[{n}]: unknown input item type: "{k}"')
            ),
        ),
        tool_types(
            {"function"}, lambda n, k: Rejection(400, _openai_error(f"unsupported tool type: {k}"))
        ),  # [invented]
        efforts(
            {"none", "low", "medium", "high", "max"},
            lambda e: Rejection(
                400,
                _openai_error(
                    f'invalid reasoning value: "{e}" '
                    '(must be "high", "medium", "low", "max", or "none")'
                ),
            ),
        ),
        stateless(
            Rejection(400, _openai_error("previous_response_id is not supported"))
        ),  # [invented]
    )


def _lmstudio_checks() -> tuple[Check, ...]:
    # lmstudio-ai/lms#537: {"error":{"code":"invalid_string","message":"Invalid",
    # "param":"tools.13.type","type":"invalid_request_error"}}.
    def refuse(n: int, kind: str) -> Rejection:
        error = {
            "code": "invalid_string",
            "message": "Invalid",
            "param": f"tools.{n}.type",
            "type": "invalid_request_error",
        }
        return Rejection(400, {"error": error})

    return (
        tool_types({"function"}, refuse),
        item_types(
            {"message", "reasoning", "function_call", "function_call_output"},
            lambda n, k: Rejection(
                400,
                {
                    "error": {
                        "code": "invalid_union_discriminator",
                        "message": "Invalid",
                        "param": f"input.{n}.type",
                        "type": "invalid_request_error",
                    }
                },
            ),
        ),
    )


def _vllm_checks() -> tuple[Check, ...]:
    # vllm-project/vllm#49493: "tool type namespace not supported"; harmony_utils: "No call
    # message found for <call_id>", and a reasoning item without content[0] is a 500.
    def err(message: str, status: int = 400) -> Rejection:
        kind = "BadRequestError" if status == 400 else "InternalServerError"
        return Rejection(
            status,
            {"object": "error", "message": message, "type": kind, "param": None, "code": status},
        )

    return (
        tool_types({"function"}, lambda n, k: err(f"tool type {k} not supported")),
        item_types(
            {"message", "reasoning", "function_call", "function_call_output"},
            lambda n, k: err(f"Unknown input type: {k}"),
        ),
        calls_before_outputs(lambda cid: err(f"No call message found for {cid}")),
        reasoning_shape("one_content", lambda n: err("Internal Server Error", 500)),
    )


def _plain_checks() -> tuple[Check, ...]:
    # llama.cpp's wording for the plain subset: "'type' of tool must be 'function'"
    # (unslothai/unsloth#5141); item wording [invented].
    return (
        no_empty_tools,
        tool_types(
            {"function"},
            lambda n, k: Rejection(400, _openai_error("'type' of tool must be 'function'")),
        ),
        item_types(
            {"message", "reasoning", "function_call", "function_call_output"},
            lambda n, k: Rejection(400, _openai_error(f"input[{n}]: unsupported item type {k!r}")),
        ),
        every_call_answered(
            lambda cid: Rejection(
                400, _openai_error(f"No tool output found for function call {cid}.")
            )
        ),
    )


@dataclass(frozen=True)
class Mode:
    dialect: Dialect
    checks: tuple[Check, ...]
    ignores_instructions: bool = False  # DashScope: the field is silently ignored


MODES: dict[str, Mode] = {
    "generic": Mode(Dialect(), _plain_checks()),
    "deepseek": Mode(Dialect(reasoning="content", ids="uuid"), _deepseek_checks()),
    "kimi": Mode(Dialect(reasoning="summary", usage="kimi", namespaces=True), _kimi_checks()),
    "glm": Mode(
        Dialect(reasoning="content", ids="zai", usage="bare", sequence="zai", done_sentinel=True),
        _plain_checks(),
    ),
    "qwen": Mode(Dialect(), (*_plain_checks(),), ignores_instructions=True),
    "groq": Mode(
        Dialect(reasoning="content", extra_events=True),
        (
            *_plain_checks(),
            stateless(Rejection(400, _openai_error("previous_response_id is not supported"))),
        ),
    ),
    "openrouter": Mode(
        Dialect(reasoning="summary_blob", comments=True, extra_events=True), _openrouter_checks()
    ),
    "ollama": Mode(Dialect(reasoning="encrypted_text"), _ollama_checks()),
    "lmstudio": Mode(Dialect(reasoning="content"), _lmstudio_checks()),
    "vllm": Mode(Dialect(reasoning="content", usage="vllm"), _vllm_checks()),
}


# ----------------------------------------------------------------------------- the server


class FakeResponses:
    """A provider's ``POST /v1/responses`` in one ``mode``, on loopback. Answers from a queue
    of ``Turn``s (``enqueue``), else from ``brain(request)``, else says "ok"."""

    def __init__(self, mode: str = "generic", *, key: str | None = None) -> None:
        self.mode = MODES[mode]
        self.mode_name = mode
        self.key = key
        self.requests: list[dict[str, Any]] = []
        self.rejections: list[Rejection] = []
        self.turns: list[Turn] = []
        self.brain: Callable[[dict[str, Any]], Turn] | None = None
        self.blobs: set[str] = set()
        self.instructions_seen: list[str] = []  # system/developer text the model really saw
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._lock = threading.Lock()
        self.port = 0

    def __enter__(self) -> FakeResponses:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def enqueue(self, *turns: Turn) -> None:
        with self._lock:
            self.turns.extend(turns)

    def validate(self, req: dict[str, Any]) -> Rejection | None:
        """The first check of this mode the request fails, or None."""
        for check in self.mode.checks:
            rejection = check(self, req)
            if rejection is not None:
                return rejection
        return None

    # ------------------------------------------------------------------ HTTP

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if ":" in line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if not await self._answer(method, path, headers, body, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _answer(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        writer: asyncio.StreamWriter,
    ) -> bool:
        try:
            req = json.loads(body)
        except ValueError:
            req = None
        with self._lock:
            self.requests.append({"method": method, "path": path, "headers": headers, "json": req})
        if self.key is not None and headers.get("authorization") != f"Bearer {self.key}":
            return await self._json(
                writer, 401, _openai_error("Incorrect API key provided.", "invalid_api_key")
            )
        if method != "POST" or not path.endswith("/responses") or not isinstance(req, dict):
            return await self._json(writer, 404, {"error": {"message": "not found"}})
        rejection = self.validate(req)
        if rejection is not None:
            self.rejections.append(rejection)
            return await self._json(writer, rejection.status, rejection.body)
        self._remember_instructions(req)
        turn = self._next_turn(req)
        if turn.http_status != 200:
            return await self._raw(
                writer,
                turn.http_status,
                turn.body or b"",
                {"content-type": "application/json", **turn.headers},
            )
        model = req.get("model", "")
        if not req.get("stream"):
            response = events_for(turn, self.mode.dialect, model, self.blobs)[-1]["response"]
            return await self._json(writer, 200, response)
        return await self._stream(writer, turn, model)

    def _remember_instructions(self, req: dict[str, Any]) -> None:
        if isinstance(req.get("instructions"), str) and not self.mode.ignores_instructions:
            self.instructions_seen.append(req["instructions"])
        for _, item in _items(req):
            if _kind(item) == "message" and item.get("role") in ("system", "developer"):
                content = item.get("content")
                text = (
                    content
                    if isinstance(content, str)
                    else "".join(p.get("text", "") for p in content or ())
                )
                self.instructions_seen.append(text)

    def _next_turn(self, req: dict[str, Any]) -> Turn:
        with self._lock:
            if self.turns:
                return self.turns.pop(0)
        return self.brain(req) if self.brain is not None else say("ok")

    async def _json(self, writer: asyncio.StreamWriter, status: int, obj: Any) -> bool:
        return await self._raw(
            writer, status, json.dumps(obj).encode(), {"content-type": "application/json"}
        )

    async def _raw(
        self, writer: asyncio.StreamWriter, status: int, body: bytes, headers: dict[str, str]
    ) -> bool:
        head = f"HTTP/1.1 {status} X\r\ncontent-length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(head.encode() + b"\r\n" + body)
        await writer.drain()
        return True

    async def _stream(self, writer: asyncio.StreamWriter, turn: Turn, model: str) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        events = events_for(turn, self.mode.dialect, model, self.blobs)
        cut = turn.cut_after is not None
        dialect = self.mode.dialect
        if cut:
            events = events[: turn.cut_after]
            dialect = Dialect(**{**dialect.__dict__, "done_sentinel": False})
        body = encode_stream(events, dialect)
        for start in range(0, len(body), 97):  # odd-sized pieces: events straddle writes
            piece = body[start : start + 97]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        if cut:
            writer.close()  # no terminal event, no final chunk
            return False
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True
