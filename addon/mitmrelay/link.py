"""The upstream link: a loopback HTTP/1.1 server on mitmproxy's event loop that makes the
upstream call of each relayed flow and, for a streamed call, translates the stream.

Why it exists. mitmproxy alone cannot do three things issue 5 asks for (mitmproxy-notes.md
§5-§6): a ``.stream`` callable runs only when upstream bytes arrive, so nothing can reach Codex
while a reasoning model thinks before its first byte; an unreachable, TLS-failing or silent
upstream becomes mitmproxy's fixed HTML 502; and a connection cut mid-stream becomes a
truncated body. So the relay reroutes a flow here (``register`` + ``JOB_HEADER``), and the link:

- calls the upstream itself (TLS verified as mitmproxy would, through mitmproxy's upstream
  proxy if one is set, connections kept alive and reused), adding the relay's key, which
  therefore never sits on a flow that mitmweb shows or ``-w`` saves;
- passes the upstream's answer on unchanged when its headers come within ``COMMIT_GRACE_S``
  and it is not a stream to translate, so statuses and ``retry-after`` reach the client as the
  upstream sent them (the relay's hooks map errors and translate whole answers);
- for a streamed call (a ``LinkJob`` with a ``translator``) answers ``200 text/event-stream``
  itself, as soon as the upstream's stream starts or once ``COMMIT_GRACE_S`` has passed
  without its headers, and from then on feeds every upstream piece to the translator and writes
  what comes out. During silence it sends the translator's keep-alive event every
  ``keepalive_s``; every failure (cut, ``relay_timeout``, a late HTTP error) ends the answer
  with the translator's ``response.failed``. mitmproxy carries those bytes unchanged
  (``LOCAL_HEADER: translated``), which also spares it a stream callable per chunk;
- answers transport failures before anything was sent with a JSON error Codex retries
  (``LOCAL_HEADER: transport-error``, so the relay does not map it again);
- retries once when ``LinkJob.retry_body`` says so (the missing-reasoning self-heal).

The upstream's own status, headers and bytes, and the translated answer, are kept on the
``LinkJob`` for the relay to show in mitmweb. Standard library only (mitmproxy's standalone
builds cannot import httpx: mitmproxy-notes §0); no mitmproxy import, so it runs and is tested
on a bare event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
import time
import urllib.parse
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .core.exchange import answer_events
from .core.stream import StreamTranslator
from .core.upstream_errors import MappedError, map_transport_error, map_upstream_error

logger = logging.getLogger("mitmrelay.link")

JOB_HEADER = "x-mitmrelay-link"  # names the LinkJob of a request; unknown names get a 403
LOCAL_HEADER = "x-mitmrelay-answer"  # on answers the link made: "translated", "transport-error"
COMMIT_GRACE_S = 2.0  # how long a streamed call may wait for the upstream's headers
MAX_ERROR_BODY = 1024 * 1024  # an upstream error body read to decide on a retry
MAX_WHOLE_BODY = 64 * 1024 * 1024  # a whole completion turned into SSE after the commit
MAX_RECORDED = 8 * 1024 * 1024  # upstream bytes, and translated bytes, kept per job
# A piece that produced no event (the upstream's own keep-alive comment, half an event) is
# answered with the translator's keep-alive at most this often.
KEEPALIVE_GAP_S = 1.0
POOL_IDLE_S = 30.0  # an idle upstream connection older than this is not reused
JOB_TTL_S = 600.0  # a registered job whose flow never arrived is forgotten after this
READ_SIZE = 64 * 1024
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "content-length",
        "host",
        "te",
        "trailer",
        "upgrade",
        JOB_HEADER,
    }
)


class _Failure(Exception):
    """A transport failure, with its kind for ``map_transport_error``."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail


