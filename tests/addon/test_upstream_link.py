"""The upstream link (addon/mitmrelay/link/) on a bare event loop: what reaches mitmproxy for
each way an upstream can behave or fail, and how a call's attempts take over from each other.

The client here is httpx, standing where mitmproxy stands in production; the real mitmdump
path is covered in test_mitmdump.py. Two upstreams: the threaded ``FakeUpstream`` (providers'
shapes and wording) for whole exchanges, and ``ScriptedUpstream`` below, on the test's own
loop, whose bytes the test writes one by one (framing faults, silences). Timed behaviour runs
on a ``ManualClock``: the test moves time and counts keep-alives exactly; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import ssl
import urllib.parse
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import brotli
import httpx
import openai
import pydantic
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from openai.types.responses import ResponseStreamEvent
from support.fake_upstream import FakeUpstream, Reply, error, text
from support.manual_clock import ManualClock

from mitmrelay.core.body import JsonBody
from mitmrelay.core.context import TranslationContext
from mitmrelay.core.sse import SSEDecoder
from mitmrelay.core.stream import StreamTranslator
from mitmrelay.link import (
    JOB_HEADER,
    LOCAL_HEADER,
    AttemptFailure,
    LinkAttempt,
    LinkJob,
    LinkSettings,
    UpstreamLink,
)
from mitmrelay.link.connection import LinkFailure, UpstreamConnection
from mitmrelay.link.pool import POOL_IDLE_S

CHAT = {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}
EVENTS = pydantic.TypeAdapter(ResponseStreamEvent)
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)


def sse(obj: dict[str, Any] | str) -> bytes:
    data = obj if isinstance(obj, str) else json.dumps(obj)
    return b"data: " + data.encode() + b"\n\n"


def delta(content: str | None = None, finish: str | None = None) -> bytes:
    d = {} if content is None else {"content": content}
    return sse({"choices": [{"index": 0, "delta": d, "finish_reason": finish}]})


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)


END = b"0\r\n\r\n"
WHOLE_TEXT = delta("hi") + delta(finish="stop") + sse("[DONE]")


class Answer:
    def __init__(self, status: int, headers: httpx.Headers, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(e.data) for e in SSEDecoder().feed(self.body)]

    def types(self) -> list[str]:
        return [e["type"] for e in self.events()]

    def text(self) -> str:
        return "".join(
            e["delta"] for e in self.events() if e["type"] == "response.output_text.delta"
        )

    def failure(self) -> dict[str, Any] | None:
        last = self.events()[-1]
        return last["response"]["error"] if last["type"] == "response.failed" else None

    def keepalives_before_output(self) -> int:
        """``response.in_progress`` events after the first (the keep-alives), before any
        output item."""
        kinds = self.types()
        first_item = next(
            (i for i, k in enumerate(kinds) if k == "response.output_item.added"), len(kinds)
        )
        return kinds[:first_item].count("response.in_progress") - 1

    def assert_one_valid_stream(self) -> None:
        """One ``response.created``, contiguous sequence numbers, one terminal event, every
        event valid for the openai SDK, and the SDK's stream helper accepts the whole."""
        events = self.events()
        assert [e["type"] for e in events].count("response.created") == 1
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        terminal = ("response.completed", "response.failed", "response.incomplete")
        assert sum(e["type"] in terminal for e in events) == 1
        assert events[-1]["type"] in terminal
        for event in events:
            EVENTS.validate_python(event)
        if events[-1]["type"] == "response.completed":
            body = self.body
            client = openai.OpenAI(
                api_key="k",
                base_url="http://relay.invalid/v1",
                http_client=httpx.Client(
                    transport=httpx.MockTransport(
                        lambda _: httpx.Response(
                            200, headers={"content-type": "text/event-stream"}, content=body
                        )
                    )
                ),
            )
            with client.responses.stream(model="m", input="x") as stream:
                final = stream.get_final_response()
            assert final.id == events[-1]["response"]["id"]


def new_translator(up_url: str = "upstream") -> StreamTranslator:
    counter = itertools.count(1)
    return StreamTranslator(
        TranslationContext("gpt-5.5", "m"),
        response_id="resp_1",
        created_at=1,
        new_id=lambda kind: f"{kind}_{next(counter)}",
        upstream=up_url,
    )


def attempt_for(
    up_url: str, *, sse: bool = True, label: str = "", body: dict[str, Any] = CHAT
) -> LinkAttempt:
    """An attempt as the relay makes it: the Chat body in memory; a streamed call carries its
    translator."""
    return LinkAttempt(
        url=urllib.parse.urlsplit(up_url + "/chat/completions"),
        headers={"authorization": "Bearer sk-relay"},
        body=json.dumps(body).encode(),
        translator=new_translator(up_url) if sse else None,
        label=label,
    )


def job_for(up_url: str, *, sse: bool = True, **kw: Any) -> LinkJob:
    return LinkJob(attempt_for(up_url, sse=sse), **kw)


def new_link(
    up_url: str,
    *,
    idle_timeout_s: float = 10.0,
    keepalive_s: float = 10.0,
    clock: ManualClock | None = None,
    proxy: tuple[str, int] | None = None,
) -> UpstreamLink:
    settings = LinkSettings(up_url, idle_timeout_s, keepalive_s, ssl.create_default_context, proxy)
    return UpstreamLink(settings, clock=clock)


def run_link(
    up_url: str, scenario: Callable[[UpstreamLink], Awaitable[Any]], **settings: Any
) -> Any:
    async def main() -> Any:
        link = new_link(up_url, **settings)
        await link.start()
        try:
            return await scenario(link)
        finally:
            link.close()

    return asyncio.run(main())


