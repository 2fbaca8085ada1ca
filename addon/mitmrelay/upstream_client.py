"""One buffered HTTP/1.1 request to the upstream, outside mitmproxy's flow machinery.

Used only for the relay's single self-healing retry (core/reasoning_recovery.py): mitmproxy
cannot re-send a flow from its ``response`` hook, and the answer to a retry is buffered anyway
(a synthesized response cannot stream: mitmproxy-notes §5). Standard library only: mitmproxy's
standalone builds cannot import httpx (mitmproxy-notes §0).
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
from collections.abc import Mapping

MAX_RESPONSE_BYTES = 64 * 1024 * 1024


async def post(
    url: str, headers: Mapping[str, str], body: bytes, *, timeout_s: float
) -> tuple[int, dict[str, str], bytes]:
    """POST ``body`` and return (status, headers with lower-case names, decoded body).

    Raises ``OSError`` / ``TimeoutError`` on transport failures, ``ValueError`` on a malformed
    answer.
    """
    u = urllib.parse.urlsplit(url)
    host = u.hostname or ""
    port = u.port or (443 if u.scheme == "https" else 80)
    context = ssl.create_default_context() if u.scheme == "https" else None
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")

    async def exchange() -> tuple[int, dict[str, str], bytes]:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=host if context else None
        )
        try:
            lines = [
                f"POST {path} HTTP/1.1",
                f"host: {u.netloc}",
                f"content-length: {len(body)}",
                "connection: close",
            ]
            lines += [
                f"{k}: {v}"
                for k, v in headers.items()
                if k.lower() not in ("host", "content-length", "connection", "transfer-encoding")
            ]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            await writer.drain()
            return await _read_response(reader)
        finally:
            writer.close()

    return await asyncio.wait_for(exchange(), timeout=timeout_s)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    answer: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        answer[name.strip().lower()] = value.strip()
    if "chunked" in answer.get("transfer-encoding", "").lower():
        out = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                return status, answer, bytes(out)
            if len(out) + size > MAX_RESPONSE_BYTES:
                raise ValueError("the upstream's answer is too large")
            out += await reader.readexactly(size)
            await reader.readexactly(2)
    if "content-length" in answer:
        length = int(answer["content-length"])
        if length > MAX_RESPONSE_BYTES:
            raise ValueError("the upstream's answer is too large")
        return status, answer, await reader.readexactly(length)
    return status, answer, await reader.read(MAX_RESPONSE_BYTES)
