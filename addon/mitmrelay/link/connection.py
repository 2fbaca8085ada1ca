"""One HTTP/1.1 connection to an upstream, read as an ``asyncio.Protocol``.

Theory of operation
-------------------
``h11`` frames the exchange (request head and body out; status line, headers, chunked or
content-length or read-until-close body in); this module only moves bytes between the
transport and h11 and hands what h11 yields to whoever reads the answer:

1. ``send()`` writes one request and returns a future for the answer's head (status and
   headers; ``1xx`` heads are skipped, as h11 reports them apart).
2. After the head, the body's pieces wait in h11's buffer until a ``BodySink`` is attached
   (``read_body``): nothing is lost while the reader decides what to do with the answer
   (h11 keeps what it was not asked for: docs/mitmproxy-notes.md §14 item 2).
3. Then each piece goes straight from ``data_received`` through h11 and the content decoder to
   the sink, in the same callback: no task wakes up per upstream event.
4. A body that ends cleanly (h11's ``EndOfMessage``) leaves the connection reusable unless the
   upstream said ``connection: close`` or framed its body by closing; the pool takes it back
   (reuse needs both sides done: docs/mitmproxy-notes.md §14 item 3).
   Anything else (a cut, malformed framing, a body nobody reads to its end) closes it.
5. A large request body (``JsonBody``, core/body.py) is written a chunk at a time: the next
   chunk goes when the transport's buffer drains (``resume_writing``), so the body is never
   whole in memory on top of the strings it is made of.
6. Failures are ``LinkFailure`` with the kind ``map_transport_error`` words them by:
   ``connect``, ``tls``, ``timeout``, ``cut``, ``protocol``.

The upstream was asked for ``accept-encoding: identity``; some compress anyway, so gzip,
deflate, br and zstd bodies are decoded incrementally (docs/mitmproxy-notes.md §5: a stream
callable saw the encoded bytes; the same holds for the link).
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import h11

from mitmrelay.core.body import Body, JsonBody

logger = logging.getLogger("mitmrelay.link")


class LinkFailure(Exception):
    """A failure below the upstream's answer, with its kind for ``map_transport_error``."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail


class BodySink(Protocol):
    """Who reads an answer's body: pieces as they arrive, then its end or a failure (exactly
    one of the two). Called from the event loop's read callback: never blocks, never awaits."""

    def on_body(self, data: bytes) -> None: ...

    def on_end(self) -> None: ...

    def on_failure(self, failure: LinkFailure) -> None: ...


Head = tuple[int, list[tuple[str, str]]]