def answer_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The upstream's response headers that describe its answer rather than its connection or
    framing: the link decodes the body, so ``content-encoding`` goes too."""
    return [(k, v) for k, v in headers if k not in HOP_BY_HOP and k != "content-encoding"]


class _ClientGone(Exception):
    """mitmproxy closed its side: the client went away, so the upstream call is abandoned."""


@dataclass
class LinkSettings:
    upstream: str  # the upstream base URL, as named in error messages
    idle_timeout_s: float  # relay_timeout: connecting, waiting for headers, between chunks
    keepalive_s: float  # upstream silence after which the client is sent a sign of life
    tls: Callable[[], ssl.SSLContext]  # trust as mitmproxy's upstream options say
    proxy: tuple[str, int] | None = None  # mitmproxy's upstream proxy (--mode upstream:…)


@dataclass
class LinkJob:
    """One upstream call. The relay fills the request side; the link the outcome."""

    url: urllib.parse.SplitResult
    headers: dict[str, str]  # added to the forwarded request (the relay's key among them)
    # A streamed Chat call: the link answers it with this translator's events.
    translator: StreamTranslator | None = None
    retry_body: Callable[[int, bytes], bytes | None] | None = None
    upstream: str = ""  # the upstream as named in error messages ("": the settings' name)
    record_limit: int = MAX_RECORDED  # upstream bytes kept for inspection (0: none)
    registered: float = field(default_factory=time.monotonic)
    # outcome, for mitmweb and the log
    status: int | None = None
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    sent_body: bytes = b""  # the body of the last attempt (the retry's, after a retry)
    recorded: bytearray = field(default_factory=bytearray)
    answered: bytearray = field(default_factory=bytearray)  # what the translator sent
    retried: bool = False
    committed: bool = False
    failure: MappedError | None = None

    def record(self, data: bytes) -> None:
        room = self.record_limit - len(self.recorded)
        if room > 0:
            self.recorded += data[:room]

    def answer(self, data: bytes) -> None:
        room = MAX_RECORDED - len(self.answered)
        if room > 0:
            self.answered += data[:room]


class UpstreamLink:
    """The link server. ``await start()`` once on the running loop, ``register`` a job per
    flow, reroute the flow to ``127.0.0.1:port`` with ``JOB_HEADER: token``; ``close()``."""

    def __init__(self, settings: LinkSettings) -> None:
        self.settings = settings
        self.port = 0
        self._server: asyncio.Server | None = None
        self._starting: asyncio.Lock | None = None
        self._jobs: dict[str, LinkJob] = {}
        self._pool: dict[tuple[Any, ...], list[_Connection]] = {}

    async def start(self) -> None:
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._server is None:
                self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
                self.port = self._server.sockets[0].getsockname()[1]
                logger.debug("mitmrelay: upstream link listening on 127.0.0.1:%d", self.port)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for conns in self._pool.values():
            for conn in conns:
                conn.close()
        self._pool.clear()

    def register(self, job: LinkJob) -> str:
        now = time.monotonic()
        for token in [t for t, j in self._jobs.items() if now - j.registered > JOB_TTL_S]:
            del self._jobs[token]
        token = secrets.token_urlsafe(18)
        self._jobs[token] = job
        return token

    def discard(self, token: str | None) -> None:
        if token:
            self._jobs.pop(token, None)

    # ------------------------------------------------------------------ server side

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection from mitmproxy; requests in turn (mitmproxy does not pipeline)."""
        try:
            while True:
                try:
                    request = await _read_request(reader)
                except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                    return
                if request is None:
                    return
                # The request's target is not used: the job names the upstream URL, so nothing
                # a flow carries can send the relay's key elsewhere.
                method, _, headers, body = request
                job = self._jobs.pop(headers.get(JOB_HEADER, ""), None)
                client = _ClientSide(writer)
                if job is None:
                    await client.answer(
                        403,
                        [("content-type", "application/json"), (LOCAL_HEADER, "refused")],
                        b'{"error":{"message":"mitmrelay: unknown link job",'
                        b'"type":"invalid_request_error","param":null,"code":"forbidden"}}',
                    )
                    continue
                if not await self._exchange(job, method, headers, body, reader, client):
                    return
        except Exception:  # never let a link fault take the event loop's logging down
            logger.exception("mitmrelay: upstream link failed")
        finally:
            writer.close()

    async def _exchange(
        self,
        job: LinkJob,
        method: str,
        headers: dict[str, str],
        body: bytes,
        client_reader: asyncio.StreamReader,
        client: _ClientSide,
    ) -> bool:
        """Serve one job; True if mitmproxy's connection may carry the next request."""
        # mitmproxy sends nothing more before our answer ends: a read that completes means it
        # closed the connection (the client went away).
        gone = asyncio.ensure_future(client_reader.read(1))
        call = _Call(self, job, client, gone)
        served = False
        try:
            await call.run(method, headers, body)
            served = True
        except (_ClientGone, ConnectionError, RuntimeError):  # RuntimeError: a closed transport
            pass
        finally:
            call.close()
            open_ = not gone.done()
            if open_:
                gone.cancel()
                # The reader must be free before the next request is read from it.
                with contextlib.suppress(BaseException):
                    await gone
        return served and open_

    # ------------------------------------------------------------------ upstream side

    async def _connect(self, url: urllib.parse.SplitResult) -> tuple[_Connection, bool]:
        """A connection to ``url``'s origin: a pooled one if alive (second value True)."""
        key = (url.scheme, url.hostname, url.port, self.settings.proxy)
        conns = self._pool.get(key, [])
        while conns:
            conn = conns.pop()
            if conn.alive():
                return conn, True
            conn.close()
        return await self._open(url, key), False

    async def _open(self, url: urllib.parse.SplitResult, key: tuple[Any, ...]) -> _Connection:
        host = url.hostname or ""
        port = url.port or (443 if url.scheme == "https" else 80)
        tls = self.settings.tls() if url.scheme == "https" else None
        proxy = self.settings.proxy
        try:
            if proxy is None:
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls else None
                )
            else:
                reader, writer = await asyncio.open_connection(*proxy)
                if tls is not None:
                    await _tunnel(reader, writer, host, port)
                    await writer.start_tls(tls, server_hostname=host)
        except ssl.SSLError as e:
            raise _Failure("tls", str(e)) from e
        except OSError as e:
            raise _Failure("connect", str(e) or type(e).__name__) from e
        return _Connection(key, reader, writer, absolute_form=proxy is not None and tls is None)

    def _release(self, conn: _Connection) -> None:
        conn.idle_since = time.monotonic()
        self._pool.setdefault(conn.key, []).append(conn)