class Call:
    """mitmproxy's request for ``job`` (an empty body: the job carries it), read as it comes."""

    def __init__(self, link: UpstreamLink, job: LinkJob) -> None:
        self.link, self.job = link, job
        self.status = 0
        self.headers = httpx.Headers()
        self.body = b""
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Call:
        token = self.link.register(self.job)

        async def read() -> None:
            async with (
                httpx.AsyncClient(timeout=30) as client,
                client.stream(
                    "POST",
                    f"http://127.0.0.1:{self.link.port}/v1/chat/completions",
                    headers={JOB_HEADER: token, "content-type": "application/json"},
                ) as r,
            ):
                self.status, self.headers = r.status_code, r.headers
                async for chunk in r.aiter_raw():
                    self.body += chunk

        self._task = asyncio.ensure_future(read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        if not self._task.done():
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    def answer(self) -> Answer:
        return Answer(self.status, self.headers, self.body)

    async def until(self, predicate: Callable[[Answer], bool]) -> Answer:
        """Wait (deadline-polling, not an assertion on time) until what arrived satisfies
        ``predicate``."""
        await until(lambda: predicate(self.answer()))
        return self.answer()

    async def done(self) -> Answer:
        assert self._task is not None
        await asyncio.wait_for(self._task, 30)
        return self.answer()


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


async def call(link: UpstreamLink, job: LinkJob) -> Answer:
    async with Call(link, job) as c:
        return await c.done()


def one_call(up_url: str, job: LinkJob, **settings: Any) -> Answer:
    return run_link(up_url, lambda link: call(link, job), **settings)


@dataclass
class Exchange:
    """One request as the scripted upstream received it; the test writes the answer."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    writer: asyncio.StreamWriter

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    def close(self) -> None:
        self.writer.close()


@dataclass
class ScriptedUpstream:
    """A raw HTTP/1.1 server on the test's loop: each request waits in a queue for the test."""

    connections: int = 0
    closed: int = 0  # connections the other side closed
    port: int = 0
    _queue: asyncio.Queue[Exchange] = field(default_factory=asyncio.Queue)
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aenter__(self) -> ScriptedUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def next(self) -> Exchange:
        return await asyncio.wait_for(self._queue.get(), 30)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *lines = head[:-4].decode("latin-1").split("\r\n")
                method, target, _ = line.split(" ", 2)
                headers = {}
                for h in lines:
                    k, _, v = h.partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                await self._queue.put(Exchange(method, target, headers, body, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed += 1


def scripted(
    scenario: Callable[[UpstreamLink, ScriptedUpstream], Awaitable[Any]], **settings: Any
) -> Any:
    async def main() -> Any:
        async with ScriptedUpstream() as up:
            link = new_link(up.url, **settings)
            await link.start()
            try:
                return await scenario(link, up)
            finally:
                link.close()

    return asyncio.run(main())


def is_streaming(a: Answer) -> bool:
    return a.types()[:2] == ["response.created", "response.in_progress"]


# ------------------------------------------------------------------------ normal answers


def test_a_stream_is_translated_with_the_relays_key_and_the_body_from_the_job():
    with FakeUpstream(key="sk-relay") as up:
        up.enqueue(text("hello there"))
        job = job_for(up.url)
        answer = one_call(up.url, job)
    assert answer.status == 200 and answer.headers[LOCAL_HEADER] == "translated"
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert answer.types()[:2] == ["response.created", "response.in_progress"]
    assert answer.types()[-1] == "response.completed" and answer.text() == "hello there"
    answer.assert_one_valid_stream()
    assert bytes(job.answered) == answer.body  # kept for mitmweb
    assert job.status == 200 and job.recorded.endswith(b"data: [DONE]\n\n")  # the raw stream
    sent = up.requests[0]
    assert sent["headers"]["authorization"] == "Bearer sk-relay"
    assert JOB_HEADER not in sent["headers"]
    assert sent["raw"] == job.attempt.body  # the job's body, not the (empty) request's
    assert sent["headers"]["content-type"] == "application/json"  # mitmproxy's headers go on
    assert [(a.label, a.status, a.failure) for a in job.attempts] == [("", 200, None)]
    assert job.first_byte_at is not None and job.committed_at == job.first_byte_at
    assert job.ended_at is not None and job.ended_at >= job.first_byte_at


def test_a_quick_error_keeps_its_status_and_headers():
    with FakeUpstream() as up:
        up.enqueue(error(429, {"error": {"message": "slow down"}}, {"retry-after": "7"}))
        job = job_for(up.url)
        answer = one_call(up.url, job)
    assert answer.status == 429 and answer.headers["retry-after"] == "7"
    assert json.loads(answer.body) == {"error": {"message": "slow down"}}
    assert LOCAL_HEADER not in answer.headers  # the relay maps it, as any upstream answer
    assert job.failure is None and not job.committed
    [attempt] = job.attempts
    assert attempt.status == 429 and attempt.failure is not None
    assert attempt.failure.code == "rate_limit_exceeded"


def test_a_gzip_stream_is_decoded():
    with FakeUpstream() as up:
        up.enqueue(Reply(chunks=[{"content": "squeezed"}], gzip=True))
        answer = one_call(up.url, job_for(up.url))
    assert "content-encoding" not in answer.headers
    assert answer.text() == "squeezed" and answer.types()[-1] == "response.completed"


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("br", brotli.compress),
        ("zstd", lambda b: pytest.importorskip("backports.zstd").compress(b)),
    ],
)
def test_every_encoding_an_upstream_may_use_despite_identity_is_decoded(encoding, compress):
    body = compress(WHOLE_TEXT)

    async def scenario(link: UpstreamLink, up: ScriptedUpstream) -> Answer:
        async with Call(link, job_for(up.url)) as c:
            ex = await up.next()
            ex.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"content-encoding: %s\r\ncontent-length: %d\r\n\r\n%s"
                % (encoding.encode(), len(body), body)
            )
            return await c.done()

    answer = scripted(scenario)
    assert answer.text() == "hi" and answer.types()[-1] == "response.completed"


def test_connections_to_the_upstream_are_reused():
    async def two(link: UpstreamLink) -> None:
        for _ in range(2):
            assert (await call(link, job_for(up.url))).status == 200

    with FakeUpstream() as up:
        run_link(up.url, two)
    assert len(up.requests) == 2 and up.connections == 1