class UpstreamConnection(asyncio.Protocol):
    """One connection, one request at a time. ``key`` names its origin in the pool;
    ``on_idle`` / ``on_closed`` tell the pool when it may be reused or must be forgotten."""

    def __init__(self, key: tuple[Any, ...]) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.h11 = h11.Connection(h11.CLIENT)
        self.absolute_form = False  # plain HTTP through a proxy: the target is the full URL
        self.idle_since = 0.0
        self.closed = False  # the transport is gone (either side closed it)
        self.received = False  # a byte of the current answer arrived
        self.requests = 0  # requests sent on it
        self._eof = False  # the upstream will send nothing more
        self._dropped = False  # we closed it: nothing more goes to any reader
        self.on_idle: Callable[[UpstreamConnection], None] | None = None
        self.on_closed: Callable[[UpstreamConnection], None] | None = None
        self._head: asyncio.Future[Head] | None = None
        self._sink: BodySink | None = None
        self._decoder: _Decoder | None = None
        self._pumping = False
        self._body_out: Iterator[bytes] | None = None  # a large body's chunks still to write
        self._paused = False  # the transport's buffer is full (pause_writing)

    @property
    def reusable(self) -> bool:
        """Idle and still open both ways: the upstream has not said it is done with it (a
        FIN may come before the transport reports the connection lost)."""
        return not (self.closed or self._eof or self._dropped)

    # ------------------------------------------------------------------ protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received = True
        self.h11.receive_data(data)
        self._pump()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._write_more()

    def eof_received(self) -> bool | None:
        self._end_of_input()
        return None  # close our side too (docs/mitmproxy-notes.md §14 item 7)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._end_of_input()
        if self.on_closed is not None:
            self.on_closed(self)

    def _end_of_input(self) -> None:
        """The upstream sent its last byte: an answer framed by the connection's end completes
        (h11's read-until-close), whatever is buffered still reaches its reader, and a reader
        left waiting for more fails with a cut (end of input is ``receive_data(b"")``; a
        body that stops short is a ``RemoteProtocolError``: docs/mitmproxy-notes.md §14 item 1)."""
        if self._eof:
            return
        self._eof = True
        if self.h11.their_state is not h11.ERROR:
            self.h11.receive_data(b"")
        self._pump()

    # ------------------------------------------------------------------ the request

    def send(
        self, method: str, target: str, headers: list[tuple[bytes, bytes]], body: Body
    ) -> asyncio.Future[Head]:
        """Write one request; the future gets the answer's head or a ``LinkFailure``."""
        assert self.transport is not None and self._head is None
        self.received = False
        self.requests += 1
        self._head = head = asyncio.get_running_loop().create_future()
        try:
            out = self.h11.send_with_data_passthrough(
                h11.Request(method=method, target=target, headers=headers)
            )
            if isinstance(body, JsonBody):
                self.transport.writelines(out)
                self._body_out = body.chunks()
                self._write_more()
                return head
            if body:
                out += self.h11.send_with_data_passthrough(h11.Data(data=body))
            out += self.h11.send_with_data_passthrough(h11.EndOfMessage())
        except h11.LocalProtocolError as e:
            # A header h11 will not send, refused before anything was written
            # (docs/mitmproxy-notes.md §14 item 4): never guess.
            self._head = None
            raise LinkFailure("protocol", f"the request could not be framed ({e})") from e
        # The body goes to the socket as it is: no copy of a 2 MB Chat body into one buffer.
        self.transport.writelines(out)
        return head

    def _write_more(self) -> None:
        """A large body's next chunks, until the transport's buffer is full or the body ends
        (theory of operation, 5)."""
        while self._body_out is not None and not self._paused:
            if self._dropped or self.closed or self.transport is None:
                self._body_out = None
                return
            chunk = next(self._body_out, None)
            if chunk is None:
                self._body_out = None
                out = self.h11.send_with_data_passthrough(h11.EndOfMessage())
            else:
                out = self.h11.send_with_data_passthrough(h11.Data(data=chunk))
            for data in out:  # write(), not writelines(): only write() calls pause_writing
                self.transport.write(data)

    def read_body(self, sink: BodySink) -> None:
        """Attach the reader of the answer's body; pieces already received go to it now."""
        self._sink = sink
        self._pump()

    def discard_body(self) -> bool:
        """The reader is done before the body's end (the client has its whole answer): what
        is left is read and dropped, then the connection is reused; a failure closes it.
        False when there is nothing left to read (the answer had ended, or it is closed)."""
        if self._dropped or self.closed or self.h11.their_state is not h11.SEND_BODY:
            return False
        self._sink = _DISCARD
        self._pump()
        return True

    def pause(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        self._drop()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Close at once (no TLS close_notify, no flush): nothing more reaches any reader."""
        self._drop()
        if self.transport is not None:
            self.transport.abort()

    def _drop(self) -> None:
        self._dropped = True
        self._body_out = None
        self._sink = None
        self._head = None

    def tunnelled(self, transport: asyncio.BaseTransport) -> None:
        """After CONNECT and TLS: a new transport, and a fresh HTTP/1.1 exchange inside it
        (h11 reads nothing more once the CONNECT succeeded: docs/mitmproxy-notes.md §14 item 5)."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.h11 = h11.Connection(h11.CLIENT)

    # ------------------------------------------------------------------ h11 events

    def _pump(self) -> None:
        """Hand every event h11 can make of the bytes so far to the head future or the sink."""
        if self._pumping:  # a sink's callback attached or dropped a reader: the loop goes on
            return
        self._pumping = True
        try:
            while not self._dropped and self._step():
                pass
        except LinkFailure as failure:  # a corrupt compressed body
            self._fail(failure)
            self.abort()
        except Exception as e:  # never into asyncio's transport machinery: fail the reader
            logger.exception("mitmrelay link: reading the upstream's answer failed")
            self._fail(LinkFailure("protocol", f"the relay could not read the answer ({e!r})"))
            self.abort()
        finally:
            self._pumping = False

    def _step(self) -> bool:
        """One h11 event; False when nothing more can be done until more bytes arrive."""
        try:
            event = self.h11.next_event()
        except h11.RemoteProtocolError as e:
            # At the end of input h11 says "peer closed connection without sending complete
            # message body": that is a cut, not a malformed answer.
            kind, what = (
                ("cut", "an incomplete answer")
                if self._eof
                else ("protocol", "a malformed HTTP/1.1 answer")
            )
            self._fail(LinkFailure(kind, f"{what} ({e})"))
            self.abort()
            return False
        kind = type(event)
        if kind is h11.Data:
            sink = self._sink
            if sink is None:  # not attached yet: h11 keeps the rest buffered
                return False
            data = bytes(event.data)  # type: ignore[union-attr]
            if self._decoder is not None:
                data = self._decoder.decompress(data)
            if data:
                sink.on_body(data)
            return True
        if kind is h11.Response:
            self._on_head(event)  # type: ignore[arg-type]
            return self._sink is not None
        if kind is h11.EndOfMessage:
            self._on_end()
            return False
        if kind is h11.InformationalResponse:
            return True  # 100 Continue and friends precede the real answer
        if self._eof and kind is not h11.PAUSED:  # NEED_DATA that will never come, or closed
            self._fail(LinkFailure("cut", "the connection closed before the answer ended"))
        return False  # NEED_DATA, PAUSED (a CONNECT tunnel is open)

    def _on_head(self, event: h11.Response) -> None:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers]
        encoding = next((v.lower() for k, v in headers if k == "content-encoding"), "")
        head, self._head = self._head, None
        try:
            self._decoder = _decoder(encoding)
        except LinkFailure as failure:
            if head is not None and not head.done():
                head.set_exception(failure)
            self.abort()
            return
        if head is not None and not head.done():
            head.set_result((event.status_code, headers))

    def _on_end(self) -> None:
        sink, self._sink = self._sink, None
        if sink is not None and self._decoder is not None:
            tail = self._decoder.flush()
            if tail:
                sink.on_body(tail)
        self._decoder = None
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            if sink is not None:
                sink.on_end()
            if self.on_idle is not None and not self.closed:
                self.on_idle(self)
            return
        if sink is not None:
            sink.on_end()
        self.close()  # connection: close, or a body framed by the connection's end

    def _fail(self, failure: LinkFailure) -> None:
        head, self._head = self._head, None
        sink, self._sink = self._sink, None
        if head is not None and not head.done():
            head.set_exception(failure)
        if sink is not None:
            sink.on_failure(failure)


