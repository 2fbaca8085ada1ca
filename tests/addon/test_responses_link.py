"""The upstream link running Responses-wire attempts (core/wires.py), on a bare event loop: the
normaliser as the attempt's translator, the wire's own error mapping, a whole Response after
the commit, and attempts that hand the client's stream over across wires in both directions.

The client is httpx, standing where mitmproxy stands; the upstreams are the strict fakes
(``FakeResponses`` for a Responses provider, ``FakeUpstream`` for a Chat one). Every client
stream is checked as one stream: one ``response.created``, contiguous sequence numbers, one
terminal event, every event valid for the openai SDK.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import ssl
import urllib.parse
from typing import Any

import httpx
import pydantic
import pytest
from openai.types.responses import ResponseStreamEvent
from support.fake_responses import FakeResponses, Turn, http_error, response_for, say
from support.fake_upstream import FakeUpstream, error, text
from support.manual_clock import ManualClock

from mitmrelay.core.context import TranslationContext
from mitmrelay.core.responses_wire import RULES, ResponsesNormaliser, clean_request
from mitmrelay.core.sse import SSEDecoder
from mitmrelay.core.stream import StreamTranslator
from mitmrelay.core.wires import CHAT, RESPONSES
from mitmrelay.link import (
    JOB_HEADER,
    AttemptFailure,
    LinkAttempt,
    LinkJob,
    LinkSettings,
    UpstreamLink,
)

EVENTS = pydantic.TypeAdapter(ResponseStreamEvent)
KEY = "sk-responses-provider"
CODEX = {"model": "gpt-5.5", "input": "hello", "stream": True, "store": False}
CTX = TranslationContext("gpt-5.5", "model-x")


def ids() -> Any:
    counter = itertools.count(1)
    return lambda kind: f"{kind}_{next(counter)}"


def responses_attempt(
    fake: FakeResponses, *, stream: bool = True, label: str = "r", url: str = ""
) -> LinkAttempt:
    """A Responses attempt as the exchange makes one for ``fake``'s family (at ``url``, default
    the fake's): the cleaned body, the normaliser."""
    rules = RULES[fake.mode_name]
    body, ctx = clean_request(
        {**CODEX, "stream": stream}, rules, upstream_model="model-x", origin=label
    )
    normaliser = ResponsesNormaliser(
        ctx,
        rules,
        response_id="resp_1",
        created_at=1,
        new_id=ids(),
        origin=label,
        upstream=label,
    )
    return LinkAttempt(
        url=urllib.parse.urlsplit((url or fake.url) + RESPONSES.path),
        headers={"authorization": f"Bearer {KEY}"},
        body=json.dumps(body).encode(),
        translator=normaliser if stream else None,
        label=label,
        upstream=label,
        wire=RESPONSES,
    )


def chat_attempt(up: FakeUpstream, *, label: str = "c") -> LinkAttempt:
    chat = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "stream": True}
    translator = StreamTranslator(
        CTX, response_id="resp_1", created_at=1, new_id=ids(), upstream=label
    )
    return LinkAttempt(
        url=urllib.parse.urlsplit(up.url + CHAT.path),
        headers={"authorization": f"Bearer {KEY}"},
        body=json.dumps(chat).encode(),
        translator=translator,
        label=label,
        upstream=label,
    )


class Answer:
    def __init__(self, status: int, body: bytes) -> None:
        self.status, self.body = status, body

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(e.data) for e in SSEDecoder().feed(self.body)]

    def types(self) -> list[str]:
        return [e["type"] for e in self.events()]

    def text(self) -> str:
        return "".join(
            e["delta"] for e in self.events() if e["type"] == "response.output_text.delta"
        )

    def assert_one_valid_stream(self) -> None:
        events = self.events()
        assert self.types().count("response.created") == 1
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        terminal = {"response.completed", "response.failed", "response.incomplete"}
        assert [e["type"] in terminal for e in events].count(True) == 1
        assert events[-1]["type"] in terminal
        for event in events:
            EVENTS.validate_python(event)


def run(job: LinkJob, *, clock: ManualClock | None = None) -> Answer:
    async def main() -> Answer:
        settings = LinkSettings("the upstream", 10.0, 10.0, ssl.create_default_context)
        link = UpstreamLink(settings, clock=clock)
        await link.start()
        try:
            token = link.register(job)
            async with httpx.AsyncClient(timeout=30) as client:
                r = await client.post(
                    f"http://127.0.0.1:{link.port}/v1/responses",
                    headers={JOB_HEADER: token, "content-type": "application/json"},
                )
            return Answer(r.status_code, r.content)
        finally:
            link.close()

    return asyncio.run(main())