def test_the_answer_ends_at_its_terminal_event_and_the_rest_is_read_off_for_reuse():
    """The client has its answer at ``[DONE]``; the chunked body's end comes later, and the
    connection still serves the next call."""

    async def scenario(link: UpstreamLink, up: ScriptedUpstream) -> tuple[Answer, Answer]:
        async with Call(link, job_for(up.url)) as first:
            ex = await up.next()
            ex.write(SSE_HEAD + chunked(WHOLE_TEXT))
            answer = await first.done()  # before the body's end
        ex.write(END)
        async with Call(link, job_for(up.url)) as second:
            again = await up.next()
            again.write(SSE_HEAD + chunked(WHOLE_TEXT) + END)
            return answer, await second.done()

    async def counted(link: UpstreamLink, up: ScriptedUpstream) -> tuple[Answer, Answer, int]:
        return (*(await scenario(link, up)), up.connections)

    first, second, connections = scripted(counted)
    assert first.types()[-1] == second.types()[-1] == "response.completed"
    assert connections == 1


def test_an_informational_answer_before_the_real_one_is_skipped():
    async def scenario(link: UpstreamLink, up: ScriptedUpstream) -> Answer:
        async with Call(link, job_for(up.url)) as c:
            ex = await up.next()
            ex.write(b"HTTP/1.1 100 Continue\r\n\r\n" + SSE_HEAD + chunked(WHOLE_TEXT) + END)
            return await c.done()

    assert scripted(scenario).text() == "hi"


def test_an_unknown_job_is_refused():
    async def forged(link: UpstreamLink) -> int:
        async with httpx.AsyncClient() as client:
            r = await client.post(
                f"http://127.0.0.1:{link.port}/v1/chat/completions",
                headers={JOB_HEADER: "guess"},
                content=b"{}",
            )
        return r.status_code

    with FakeUpstream() as up:
        assert run_link(up.url, forged) == 403
        assert up.requests == []


def test_an_expired_job_is_refused():
    clock = ManualClock()

    async def late(link: UpstreamLink) -> int:
        token = link.register(job_for(up.url))
        clock.advance(601)
        async with httpx.AsyncClient() as client:
            r = await client.post(
                f"http://127.0.0.1:{link.port}/v1/chat/completions", headers={JOB_HEADER: token}
            )
        return r.status_code

    with FakeUpstream() as up:
        assert run_link(up.url, late, clock=clock) == 403
        assert up.requests == []


# ------------------------------------------------------------------------ the clock


def test_silence_after_the_headers_gets_one_keepalive_per_keepalive_interval():
    clock = ManualClock()

    async def scenario(link: UpstreamLink, up: ScriptedUpstream) -> Answer:
        async with Call(link, job_for(up.url)) as c:
            ex = await up.next()
            ex.write(SSE_HEAD)
            await c.until(is_streaming)
            for n in range(1, 4):
                clock.advance(0.5)  # not due yet
                clock.advance(0.5)
                await c.until(lambda a, n=n: a.keepalives_before_output() == n)
            ex.write(chunked(delta("thought"), delta(finish="stop"), sse("[DONE]")) + END)
            return await c.done()

    answer = scripted(scenario, keepalive_s=1.0, clock=clock)
    assert answer.keepalives_before_output() == 3
    assert answer.text() == "thought"
    answer.assert_one_valid_stream()


def test_slow_headers_commit_after_the_grace_and_keep_the_client_informed():
    clock = ManualClock()
    job = job_for("x")

    async def scenario(link: UpstreamLink, up: ScriptedUpstream) -> Answer:
        job.attempt = attempt_for(up.url)
        async with Call(link, job) as c:
            ex = await up.next()
            clock.advance(0.99)
            assert not job.committed
            clock.advance(0.01)  # min(COMMIT_GRACE_S, keepalive_s) = 1 s
            await c.until(is_streaming)
            clock.advance(1.0)
            clock.advance(1.0)
            await c.until(lambda a: a.keepalives_before_output() == 2)
            ex.write(SSE_HEAD + chunked(delta("late"), delta(finish="stop"), sse("[DONE]")))
            return await c.done()

    answer = scripted(scenario, keepalive_s=1.0, clock=clock)
    assert answer.status == 200 and job.committed and job.committed_at == 1001.0
    assert answer.keepalives_before_output() == 2
    assert answer.text() == "late" and answer.types()[-1] == "response.completed"


def test_the_commit_grace_is_two_seconds_at_most():
    clock = ManualClock()
    job = job_for("x")

    async def scenario(link: UpstreamLink, up: ScriptedUpstream) -> Answer:
        job.attempt = attempt_for(up.url)
        async with Call(link, job) as c:
            ex = await up.next()
            clock.advance(1.99)
            assert not job.committed
            clock.advance(0.01)
            await c.until(is_streaming)
            ex.write(SSE_HEAD + chunked(WHOLE_TEXT) + END)
            return await c.done()

    answer = scripted(scenario, keepalive_s=10.0, clock=clock)
    assert job.committed_at == 1002.0 and answer.keepalives_before_output() == 0


def test_bytes_without_an_event_are_answered_with_a_keepalive_at_most_once_a_second():
    clock = ManualClock()

    async def scenario(link: UpstreamLink, up: ScriptedUpstream) -> Answer:
        async with Call(link, job_for(up.url)) as c:
            ex = await up.next()
            ex.write(SSE_HEAD + chunked(b": keep-alive\n\n"))
            await c.until(is_streaming)
            clock.advance(0.9)
            ex.write(chunked(b": keep-alive\n\n"))  # too soon: nothing
            await asyncio.sleep(0.05)
            clock.advance(0.1)
            ex.write(chunked(b": keep-alive\n\n"))  # a second since the last write
            await c.until(lambda a: a.keepalives_before_output() == 1)
            ex.write(chunked(WHOLE_TEXT) + END)
            return await c.done()

    answer = scripted(scenario, keepalive_s=30.0, clock=clock)
    assert answer.keepalives_before_output() == 1


