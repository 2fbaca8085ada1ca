"""A scripted fake Chat Completions upstream: the only thing the tests fake.

It speaks HTTP/1.1 on 127.0.0.1 (port 0), records every request, and answers from a queue of
``Reply`` objects (or a ``brain`` callable) with the shapes real providers send
(docs/providers.md §1): streamed chunks, usage chunks only when
``stream_options.include_usage`` was asked, provider error bodies with their real status and
headers, cut streams.

``family`` picks a provider's strict mode (``support.strict_providers``): the requests that
provider refuses are refused with its status and wording, breaches it would silently punish are
recorded in ``violations``, and answers come in its dialect (where reasoning goes, its tool-call
ids, Gemini's missing ``index`` and thought signatures, where usage goes and what it holds).
Replies are written in one canonical form (``reasoning_content``, ``content``, ``tool_calls``
deltas) and rendered per family.

Rules it enforces like the real services do (each switchable):
- ``key``: ``Authorization: Bearer <key>`` or 401 (OpenAI's wording);
- ``reject_empty_tools``: ``"tools": []`` is a 400 on several backends (docs/providers.md §1.5);
- ``deepseek_reasoning_rule``: an assistant tool-call message lacking the ``reasoning_content``
  this server produced for that call is a 400 with DeepSeek's exact wording
  (docs/providers.md §1.2);
- message order: every assistant ``tool_calls`` answered by tool messages right after.

Use in-process: ``with FakeUpstream() as up: up.url`` (``http://127.0.0.1:PORT/v1``).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from support.strict_providers import (
    DEEPSEEK_MISSING_REASONING,
    STRICT,
    Dialect,
    Memory,
    Rejection,
    check,
    openai_error,
)

__all__ = [
    "DEEPSEEK_MISSING_REASONING",
    "FakeUpstream",
    "Reply",
    "error",
    "text",
    "tool_call",
]


@dataclass
class Reply:
    """One scripted answer. ``chunks`` are deltas (dicts) for a streamed answer; ``status``/
    ``body``/``headers`` make an error answer; ``cut`` ends the stream after the chunks without
    a finish_reason or ``[DONE]``; ``delay_s`` waits before the headers, ``think_s`` after them
    (a reasoning model before its first token); ``gzip`` compresses the stream although the
    relay asked for identity."""

    chunks: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str = "stop"
    usage: dict[str, Any] | None = None
    status: int = 200
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    cut: bool = False
    delay_s: float = 0.0
    think_s: float = 0.0
    gzip: bool = False


def text(*pieces: str, reasoning: str = "") -> Reply:
    chunks: list[dict[str, Any]] = []
    if reasoning:
        chunks += [{"reasoning_content": part} for part in _split(reasoning)]
    chunks += [{"content": p} for p in pieces]
    return Reply(chunks=chunks)


def tool_call(
    name: str, arguments: dict[str, Any] | str, *, call_id: str = "call_1", reasoning: str = ""
) -> Reply:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    chunks: list[dict[str, Any]] = []
    if reasoning:
        chunks += [{"reasoning_content": part} for part in _split(reasoning)]
    chunks.append(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }
            ]
        }
    )
    chunks += [
        {"tool_calls": [{"index": 0, "function": {"arguments": part}}]} for part in _split(args, 8)
    ]
    return Reply(chunks=chunks, finish_reason="tool_calls")


def error(status: int, body: dict[str, Any] | str, headers: dict[str, str] | None = None) -> Reply:
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return Reply(status=status, body=raw, headers=headers or {})


def _split(text: str, size: int = 6) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


class FakeUpstream:
    def __init__(
        self,
        *,
        key: str | None = None,
        reject_empty_tools: bool = True,
        deepseek_reasoning_rule: bool = False,
        models: tuple[str, ...] = ("deepseek-chat", "deepseek-reasoner"),
        tls: ssl.SSLContext | None = None,
        family: str = "generic",
    ) -> None:
        self.tls = tls  # serve HTTPS with this context (upstream TLS tests)
        self.key = key
        self.reject_empty_tools = reject_empty_tools
        self.deepseek_reasoning_rule = deepseek_reasoning_rule
        self.models = models
        self.family = family
        self.dialect: Dialect = STRICT[family].dialect
        self.requests: list[dict[str, Any]] = []
        self.connections = 0  # TCP connections accepted
        self.closed_connections = 0  # ... that the client closed or reset first
        self.replies: list[Reply] = []
        self.brain: Callable[[dict[str, Any]], Reply] | None = None
        self.memory = Memory()
        # tool call id -> reasoning it followed (the same dict as memory.reasoning)
        self.produced_reasoning: dict[str, str] = self.memory.reasoning
        self.rejections: list[Rejection] = []  # what this server refused, in order
        self.violations: list[str] = []  # what it would silently punish (strict_providers)
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._lock = threading.Lock()
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> FakeUpstream:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        fut.result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            # Handlers still waiting (a scripted delay) end here, not after the loop is gone.
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}/v1"

    def enqueue(self, *replies: Reply) -> None:
        with self._lock:
            self.replies.extend(replies)

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r["json"] for r in self.requests if r["path"].endswith("/chat/completions")]

    # ------------------------------------------------------------------ HTTP

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                keep = await self._dispatch(method, path, headers, body, writer)
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_connections += 1
        finally:
            writer.close()

    async def _dispatch(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        writer: asyncio.StreamWriter,
    ) -> bool:
        parsed: Any = None
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        with self._lock:
            self.requests.append(
                {"method": method, "path": path, "headers": headers, "json": parsed, "raw": body}
            )
        if self.key is not None and headers.get("authorization") != f"Bearer {self.key}":
            return await self._send_json(
                writer,
                401,
                {
                    "error": {
                        "message": "Incorrect API key provided.",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "invalid_api_key",
                    }
                },
            )
        if method == "GET" and path.split("?")[0].endswith("/models"):
            return await self._send_json(
                writer,
                200,
                {
                    "object": "list",
                    "data": [
                        {"id": m, "object": "model", "created": 1, "owned_by": "fake"}
                        for m in self.models
                    ],
                },
            )
        if not path.endswith("/chat/completions") or not isinstance(parsed, dict):
            return await self._send_json(writer, 404, {"error": {"message": "not found"}})
        rejection = self._validate(parsed)
        if rejection is not None:
            with self._lock:
                self.rejections.append(rejection)
            return await self._send_raw(
                writer, rejection.status, rejection.body, {"content-type": "application/json"}
            )
        reply = self._next_reply(parsed)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.status != 200 or reply.body is not None:
            return await self._send_raw(
                writer,
                reply.status,
                reply.body or b"",
                {"content-type": "application/json", **reply.headers},
            )
        self._remember_reasoning(reply)
        if parsed.get("stream"):
            include_usage = (parsed.get("stream_options") or {}).get("include_usage")
            return await self._send_stream(writer, reply, parsed.get("model", ""), include_usage)
        return await self._send_json(writer, 200, _completion(reply, parsed.get("model", "")))

    def _next_reply(self, request: dict[str, Any]) -> Reply:
        with self._lock:
            if self.replies:
                return self.replies.pop(0)
        if self.brain is not None:
            return self.brain(request)
        return text("ok")

    def _validate(self, request: dict[str, Any]) -> Rejection | None:
        """The family's strict checks (support.strict_providers), then the switchable ones."""
        if not self.reject_empty_tools and request.get("tools") == []:
            request = {k: v for k, v in request.items() if k != "tools"}
        rejection, violations = check(self.family, request, self.memory)
        with self._lock:
            self.violations += violations
        if rejection is not None or not self.deepseek_reasoning_rule:
            return rejection
        for msg in request.get("messages") or ():
            calls = msg.get("tool_calls") if msg.get("role") == "assistant" else None
            if (
                calls
                and any(c.get("id") in self.produced_reasoning for c in calls)
                and not msg.get("reasoning_content")
            ):
                return openai_error(400, DEEPSEEK_MISSING_REASONING)
        return None

    def _remember_reasoning(self, reply: Reply) -> None:
        """What later requests must bring back: reasoning per call (and OpenRouter's details),
        Gemini's signatures (assigned here), every call id this server invented."""
        reasoning = "".join(c.get("reasoning_content", "") for c in reply.chunks)
        details = _details_of(reply.chunks) if self.dialect.reasoning == "reasoning_details" else []
        self.memory.encrypted.update(
            d["data"] for d in details if d.get("type") == "reasoning.encrypted"
        )
        for chunk in reply.chunks:
            for call in chunk.get("tool_calls") or ():
                call_id = call.get("id")
                if not call_id:
                    continue
                self.memory.call_ids.add(call_id)
                if reasoning:
                    self.produced_reasoning[call_id] = reasoning
                    if details:
                        self.memory.details[call_id] = details
                if self.dialect.signatures:
                    self.memory.signatures[call_id] = f"sig-{call_id}-{len(self.requests)}"

    async def _send_json(self, writer: asyncio.StreamWriter, status: int, obj: Any) -> bool:
        return await self._send_raw(
            writer, status, json.dumps(obj).encode(), {"content-type": "application/json"}
        )

    async def _send_raw(
        self, writer: asyncio.StreamWriter, status: int, body: bytes, headers: dict[str, str]
    ) -> bool:
        head = f"HTTP/1.1 {status} X\r\ncontent-length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(head.encode() + b"\r\n" + body)
        await writer.drain()
        return True

    async def _send_stream(
        self, writer: asyncio.StreamWriter, reply: Reply, model: str, include_usage: bool
    ) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            + (b"content-encoding: gzip\r\n" if reply.gzip else b"")
            + b"transfer-encoding: chunked\r\n\r\n"
        )
        await writer.drain()
        if reply.think_s:
            await asyncio.sleep(reply.think_s)
        gzip = zlib.compressobj(wbits=16 + zlib.MAX_WBITS) if reply.gzip else None

        async def send(data: bytes) -> None:
            if gzip is not None:
                data = gzip.compress(data) + gzip.flush(zlib.Z_SYNC_FLUSH)
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()

        dialect = self.dialect
        base = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
        }
        for delta in render_deltas(reply.chunks, dialect, self.memory.signatures):
            await send(
                _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
            )
        if reply.cut:
            writer.close()  # no finish_reason, no [DONE], no terminating chunk
            return False
        usage = reply.usage or self._usage()
        finish = reply.finish_reason
        if finish == "tool_calls":
            finish = dialect.tool_finish_reason
        choice: dict[str, Any] = {"index": 0, "delta": {}, "finish_reason": finish}
        last: dict[str, Any] = {**base, "choices": [choice]}
        if dialect.usage_at == "choice":  # Kimi
            choice["usage"] = usage
        elif dialect.usage_at == "finish":  # GLM, Mistral: always, on the finish chunk
            last["usage"] = usage
        if dialect.x_groq:
            last["x_groq"] = {"id": "req_fake", "usage": usage}
        await send(_sse(last))
        if include_usage and dialect.usage_at == "asked":
            await send(_sse({**base, "choices": [], "usage": usage}))
        await send(b"data: [DONE]\n\n")
        if gzip is not None:
            tail = gzip.flush()
            writer.write(b"%x\r\n%s\r\n" % (len(tail), tail))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    def _usage(self) -> dict[str, Any]:
        if self.family == "generic":  # what the tests written before the strict modes read
            return {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
        return self.dialect.usage(100, 10, 40, 4)


def render_deltas(
    chunks: list[dict[str, Any]], dialect: Dialect, signatures: dict[str, str]
) -> list[dict[str, Any]]:
    """Canonical deltas (``reasoning_content``, ``content``, ``tool_calls``; for OpenRouter also
    ``reasoning_details`` blocks, sent as they are) as the family's server streams them."""
    out: list[dict[str, Any]] = []
    in_think = False  # think_tags: an open <think> waits for its end
    gemini_calls: dict[int, dict[str, Any]] = {}
    for delta in chunks:
        rendered: dict[str, Any] = {}
        reasoning = delta.get("reasoning_content")
        content = delta.get("content")
        if reasoning:
            rendered.update(_reasoning_delta(reasoning, dialect, opening=not in_think))
            in_think = dialect.reasoning == "think_tags"
        blocks = delta.get("reasoning_details")
        if blocks and dialect.reasoning == "reasoning_details":
            rendered["reasoning_details"] = [*rendered.get("reasoning_details", ()), *blocks]
        if content is not None:
            if in_think and not reasoning:
                content, in_think = "</think>" + content, False
            rendered["content"] = rendered.get("content", "") + content
        calls = delta.get("tool_calls")
        if calls:
            if in_think:
                out.append({"content": "</think>"})
                in_think = False
            if dialect.tool_index:
                rendered["tool_calls"] = [_signed(c, dialect, signatures) for c in calls]
            else:  # Gemini: one whole call per delta, no index
                for call in calls:
                    _gather(gemini_calls, call)
        if rendered:
            out.append(rendered)
    if in_think:
        out.append({"content": "</think>"})
    for call in gemini_calls.values():
        out.append({"tool_calls": [_signed(call, dialect, signatures)]})
    return out


def _reasoning_delta(text: str, dialect: Dialect, *, opening: bool) -> dict[str, Any]:
    shape = dialect.reasoning
    if shape == "reasoning_content":
        return {"reasoning_content": text}
    if shape == "reasoning":
        return {"reasoning": text}
    if shape == "reasoning_details":  # OpenRouter
        return {"reasoning": text, "reasoning_details": [_detail(text)]}
    if shape == "thinking_chunks":  # Mistral: typed content chunks while it thinks
        return {"content": [{"type": "thinking", "thinking": [{"type": "text", "text": text}]}]}
    if shape == "think_tags":
        return {"content": ("<think>" if opening else "") + text}
    return {}  # "none": Gemini shows no thought text


def _detail(text: str) -> dict[str, Any]:
    return {"type": "reasoning.text", "text": text, "format": "unknown", "index": 0}


def _details_of(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenRouter's ``reasoning_details`` over a reply, in the order they stream: a text block
    per reasoning chunk, then a chunk's own blocks (``reasoning_details`` in a canonical chunk:
    an encrypted block, as OpenRouter sends for models that encrypt their reasoning)."""
    return [
        detail
        for c in chunks
        for detail in ([_detail(c["reasoning_content"])] if c.get("reasoning_content") else [])
        + list(c.get("reasoning_details") or ())
    ]


def _signed(call: dict[str, Any], dialect: Dialect, signatures: dict[str, str]) -> dict[str, Any]:
    call = dict(call)
    if not dialect.tool_index:
        call.pop("index", None)
    signature = signatures.get(call.get("id", ""))
    if dialect.signatures and signature:
        call["extra_content"] = {"google": {"thought_signature": signature}}
    return call


def _gather(calls: dict[int, dict[str, Any]], delta: dict[str, Any]) -> None:
    index = delta.get("index", 0)
    call = calls.setdefault(
        index,
        {"id": delta.get("id"), "type": "function", "function": {"name": "", "arguments": ""}},
    )
    fn = delta.get("function") or {}
    call["function"]["name"] += fn.get("name") or ""
    call["function"]["arguments"] += fn.get("arguments") or ""


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _completion(reply: Reply, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None}
    calls: dict[int, dict[str, Any]] = {}
    for delta in reply.chunks:
        if "content" in delta:
            message["content"] = (message["content"] or "") + delta["content"]
        if "reasoning_content" in delta:
            message["reasoning_content"] = (
                message.get("reasoning_content", "") + delta["reasoning_content"]
            )
        for tc in delta.get("tool_calls") or ():
            call = calls.setdefault(
                tc["index"],
                {"id": tc.get("id"), "type": "function", "function": {"name": "", "arguments": ""}},
            )
            call["function"]["name"] += tc.get("function", {}).get("name", "")
            call["function"]["arguments"] += tc.get("function", {}).get("arguments", "")
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
        "usage": reply.usage
        or {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
    }
