"""The link's loopback server: mitmproxy's side of the link, and the registry of jobs.

The relay registers a ``LinkJob`` per flow and reroutes the flow here with ``JOB_HEADER:
token``; this server takes the job whose token the request names and runs its upstream call
(``call.py``), writing the answer back to mitmproxy. h11 frames both directions. Rules:

1. Only a registered token is served, once: anything else gets ``403`` and nothing goes
   upstream (the request's target and body are not used either: the job names the URL and
   carries the body, so nothing on a flow can send the relay's key elsewhere).
2. Requests on one connection are served in turn (mitmproxy does not pipeline); once an answer
   ended, the connection serves the next request, unless the call broke it off.
3. mitmproxy closing its side means the client went away: the call is abandoned at once and
   its upstream connection closed, never pooled.
4. When mitmproxy reads more slowly than the upstream writes (the transport's write buffer is
   full), reading from the upstream pauses until it drains.
5. A burst of events is sent to mitmproxy in one piece, each event waiting ``FLUSH_S`` at
   most; an event after a pause goes out at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus

import h11

from .call import Call
from .clock import Clock, LoopClock, Timer
from .job import HOP_BY_HOP, JOB_HEADER, LOCAL_HEADER, LinkJob
from .pool import ConnectionPool

logger = logging.getLogger("mitmrelay.link")

JOB_TTL_S = 600.0  # a registered job whose flow never arrived is forgotten after this
MAX_JOBS = 10_000  # registered jobs waiting for their flow; the oldest go first
# Events written within FLUSH_S of the previous send to mitmproxy wait and go with the next
# send, at most FLUSH_S later: a burst of upstream events (a fast model, 1 ms apart) then costs
# mitmproxy one chunk to carry instead of one per event, and mitmproxy's per-chunk work is most
# of the relay's CPU (bench/relay_cpu.py, events 1 ms apart, same run: 1.48x pass-through at
# 2 ms, 1.15x at 5 ms). An event after a pause goes out at once, so neither the first event
# nor a keep-alive waits, and 5 ms is well under a frame of Codex's terminal rendering.
FLUSH_S = 0.005
_JOB_HEADER = JOB_HEADER.encode()
_REFUSED = (
    b'{"error":{"message":"mitmrelay: unknown link job",'
    b'"type":"invalid_request_error","param":null,"code":"forbidden"}}'
)


@dataclass
class LinkSettings:
    upstream: str  # the upstream base URL, as named in error messages
    idle_timeout_s: float  # relay_timeout: connecting, waiting for headers, between chunks
    keepalive_s: float  # upstream silence after which the client is sent a sign of life
    tls: Callable[[], ssl.SSLContext]  # trust as mitmproxy's upstream options say
    proxy: tuple[str, int] | None = None  # mitmproxy's upstream proxy (--mode upstream:…)


class UpstreamLink:
    """The link server. ``await start()`` once on the running loop, ``register`` a job per
    flow, reroute the flow to ``127.0.0.1:port`` with ``JOB_HEADER: token``; ``close()``.

    ``clock``: the link's timers and times (``clock.py``); the running loop's when omitted.
    ``wall``: unix time, for HTTP dates in ``Retry-After``."""

    def __init__(
        self,
        settings: LinkSettings,
        *,
        clock: Clock | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.wall = wall
        self.port = 0
        self._clock = clock
        self._pool: ConnectionPool | None = None
        self._server: asyncio.Server | None = None
        self._starting: asyncio.Lock | None = None
        self._jobs: dict[str, LinkJob] = {}
        self._calls: set[asyncio.Task[None]] = set()

    @property
    def clock(self) -> Clock:
        assert self._clock is not None, "the link has not started"
        return self._clock

    @property
    def pool(self) -> ConnectionPool:
        assert self._pool is not None, "the link has not started"
        return self._pool

    async def start(self) -> None:
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._server is not None:
                return
            loop = asyncio.get_running_loop()
            if self._clock is None:
                self._clock = LoopClock(loop)
            self._pool = ConnectionPool(self._clock)
            self._server = await loop.create_server(lambda: _MitmproxySide(self), "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            logger.debug("mitmrelay: upstream link listening on 127.0.0.1:%d", self.port)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._calls):
            task.cancel()
        if self._pool is not None:
            self._pool.close()

    # ------------------------------------------------------------------ jobs

    def register(self, job: LinkJob) -> str:
        """A token naming ``job`` for the one request that may claim it."""
        now = self._now()
        for token in [t for t, j in self._jobs.items() if now - j.registered > JOB_TTL_S]:
            del self._jobs[token]
        while len(self._jobs) >= MAX_JOBS:
            del self._jobs[next(iter(self._jobs))]
        job.registered = now
        token = secrets.token_urlsafe(18)
        self._jobs[token] = job
        return token

    def discard(self, token: str | None) -> None:
        if token:
            self._jobs.pop(token, None)

    def take(self, token: str) -> LinkJob | None:
        job = self._jobs.pop(token, None)
        if job is None or self._now() - job.registered > JOB_TTL_S:
            return None
        return job

    def _now(self) -> float:
        # Jobs may be registered before the link started (the addon's hook tests do): the
        # loop clock reads time.monotonic() too.
        return self._clock.now() if self._clock is not None else time.monotonic()

    def _run(self, call: Call, done: Callable[[asyncio.Task[None]], None]) -> None:
        task = asyncio.ensure_future(call.run())
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)
        task.add_done_callback(done)


class _MitmproxySide(asyncio.Protocol):
    """One connection from mitmproxy, framed by h11 as a server."""

    def __init__(self, link: UpstreamLink) -> None:
        self.link = link
        self.h11 = h11.Connection(h11.SERVER)
        self.transport: asyncio.Transport | None = None
        self.call: Call | None = None
        self._request: h11.Request | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.h11.receive_data(data)
        if self.call is None:
            self._next()

    def eof_received(self) -> bool | None:
        self._gone()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone()

    def pause_writing(self) -> None:
        if self.call is not None:
            self.call.pause_upstream()

    def resume_writing(self) -> None:
        if self.call is not None:
            self.call.resume_upstream()

    def _gone(self) -> None:
        if self.call is not None:
            self.call.client_gone()

    def _next(self) -> None:
        """Read requests until one starts a call (or more bytes are needed)."""
        assert self.transport is not None
        while self.call is None:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError:
                self.transport.close()
                return
            if type(event) is h11.Request:
                self._request = event
            elif type(event) is h11.EndOfMessage:
                assert self._request is not None
                self._serve(self._request)
            elif type(event) is h11.Data:
                continue  # the body travels in the job (rule 1)
            elif type(event) is h11.ConnectionClosed:
                self.transport.close()
                return
            else:  # NEED_DATA, or PAUSED until our answer is complete
                return

    def _serve(self, request: h11.Request) -> None:
        token = next((v for k, v in request.headers if k == _JOB_HEADER), b"")
        job = self.link.take(token.decode("latin-1"))
        # Batching is a matter of the transport, on real time even when the link's timers run
        # on a hand-moved clock (tests): that clock must not hold data back.
        answer = ClientAnswer(self, LoopClock(asyncio.get_running_loop()))
        if job is None:
            headers = [("content-type", "application/json"), (LOCAL_HEADER, "refused")]
            answer.answer(403, headers, _REFUSED)
            self._cycle()
            return
        forwarded = [(k, v) for k, v in request.headers if k.decode("latin-1") not in HOP_BY_HOP]
        self.call = Call(self.link, job, answer, forwarded)
        self.link._run(self.call, self._call_done)

    def _call_done(self, task: asyncio.Task[None]) -> None:
        self.call = None
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "mitmrelay: upstream link failed", exc_info=task.exception()
            )  # the answer is broken off: mitmproxy reports the flow as failed
        self._cycle()

    def _cycle(self) -> None:
        """The answer ended: serve the next request, or close if this exchange broke off."""
        assert self.transport is not None
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            self._next()
        elif not self.transport.is_closing():
            self.transport.close()


class ClientAnswer:
    """The answer to mitmproxy, framed by h11: chunked while it streams (its length is not
    known in advance), with a length when it is whole. Streamed data is sent at once, or
    within ``FLUSH_S`` with what follows it; ``end()`` sends what waits first."""

    def __init__(self, side: _MitmproxySide, clock: Clock) -> None:
        assert side.transport is not None
        self._h11 = side.h11
        self._transport = side.transport
        self.started = False
        self._clock = clock
        self._batch: list[bytes] = []
        self._last_send = -math.inf
        self._flush_timer: Timer | None = None

    @property
    def gone(self) -> bool:
        return self._transport.is_closing()

    def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.started = True
        self._send(h11.Response(status_code=status, headers=headers, reason=_reason(status)))

    def data(self, data: bytes) -> None:
        now = self._clock.now()
        if self._batch or now - self._last_send < FLUSH_S:
            self._batch.append(data)
            if self._flush_timer is None:
                self._flush_timer = self._clock.call_at(self._last_send + FLUSH_S, self._flush)
            return
        self._last_send = now
        self._write(data)

    def _flush(self) -> None:
        self._flush_timer = None
        if self._batch:
            data = b"".join(self._batch)
            self._batch.clear()
            self._last_send = self._clock.now()
            self._write(data)

    def _write(self, data: bytes) -> None:
        # One write of the framed chunk: a transport's write() sends at once when its buffer
        # is empty, where writelines() also registers and unregisters a writer with the
        # selector (two more system calls per event; bench/relay_cpu.py).
        if self.gone:
            return
        self._transport.write(b"".join(self._h11.send_with_data_passthrough(h11.Data(data=data))))

    def end(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        self._flush()
        self._send(h11.EndOfMessage())

    def answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.started = True
        headers = [*headers, ("content-length", str(len(body)))]
        self._send(h11.Response(status_code=status, headers=headers, reason=_reason(status)))
        if body:
            self._write(body)
        self._send(h11.EndOfMessage())

    def _send(self, event: h11.Event) -> None:
        if self._h11.our_state is h11.ERROR or self.gone:
            return
        data = self._h11.send(event)
        if data:
            self._transport.write(data)


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Status"