def test_a_late_error_after_the_commit_becomes_response_failed():
    clock = ManualClock()

    async def scenario(link: UpstreamLink, up: ScriptedUpstream) -> Answer:
        async with Call(link, job_for(up.url)) as c:
            ex = await up.next()
            clock.advance(2.0)
            await c.until(is_streaming)
            body = b'{"error":{"message":"Rate limit reached. Please try again in 20s."}}'
            ex.write(b"HTTP/1.1 429 Too Many\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            return await c.done()

    answer = scripted(scenario, keepalive_s=5.0, clock=clock)
    assert answer.status == 200
    failure = answer.failure()
    assert failure is not None and failure["code"] == "rate_limit_exceeded"
    assert "try again in 20s" in failure["message"]
    answer.assert_one_valid_stream()


def test_a_late_whole_completion_becomes_events():
    clock = ManualClock()

    async def scenario(link: UpstreamLink, up: ScriptedUpstream) -> Answer:
        async with Call(link, job_for(up.url)) as c:
            ex = await up.next()
            clock.advance(2.0)
            await c.until(is_streaming)
            body = json.dumps(
                {
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "whole"},
                            "finish_reason": "stop",
                        }
                    ]
                }
            ).encode()
            ex.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
            return await c.done()

    answer = scripted(scenario, clock=clock)
    assert answer.status == 200 and answer.failure() is None
    assert answer.text() == "whole" and answer.types()[-1] == "response.completed"


def test_silence_before_the_headers_times_out_as_a_json_504():
    clock = ManualClock()

    async def scenario(link: UpstreamLink, up: ScriptedUpstream) -> Answer:
        async with Call(link, job_for(up.url)) as c:
            await up.next()
            clock.advance(0.49)
            await asyncio.sleep(0.05)
            assert c.status == 0
            clock.advance(0.01)
            return await c.done()

    answer = scripted(scenario, idle_timeout_s=0.5, clock=clock)
    assert answer.status == 504 and answer.headers[LOCAL_HEADER] == "transport-error"
    assert "relay_timeout" in json.loads(answer.body)["error"]["message"]


def test_silence_after_the_commit_times_out_as_a_failure_event_after_exact_keepalives():
    clock = ManualClock()

    async def scenario(link: UpstreamLink, up: ScriptedUpstream) -> Answer:
        async with Call(link, job_for(up.url)) as c:
            ex = await up.next()
            ex.write(SSE_HEAD)
            await c.until(is_streaming)
            for _ in range(8):
                clock.advance(0.5)
            return await c.done()

    answer = scripted(scenario, idle_timeout_s=4.0, keepalive_s=1.0, clock=clock)
    assert answer.status == 200
    assert answer.keepalives_before_output() == 3  # at 1, 2 and 3 s; at 4 s the timeout
    failure = answer.failure()
    assert failure is not None and failure["code"] == "server_error"
    assert "sent nothing for too long" in failure["message"]
    answer.assert_one_valid_stream()


def test_data_keeps_the_idle_timeout_away():
    clock = ManualClock()

    async def scenario(link: UpstreamLink, up: ScriptedUpstream) -> Answer:
        async with Call(link, job_for(up.url)) as c:
            ex = await up.next()
            ex.write(SSE_HEAD)
            await c.until(is_streaming)
            for n in range(6):
                clock.advance(0.9)
                ex.write(chunked(delta(f"w{n}")))
                await c.until(lambda a, n=n: f"w{n}" in a.text())
            ex.write(chunked(delta(finish="stop"), sse("[DONE]")) + END)
            return await c.done()

    answer = scripted(scenario, idle_timeout_s=1.0, keepalive_s=1.0, clock=clock)
    assert answer.types()[-1] == "response.completed"


# ------------------------------------------------------------------------ failures


def test_an_unreachable_upstream_is_a_json_502_made_by_the_link():
    job = job_for("http://127.0.0.1:1/v1")
    answer = one_call("http://127.0.0.1:1/v1", job)
    assert answer.status == 502 and answer.headers[LOCAL_HEADER] == "transport-error"
    assert json.loads(answer.body)["error"]["code"] == "server_error"
    assert "could not connect" in json.loads(answer.body)["error"]["message"]
    [attempt] = job.attempts
    assert attempt.status is None and attempt.failure is not None
    assert job.failure == attempt.failure and job.first_byte_at is not None


def test_a_cut_stream_ends_with_response_failed_not_a_truncated_body():
    with FakeUpstream() as up:
        up.enqueue(Reply(chunks=[{"content": "half"}], cut=True))
        answer = one_call(up.url, job_for(up.url))
    assert answer.status == 200
    failure = answer.failure()
    assert failure is not None and "closed the connection mid-answer" in failure["message"]
    # The answer itself is complete HTTP: httpx read it to its terminating chunk.
    assert answer.body.endswith(b"\n\n")
    answer.assert_one_valid_stream()


def test_a_cut_non_stream_answer_is_a_json_error():
    with FakeUpstream() as up:
        up.enqueue(Reply(chunks=[{"content": "half"}], cut=True))
        answer = one_call(up.url, job_for(up.url, sse=False))
    # A non-streamed job is read whole first, so a cut can still be answered cleanly.
    assert answer.status == 502 and answer.headers[LOCAL_HEADER] == "transport-error"


@pytest.mark.parametrize(
    ("answer_bytes", "phrase"),
    [
        (SSE_HEAD + b"zz\r\nab\r\n", "malformed HTTP/1.1 answer"),
        (SSE_HEAD + b"2\r\nabXY", "malformed HTTP/1.1 answer"),
        (SSE_HEAD + b"1" * 20000, "malformed HTTP/1.1 answer"),  # a chunk-size line, unbounded
        (SSE_HEAD + chunked(delta("half"))[:-5], "closed the connection mid-answer"),
    ],
    ids=["bad-size", "no-crlf", "oversize-line", "early-close"],
)
def test_broken_chunked_framing_ends_the_stream_with_response_failed(answer_bytes, phrase):
    async def scenario(link: UpstreamLink, up: ScriptedUpstream) -> Answer:
        async with Call(link, job_for(up.url)) as c:
            ex = await up.next()
            ex.write(answer_bytes)
            if phrase.startswith("closed"):
                ex.close()
            return await c.done()

    answer = scripted(scenario)
    failure = answer.failure()
    assert answer.status == 200 and failure is not None and phrase in failure["message"]
    answer.assert_one_valid_stream()