class _Call:
    """One job's upstream call, driven by ``run``."""

    def __init__(
        self, link: UpstreamLink, job: LinkJob, client: _ClientSide, gone: asyncio.Future[bytes]
    ) -> None:
        self.link, self.job, self.client, self.gone = link, job, client, gone
        self.settings = link.settings
        self.upstream = job.upstream or self.settings.upstream
        self.conn: _Connection | None = None  # the upstream connection in use
        self.translator = job.translator
        # Keep-alives (and the commit before them) only where the client's answer is a stream
        # the link translates, or not started yet: never inside a body being passed through.
        self.ticking = self.translator is not None
        self.next_tick = time.monotonic() + min(COMMIT_GRACE_S, self.settings.keepalive_s)
        self.last_data = self.last_write = 0.0  # loop times, while streaming
        self.abort: _Failure | _ClientGone | None = None  # set by _tick / _on_gone
        self.ticker: asyncio.TimerHandle | None = None

    def close(self) -> None:
        """An upstream connection still held was abandoned mid-answer: never reused."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    async def run(self, method: str, headers: dict[str, str], body: bytes) -> None:
        job = self.job
        forwarded = {k: v for k, v in headers.items() if k not in HOP_BY_HOP}
        forwarded.update(job.headers)
        attempt_body = body
        try:
            while True:
                job.sent_body = attempt_body
                conn, (status, answer) = await self._send(method, forwarded, attempt_body)
                job.status, job.response_headers = status, answer
                if status >= 400 and not job.retried and job.retry_body is not None:
                    refusal = await self._read_whole(conn, answer, MAX_ERROR_BODY)
                    retry = job.retry_body(status, refusal)
                    if retry is not None:
                        job.retried = True
                        job.recorded.clear()
                        attempt_body = retry
                        continue
                    await self._deliver_whole(status, answer, refusal)
                    return
                await self._deliver(conn, status, answer)
                return
        except _Failure as f:
            await self._fail(map_transport_error(f.kind, f.detail, upstream=self.upstream))

    # ---------------------------------------------------------------- sending

    async def _send(
        self, method: str, headers: dict[str, str], body: bytes
    ) -> tuple[_Connection, tuple[int, list[tuple[str, str]]]]:
        url = self.job.url
        for _ in range(2):  # a pooled connection the upstream closed meanwhile: once more
            conn, reused = await self._wait(self.link._connect(url))
            self.conn = conn
            try:
                conn.writer.write(_request_head(method, url, headers, body, conn.absolute_form))
                conn.writer.write(body)
                await conn.writer.drain()
                return conn, await self._wait(_read_head(conn.reader))
            except (ConnectionError, asyncio.IncompleteReadError) as e:
                self.close()
                if not reused:
                    raise _Failure("cut", f"no answer ({type(e).__name__})") from e
        raise _Failure("cut", "no answer")

    # ---------------------------------------------------------------- receiving

    async def _deliver(self, conn: _Connection, status: int, answer: list[tuple[str, str]]) -> None:
        ctype = _header(answer, "content-type").lower()
        if self.translator and 200 <= status < 300 and ctype.startswith("text/event-stream"):
            await self._stream_events(conn, answer)
            return
        # Anything else is read whole before a byte goes out: mitmproxy buffers it anyway (only
        # SSE is streamed to the client), and a cut or silent upstream can still be answered
        # with a clean JSON error instead of a truncated body.
        whole = await self._read_whole(conn, answer, MAX_WHOLE_BODY)
        await self._deliver_whole(status, answer, whole)

    async def _stream_events(self, conn: _Connection, answer: list[tuple[str, str]]) -> None:
        """The hot path: each piece of the Chat stream through the translator to the client.

        One await per upstream read. The idle timeout, the keep-alive clock and the client's
        departure are watched by a timer and a callback (``_tick``, ``_on_gone``) that end a
        read by aborting the upstream connection, instead of a task per read."""
        translator = self.translator
        assert translator is not None
        body = _Body(conn, answer)
        await self._commit()
        loop = asyncio.get_running_loop()
        self.last_data = loop.time()
        self.gone.add_done_callback(self._on_gone)
        self._schedule_tick()
        failure: _Failure | None = None
        try:
            while (piece := await body.next()) is not None:
                self.last_data = loop.time()
                self.job.record(piece)
                out = translator.feed(piece)
                if not out and self.last_data - self.last_write >= KEEPALIVE_GAP_S:
                    # Bytes but no event (the upstream's own ": keep-alive" while the model
                    # thinks, half an event): a sign of life for the client all the same.
                    out = translator.keepalive()
                if out:
                    await self._write(out)
        except _Failure as f:
            failure = f
        finally:
            if self.ticker is not None:
                self.ticker.cancel()
            self.gone.remove_done_callback(self._on_gone)
        if isinstance(self.abort, _ClientGone):
            raise self.abort
        failure = self.abort or failure  # a read ended by our own abort: say why
        if failure is not None:
            self.close()
            await self._fail(
                map_transport_error(failure.kind, failure.detail, upstream=self.upstream)
            )
            return
        await self._write(translator.finish())
        await self.client.end()
        self._done_with(conn, body)

    def _schedule_tick(self) -> None:
        due = min(
            self.last_data + self.settings.idle_timeout_s,
            self.last_write + self.settings.keepalive_s,
        )
        self.ticker = asyncio.get_running_loop().call_at(due, self._tick)

    def _tick(self) -> None:
        """Timer: the upstream silent too long, or the client due a keep-alive."""
        now = asyncio.get_running_loop().time()
        if now - self.last_data >= self.settings.idle_timeout_s:
            self.abort = self._idle_timeout()
            self._abort_upstream()
            return
        if now - self.last_write >= self.settings.keepalive_s and self.translator is not None:
            self._write_nowait(self.translator.keepalive())
        self._schedule_tick()

    def _idle_timeout(self) -> _Failure:
        return _Failure(
            "timeout", f"no data for {self.settings.idle_timeout_s:g} s (relay_timeout)"
        )

    def _on_gone(self, _: asyncio.Future[bytes]) -> None:
        if self.abort is None:
            self.abort = _ClientGone()
            self._abort_upstream()

    def _abort_upstream(self) -> None:
        """End the pending read now: it then sees the connection closed."""
        if self.conn is not None:
            self.conn.abort()

    async def _deliver_whole(self, status: int, answer: list[tuple[str, str]], body: bytes) -> None:
        self.job.record(body)
        if not self.job.committed:
            self.ticking = False
            await self.client.answer(status, answer_headers(answer), body)
            return
        translator = self.translator
        assert translator is not None  # only a translated stream is committed early
        if status < 300:
            await self._write(
                answer_events(translator, body, event_stream=False, upstream=self.upstream)
            )
            await self.client.end()
            return
        mapped = map_upstream_error(
            status, dict(answer), body, upstream=self.upstream, now=time.time
        )
        self.job.failure = mapped
        await self._fail_events(mapped.code, mapped.message)

    async def _read_whole(
        self, conn: _Connection, answer: list[tuple[str, str]], limit: int
    ) -> bytes:
        body = _Body(conn, answer)
        out = bytearray()
        while (piece := await self._wait(body.next())) is not None:
            out += piece
            if len(out) > limit:
                self.close()
                raise _Failure("cut", f"the answer exceeded {limit} bytes")
        self._done_with(conn, body)
        return bytes(out)

    def _done_with(self, conn: _Connection, body: _Body) -> None:
        self.conn = None
        if body.reusable:
            self.link._release(conn)
        else:
            conn.close()

    # ---------------------------------------------------------------- the client's side

    async def _commit(self) -> None:
        """From here on the client has a 200 SSE answer the link translates; failures are
        ``response.failed``. ``response.created`` goes out at once."""
        if not self.client.committed:
            assert self.translator is not None
            self.job.committed = True
            await self.client.start(
                200,
                "OK",
                [
                    ("content-type", "text/event-stream; charset=utf-8"),
                    ("cache-control", "no-cache"),
                    (LOCAL_HEADER, "translated"),
                ],
            )
            await self._write(self.translator.start())

    async def _write(self, out: bytes) -> None:
        if out:
            self.job.answer(out)
            self.last_write = asyncio.get_running_loop().time()
            await self.client.data(out)

    def _write_nowait(self, out: bytes) -> None:
        """From a timer: no drain (a keep-alive is small; the next ``_write`` drains)."""
        if out:
            self.job.answer(out)
            self.last_write = asyncio.get_running_loop().time()
            self.client.data_nowait(out)

    async def _fail(self, mapped: MappedError) -> None:
        self.job.failure = mapped
        logger.debug("mitmrelay link: %s", mapped.message)  # the relay logs the exchange
        if self.job.committed:
            await self._fail_events(mapped.code, mapped.message)
            return
        headers = [*mapped.headers().items(), (LOCAL_HEADER, "transport-error")]
        await self.client.answer(mapped.status, headers, mapped.body())

    async def _fail_events(self, code: str, message: str) -> None:
        assert self.translator is not None
        await self._write(self.translator.fail(code, message))
        await self.client.end()

    async def _wait(self, awaitable: Any) -> Any:
        """Await an upstream step while watching the client, the idle timeout and, for a
        streamed call, the keep-alive clock."""
        task = asyncio.ensure_future(awaitable)
        deadline = time.monotonic() + self.settings.idle_timeout_s
        try:
            while True:
                now = time.monotonic()
                wake = min(deadline, self.next_tick) if self.ticking else deadline
                done, _ = await asyncio.wait(
                    {task, self.gone},
                    timeout=max(0.0, wake - now),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if task in done:
                    return task.result()
                if self.gone in done:
                    raise _ClientGone
                now = time.monotonic()
                if now >= deadline:
                    raise self._idle_timeout()
                if self.ticking and now >= self.next_tick:
                    assert self.translator is not None
                    if self.client.committed:
                        await self._write(self.translator.keepalive())
                    else:
                        await self._commit()  # response.created: the client hears at once
                    self.next_tick = now + self.settings.keepalive_s
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task


class _ClientSide:
    """The answer to mitmproxy, always chunked (its length is not known in advance)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.committed = False  # status line sent

    async def start(self, status: int, reason: str, headers: list[tuple[str, str]]) -> None:
        lines = [f"HTTP/1.1 {status} {reason}", "transfer-encoding: chunked"]
        lines += [f"{k}: {v}" for k, v in headers]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self.committed = True
        await self.writer.drain()

    async def data(self, data: bytes) -> None:
        if data:
            self.writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await self.writer.drain()

    def data_nowait(self, data: bytes) -> None:
        self.writer.write(b"%x\r\n%s\r\n" % (len(data), data))

    async def end(self) -> None:
        self.writer.write(b"0\r\n\r\n")
        await self.writer.drain()

    async def answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        await self.start(status, _reason(status), headers)
        await self.data(body)
        await self.end()


