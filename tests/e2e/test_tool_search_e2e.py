"""Deferred tools through the relay, end to end (docs/tool-search.md).

The real Codex CLI with ``gpt-5.5`` (bundled metadata: MCP tools deferred behind
``tool_search``) and a real stdio MCP server (support/mcp_server.py, ``echo_tool``), through a
real ``mitmdump`` running the relay, before a scripted fake Chat upstream playing the model: it
searches (with ``limit: 8.0``, which Codex itself would refuse), finds the MCP tool, calls it,
reads the answer; after ``codex exec resume --last`` (a new Codex process) it calls the tool
again without searching. Both ways of reaching the relay: a custom provider (reverse mode) and
an unmodified Codex in system-proxy mode (the proxy's CA).

A real ``mitmweb`` shows the search and its results in its LLM views (REST API).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.codex import KEY_VAR, CodexHarness, McpServer
from support.fake_upstream import FakeUpstream, Reply, text, tool_call
from support.mitm import MitmRelay
from support.mitmweb import MitmWeb

# e2e: once per pinned Codex release, each required (tests/conftest.py).
pytestmark = [pytest.mark.e2e]

RELAY_KEY = "sk-relay-upstream-key-tool-search"
MCP_SERVER = Path(__file__).resolve().parents[1] / "support" / "mcp_server.py"
CAPTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tool-search" / "codex-0.169"
ECHO = "mcp__demo__echo_tool"  # the flattened name the upstream calls it by
FOUND_LINE = f"- {ECHO}(text): Echo the given text back, prefixed with 'echo: '."


def tool_names(chat: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in chat.get("tools") or ()]


def tool_messages(chat: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in chat["messages"] if m.get("role") == "tool"]


def last_user_text(chat: dict[str, Any]) -> str:
    (*_, last) = [m for m in chat["messages"] if m.get("role") == "user"]
    content = last["content"]
    return content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)


def model(req: dict[str, Any]) -> Reply:
    """The scripted model: search, call what was found, answer; on the resumed turn call the
    found tool again straight away. Asserts what it is shown at each step."""
    names = tool_names(req)
    assert "tool_search" in names
    answers = tool_messages(req)
    if "again" in last_user_text(req):  # the resumed turn
        assert ECHO in names, "the found tool must still be offered after the resume"
        if answers[-1]["tool_call_id"] != "call_echo_2":
            return tool_call(ECHO, {"text": "ping-43"}, call_id="call_echo_2")
        return text("Called it again: " + answers[-1]["content"].splitlines()[-1])
    if not answers:
        assert not any(n.startswith("mcp__") for n in names), "MCP tools are deferred"
        return tool_call(
            "tool_search", '{"query": "echo text tool", "limit": 8.0}', call_id="call_search_1"
        )
    if answers[-1]["tool_call_id"] == "call_search_1":
        assert answers[-1]["content"].splitlines()[1:] == [FOUND_LINE]
        assert ECHO in names
        return tool_call(ECHO, {"text": "ping-42"}, call_id="call_echo_1")
    return text("The tool said: " + answers[-1]["content"].splitlines()[-1])


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(key=RELAY_KEY) as up:
        up.brain = model
        yield up


@pytest.fixture
def harnesses() -> Iterator[list[CodexHarness]]:
    made: list[CodexHarness] = []
    yield made
    for h in made:
        h.cleanup()


def custom_provider(relay: MitmRelay, calls_log: Path) -> CodexHarness:
    """``model = "gpt-5.5"`` on a custom provider, no ``model_catalog_json``: the bundled gpt-5.5
    metadata (``supports_search_tool``) applies, as in the captures (docs/tool-search.md §1)."""
    harness = CodexHarness(config_text="", label="tool-search-custom")
    mcp_args = json.dumps([str(MCP_SERVER), "--calls", str(calls_log)])
    (harness.codex_home / "config.toml").write_text(
        "\n".join(
            [
                'model = "gpt-5.5"',
                'model_provider = "relay"',
                "",
                "[model_providers.relay]",
                'name = "mitmrelay"',
                f'base_url = "{relay.url}/v1"',
                f'env_key = "{KEY_VAR}"',
                'wire_api = "responses"',
                "stream_idle_timeout_ms = 20000",
                "",
                "[mcp_servers.demo]",
                f"command = {json.dumps(sys.executable)}",
                f"args = {mcp_args}",
                "",
            ]
        )
    )
    return harness


def system_proxy(relay: MitmRelay, calls_log: Path) -> CodexHarness:
    """Unmodified Codex: built-in provider, ``gpt-5.5``, ``HTTPS_PROXY`` + the proxy's CA."""
    server = McpServer("demo", sys.executable, [str(MCP_SERVER), "--calls", str(calls_log)])
    return CodexHarness(
        proxy=relay.url, ca=relay.ca, mcp_servers=[server], label="tool-search-proxy"
    )


