"""The two legs of a relayed exchange as mitmweb shows them (addon/mitmrelay/inspection.py),
built from a finished flow and its link job. The same through a real mitmweb is in
tests/e2e/test_mitmweb_rest.py."""

from __future__ import annotations

import json
import urllib.parse

from mitmproxy import http
from mitmproxy.test import tflow, tutils

from mitmrelay.inspection import HIDDEN, show_client_leg, upstream_leg
from mitmrelay.link import JOB_HEADER, AttemptRecord, LinkAttempt, LinkJob

CLIENT_KEY = "sk-client-key"
RELAY_KEY = "sk-relay-key"
CHAT = b'{"model":"deepseek-chat","messages":[{"role":"user","content":"hi"}],"stream":true}'
RAW = b'data: {"choices":[{"delta":{"content":"hello"}}]}\n\ndata: [DONE]\n\n'


def relayed_flow() -> tuple[http.HTTPFlow, http.Request]:
    client_request = tutils.treq(
        method=b"POST",
        scheme=b"https",
        host="api.openai.com",
        port=443,
        path=b"/v1/responses",
        headers=http.Headers(authorization=f"Bearer {CLIENT_KEY}", content_type="application/json"),
        content=b'{"model":"gpt-5.5","input":"hi"}',
    )
    f = tflow.tflow(req=client_request.copy(), resp=True)
    f.request.url = "http://127.0.0.1:40000/v1/chat/completions"
    f.request.headers[JOB_HEADER] = "token"
    f.request.headers.pop("authorization")
    f.request.content = CHAT
    f.response = http.Response.make(200, b"event: response.completed\ndata: {}\n\n")
    f.comment = "mitmrelay: gpt-5.5 -> deepseek-chat | completed"
    return f, client_request


def job(*, sent_body: bytes = b"", retried: bool = False, **outcome) -> LinkJob:
    url = urllib.parse.urlsplit("https://api.deepseek.com/v1/chat/completions")
    j = LinkJob(LinkAttempt(url, {"authorization": f"Bearer {RELAY_KEY}"}, body=sent_body))
    if retried:  # a first attempt refused, a second one that answered
        j.attempts += [AttemptRecord("deepseek", url.geturl(), 400), AttemptRecord("", "", 200)]
    for name, value in outcome.items():
        setattr(j, name, value)
    return j


def test_the_flow_shows_the_clients_leg_with_its_key_hidden():
    f, client_request = relayed_flow()
    show_client_leg(f, client_request)
    assert f.request.url == "https://api.openai.com/v1/responses"
    assert json.loads(f.request.content) == {"model": "gpt-5.5", "input": "hi"}
    assert f.request.headers["authorization"] == HIDDEN
    assert CLIENT_KEY not in str(f.request.headers)
    assert f.response is not None and b"response.completed" in f.response.content


def test_the_upstream_leg_shows_the_chat_request_and_the_raw_answer():
    f, client_request = relayed_flow()
    link_request = f.request
    j = job(
        status=200,
        response_headers=[("content-type", "text/event-stream"), ("transfer-encoding", "chunked")],
        recorded=bytearray(RAW),
        sent_body=CHAT,
    )
    show_client_leg(f, client_request)
    leg = upstream_leg(f, link_request, j)
    assert leg.id != f.id
    assert leg.request.url == "https://api.deepseek.com/v1/chat/completions"
    assert leg.request.content == CHAT
    assert leg.request.headers["authorization"] == HIDDEN and JOB_HEADER not in leg.request.headers
    assert leg.response is not None and leg.response.status_code == 200
    assert leg.response.content == RAW
    assert "transfer-encoding" not in leg.response.headers
    assert leg.metadata["mitmrelay"] == {"leg": "upstream", "client_flow": f.id, "status": 200}
    assert f.metadata["mitmrelay"]["upstream_flow"] == leg.id
    assert leg.id[:8] in f.comment and f.id[:8] in leg.comment
    assert not leg.marked and leg.error is None
    dumped = json.dumps(leg.get_state(), default=repr) + json.dumps(f.get_state(), default=repr)
    assert CLIENT_KEY not in dumped and RELAY_KEY not in dumped


def test_a_retried_call_shows_the_retry_and_a_failed_one_is_marked():
    from mitmrelay.core.upstream_errors import map_transport_error

    f, _ = relayed_flow()
    link_request = f.request
    failure = map_transport_error("cut", "gone", upstream="https://api.deepseek.com/v1")
    leg = upstream_leg(
        f,
        link_request,
        job(status=200, retried=True, sent_body=b'{"healed":true}', failure=failure),
    )
    assert leg.request.content == b'{"healed":true}'
    assert "self-healing retry" in leg.comment and "mid-answer" in leg.comment
    assert leg.marked == ":x:" and leg.error is not None

    f, _ = relayed_flow()
    failure = map_transport_error("connect", "refused", upstream="https://api.deepseek.com/v1")
    leg = upstream_leg(f, f.request, job(failure=failure))
    assert leg.response is None and leg.error is not None and "could not connect" in leg.error.msg
    assert leg.metadata["mitmrelay"]["status"] == "no answer"