class _Connection:
    def __init__(
        self,
        key: tuple[Any, ...],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        absolute_form: bool,
    ) -> None:
        self.key, self.reader, self.writer = key, reader, writer
        self.absolute_form = absolute_form  # plain HTTP through a proxy
        self.idle_since = time.monotonic()

    def alive(self) -> bool:
        return (
            time.monotonic() - self.idle_since < POOL_IDLE_S
            and not self.reader.at_eof()
            and not self.writer.is_closing()
        )

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        """Close at once (no TLS close_notify): a pending read sees the end immediately."""
        self.writer.transport.abort()


class _Body:
    """The upstream's body, de-chunked and decompressed, piece by piece as it arrives: one
    socket read per call at most, however the chunk framing falls across reads."""

    def __init__(self, conn: _Connection, answer: list[tuple[str, str]]) -> None:
        self.reader = conn.reader
        self.chunked = "chunked" in _header(answer, "transfer-encoding").lower()
        length = _header(answer, "content-length")
        self.left = int(length) if length.isdigit() and not self.chunked else None
        self.ended = False
        self.reusable = "close" not in _header(answer, "connection").lower() and (
            self.chunked or self.left is not None
        )
        self.decoder = _decoder(_header(answer, "content-encoding").lower())
        self._chunks = _Dechunker() if self.chunked else None

    async def next(self) -> bytes | None:
        while not self.ended:
            raw = await self._raw()
            if raw is None:
                self.ended = True
                tail = self.decoder.flush() if self.decoder else b""
                return tail or None
            data = self.decoder.decompress(raw) if self.decoder else raw
            if data:
                return data
        return None

    async def _raw(self) -> bytes | None:
        try:
            if self._chunks is not None:
                while True:
                    data = self._chunks.take() if self._chunks.buf else b""
                    if data or self._chunks.done:
                        self.reusable = self.reusable and not self._chunks.extra
                        return data or None
                    more = await self.reader.read(READ_SIZE)
                    if not more:
                        raise _Failure("cut", "the connection closed inside a chunk")
                    self._chunks.add(more)
            if self.left is not None:
                if self.left == 0:
                    return None
                data = await self.reader.read(min(self.left, READ_SIZE))
                if not data:
                    raise _Failure("cut", f"the connection closed {self.left} bytes early")
                self.left -= len(data)
                return data
            return await self.reader.read(READ_SIZE) or None
        except ConnectionError as e:
            raise _Failure("cut", f"the connection closed mid-body ({type(e).__name__})") from e