@pytest.mark.parametrize(
    "answer_bytes",
    # A head still incomplete past h11's 16 KiB bound is not an answer worth waiting for.
    [b"SSH-2.0-OpenSSH_9.6\r\n\r\n", b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 20000],
    ids=["not-http", "oversize-head"],
)
def test_an_answer_that_is_not_http_is_a_json_502(answer_bytes):
    async def scenario(link: UpstreamLink, up: ScriptedUpstream) -> Answer:
        async with Call(link, job_for(up.url)) as c:
            ex = await up.next()
            ex.write(answer_bytes)
            return await c.done()

    answer = scripted(scenario)
    assert answer.status == 502 and answer.headers[LOCAL_HEADER] == "transport-error"
    assert "malformed HTTP/1.1 answer" in json.loads(answer.body)["error"]["message"]


def test_a_close_before_the_headers_is_a_json_502():
    async def scenario(link: UpstreamLink, up: ScriptedUpstream) -> Answer:
        async with Call(link, job_for(up.url)) as c:
            (await up.next()).close()
            return await c.done()

    answer = scripted(scenario)
    assert answer.status == 502 and answer.headers[LOCAL_HEADER] == "transport-error"
    assert "closed the connection" in json.loads(answer.body)["error"]["message"]


def test_an_answer_framed_by_the_connections_end_is_read_to_it():
    async def scenario(link: UpstreamLink, up: ScriptedUpstream) -> Answer:
        async with Call(link, job_for(up.url)) as c:
            ex = await up.next()
            ex.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n" + WHOLE_TEXT)
            ex.close()
            return await c.done()

    answer = scripted(scenario)
    assert answer.text() == "hi" and answer.types()[-1] == "response.completed"


@pytest.mark.parametrize("gone_at", ["before headers", "mid-stream"])
def test_a_client_that_goes_away_abandons_the_upstream_call(gone_at: str):
    async def leave(link: UpstreamLink) -> int:
        token = link.register(job_for(up.url))
        reader, writer = await asyncio.open_connection("127.0.0.1", link.port)
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n%s: %s\r\n"
            b"content-length: 0\r\n\r\n" % (JOB_HEADER.encode(), token.encode())
        )
        await writer.drain()
        if gone_at == "mid-stream":
            await reader.readuntil(b"\r\n\r\n")
        else:
            await until(lambda: len(up.requests) == 1)
        writer.close()
        # The link drops the upstream connection instead of pooling it.
        await until(lambda: up.closed_connections > 0)
        return up.closed_connections  # seen before the link itself shuts down

    with FakeUpstream() as up:
        up.enqueue(
            Reply(
                chunks=[{"content": "x"}],
                delay_s=0.5 if gone_at == "before headers" else 0,
                think_s=2,
            )
        )
        assert run_link(up.url, leave) == 1


def test_requests_on_one_connection_from_mitmproxy_are_served_in_turn():
    async def two(link: UpstreamLink) -> list[int]:
        statuses = []
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(2):
                token = link.register(job_for(up.url))
                r = await client.post(
                    f"http://127.0.0.1:{link.port}/v1/chat/completions",
                    headers={JOB_HEADER: token},
                )
                statuses.append(r.status_code)
                assert r.text.rstrip().endswith("}")  # the whole stream, to response.completed
        return statuses

    with FakeUpstream() as up:
        assert run_link(up.url, two) == [200, 200]


# ------------------------------------------------------------------------ upstream proxy


def test_a_plain_upstream_is_reached_through_the_proxy_in_absolute_form():
    async def scenario(link: UpstreamLink, proxy: ScriptedUpstream) -> tuple[Answer, Exchange]:
        async with Call(link, job_for("http://llm.example:8000/v1")) as c:
            ex = await proxy.next()
            ex.write(SSE_HEAD + chunked(WHOLE_TEXT) + END)
            return await c.done(), ex

    async def main() -> tuple[Answer, Exchange]:
        async with ScriptedUpstream() as proxy:
            link = new_link("http://llm.example:8000/v1", proxy=("127.0.0.1", proxy.port))
            await link.start()
            try:
                return await scenario(link, proxy)
            finally:
                link.close()

    answer, ex = asyncio.run(main())
    assert ex.target == "http://llm.example:8000/v1/chat/completions"
    assert ex.headers["host"] == "llm.example:8000"
    assert answer.text() == "hi"


def test_a_proxy_refusing_connect_is_a_json_502():
    async def main() -> tuple[Answer, Exchange]:
        async with ScriptedUpstream() as proxy:
            link = new_link("https://llm.example/v1", proxy=("127.0.0.1", proxy.port))
            await link.start()
            try:
                async with Call(link, job_for("https://llm.example/v1")) as c:
                    ex = await proxy.next()
                    ex.write(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n"
                    )
                    return await c.done(), ex
            finally:
                link.close()

    answer, ex = asyncio.run(main())
    assert (ex.method, ex.target) == ("CONNECT", "llm.example:443")
    assert answer.status == 502 and answer.headers[LOCAL_HEADER] == "transport-error"
    assert "refused CONNECT with 407" in json.loads(answer.body)["error"]["message"]


# ------------------------------------------------------------------------ attempts


def test_a_503_falls_back_to_a_second_upstream_and_the_stream_reads_as_one():
    asked: list[AttemptFailure] = []

    with FakeUpstream() as first, FakeUpstream() as second:
        first.enqueue(error(503, {"error": {"message": "overloaded"}}))
        second.enqueue(text("from the second", reasoning="pondered"))

        def policy(failure: AttemptFailure) -> tuple[float, LinkAttempt] | None:
            asked.append(failure)
            if failure.attempt.label != "first":
                return None
            return 0.0, attempt_for(second.url, label="second")

        job = LinkJob(attempt_for(first.url, label="first"), next_attempt=policy)
        answer = one_call(first.url, job)
    assert [(f.status, f.error.code) for f in asked] == [(503, "server_error")]
    assert b"overloaded" in asked[0].body
    assert answer.status == 200 and answer.text() == "from the second"
    answer.assert_one_valid_stream()
    assert answer.events()[-1]["response"]["id"] == "resp_1"
    assert [(a.label, a.status) for a in job.attempts] == [("first", 503), ("second", 200)]
    assert job.attempts[0].failure is not None and job.attempts[1].failure is None
    assert job.url.geturl() == second.url + "/chat/completions"  # mitmweb's upstream leg


