"""A raw scripted upstream for fault tests: it speaks exactly the bytes a test scripts, including
the broken ones (a cut mid-event, an invalid chunk, silence, a slow trickle) that the
well-behaved ``support.fake_upstream`` never sends.

``RawUpstream(script)`` listens on 127.0.0.1 (port 0) in its own thread; for each request it
reads the head and body, then awaits ``script(request, send)`` where ``send(data)`` writes and
drains (so a client that does not read makes ``send`` wait: backpressure is observable), and
closes the connection when the script returns. ``request["gone"]`` is an event set when the
relay closes its side (a silent script awaits it instead of sleeping). It counts what tests
assert on: requests, bytes sent, and connections closed by the peer (the relay giving up).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Awaitable, Callable
from typing import Any

Send = Callable[[bytes], Awaitable[None]]
Script = Callable[[dict[str, Any], Send], Awaitable[None]]

SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"cache-control: no-cache\r\nconnection: close\r\n\r\n"
)


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-raw",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def usage_chunk() -> bytes:
    body = {
        "id": "chatcmpl-raw",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up",
        "choices": [],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def recorded_stream() -> list[bytes]:
    """A whole Chat stream as providers send it, one SSE event per element: reasoning, text,
    a tool call with streamed arguments, finish, usage, [DONE]."""
    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"reasoning_content": p}) for p in ("Let me ", "think.")]
    events += [chunk({"content": p}) for p in ("Hello", ", ", "world.")]
    events.append(
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "exec_command", "arguments": ""},
                    }
                ]
            }
        )
    )
    events += [
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]})
        for p in ('{"cmd"', ': "ls"}')
    ]
    events += [chunk({}, finish="tool_calls"), usage_chunk(), b"data: [DONE]\n\n"]
    return events


def json_answer(status: int, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    head = f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
    head += f"content-length: {len(body)}\r\nconnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return head.encode() + b"\r\n" + body


class RawUpstream:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self.sent = 0  # body bytes the scripts managed to send
        self.peer_closed = 0  # connections the relay closed or reset while we were sending
        self.finished = 0  # scripts that ran to their end
        self.open_connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    def __enter__(self) -> RawUpstream:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if ":" in line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            gone = asyncio.Event()  # set when the relay closes its side
            request = {"line": lines[0], "headers": headers, "body": body, "gone": gone}
            self.requests.append(request)

            async def watch() -> None:
                with contextlib.suppress(ConnectionError):
                    await reader.read()  # nothing more comes before we answer, but EOF
                gone.set()

            watcher = asyncio.ensure_future(watch())

            async def send(data: bytes) -> None:
                writer.write(data)
                await writer.drain()
                self.sent += len(data)

            try:
                await self.script(request, send)
            finally:
                watcher.cancel()
            if gone.is_set():
                raise ConnectionResetError("the relay closed the connection")
            self.finished += 1
        except (ConnectionError, asyncio.IncompleteReadError):
            self.peer_closed += 1
        finally:
            self.open_connections -= 1
            writer.close()