class _Dechunker:
    """HTTP/1.1 chunked framing over a buffer: ``add`` bytes as they come, ``take`` all the
    payload they complete. Framing errors raise ``_Failure``."""

    MAX_LINE = 4096  # a chunk-size or trailer line longer than this is not HTTP

    def __init__(self) -> None:
        self.buf = bytearray()
        self.state = "size"  # size -> data -> crlf -> size ... -> trailer -> done
        self.left = 0
        self.done = False
        self.extra = False  # bytes after the last chunk: the connection cannot be reused

    def add(self, data: bytes) -> None:
        self.buf += data

    def take(self) -> bytes:
        out = bytearray()
        buf = self.buf
        while not self.done:
            if self.state == "data":
                if not buf:
                    break
                n = min(len(buf), self.left)
                out += buf[:n]
                del buf[:n]
                self.left -= n
                if self.left == 0:
                    self.state = "crlf"
            elif self.state == "crlf":
                if len(buf) < 2:
                    break
                if buf[:2] != b"\r\n":
                    raise _Failure("cut", "malformed chunked body (no CRLF after a chunk)")
                del buf[:2]
                self.state = "size"
            else:  # "size" or "trailer": one line
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > self.MAX_LINE:
                        raise _Failure("cut", "malformed chunked body (line too long)")
                    break
                line = bytes(buf[:end])
                del buf[: end + 2]
                if self.state == "trailer":
                    if not line:
                        self.done = True
                        self.extra = bool(buf)
                    continue
                try:
                    self.left = int(line.split(b";")[0], 16)
                except ValueError:
                    raise _Failure("cut", f"malformed chunk size {line[:20]!r}") from None
                self.state = "data" if self.left else "trailer"
        return bytes(out)