def test_a_refused_connection_falls_back_before_anything_reached_the_client():
    with FakeUpstream() as second:
        second.enqueue(text("rescued"))

        def policy(failure: AttemptFailure) -> tuple[float, LinkAttempt] | None:
            if failure.attempt.label == "down" and failure.status is None:
                return 0.0, attempt_for(second.url, label="up")
            return None

        job = LinkJob(attempt_for("http://127.0.0.1:1/v1", label="down"), next_attempt=policy)
        answer = one_call(second.url, job)
    assert answer.status == 200 and answer.text() == "rescued"
    answer.assert_one_valid_stream()
    down, up = job.attempts
    assert down.status is None and down.failure is not None and down.failure.code == "server_error"
    assert "could not connect" in down.failure.message
    assert (up.label, up.status, up.failure) == ("up", 200, None)
    assert job.failure is None


def test_a_429_is_retried_on_the_same_upstream_after_the_policys_delay_with_keepalives():
    clock = ManualClock()
    retry = attempt_for("x")

    def policy(failure: AttemptFailure) -> tuple[float, LinkAttempt] | None:
        if failure.status != 429 or len(job.attempts) > 1:
            return None
        nonlocal retry
        retry = LinkAttempt(
            failure.attempt.url, failure.attempt.headers, failure.attempt.body, new_translator()
        )
        return 4.5, retry

    job = LinkJob(attempt_for("x"), next_attempt=policy)

    async def scenario(link: UpstreamLink, up: ScriptedUpstream) -> Answer:
        job.attempt = attempt_for(up.url)
        async with Call(link, job) as c:
            ex = await up.next()
            ex.write(
                b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 4\r\ncontent-length: 30\r\n\r\n"
                b'{"error":{"message":"slow"}}  '
            )
            await until(lambda: len(job.attempts) == 1)
            for _ in range(4):  # 4 s of the 4.5 s wait: commit at 1 s, keep-alives at 2, 3, 4
                clock.advance(1.0)
            await c.until(lambda a: a.keepalives_before_output() == 3)
            assert len(job.attempts) == 1  # still waiting, and not timed out (relay_timeout 2 s)
            clock.advance(0.5)
            again = await up.next()
            again.write(SSE_HEAD + chunked(WHOLE_TEXT) + END)
            return await c.done()

    answer = scripted(scenario, keepalive_s=1.0, idle_timeout_s=2.0, clock=clock)
    assert answer.status == 200 and answer.text() == "hi"
    assert answer.keepalives_before_output() == 3
    answer.assert_one_valid_stream()
    assert [(a.status, a.failure is None) for a in job.attempts] == [(429, False), (200, True)]
    assert job.committed_at == 1001.0


def test_no_fallback_once_an_output_item_reached_the_client():
    asked: list[AttemptFailure] = []

    def policy(failure: AttemptFailure) -> tuple[float, LinkAttempt] | None:
        asked.append(failure)
        return 0.0, attempt_for("http://127.0.0.1:1/v1")

    with FakeUpstream() as up:
        up.enqueue(Reply(chunks=[{"content": "half"}], cut=True))
        job = job_for(up.url, next_attempt=policy)
        answer = one_call(up.url, job)
    assert asked == []
    assert answer.text() == "half"
    failure = answer.failure()
    assert failure is not None and "closed the connection mid-answer" in failure["message"]
    answer.assert_one_valid_stream()
    [attempt] = job.attempts
    assert attempt.status == 200 and attempt.failure is not None
    assert job.failure == attempt.failure


def test_an_error_chunk_before_any_output_falls_back_and_its_failure_is_never_shown():
    """OpenRouter's ``{"error": ...}`` chunk after the stream began: the translator's
    ``response.failed`` is withheld, and the next attempt's events follow on."""

    def policy(failure: AttemptFailure) -> tuple[float, LinkAttempt] | None:
        if failure.attempt.label:
            return None
        return 0.0, attempt_for(up.url, label="again")

    async def scenario(link: UpstreamLink, up: ScriptedUpstream) -> Answer:
        async with Call(link, job) as c:
            ex = await up.next()
            ex.write(SSE_HEAD + chunked(sse({"error": {"code": 502, "message": "died"}})))
            again = await up.next()
            again.write(SSE_HEAD + chunked(WHOLE_TEXT) + END)
            return await c.done()

    async def main() -> Answer:
        nonlocal up
        async with ScriptedUpstream() as up:
            link = new_link(up.url)
            await link.start()
            job.attempt = attempt_for(up.url)
            try:
                return await scenario(link, up)
            finally:
                link.close()

    up: Any = None
    job = LinkJob(attempt_for("x"), next_attempt=policy)
    answer = asyncio.run(main())
    assert "response.failed" not in answer.types()
    assert answer.text() == "hi"
    answer.assert_one_valid_stream()
    first, second = job.attempts
    assert first.status == 200 and first.failure is not None and "died" in first.failure.message
    assert second.failure is None


def test_a_policy_that_gives_up_leaves_the_translators_own_failure():
    with FakeUpstream() as up:
        up.enqueue(Reply(chunks=[{"content": ""}], finish_reason=""))  # no finish_reason at all
        job = job_for(up.url, next_attempt=lambda failure: None)
        answer = one_call(up.url, job)
    failure = answer.failure()
    assert failure is not None and "finish_reason" in failure["message"]
    answer.assert_one_valid_stream()