@pytest.mark.parametrize(
    ("mode", "options", "codex_for"),
    [
        ("reverse", {"relay_model_map": "gpt-5.5=deepseek-chat"}, custom_provider),
        ("regular", {"relay_model": "deepseek-chat"}, system_proxy),
    ],
    ids=["custom-provider", "system-proxy"],
)
def test_the_model_searches_finds_and_calls_an_mcp_tool_and_keeps_it_after_resume(
    upstream, harnesses, tmp_path, mode, options, codex_for
):
    calls_log = tmp_path / "mcp-calls.jsonl"
    with MitmRelay(
        tmp_path / "confdir", upstream.url, mode=mode, key=RELAY_KEY, options=options
    ) as relay:
        codex = codex_for(relay, calls_log)
        harnesses.append(codex)
        first = codex.exec("Find the echo tool and call it with ping-42.")
        assert first.returncode == 0, first.describe()
        second = codex.exec("Call the echo tool again.", resume_last=True)
        assert second.returncode == 0, second.describe()

    # The MCP server ran both calls Codex dispatched (the first found by the search).
    assert [json.loads(line) for line in calls_log.read_text().splitlines()] == [
        {"text": "ping-42"},
        {"text": "ping-43"},
    ]
    assert first.last_message.strip() == "The tool said: echo: ping-42"
    assert second.last_message.strip() == "Called it again: echo: ping-43"
    assert [i["status"] for i in first.items("mcp_tool_call")] == ["completed"]
    assert [i["status"] for i in second.items("mcp_tool_call")] == ["completed"]

    chats = upstream.chat_requests()
    assert len(chats) == 5  # search, call, answer; call, answer: nothing retried
    assert {c["model"] for c in chats} == {"deepseek-chat"}
    # Codex ran the search the relay sent it (limit 8.0 arrived as 8: Codex parses a usize)
    # and its output reached the model as the search's answer, the tool offered from then on.
    (search_call,) = [
        c
        for m in chats[1]["messages"]
        for c in m.get("tool_calls") or ()
        if c["id"] == "call_search_1"
    ]
    assert json.loads(search_call["function"]["arguments"]) == {
        "query": "echo text tool",
        "limit": 8,
    }
    assert [ECHO in tool_names(c) for c in chats] == [False, True, True, True, True]
    answers = [m["content"] for m in tool_messages(chats[-1])]
    assert answers[0].splitlines() == [
        "Found 1 tool, callable as functions from now on:",
        FOUND_LINE,
    ]
    for r in upstream.requests:  # the client's key never went upstream
        assert r["headers"]["authorization"] == f"Bearer {RELAY_KEY}"


def post(web: MitmWeb, body: dict[str, Any]) -> bytes:
    with httpx.stream(
        "POST", f"{web.url}/v1/responses", json=body, headers={"authorization": "Bearer sk-x"}
    ) as r:
        assert r.status_code == 200
        return r.read()


def test_mitmweb_shows_the_search_and_what_it_found(upstream, tmp_path):
    upstream.brain = None
    upstream.enqueue(
        tool_call("tool_search", {"query": "echo text tool", "limit": 8}, call_id="call_search_1"),
        text("done"),
    )
    first, second = (
        json.loads((CAPTURES / f"{n}.request.json").read_text())["body"]
        for n in ("search-01", "search-02")
    )
    with MitmWeb(
        tmp_path / "confdir",
        upstream.url,
        key=RELAY_KEY,
        options={"relay_model_map": "gpt-5.5=deepseek-chat"},
    ) as web:
        before = web.ids()
        post(web, first)
        searched = web.exchange_since(before)
        before = web.ids()
        post(web, second)
        answered = web.exchange_since(before)
        stream = web.view(searched.client["id"], "response", "auto")
        request = web.view(answered.client["id"], "request", "auto")
        upstream_request = web.view(answered.upstream["id"], "request", "auto")

    assert stream["view_name"] == "LLM stream"
    assert 'search call_search_1: {"query": "echo text tool", "limit": 8}' in stream["text"]
    assert request["view_name"] == "LLM request"
    assert request["text"].splitlines()[-2:] == [
        "search results call_search_1: 1 tool",
        "  mcp__demo.echo_tool(text): Echo the given text back, prefixed with 'echo: '.",
    ]
    assert upstream_request["view_name"] == "LLM request"
    assert upstream_request["text"].splitlines()[-3:] == [
        'call call_search_1: tool_search({"query": "echo text tool", "limit": 8})',
        "tool call_search_1: Found 1 tool, callable as functions from now on:",
        "  " + FOUND_LINE,
    ]
