"""Reasoning scoped to its provider, through a real ``mitmdump -s addon/relay.py``: two strict
OpenRouter fakes, each with its own key, each issuing encrypted reasoning only it can verify
and refusing any other with OpenRouter's 400 (``invalid_encrypted_content``, which does not
fall back: the client would see it). A thread starts on one, falls back to the other when the
first answers 503, and comes back: each provider gets its own encrypted reasoning back
unmodified and only the text of the other's (core/reasoning.py, core/request.py rule 4).

The client replays every output item verbatim, as Codex does (docs/codex-contract.md §7.3).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.fake_upstream import FakeUpstream, Reply, error, text, tool_call
from support.mitm import MitmRelay

pytestmark = pytest.mark.integration

ALPHA_KEY = "sk-or-alpha-4444"
BETA_KEY = "sk-or-beta-5555"
TOOLS = [{"type": "function", "name": "exec_command", "parameters": {"type": "object"}}]


def routes_text(alpha: FakeUpstream, beta: FakeUpstream) -> str:
    return f"""
[providers.alpha]
base_url = "{alpha.url}"
api_key_env = "ALPHA_KEY"
profile = "openrouter"

[providers.beta]
base_url = "{beta.url}"
api_key_env = "BETA_KEY"
profile = "openrouter"

[models."or-model"]
provider = "alpha"
fallbacks = ["or-beta"]

[models."or-beta"]
provider = "beta"
"""


@pytest.fixture(scope="module")
def alpha() -> Iterator[FakeUpstream]:
    with FakeUpstream(key=ALPHA_KEY, family="openrouter") as up:
        yield up


@pytest.fixture(scope="module")
def beta() -> Iterator[FakeUpstream]:
    with FakeUpstream(key=BETA_KEY, family="openrouter") as up:
        yield up


@pytest.fixture(scope="module")
def relay(alpha, beta, tmp_path_factory) -> Iterator[MitmRelay]:
    confdir: Path = tmp_path_factory.mktemp("confdir")
    routes = confdir / "routes.toml"
    routes.write_text(routes_text(alpha, beta))
    with MitmRelay(
        confdir,
        "",
        key="sk-unused",
        env={"ALPHA_KEY": ALPHA_KEY, "BETA_KEY": BETA_KEY},
        options={"relay_routes": str(routes)},
    ) as r:
        yield r


def encrypted_call(call_id: str, reasoning: str, data: str) -> Reply:
    """A tool call after reasoning that OpenRouter streams as text blocks, then one encrypted
    block (as for the models that encrypt their reasoning) bound to the server that sent it."""
    reply = tool_call("exec_command", {"cmd": "ls"}, call_id=call_id, reasoning=reasoning)
    thinking = sum(1 for c in reply.chunks if "reasoning_content" in c)
    block = {"type": "reasoning.encrypted", "data": data, "id": f"rs_{data}", "index": 1}
    reply.chunks.insert(thinking, {"reasoning_details": [block]})
    return reply


def respond(relay: MitmRelay, items: list[dict[str, Any]]) -> dict[str, Any]:
    """One streamed Responses call, as Codex makes it; the response its terminal event holds."""
    body = {"model": "or-model", "input": items, "tools": TOOLS, "stream": True, "store": False}
    answer = httpx.post(
        f"{relay.url}/v1/responses",
        json=body,
        headers={"authorization": "Bearer sk-client"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    events = [
        json.loads(line[len("data: ") :])
        for line in answer.text.splitlines()
        if line.startswith("data: {")
    ]
    (last,) = [e for e in events if e["type"] in ("response.completed", "response.failed")]
    return last["response"]


def next_turn(items: list[dict[str, Any]], response: dict[str, Any]) -> list[dict[str, Any]]:
    """The next request's input: everything so far, the output verbatim, each call answered."""
    calls = [i for i in response["output"] if i["type"] == "function_call"]
    outputs = [
        {"type": "function_call_output", "call_id": c["call_id"], "output": "a.txt"} for c in calls
    ]
    return [*items, *response["output"], *outputs]


def assistant_calls(request: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The assistant tool-call messages of a Chat request, by their first call id."""
    return {
        m["tool_calls"][0]["id"]: m
        for m in request["messages"]
        if m["role"] == "assistant" and m.get("tool_calls")
    }


def test_a_fallback_and_back_sends_each_provider_only_its_own_encrypted_reasoning(
    relay, alpha, beta
):
    # Turn 1 on alpha: its reasoning comes with a block only alpha can verify.
    alpha.enqueue(encrypted_call("call_a", "why alpha", "enc-alpha"))
    items = [{"type": "message", "role": "user", "content": "list the files"}]
    first = respond(relay, items)
    assert first["status"] == "completed", first
    assert "enc-alpha" not in json.dumps(first)  # sealed: Codex never sees a provider's blob

    # Turn 2: alpha is down, beta takes over. Beta refuses alpha's block with a 400 that would
    # not fall back: it must get alpha's reasoning as text alone.
    alpha.enqueue(error(503, {"error": {"message": "overloaded", "type": "server_error"}}))
    beta.enqueue(encrypted_call("call_b", "why beta", "enc-beta"))
    items = next_turn(items, first)
    second = respond(relay, items)
    assert second["status"] == "completed", second
    assert [i["call_id"] for i in second["output"] if i["type"] == "function_call"] == ["call_b"]
    assert beta.rejections == [] and beta.violations == []
    (to_beta,) = beta.chat_requests()
    assert "enc-alpha" not in json.dumps(to_beta)
    assert assistant_calls(to_beta)["call_a"]["reasoning"] == "why alpha"

    # Turn 3, back on alpha: its own details come back unmodified (the fake records any
    # change as a violation), beta's turn comes as its text alone.
    alpha.enqueue(text("two files"))
    third = respond(relay, next_turn(items, second))
    assert third["status"] == "completed", third
    assert alpha.rejections == [] and alpha.violations == []
    to_alpha = alpha.chat_requests()[-1]
    by_call = assistant_calls(to_alpha)
    assert by_call["call_a"]["reasoning_details"][-1]["data"] == "enc-alpha"
    assert "reasoning_details" not in by_call["call_b"]
    assert by_call["call_b"]["reasoning"] == "why beta"
    assert "enc-beta" not in json.dumps(to_alpha)