def test_a_policy_that_raises_gives_up_cleanly(caplog):
    def policy(failure: AttemptFailure) -> tuple[float, LinkAttempt] | None:
        raise RuntimeError("policy bug")

    job = LinkJob(attempt_for("http://127.0.0.1:1/v1"), next_attempt=policy)
    answer = one_call("http://127.0.0.1:1/v1", job)
    assert answer.status == 502 and answer.headers[LOCAL_HEADER] == "transport-error"
    assert "the attempt policy failed" in caplog.text


def test_the_self_healing_retry_is_an_attempt_with_another_body():
    seen: list[tuple[int | None, bytes]] = []

    def heal(failure: AttemptFailure) -> tuple[float, LinkAttempt] | None:
        seen.append((failure.status, failure.body))
        if len(seen) > 1:
            return None
        healed = {**CHAT, "messages": [{"role": "user", "content": "healed"}]}
        return 0.0, attempt_for(up.url, body=healed, label="healed")

    with FakeUpstream() as up:
        up.enqueue(
            error(400, {"error": {"message": "no"}}), error(400, {"error": {"message": "x"}})
        )
        job = job_for(up.url, next_attempt=heal)
        answer = one_call(up.url, job)
    assert [s for s, _ in seen] == [400, 400]
    assert job.retried and answer.status == 400  # the second refusal passes on as it came
    assert json.loads(answer.body) == {"error": {"message": "x"}}
    assert [r["json"]["messages"][0]["content"] for r in up.requests] == ["x", "healed"]
    assert json.loads(job.sent_body)["messages"][0]["content"] == "healed"


# ------------------------------------------------------------------------ the connection


class _Collect:
    def __init__(self) -> None:
        self.body = bytearray()
        self.ended = False
        self.failure: LinkFailure | None = None

    def on_body(self, data: bytes) -> None:
        self.body += data

    def on_end(self) -> None:
        self.ended = True

    def on_failure(self, failure: LinkFailure) -> None:
        self.failure = failure


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closing = False

    def writelines(self, data: Any) -> None:
        for piece in data:
            self.written += piece

    def write(self, data: Any) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True


def read_through_connection(framed: bytes, cuts: list[int]) -> _Collect:
    """``framed`` (an answer's bytes) fed to an ``UpstreamConnection`` in the pieces ``cuts``
    makes, as reads from a socket would fall."""

    async def main() -> _Collect:
        conn = UpstreamConnection(("http", "h", 80, None))
        conn.connection_made(_Transport())
        head = conn.send("POST", "/", [(b"host", b"h"), (b"content-length", b"0")], b"")
        sink = _Collect()
        bounds = sorted({c % (len(framed) + 1) for c in cuts} | {0, len(framed)})
        for start, end in itertools.pairwise(bounds):
            conn.data_received(framed[start:end])
            if head.done() and conn._sink is None and sink.failure is None and not sink.ended:
                conn.read_body(sink)
        if not head.done() or head.exception():
            sink.failure = LinkFailure("head", "no head")
        return sink

    return asyncio.run(main())


@given(
    pieces=st.lists(st.binary(min_size=1, max_size=40), max_size=8),
    trailers=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
)
@example(pieces=[b"\r\n"], trailers=True, cuts=[70, 71])
def test_chunked_bodies_do_not_depend_on_how_reads_fall(pieces, trailers, cuts):
    framed = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    framed += b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces)
    framed += b"0\r\n" + (b"x-trailer: 1\r\n" if trailers else b"") + b"\r\n"
    sink = read_through_connection(framed, cuts)
    assert sink.failure is None and sink.ended
    assert bytes(sink.body) == b"".join(pieces)


@given(garbage=st.binary(max_size=200), cuts=st.lists(st.integers(0, 300), max_size=6))
def test_any_bytes_give_a_body_or_a_failure_never_an_exception(garbage, cuts):
    sink = read_through_connection(SSE_HEAD + garbage, cuts)
    assert sink.failure is None or isinstance(sink.failure, LinkFailure)


# ------------------------------------------------------------------------ the client's side


