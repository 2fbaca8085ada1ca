"""One job's upstream call: its attempts, the client's answer, and the heartbeat.

Theory of operation
-------------------
A call answers one request from mitmproxy with one answer, made from one or more upstream
attempts. Where the client's answer stands is the call's ``Phase``:

- ``PENDING``: nothing sent yet. A quick non-stream answer (or any answer to a call without a
  translator) is passed on whole, status and headers as the upstream sent them; the relay's
  hooks map errors and translate whole answers.
- ``STREAMING``: the client has ``200 text/event-stream`` from the link (``LOCAL_HEADER:
  translated``) and gets the translator's events; from here on every failure is the
  translator's ``response.failed``, never a truncated body (docs/mitmproxy-notes.md §6).
- ``DONE``: the answer has ended (a terminal event, a whole answer, or a JSON error).

Rules:

1. A call with a translator commits (``PENDING`` → ``STREAMING``, ``response.created`` at once)
   when an upstream's event stream starts, or after ``COMMIT_GRACE_S`` (at most
   ``keepalive_s``) without one: a reasoning model may think for minutes before its headers,
   and Codex must hear something (docs/mitmproxy-notes.md §5, "a callable cannot run ahead of the
   upstream's headers", is why the link exists).
2. One heartbeat timer, on the injected clock, does every timed thing: the commit of rule 1;
   a keep-alive (the translator's ``response.in_progress``, not an SSE comment: Codex's idle
   timer counts only events its parser yields, docs/codex-contract.md §7.1) after ``keepalive_s``
   without output; and the idle timeout (``relay_timeout``) while an upstream step (connect,
   head, body) is under way. It is re-armed on state changes only, never per event: each beat
   works out the next due time from the last write and the last upstream data.
3. An upstream piece that produced no event (the upstream's own keep-alive comment, half an
   event) is answered with a keep-alive at most every ``KEEPALIVE_GAP_S``.
4. The upstream's body is read by its connection's protocol callback (``connection.py``), which
   calls ``on_body`` here: translate, write, no task wake-up per event.
5. An attempt fails by a transport failure (no connection, TLS, timeout, a cut), an HTTP error
   status, or a translator failure. While the client has no output item and no terminal event,
   the job's policy (``LinkJob.next_attempt``) is asked for the next attempt and a delay. The
   delay passes on the clock with keep-alives going on and no idle timeout; the next attempt's
   translator continues the client's stream (``StreamTranslator.continue_from``: no second
   ``response.created``, sequence numbers go on). A translator's own ``response.failed`` is
   withheld until the policy has declined, so a replaced attempt never shows it.
6. When no attempt is left: before the commit an HTTP error passes on as the upstream sent it
   and a transport failure is a JSON error Codex retries (``LOCAL_HEADER: transport-error``, so
   the relay does not map it again); after it, ``response.failed``.
7. The client's answer ends as soon as its terminal event is out; the rest of the upstream's
   body is read off for the connection's reuse (``ConnectionPool.drain``).
8. The client going away ends the call at once; its upstream connection is closed, never
   reused.

Every attempt is recorded on the job (``AttemptRecord``), with the times of the commit, the
first byte to the client and the end, for the log line, mitmweb and the usage ledger.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

from mitmrelay.core.exchange import Translator, answer_events
from mitmrelay.core.upstream_errors import MappedError, map_transport_error

from .clock import Timer
from .connection import Head, LinkFailure, UpstreamConnection
from .job import (
    LOCAL_HEADER,
    AttemptFailure,
    AttemptRecord,
    LinkAttempt,
    LinkJob,
    answer_headers,
)

if TYPE_CHECKING:
    from .server import ClientAnswer, UpstreamLink

logger = logging.getLogger("mitmrelay.link")

COMMIT_GRACE_S = 2.0  # how long a streamed call may wait for the upstream's headers
KEEPALIVE_GAP_S = 1.0  # rule 3
MAX_ERROR_BODY = 1024 * 1024  # an upstream error answer, read whole to map it
MAX_WHOLE_BODY = 64 * 1024 * 1024  # a whole answer passed on, or turned into events
_SSE_HEADERS = [
    ("content-type", "text/event-stream; charset=utf-8"),
    ("cache-control", "no-cache"),
    (LOCAL_HEADER, "translated"),
]
T = TypeVar("T")


class Phase(enum.Enum):
    PENDING = "pending"
    STREAMING = "streaming"
    DONE = "done"


class _ClientGone(Exception):
    """mitmproxy closed its side: the client went away."""


class Call:
    """One job's upstream call, driven by ``run()``; the server reports the client's departure
    (``client_gone``) and its back-pressure (``pause_upstream`` / ``resume_upstream``)."""

    def __init__(
        self,
        link: UpstreamLink,
        job: LinkJob,
        client: ClientAnswer,
        forwarded: list[tuple[bytes, bytes]],
    ) -> None:
        self.link, self.job, self.client = link, job, client
        self.settings = link.settings  # as they were when the call began
        self.clock = link.clock
        self.phase = Phase.PENDING
        self._forwarded = forwarded  # mitmproxy's request headers, minus hop-by-hop ones
        self._conn: UpstreamConnection | None = None
        self._translator: Translator | None = None  # the current attempt's
        now = self.clock.now()
        self._commit_at = now + min(COMMIT_GRACE_S, self.settings.keepalive_s)
        self._last_write = now
        self._upstream_since: float | None = None  # last upstream activity during a step
        self._timer: Timer | None = None
        self._step: asyncio.Future[object] | None = None
        self._interrupt: BaseException | None = None  # why the step was broken off
        self._stream_end: asyncio.Future[AttemptFailure | None] | None = None
        self._withheld = b""  # a replaceable attempt's response.failed (rule 5)

    # ------------------------------------------------------------------ driver

    async def run(self) -> None:
        attempt = self.job.attempt
        try:
            while True:
                failure = await self._attempt(attempt)
                self.job.attempts.append(
                    AttemptRecord(
                        attempt.label,
                        attempt.url.geturl(),
                        self.job.status,
                        failure.error if failure else None,
                    )
                )
                if failure is None:
                    return
                following = self._next_attempt(failure)
                if following is None:
                    self._give_up(failure)
                    return
                delay, attempt = following
                self._translator = attempt.translator  # keep-alives meanwhile are its own
                if delay > 0:
                    await self._pause(delay)
        except _ClientGone:
            pass
        finally:
            self._stop()

    def _next_attempt(self, failure: AttemptFailure) -> tuple[float, LinkAttempt] | None:
        """The policy's answer, if it may be asked (rule 5) and gives a usable attempt."""
        policy = self.job.next_attempt
        if policy is None or not self._replaceable():
            return None
        try:
            following = policy(failure)
        except Exception:
            logger.exception("mitmrelay link: the attempt policy failed; giving up")
            return None
        if following is None:
            return None
        delay, attempt = following
        previous = failure.attempt.translator
        if (attempt.translator is None) != (previous is None):
            logger.error("mitmrelay link: a next attempt must translate as the first did")
            return None
        if attempt.translator is not None and previous is not None:
            try:
                attempt.translator.continue_from(previous)
            except ValueError as e:
                logger.error("mitmrelay link: the next attempt cannot take over: %s", e)
                return None
        self._withheld = b""
        return max(0.0, delay), attempt

    def _replaceable(self) -> bool:
        """Whether another attempt can still answer unnoticed: the client has no output item
        and no terminal event (a withheld one does not count)."""
        if self.phase is Phase.DONE:
            return False
        translator = self._translator
        return translator is None or not translator.has_output

    async def _attempt(self, attempt: LinkAttempt) -> AttemptFailure | None:
        """Run one attempt; None when the client's answer is settled by it."""
        self.job.begin(attempt)
        self._translator = attempt.translator
        self._arm()  # a continued attempt's translator may be due a keep-alive
        name = attempt.upstream or self.settings.upstream
        try:
            conn, (status, headers) = await self._request(attempt)
            self.job.status, self.job.response_headers = status, headers
            if status >= 400:
                body = await self._read_whole(conn, MAX_ERROR_BODY)
                self.job.record(body)
                error = attempt.wire.map_error(
                    status, dict(headers), body, upstream=name, now=self.link.wall
                )
                return AttemptFailure(attempt, error, status, body)
            content_type = next((v for k, v in headers if k == "content-type"), "")
            if self._translator is not None and content_type.lower().startswith(
                "text/event-stream"
            ):
                return await self._stream(conn)
            body = await self._read_whole(conn, MAX_WHOLE_BODY)
        except LinkFailure as f:
            self._drop_connection()
            return AttemptFailure(
                attempt, map_transport_error(f.kind, f.detail, upstream=name), None
            )
        self.job.record(body)
        return self._deliver_whole(attempt, status, headers, body, name)

    async def _request(self, attempt: LinkAttempt) -> tuple[UpstreamConnection, Head]:
        """Connect (or reuse a pooled connection), send, await the head. A pooled connection
        the upstream closed meanwhile (no byte of an answer came) is replaced once."""
        url = attempt.url
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        for fresh in (False, True):
            self._upstream_step()
            conn, reused = await self._wait(
                self.link.pool.connect(
                    url, tls=self.settings.tls, proxy=self.settings.proxy, fresh=fresh
                )
            )
            self._conn = conn
            absolute = f"{url.scheme}://{url.netloc}{target}" if conn.absolute_form else target
            try:
                head = conn.send(attempt.method, absolute, self._headers(attempt), attempt.body)
                return conn, await self._wait(head)
            except LinkFailure as f:
                self._drop_connection()
                if not reused or conn.received or f.kind != "cut":
                    raise
        raise AssertionError("unreachable: the fresh connection's failure was raised")

    def _headers(self, attempt: LinkAttempt) -> list[tuple[bytes, bytes]]:
        own = {k.lower() for k in attempt.headers}
        headers = [(b"host", attempt.url.netloc.encode("latin-1"))]
        headers += [(k, v) for k, v in self._forwarded if k.decode("latin-1") not in own]
        headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in attempt.headers.items()]
        if attempt.body or attempt.method in ("POST", "PUT", "PATCH"):
            headers.append((b"content-length", b"%d" % len(attempt.body)))
        return headers

    # ------------------------------------------------------------------ reading

    async def _stream(self, conn: UpstreamConnection) -> AttemptFailure | None:
        """An event stream to translate: the protocol callback drives it (``on_body``)."""
        self._commit()
        self._stream_end = asyncio.get_running_loop().create_future()
        self._upstream_step()
        conn.read_body(self)
        return await self._wait(self._stream_end)

    def on_body(self, data: bytes) -> None:
        """The hot path: one upstream piece through the translator to the client."""
        now = self.clock.now()
        self._upstream_since = now
        job = self.job
        if job.record_limit:
            job.record(data)
        translator = self._translator
        assert translator is not None
        out = translator.feed(data)
        if translator.done:
            self._settle_stream(out)
            return
        if not out:
            if now - self._last_write < KEEPALIVE_GAP_S:
                return
            out = translator.keepalive()  # rule 3
        job.answer(out)
        self._last_write = now
        self.client.data(out)

    def on_end(self) -> None:
        assert self._translator is not None
        self._settle_stream(self._translator.finish())

    def on_failure(self, failure: LinkFailure) -> None:
        end = self._stream_end
        if end is not None and not end.done():
            end.set_exception(failure)

    def _settle_stream(self, out: bytes) -> None:
        """The translator reached its terminal event: rule 5 or rule 7."""
        end = self._stream_end
        conn, self._conn = self._conn, None
        failure = self._settled(out)
        if conn is not None:
            if failure is None:
                self.link.pool.drain(conn)
            else:
                conn.abort()  # the attempt is over; what else it sends is of no use
        if end is not None and not end.done():
            end.set_result(failure)

    def _settled(self, out: bytes) -> AttemptFailure | None:
        """Write a terminal event and end the answer, or withhold a replaceable failure."""
        translator = self._translator
        assert translator is not None
        response = translator.response
        if response.get("status") == "failed" and self._replaceable():
            self._withheld = out
            error = response.get("error") or {}
            mapped = MappedError(
                502, error.get("code", "server_error"), "server_error", error.get("message", "")
            )
            return AttemptFailure(self.job.attempt, mapped, self.job.status)
        self._write(out)
        self._end()
        return None

    async def _read_whole(self, conn: UpstreamConnection, limit: int) -> bytes:
        sink = _WholeBody(self, conn, limit)
        conn.read_body(sink)
        body = await self._wait(sink.done)
        if self._conn is conn:
            self._conn = None  # the connection went back to the pool (or closed) at the end
        return body

    def _deliver_whole(
        self,
        attempt: LinkAttempt,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
        name: str,
    ) -> AttemptFailure | None:
        if self.phase is Phase.PENDING:
            self._answer(status, answer_headers(headers), body)
            return None
        # Committed while the answer was on its way: a whole answer is the stream it is
        # equivalent to on its wire (core/exchange.py answer_events, as the relay's hooks).
        translator = self._translator
        assert translator is not None
        out = answer_events(translator, body, event_stream=False, upstream=name, wire=attempt.wire)
        return self._settled(out)

    # ------------------------------------------------------------------ giving up

    def _give_up(self, failure: AttemptFailure) -> None:
        """No attempt left (rule 6)."""
        if self.phase is Phase.STREAMING:
            assert self._translator is not None
            out = self._withheld  # the translator's own failure, already its terminal event
            if not out:
                self.job.failure = failure.error
                out = self._translator.fail(failure.error.code, failure.error.message)
            self._write(out)
            self._end()
        elif failure.status is not None:  # the upstream's own error answer: passed on
            self._answer(failure.status, answer_headers(self.job.response_headers), failure.body)
        else:
            error = failure.error
            self.job.failure = error
            logger.debug("mitmrelay link: %s", error.message)  # the relay logs the exchange
            headers = [*error.headers().items(), (LOCAL_HEADER, "transport-error")]
            self._answer(error.status, headers, error.body())

    # ------------------------------------------------------------------ the client's side

    def _commit(self) -> None:
        """Rule 1: from here on the client has a 200 event stream the link translates."""
        if self.phase is not Phase.PENDING:
            return
        translator = self._translator
        assert translator is not None
        now = self.clock.now()
        self.phase = Phase.STREAMING
        self.job.committed_at = now
        self._first_byte(now)
        self.client.start(200, _SSE_HEADERS)
        self._write(translator.start())
        self._arm()

    def _write(self, out: bytes) -> None:
        if out:
            self.job.answer(out)
            self._last_write = self.clock.now()
            self.client.data(out)

    def _end(self) -> None:
        self.client.end()
        self.phase = Phase.DONE
        self.job.ended_at = self.clock.now()
        self._disarm()

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self._first_byte(self.clock.now())
        self.client.answer(status, headers, body)
        self.phase = Phase.DONE
        self.job.ended_at = self.clock.now()
        self._disarm()

    def _first_byte(self, now: float) -> None:
        if self.job.first_byte_at is None:
            self.job.first_byte_at = now

    def client_gone(self) -> None:
        """Rule 8."""
        if self.phase is not Phase.DONE:
            self.phase = Phase.DONE
            self._break_off(_ClientGone())

    def pause_upstream(self) -> None:
        if self._conn is not None:
            self._conn.pause()

    def resume_upstream(self) -> None:
        if self._conn is not None:
            self._conn.resume()

    # ------------------------------------------------------------------ waiting, heartbeat

    async def _wait(self, awaitable: Awaitable[T]) -> T:
        """Await one step (an upstream step, or the delay between attempts). The heartbeat or
        the client's departure may break it off: then the reason is raised."""
        if self._interrupt is not None:  # broken off between two steps
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            reason, self._interrupt = self._interrupt, None
            raise reason
        step = asyncio.ensure_future(awaitable)
        self._step = step  # type: ignore[assignment]
        try:
            return await step
        except asyncio.CancelledError:
            reason, self._interrupt = self._interrupt, None
            if reason is None:
                raise  # the call itself was cancelled (the link is closing)
            raise reason from None
        finally:
            self._step = None

    async def _pause(self, delay: float) -> None:
        """The policy's delay: no upstream step, so no idle timeout; keep-alives go on."""
        self._upstream_since = None
        self._arm()
        waited: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        timer = self.clock.call_at(
            self.clock.now() + delay, lambda: waited.done() or waited.set_result(None)
        )
        try:
            await self._wait(waited)
        finally:
            timer.cancel()

    def _upstream_step(self) -> None:
        self._upstream_since = self.clock.now()
        self._arm()

    def _break_off(self, reason: BaseException) -> None:
        if self._interrupt is None or isinstance(reason, _ClientGone):
            self._interrupt = reason
        self._drop_connection()
        step = self._step
        if step is not None and not step.done():
            step.cancel()

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abort()

    def _arm(self) -> None:
        """(Re)schedule the heartbeat for the earliest thing due (rule 2)."""
        self._disarm()
        due = self._due()
        if due < math.inf:
            self._timer = self.clock.call_at(due, self._beat)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _due(self) -> float:
        if self.phase is Phase.DONE:
            return math.inf
        due = math.inf
        if self._upstream_since is not None:
            due = self._upstream_since + self.settings.idle_timeout_s
        if self._translator is not None:
            if self.phase is Phase.PENDING:
                due = min(due, self._commit_at)
            else:
                due = min(due, self._last_write + self.settings.keepalive_s)
        return due

    def _beat(self) -> None:
        self._timer = None
        if self.phase is Phase.DONE:
            return
        now = self.clock.now()
        since = self._upstream_since
        if since is not None and now - since >= self.settings.idle_timeout_s:
            # The attempt fails; the driver decides what the client gets.
            self._upstream_since = None
            idle = self.settings.idle_timeout_s
            self._break_off(LinkFailure("timeout", f"no data for {idle:g} s (relay_timeout)"))
            return
        translator = self._translator
        if translator is not None:
            if self.phase is Phase.PENDING and now >= self._commit_at:
                self._commit()  # response.created: the client hears at once
            elif (
                self.phase is Phase.STREAMING
                and now - self._last_write >= self.settings.keepalive_s
            ):
                self._write(translator.keepalive())
        self._arm()

    def _stop(self) -> None:
        self._disarm()
        self._drop_connection()


class _WholeBody:
    """The sink of an answer read whole (an error to map, a non-stream answer to pass on):
    bounded, each piece counting as upstream activity for the idle timeout."""

    def __init__(self, call: Call, conn: UpstreamConnection, limit: int) -> None:
        self.call, self.conn, self.limit = call, conn, limit
        self.body = bytearray()
        self.done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def on_body(self, data: bytes) -> None:
        self.call._upstream_since = self.call.clock.now()
        self.body += data
        if len(self.body) > self.limit and not self.done.done():
            self.done.set_exception(
                LinkFailure("protocol", f"the answer exceeded {self.limit} bytes")
            )
            self.conn.abort()

    def on_end(self) -> None:
        if not self.done.done():
            self.done.set_result(bytes(self.body))

    def on_failure(self, failure: LinkFailure) -> None:
        if not self.done.done():
            self.done.set_exception(failure)