def test_a_responses_stream_is_normalised_and_sent_where_the_wire_says():
    with FakeResponses("glm", key=KEY) as fake:  # gaps in sequence numbers, [DONE]
        fake.enqueue(say("hello from glm", reasoning="thinking"))
        job = LinkJob(responses_attempt(fake))
        answer = run(job)
    assert answer.status == 200 and answer.text() == "hello from glm"
    answer.assert_one_valid_stream()
    (sent,) = fake.requests
    assert sent["path"] == "/v1/responses" and sent["json"]["model"] == "model-x"
    assert "store" not in sent["json"]  # cleaned for the family
    assert fake.rejections == []
    assert job.recorded.endswith(b"data: [DONE]\n\n")  # the provider's raw answer, for mitmweb


def test_an_http_error_is_mapped_by_the_wires_rules():
    """OpenRouter's lossy code with the precise kind beside it (core/responses_wire/errors.py):
    the Chat wire's mapping would read "invalid_prompt"; this wire's reads the overflow."""
    overflow = {
        "error": {"code": "invalid_prompt", "message": "Invalid Responses API request"},
        "error_type": "context_length_exceeded",
    }
    asked: list[AttemptFailure] = []

    def policy(failure: AttemptFailure) -> None:
        asked.append(failure)

    with FakeResponses("openrouter") as fake:
        fake.enqueue(http_error(400, overflow))
        run(LinkJob(responses_attempt(fake, label="openrouter"), next_attempt=policy))
    (failure,) = asked
    assert failure.status == 400 and failure.error.code == "context_length_exceeded"


def test_a_whole_response_after_the_commit_becomes_the_stream_it_stands_for():
    """A provider whose answer is one JSON Response, arriving after the link told the client
    it would stream (the headers were slower than the commit grace): the Response's own
    events, through the normaliser that was already answering."""
    clock = ManualClock()
    whole = json.dumps(response_for(say("whole answer", reasoning="r"), "deepseek")).encode()
    seen: list[bytes] = []

    async def main() -> Answer:
        asked = asyncio.Event()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            seen.append(await reader.readexactly(length))
            asked.set()
            while not clock.now() >= 2.0:  # the commit grace passes before the answer
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.05)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(whole), whole)
            )
            await writer.drain()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        job = LinkJob(
            responses_attempt(FakeResponses("deepseek"), url=f"http://127.0.0.1:{port}/v1")
        )
        settings = LinkSettings("the upstream", 10.0, 10.0, ssl.create_default_context)
        link = UpstreamLink(settings, clock=clock)
        await link.start()
        try:
            token = link.register(job)
            async with httpx.AsyncClient(timeout=30) as client:
                request = client.post(
                    f"http://127.0.0.1:{link.port}/v1/responses",
                    headers={JOB_HEADER: token, "content-type": "application/json"},
                )
                pending = asyncio.ensure_future(request)
                await asyncio.wait_for(asked.wait(), 30)
                clock.advance(2.0)
                r = await asyncio.wait_for(pending, 30)
            return Answer(r.status_code, r.content)
        finally:
            link.close()
            server.close()

    answer = asyncio.run(main())
    assert answer.text() == "whole answer"  # a JSON body passed on would hold no events
    answer.assert_one_valid_stream()
    assert answer.types()[-1] == "response.completed"
    assert json.loads(seen[0])["model"] == "model-x"


@pytest.mark.parametrize("first_wire", ["chat", "responses"])
def test_a_fallback_across_wires_continues_the_clients_stream(first_wire):
    """The first attempt fails before any output (an HTTP 503, or a provider's
    response.failed that the link withholds); the other wire's attempt continues the same
    stream: no second response.created, no gap in the numbers, the first attempt's id."""
    with FakeUpstream(key=KEY) as chat, FakeResponses("kimi", key=KEY) as responses:
        if first_wire == "chat":
            chat.enqueue(error(503, {"error": {"message": "overloaded"}}))
            responses.enqueue(say("served by the responses wire"))
            first, second = chat_attempt(chat), responses_attempt(responses)
        else:
            responses.enqueue(Turn(status="failed", error={"code": "server_error"}))
            chat.enqueue(text("served by the chat wire"))
            first, second = responses_attempt(responses), chat_attempt(chat)
        asked: list[AttemptFailure] = []

        def policy(failure: AttemptFailure) -> tuple[float, LinkAttempt] | None:
            asked.append(failure)
            return (0.0, second) if failure.attempt is first else None

        job = LinkJob(first, next_attempt=policy)
        answer = run(job)
    assert len(asked) == 1
    assert answer.text() == f"served by the {'responses' if first_wire == 'chat' else 'chat'} wire"
    assert "response.failed" not in answer.types()
    answer.assert_one_valid_stream()
    assert answer.events()[-1]["response"]["id"] == "resp_1"
    assert [a.label for a in job.attempts] == [first.label, second.label]