def test_a_burst_of_events_goes_to_mitmproxy_in_one_piece_within_the_flush_interval():
    """The first event at once; those right after it wait (at most FLUSH_S) and go together;
    an event after a pause at once; the end sends what waits before the final chunk."""
    from mitmrelay.link.server import FLUSH_S, ClientAnswer, _MitmproxySide

    async def main() -> list[bytes]:
        side = _MitmproxySide(new_link("x"))
        transport = _Transport()
        side.connection_made(transport)
        side.data_received(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
        clock = ManualClock()
        answer = ClientAnswer(side, clock)
        answer.start(200, [("content-type", "text/event-stream")])
        seen = []

        def sent() -> bytes:
            out = bytes(transport.written)
            transport.written.clear()
            return out

        sent()
        answer.data(b"one")
        seen.append(sent())
        clock.advance(FLUSH_S / 2)
        answer.data(b"two")
        answer.data(b"three")
        clock.advance(FLUSH_S / 2 - 0.0001)
        seen.append(sent())  # nothing yet
        clock.advance(0.0001)  # FLUSH_S after the first send
        seen.append(sent())
        clock.advance(FLUSH_S * 2)
        answer.data(b"four")  # after a pause: at once
        answer.data(b"five")
        seen.append(sent())
        answer.end()
        seen.append(sent())
        assert clock.pending == 0  # the end took the waiting timer's place
        return seen

    assert asyncio.run(main()) == [
        b"3\r\none\r\n",
        b"",
        b"8\r\ntwothree\r\n",
        b"4\r\nfour\r\n",
        b"4\r\nfive\r\n0\r\n\r\n",
    ]


def test_a_client_that_does_not_read_stops_the_link_reading_the_upstream():
    """Back-pressure: while mitmproxy does not take the answer, the link does not read the
    upstream's stream into memory; the upstream's own send buffer fills instead."""
    piece = chunked(delta("x" * 65536))
    total = 48 * 1024 * 1024

    async def scenario(link: UpstreamLink, up: ScriptedUpstream) -> int:
        token = link.register(job_for(up.url))
        _, writer = await asyncio.open_connection("127.0.0.1", link.port)
        writer.transport.pause_reading()  # mitmproxy, stalled: it reads nothing
        writer.write(
            b"POST / HTTP/1.1\r\nhost: x\r\n%s: %s\r\ncontent-length: 0\r\n\r\n"
            % (JOB_HEADER.encode(), token.encode())
        )
        ex = await up.next()
        ex.write(SSE_HEAD)
        for _ in range(total // len(piece)):
            ex.write(piece)
        upstream = ex.writer.transport
        # Wait until the upstream's buffer stops shrinking: without back-pressure the link
        # reads all 48 MB into its own buffers and it falls to nothing.
        sizes = [upstream.get_write_buffer_size()]
        while sizes[-1] and (len(sizes) < 50 or sizes[-1] != sizes[-50]):
            await asyncio.sleep(0.01)
            sizes.append(upstream.get_write_buffer_size())
        writer.close()
        return sizes[-1]

    # Kernel buffers on both hops absorb up to ~20 MB (loopback autotuning); the rest waits.
    assert scripted(scenario) > 12 * 1024 * 1024


# ------------------------------------------------------------------------ bounds


def test_a_connection_idle_past_the_pool_limit_is_not_reused():
    from mitmrelay.link.pool import POOL_IDLE_S

    clock = ManualClock()

    async def two(link: UpstreamLink) -> None:
        assert (await call(link, job_for(up.url))).status == 200
        clock.advance(POOL_IDLE_S)
        assert (await call(link, job_for(up.url))).status == 200

    with FakeUpstream() as up:
        run_link(up.url, two, clock=clock)
    assert up.connections == 2


def test_the_tail_of_an_answer_is_awaited_for_reuse_only_so_long():
    from mitmrelay.link.pool import DRAIN_S

    clock = ManualClock()

    async def scenario(link: UpstreamLink, up: ScriptedUpstream) -> None:
        async with Call(link, job_for(up.url)) as first:
            ex = await up.next()
            ex.write(SSE_HEAD + chunked(WHOLE_TEXT))  # and never the terminating chunk
            assert (await first.done()).types()[-1] == "response.completed"
        clock.advance(DRAIN_S - 0.001)
        await asyncio.sleep(0.05)
        assert up.closed == 0  # still waiting for the tail
        clock.advance(0.001)  # given up: the connection is closed, not pooled
        await until(lambda: up.closed == 1)

    scripted(scenario, clock=clock)


def test_registered_jobs_are_bounded_the_oldest_forgotten_first():
    from mitmrelay.link.server import MAX_JOBS

    link = new_link("x")
    first = link.register(job_for("x"))
    second = link.register(job_for("x"))
    for _ in range(MAX_JOBS - 1):
        link.register(job_for("x", sse=False))
    assert link.take(first) is None
    assert link.take(second) is not None


# ------------------------------------------------------------------------ a large body


class CountedBody(JsonBody):
    """A large body (core/body.py) that counts the bytes the link has taken from it."""

    __slots__ = ("taken",)

    def __init__(self, parts: list[bytes | str]) -> None:
        super().__init__(parts)
        self.taken = 0

    def chunks(self, size: int = 64 * 1024) -> Iterator[bytes]:
        for chunk in super().chunks(size):
            self.taken += len(chunk)
            yield chunk


def large_body(mb: int) -> CountedBody:
    image = "data:image/png;base64," + "QUJD" * (mb * 1024 * 1024 // 4)
    return CountedBody([b'{"model":"m","messages":[{"role":"user","content":', image, b"}]}"])


def test_a_large_body_is_written_as_the_upstream_reads_it_then_the_connection_is_reused():
    body = large_body(32)
    small = attempt_for("http://127.0.0.1", sse=False).body

    async def main() -> None:
        reading = asyncio.Event()
        received: list[bytes] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reading.wait()  # reads nothing until the test says so
            for expected in (len(body), len(small)):
                head = await reader.readuntil(b"\r\n\r\n")
                assert f"content-length: {expected}".encode() in head.lower()
                received.append(await reader.readexactly(expected))
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        link = new_link(url)
        await link.start()
        try:
            first = attempt_for(url, sse=False)
            first.body = body
            async with Call(link, LinkJob(first)) as c:
                await until(lambda: body.taken > 0)
                for _ in range(20):  # the socket's buffers fill; the link stops taking chunks
                    await asyncio.sleep(0.01)
                assert body.taken < len(body) // 2
                reading.set()
                assert (await c.done()).status == 200
            assert body.taken == len(body) and received[0] == bytes(body)
            assert (await call(link, LinkJob(attempt_for(url, sse=False)))).status == 200
            assert received[1] == small  # on the same connection: serve() handles both
        finally:
            link.close()
            server.close()

    asyncio.run(main())


# ------------------------------------------------------------------------ the pool's idle time


def test_an_idle_connection_is_closed_when_its_idle_time_is_up_and_a_busy_one_is_not():
    clock = ManualClock()
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"

    async def scenario(link: UpstreamLink, up: ScriptedUpstream) -> None:
        async with Call(link, LinkJob(attempt_for(up.url, sse=False))) as c:
            (await up.next()).write(answer)
            assert (await c.done()).status == 200
        await until(lambda: link.pool.idle == 1)
        clock.advance(POOL_IDLE_S - 1)
        assert link.pool.idle == 1
        # Taken for the next request before its time is up: busy when the time passes.
        async with Call(link, LinkJob(attempt_for(up.url, sse=False))) as c:
            exchange = await up.next()
            assert link.pool.idle == 0
            clock.advance(2)
            await asyncio.sleep(0.05)
            assert up.closed == 0
            exchange.write(answer)
            assert (await c.done()).status == 200
        assert up.connections == 1
        # Idle again: a new deadline, from the end of this answer.
        await until(lambda: link.pool.idle == 1)
        clock.advance(POOL_IDLE_S - 0.001)
        assert link.pool.idle == 1
        await asyncio.sleep(0.05)
        assert up.closed == 0
        clock.advance(0.001)
        assert link.pool.idle == 0 and clock.pending == 0
        await until(lambda: up.closed == 1)

    scripted(scenario, clock=clock, idle_timeout_s=300.0, keepalive_s=300.0)