class _Discard:
    """The sink of a body nobody needs any more."""

    def on_body(self, data: bytes) -> None:
        pass

    def on_end(self) -> None:
        pass

    def on_failure(self, failure: LinkFailure) -> None:
        pass


_DISCARD = _Discard()


# ---------------------------------------------------------------------- content decoding


class _Decoder(Protocol):
    def decompress(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


def _decoder(encoding: str) -> _Decoder | None:
    """An incremental decompressor for what an upstream may send despite ``identity``."""
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return _Checked(zlib.decompressobj(16 + zlib.MAX_WBITS), encoding)
    if encoding == "deflate":
        return _Checked(zlib.decompressobj(), encoding)
    if encoding == "br":
        import brotli  # a mitmproxy dependency

        return _Checked(_NoFlush(brotli.Decompressor().process), encoding)
    if encoding == "zstd":
        try:
            from compression import zstd  # type: ignore[import-not-found]  # Python >= 3.14
        except ImportError:
            from backports import zstd  # type: ignore[no-redef]  # a mitmproxy dependency
        return _Checked(_NoFlush(zstd.ZstdDecompressor().decompress), encoding)
    raise LinkFailure("protocol", f"the upstream used an unknown content-encoding {encoding!r}")


class _NoFlush:
    def __init__(self, decompress: Callable[[bytes], bytes]) -> None:
        self.decompress = decompress

    def flush(self) -> bytes:
        return b""


class _Checked:
    """A decompressor whose errors (a corrupt body) become ``LinkFailure``s."""

    def __init__(self, inner: Any, encoding: str) -> None:
        self._inner, self._encoding = inner, encoding

    def decompress(self, data: bytes) -> bytes:
        try:
            return bytes(self._inner.decompress(data))
        except Exception as e:  # zlib.error, brotli.error, zstd.ZstdError: no common base
            raise LinkFailure("protocol", f"a corrupt {self._encoding} body ({e})") from e

    def flush(self) -> bytes:
        try:
            return bytes(self._inner.flush())
        except Exception as e:
            raise LinkFailure("protocol", f"a corrupt {self._encoding} body ({e})") from e
