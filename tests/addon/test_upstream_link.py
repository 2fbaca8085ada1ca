"""The upstream link (addon/mitmrelay/link.py) on a bare event loop, against the scripted
upstream: what reaches mitmproxy for each way an upstream can behave or fail.

The client here is httpx, standing where mitmproxy stands in production; the real mitmdump
path is covered in test_mitmdump.py. A streamed call's answer is the translator's Responses
stream, so these tests read Responses events.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.fake_upstream import FakeUpstream, Reply, error, text

from mitmrelay.core.context import TranslationContext
from mitmrelay.core.sse import SSEDecoder
from mitmrelay.core.stream import StreamTranslator
from mitmrelay.link import (
    JOB_HEADER,
    LOCAL_HEADER,
    LinkJob,
    LinkSettings,
    UpstreamLink,
    _Dechunker,
    _Failure,
)

CHAT = {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}


class Answer:
    def __init__(self, status: int, headers: httpx.Headers, chunks: list[bytes]) -> None:
        self.status, self.headers, self.chunks = status, headers, chunks
        self.body = b"".join(chunks)

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


def run_link(
    up_url: str,
    scenario: Callable[[UpstreamLink, str], Awaitable[Any]],
    *,
    idle_timeout_s: float = 10.0,
    keepalive_s: float = 10.0,
) -> Any:
    async def main() -> Any:
        link = UpstreamLink(
            LinkSettings(up_url, idle_timeout_s, keepalive_s, ssl.create_default_context)
        )
        await link.start()
        try:
            return await scenario(link, up_url)
        finally:
            link.close()

    return asyncio.run(main())


def job_for(up_url: str, *, sse: bool = True, **kw: Any) -> LinkJob:
    """A job as the relay makes it: a streamed call carries its translator."""
    url = urllib.parse.urlsplit(up_url + "/chat/completions")
    translator = (
        StreamTranslator(
            TranslationContext("gpt-5.5", "m"),
            response_id="resp_1",
            created_at=1,
            new_id=lambda kind: f"{kind}_1",
            upstream=up_url,
        )
        if sse
        else None
    )
    return LinkJob(
        url=url, headers={"authorization": "Bearer sk-relay"}, translator=translator, **kw
    )


async def call(link: UpstreamLink, job: LinkJob, body: dict[str, Any] = CHAT) -> Answer:
    token = link.register(job)
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream(
            "POST",
            f"http://127.0.0.1:{link.port}/v1/chat/completions",
            content=json.dumps(body).encode(),
            headers={JOB_HEADER: token, "content-type": "application/json"},
        ) as r,
    ):
        chunks = [c async for c in r.aiter_raw()]
    return Answer(r.status_code, r.headers, chunks)


def one_call(up_url: str, job: LinkJob, body: dict[str, Any] = CHAT, **settings: Any) -> Answer:
    return run_link(up_url, lambda link, _: call(link, job, body), **settings)


# ------------------------------------------------------------------------ normal answers


def test_a_stream_is_translated_with_the_relays_key():
    with FakeUpstream(key="sk-relay") as up:
        up.enqueue(text("hello there"))
        job = job_for(up.url)
        answer = one_call(up.url, job)
    assert answer.status == 200 and answer.headers[LOCAL_HEADER] == "translated"
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert answer.types()[:2] == ["response.created", "response.in_progress"]
    assert answer.types()[-1] == "response.completed" and answer.text() == "hello there"
    assert bytes(job.answered) == answer.body  # kept for mitmweb
    assert job.status == 200 and job.recorded.endswith(b"data: [DONE]\n\n")  # the raw stream
    assert up.requests[0]["headers"]["authorization"] == "Bearer sk-relay"
    assert JOB_HEADER not in up.requests[0]["headers"]


def test_a_quick_error_keeps_its_status_and_headers():
    with FakeUpstream() as up:
        up.enqueue(error(429, {"error": {"message": "slow down"}}, {"retry-after": "7"}))
        answer = one_call(up.url, job_for(up.url))
    assert answer.status == 429 and answer.headers["retry-after"] == "7"
    assert json.loads(answer.body) == {"error": {"message": "slow down"}}
    assert LOCAL_HEADER not in answer.headers  # the relay maps it, as any upstream answer


def test_a_gzip_stream_is_decoded():
    with FakeUpstream() as up:
        up.enqueue(Reply(chunks=[{"content": "squeezed"}], gzip=True))
        answer = one_call(up.url, job_for(up.url))
    assert "content-encoding" not in answer.headers
    assert answer.text() == "squeezed" and answer.types()[-1] == "response.completed"


def test_connections_to_the_upstream_are_reused():
    async def two(link: UpstreamLink, url: str) -> None:
        for _ in range(2):
            assert (await call(link, job_for(url))).status == 200

    with FakeUpstream() as up:
        run_link(up.url, two)
    assert len(up.requests) == 2 and up.connections == 1


def test_an_unknown_job_is_refused():
    async def forged(link: UpstreamLink, url: str) -> int:
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


# ------------------------------------------------------------------------ silence


def test_silence_after_the_headers_gets_keepalive_events():
    with FakeUpstream() as up:
        up.enqueue(Reply(chunks=[{"content": "thought"}], think_s=1.5))
        answer = one_call(up.url, job_for(up.url), keepalive_s=0.2)
    kinds = answer.types()
    before_text = kinds[: kinds.index("response.output_text.delta")]
    assert before_text.count("response.in_progress") >= 3  # the first + keep-alives
    assert kinds[-1] == "response.completed" and answer.text() == "thought"


def test_slow_headers_commit_to_a_stream_that_carries_the_answer():
    with FakeUpstream() as up:
        up.enqueue(Reply(chunks=[{"content": "late"}], delay_s=1.5))
        job = job_for(up.url)
        answer = one_call(up.url, job, keepalive_s=0.2)
    assert job.committed and answer.status == 200
    kinds = answer.types()
    assert kinds[0] == "response.created" and kinds.count("response.in_progress") >= 2
    assert answer.text() == "late" and kinds[-1] == "response.completed"


def test_a_late_error_after_the_commit_becomes_response_failed():
    with FakeUpstream() as up:
        up.enqueue(
            Reply(
                status=429,
                body=b'{"error":{"message":"Rate limit reached. Please try again in 20s."}}',
                delay_s=1.0,
            )
        )
        answer = one_call(up.url, job_for(up.url), keepalive_s=0.2)
    assert answer.status == 200
    failure = answer.failure()
    assert failure is not None and failure["code"] == "rate_limit_exceeded"
    assert "try again in 20s" in failure["message"]


def test_a_late_whole_completion_becomes_events():
    with FakeUpstream() as up:
        up.enqueue(Reply(chunks=[{"content": "whole"}], delay_s=1.0))
        answer = one_call(up.url, job_for(up.url), {**CHAT, "stream": False}, keepalive_s=0.2)
    assert answer.status == 200 and answer.failure() is None
    assert answer.text() == "whole" and answer.types()[-1] == "response.completed"


# ------------------------------------------------------------------------ failures


def test_an_unreachable_upstream_is_a_json_502_made_by_the_link():
    answer = one_call("http://127.0.0.1:1/v1", job_for("http://127.0.0.1:1/v1"))
    assert answer.status == 502 and answer.headers[LOCAL_HEADER] == "transport-error"
    assert json.loads(answer.body)["error"]["code"] == "server_error"
    assert "could not connect" in json.loads(answer.body)["error"]["message"]


def test_silence_before_the_headers_times_out_as_a_json_504():
    with FakeUpstream() as up:
        up.enqueue(Reply(chunks=[{"content": "never"}], delay_s=30))
        answer = one_call(up.url, job_for(up.url), idle_timeout_s=0.5)
    assert answer.status == 504 and answer.headers[LOCAL_HEADER] == "transport-error"
    assert "relay_timeout" in json.loads(answer.body)["error"]["message"]


def test_silence_after_the_commit_times_out_as_a_failure_event():
    with FakeUpstream() as up:
        up.enqueue(Reply(chunks=[{"content": "never"}], think_s=30))
        answer = one_call(up.url, job_for(up.url), idle_timeout_s=0.8, keepalive_s=0.2)
    assert answer.status == 200 and answer.types().count("response.in_progress") >= 2
    failure = answer.failure()
    assert failure is not None and failure["code"] == "server_error"
    assert "sent nothing for too long" in failure["message"]


def test_a_cut_stream_ends_with_response_failed_not_a_truncated_body():
    with FakeUpstream() as up:
        up.enqueue(Reply(chunks=[{"content": "half"}], cut=True))
        answer = one_call(up.url, job_for(up.url))
    assert answer.status == 200
    failure = answer.failure()
    assert failure is not None and "closed the connection mid-answer" in failure["message"]
    # The answer itself is complete HTTP: httpx read it to its terminating chunk.
    assert answer.body.endswith(b"\n\n")


def test_a_cut_non_stream_answer_is_a_json_error():
    with FakeUpstream() as up:
        up.enqueue(Reply(chunks=[{"content": "half"}], cut=True))
        answer = one_call(up.url, job_for(up.url, sse=False), {**CHAT, "stream": True})
    # A non-streamed job is read whole first, so a cut can still be answered cleanly.
    assert answer.status == 502 and answer.headers[LOCAL_HEADER] == "transport-error"


# ------------------------------------------------------------------------ one retry


def test_a_refusal_is_retried_once_with_the_body_the_job_gives():
    seen: list[tuple[int, bytes]] = []

    def retry(status: int, body: bytes) -> bytes | None:
        seen.append((status, body))
        return json.dumps({**CHAT, "messages": [{"role": "user", "content": "healed"}]}).encode()

    with FakeUpstream() as up:
        up.enqueue(
            error(400, {"error": {"message": "no"}}), error(400, {"error": {"message": "x"}})
        )
        job = job_for(up.url, retry_body=retry)
        answer = one_call(up.url, job)
    assert len(seen) == 1 and seen[0][0] == 400  # once, never twice
    assert job.retried and answer.status == 400
    assert [r["json"]["messages"][0]["content"] for r in up.requests] == ["x", "healed"]
    assert json.loads(job.sent_body)["messages"][0]["content"] == "healed"


@pytest.mark.parametrize("gone_at", ["before headers", "mid-stream"])
def test_a_client_that_goes_away_abandons_the_upstream_call(gone_at: str):
    async def leave(link: UpstreamLink, url: str) -> int:
        token = link.register(job_for(url))
        reader, writer = await asyncio.open_connection("127.0.0.1", link.port)
        body = json.dumps(CHAT).encode()
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n%s: %s\r\n"
            b"content-length: %d\r\n\r\n%s" % (JOB_HEADER.encode(), token.encode(), len(body), body)
        )
        await writer.drain()
        if gone_at == "mid-stream":
            await reader.readuntil(b"\r\n\r\n")
        writer.close()
        for _ in range(100):  # the link drops the upstream connection instead of pooling it
            await asyncio.sleep(0.05)
            if up.closed_connections:
                break
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


# ------------------------------------------------------------------------ chunked framing


@given(
    pieces=st.lists(st.binary(min_size=1, max_size=40), max_size=8),
    trailers=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
)
def test_dechunking_does_not_depend_on_how_reads_fall(pieces, trailers, cuts):
    framed = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces)
    framed += b"0\r\n" + (b"x-trailer: 1\r\n" if trailers else b"") + b"\r\n"
    bounds = sorted({c % (len(framed) + 1) for c in cuts} | {0, len(framed)})
    dechunker, out = _Dechunker(), bytearray()
    for start, end in itertools.pairwise(bounds):
        dechunker.add(framed[start:end])
        out += dechunker.take()
    assert bytes(out) == b"".join(pieces)
    assert dechunker.done and not dechunker.extra


@pytest.mark.parametrize(
    "framed", [b"zz\r\nab\r\n", b"2\r\nabXY", b"1" * 5000], ids=["bad-size", "no-crlf", "long"]
)
def test_malformed_chunking_is_a_failure(framed):
    dechunker = _Dechunker()
    dechunker.add(framed)
    with pytest.raises(_Failure):
        dechunker.take()