def _decoder(encoding: str) -> Any:
    """An incremental decompressor for what an upstream may send despite ``identity``."""
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    if encoding == "br":
        import brotli  # a mitmproxy dependency

        return _Wrapped(brotli.Decompressor().process)
    if encoding == "zstd":
        try:
            from compression import zstd  # type: ignore[import-not-found]  # Python >= 3.14
        except ImportError:
            from backports import zstd  # type: ignore[no-redef]  # a mitmproxy dependency
        return _Wrapped(zstd.ZstdDecompressor().decompress)
    raise _Failure("cut", f"the upstream used an unknown content-encoding {encoding!r}")


class _Wrapped:
    def __init__(self, decompress: Callable[[bytes], bytes]) -> None:
        self.decompress = decompress

    def flush(self) -> bytes:
        return b""


# ---------------------------------------------------------------------- HTTP/1.1 framing


async def _read_request(
    reader: asyncio.StreamReader,
) -> tuple[str, str, dict[str, str], bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise
    request_line, *lines = head[:-4].decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length") or 0)
    body = await reader.readexactly(length) if length else b""
    return method, target, headers, body


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, list[tuple[str, str]]]:
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError as e:
            raise _Failure("cut", "the upstream sent oversized headers") from e
        status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise _Failure("cut", f"the upstream did not answer in HTTP ({status_line[:60]!r})")
        status = int(parts[1])
        if 100 <= status < 200:
            continue  # 100 Continue and friends precede the real answer
        headers = []
        for line in lines:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        return status, headers


def _request_head(
    method: str,
    url: urllib.parse.SplitResult,
    headers: dict[str, str],
    body: bytes,
    absolute_form: bool,
) -> bytes:
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    target = f"{url.scheme}://{url.netloc}{path}" if absolute_form else path
    lines = [f"{method} {target} HTTP/1.1", f"host: {url.netloc}"]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"content-length: {len(body)}")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _tunnel(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int
) -> None:
    writer.write(f"CONNECT {host}:{port} HTTP/1.1\r\nhost: {host}:{port}\r\n\r\n".encode())
    await writer.drain()
    status, _ = await _read_head(reader)
    if status != 200:
        raise _Failure("connect", f"the upstream proxy refused CONNECT with {status}")


def _header(headers: list[tuple[str, str]], name: str) -> str:
    for k, v in headers:
        if k == name:
            return v
    return ""


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Status"
