"""The self-healing retry as the link's attempt policy (``Relay._next_attempt`` over
core/attempts.py, with a one-provider plan): DeepSeek's refusal
of a history that lost reasoning is retried once, at once, with placeholders and a fresh
translator; nothing else is. The same end to end: test_mitmdump.py
(``test_lost_reasoning_is_healed_once_with_placeholders``)."""

from __future__ import annotations

import asyncio
import json

import pytest
from mitmproxy import http
from mitmproxy.proxy import mode_specs
from mitmproxy.test import taddons, tflow, tutils
from support.fake_upstream import DEEPSEEK_MISSING_REASONING

from mitmrelay.addon import Relay
from mitmrelay.core.upstream_errors import map_transport_error, map_upstream_error
from mitmrelay.link import AttemptFailure, LinkJob

HISTORY = [
    {"type": "message", "role": "user", "content": "go"},
    {"type": "function_call", "call_id": "call_lost", "name": "exec_command", "arguments": "{}"},
    {"type": "function_call_output", "call_id": "call_lost", "output": "x"},
]
REFUSAL = json.dumps({"error": {"message": DEEPSEEK_MISSING_REASONING}}).encode()


def relayed_job(tmp_path, *, stream: bool = True) -> LinkJob:
    relay = Relay()
    with taddons.context(relay) as tctx:
        tctx.configure(
            relay,
            confdir=str(tmp_path),
            relay_upstream="https://api.deepseek.com/v1",
            # No placeholder of its own: the history reaches DeepSeek without reasoning.
            relay_profile="generic",
        )
        body = {"model": "deepseek-chat", "input": HISTORY, "stream": stream}
        f = tflow.tflow(
            req=tutils.treq(
                method=b"POST",
                path=b"/v1/responses",
                headers=http.Headers(content_type="application/json"),
                content=json.dumps(body).encode(),
            )
        )
        f.client_conn.proxy_mode = mode_specs.ProxyMode.parse("reverse:http://127.0.0.1:1")
        asyncio.run(relay.request(f))
        job = relay.flights[f.id].job
    assert job is not None and job.next_attempt is not None
    return job


def refused(job: LinkJob, status: int = 400, body: bytes = REFUSAL) -> AttemptFailure:
    error = map_upstream_error(status, {}, body, upstream="https://api.deepseek.com/v1")
    return AttemptFailure(job.attempt, error, status, body)


@pytest.mark.parametrize("stream", [True, False])
def test_the_refusal_is_retried_once_at_once_with_placeholders(tmp_path, stream):
    job = relayed_job(tmp_path, stream=stream)
    assert job.next_attempt is not None
    following = job.next_attempt(refused(job))
    assert following is not None
    delay, attempt = following
    assert delay == 0.0
    sent = json.loads(attempt.body)["messages"]
    assert "reasoning_content" not in json.loads(job.attempt.body)["messages"][1]
    assert sent[1]["reasoning_content"] == " "
    assert (attempt.url, attempt.headers, attempt.label) == (
        job.attempt.url,
        job.attempt.headers,
        job.attempt.label,
    )
    if stream:  # a fresh translator, to continue the first one's stream
        assert attempt.translator is not None and attempt.translator is not job.translator
        assert not attempt.translator.has_output
    else:
        assert attempt.translator is None
    job.attempt = attempt
    assert job.next_attempt(refused(job)) is None  # never twice


@pytest.mark.parametrize(
    "failure",
    [
        lambda job: refused(job, 400, b'{"error":{"message":"Invalid tools"}}'),
        lambda job: refused(job, 429, REFUSAL),
        lambda job: AttemptFailure(
            job.attempt, map_transport_error("connect", "refused", upstream="x"), None
        ),
    ],
    ids=["another-400", "not-a-400", "transport"],
)
def test_nothing_else_is_retried(tmp_path, failure):
    job = relayed_job(tmp_path)
    assert job.next_attempt is not None
    assert job.next_attempt(failure(job)) is None
