"""The real Codex CLI (each pinned release) doing real tasks through a real ``mitmdump``
running the relay.

The everyday tasks, one case each. Only the Chat upstream is fake (``support.fake_upstream``): it
records every request, so each case asserts both the effect Codex produced (a file on disk, the
final message, the error Codex reports) and what the relay sent upstream.

One mitmdump (reverse mode) and one fake upstream serve the whole module; each test resets the
upstream's script and records. Cases that need a different relay (restart, proxy mode) start
their own. Codex runs ~1 s each with loopback networking (~5.5 s in a network namespace with no
route out, docs/codex-contract.md §14).
"""

from __future__ import annotations

import base64
import json
import re
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.codex import CLIENT_KEY, CodexHarness, McpServer, scrubbed_env
from support.fake_upstream import (
    DEEPSEEK_MISSING_REASONING,
    FakeUpstream,
    Reply,
    error,
    text,
    tool_call,
)
from support.mitm import MitmRelay

# e2e: once per pinned Codex release, each required (tests/conftest.py).
pytestmark = [pytest.mark.e2e]

RELAY_KEY = "sk-relay-upstream-key"
MCP_SERVER = Path(__file__).resolve().parents[1] / "support" / "mcp_server.py"


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(key=RELAY_KEY) as up:
        yield up


@pytest.fixture(scope="module")
def relay(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MitmRelay]:
    with MitmRelay(tmp_path_factory.mktemp("confdir"), upstream.url, key=RELAY_KEY) as r:
        yield r


@pytest.fixture
def up(upstream: FakeUpstream) -> Iterator[FakeUpstream]:
    """The shared upstream with an empty script and record for this test."""
    upstream.requests.clear()
    upstream.replies.clear()
    upstream.brain = None
    upstream.deepseek_reasoning_rule = False
    upstream.produced_reasoning.clear()
    yield upstream
    upstream.brain = None
    upstream.deepseek_reasoning_rule = False


@pytest.fixture
def codex_factory() -> Iterator[Any]:
    made: list[CodexHarness] = []

    def make(**kwargs: Any) -> CodexHarness:
        h = CodexHarness(**kwargs)
        made.append(h)
        return h

    yield make
    for h in made:
        h.cleanup()


@pytest.fixture
def codex(relay: MitmRelay, codex_factory: Any) -> CodexHarness:
    return codex_factory(base_url=relay.url + "/v1")


# ---------------------------------------------------------------------------- helpers


def assert_ok(run: Any) -> None:
    assert run.returncode == 0, run.describe()


def user_texts(chat: dict[str, Any]) -> str:
    out = []
    for m in chat["messages"]:
        if m.get("role") != "user":
            continue
        c = m.get("content")
        if isinstance(c, str):
            out.append(c)
        else:
            out += [p.get("text", "") for p in c or () if isinstance(p, dict)]
    return "\n".join(out)


def tool_messages(chat: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in chat["messages"] if m.get("role") == "tool"]


def tool_named(chat: dict[str, Any], suffix: str) -> dict[str, Any]:
    names = [t["function"]["name"] for t in chat.get("tools") or ()]
    for t in chat.get("tools") or ():
        if t["function"]["name"].endswith(suffix):
            return t
    raise AssertionError(f"no upstream tool ending in {suffix!r}; tools: {names}")


def tiny_png(path: Path, rgb: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    """A valid 2x2 PNG (stdlib only)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + bytes(rgb) * 2 for _ in range(2))
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    path.write_bytes(png)
    return png


# ---------------------------------------------------------------------------- a


def test_a_plain_answer_is_printed(up: FakeUpstream, codex: CodexHarness) -> None:
    up.enqueue(text("The capital of France ", "is Paris."))
    run = codex.exec("What is the capital of France? Answer in one sentence.")
    assert_ok(run)
    assert run.last_message.strip() == "The capital of France is Paris."
    assert [i["text"] for i in run.items("agent_message")] == ["The capital of France is Paris."]
    chats = up.chat_requests()
    assert len(chats) == 1
    assert chats[0]["model"] == "deepseek-chat" and chats[0]["stream"] is True
    assert "What is the capital of France?" in user_texts(chats[0])
    # The relay's key went upstream, never the client's (the fake 401s otherwise).
    assert up.requests[0]["headers"]["authorization"] == f"Bearer {RELAY_KEY}"
    assert CLIENT_KEY.encode() not in up.requests[0]["raw"]


# ---------------------------------------------------------------------------- b


def test_b_shell_tool_call_runs_and_final_answer_arrives(
    up: FakeUpstream, codex: CodexHarness
) -> None:
    up.enqueue(
        tool_call("exec_command", {"cmd": "printf 'hello from codex' > out.txt"}),
        text("I wrote out.txt."),
    )
    run = codex.exec("Create out.txt containing 'hello from codex'.")
    assert_ok(run)
    assert (codex.workdir / "out.txt").read_text() == "hello from codex"
    cmds = run.items("command_execution")
    assert len(cmds) == 1 and cmds[0]["exit_code"] == 0
    assert run.last_message.strip() == "I wrote out.txt."
    first, second = up.chat_requests()
    assert tool_named(first, "exec_command")["function"]["parameters"]["type"] == "object"
    # Round two carries the call and its result, paired by id (Chat's ordering rule).
    calls = [c for m in second["messages"] for c in m.get("tool_calls") or ()]
    assert [c["id"] for c in calls] == ["call_1"]
    assert calls[0]["function"]["name"] == "exec_command"
    results = tool_messages(second)
    assert [m["tool_call_id"] for m in results] == ["call_1"]


# ---------------------------------------------------------------------------- c

PATCH = """*** Begin Patch
*** Add File: hello.py
+print("hello, patched world")
*** End Patch
"""


def test_c_apply_patch_freeform_creates_exact_file(up: FakeUpstream, codex: CodexHarness) -> None:
    def brain(req: dict[str, Any]) -> Reply:
        if not tool_messages(req):
            # The freeform tool arrives as a function with exactly one string parameter.
            params = tool_named(req, "apply_patch")["function"]["parameters"]
            (param,) = params["properties"]
            assert params["properties"][param]["type"] == "string"
            return tool_call("apply_patch", {param: PATCH}, call_id="call_patch")
        return text("Created hello.py.")

    up.brain = brain
    run = codex.exec("Create hello.py that prints a greeting, using apply_patch.")
    assert_ok(run)
    assert (codex.workdir / "hello.py").read_text() == 'print("hello, patched world")\n'
    assert [i["status"] for i in run.items("file_change")] == ["completed"]
    chats = up.chat_requests()
    assert len(chats) == 2
    # Replayed upstream as the same function call the model made.
    (call,) = [c for m in chats[1]["messages"] for c in m.get("tool_calls") or ()]
    assert call["function"]["name"] == "apply_patch"
    assert PATCH in json.loads(call["function"]["arguments"]).values()
    assert tool_messages(chats[1])[0]["tool_call_id"] == "call_patch"


# ---------------------------------------------------------------------------- d


def test_d_mcp_tool_called_through_namespace(
    up: FakeUpstream, relay: MitmRelay, codex_factory: Any, tmp_path: Path
) -> None:
    calls_log = tmp_path / "mcp-calls.jsonl"
    codex = codex_factory(
        base_url=relay.url + "/v1",
        mcp_servers=[
            McpServer("demo", sys.executable, [str(MCP_SERVER), "--calls", str(calls_log)])
        ],
    )

    def brain(req: dict[str, Any]) -> Reply:
        if not tool_messages(req):
            name = tool_named(req, "echo_tool")["function"]["name"]
            return tool_call(name, {"text": "ping-42"}, call_id="call_mcp")
        return text("The tool said: " + tool_messages(req)[0]["content"])

    up.brain = brain
    run = codex.exec("Call the echo tool with ping-42.")
    assert_ok(run)
    # The MCP server really ran the call Codex dispatched through the namespace.
    assert [json.loads(line) for line in calls_log.read_text().splitlines()] == [
        {"text": "ping-42"}
    ]
    first, second = up.chat_requests()
    name = tool_named(first, "echo_tool")["function"]["name"]
    assert "demo" in name  # flattened namespace mcp__demo + echo_tool
    (result,) = tool_messages(second)
    assert result["tool_call_id"] == "call_mcp"
    assert "echo: ping-42" in json.dumps(result["content"])
    assert "echo: ping-42" in run.last_message
    assert [i["status"] for i in run.items("mcp_tool_call")] == ["completed"]


# ---------------------------------------------------------------------------- e / f


def reasoning_loop_brain(rounds: int, tag: str, *, earlier_calls: int = 0) -> Any:
    """A DeepSeek-like thinking model: reasons before every tool call, ``rounds`` calls
    (not counting ``earlier_calls`` already in a resumed history)."""

    def brain(req: dict[str, Any]) -> Reply:
        done = len(tool_messages(req)) - earlier_calls
        if done < rounds:
            return tool_call(
                "exec_command",
                {"cmd": f"echo {tag}-{done} >> steps.txt"},
                call_id=f"call_{tag}_{done}",
                reasoning=f"Step {done} of {tag}: append a line to steps.txt.",
            )
        return text(f"{tag} finished.", reasoning="All steps are done.")

    return brain


def assistant_reasoning(chat: dict[str, Any]) -> list[str]:
    return [
        m.get("reasoning_content") or ""
        for m in chat["messages"]
        if m.get("role") == "assistant" and m.get("tool_calls")
    ]


def test_e_three_round_tool_loop_under_deepseek_reasoning_rule(
    up: FakeUpstream, codex: CodexHarness
) -> None:
    up.deepseek_reasoning_rule = True
    up.brain = reasoning_loop_brain(3, "loop")
    run = codex.exec("Append three lines to steps.txt, one command at a time.")
    assert_ok(run)
    assert (codex.workdir / "steps.txt").read_text() == "loop-0\nloop-1\nloop-2\n"
    assert run.last_message.strip() == "loop finished."
    chats = up.chat_requests()
    assert len(chats) == 4  # no 400 was retried
    # Every assistant tool-call message came back with the reasoning that preceded it.
    last = assistant_reasoning(chats[-1])
    assert len(last) == 3
    for i, r in enumerate(last):
        assert f"Step {i} of loop" in r
    assert DEEPSEEK_MISSING_REASONING not in run.stdout


def test_f_resume_after_relay_restart_under_deepseek_reasoning_rule(
    up: FakeUpstream, codex_factory: Any, tmp_path: Path
) -> None:
    up.deepseek_reasoning_rule = True
    up.brain = reasoning_loop_brain(1, "first")
    confdir = tmp_path / "confdir"
    with MitmRelay(confdir, up.url, key=RELAY_KEY) as relay:
        codex = codex_factory(base_url=relay.url + "/v1")
        run = codex.exec("Append one line to steps.txt.")
        assert_ok(run)
    # A fresh relay process (same confdir, new port): nothing survives in memory.
    with MitmRelay(confdir, up.url, key=RELAY_KEY) as relay2:
        codex.point_at(relay2.url + "/v1")
        up.brain = reasoning_loop_brain(2, "second", earlier_calls=1)
        before = len(up.chat_requests())
        run2 = codex.exec("Now append two more lines.", resume_last=True)
        assert_ok(run2)
    assert (codex.workdir / "steps.txt").read_text() == "first-0\nsecond-0\nsecond-1\n"
    assert run2.last_message.strip() == "second finished."
    resumed = up.chat_requests()[before:]
    # The resumed history holds the first session's call; its reasoning was passed back.
    assert "Append one line to steps.txt." in user_texts(resumed[0])
    assert any("Step 0 of first" in r for r in assistant_reasoning(resumed[-1]))
    assert all(r for r in assistant_reasoning(resumed[-1]))


# ---------------------------------------------------------------------------- g


def test_g_image_reaches_upstream_as_image_url(
    up: FakeUpstream, codex: CodexHarness, tmp_path: Path
) -> None:
    png = tiny_png(tmp_path / "red.png")
    up.enqueue(text("It is a small red square."))
    run = codex.exec("What is in this image?", images=[tmp_path / "red.png"])
    assert_ok(run)
    assert run.last_message.strip() == "It is a small red square."
    (chat,) = up.chat_requests()
    parts = [
        p
        for m in chat["messages"]
        if m.get("role") == "user" and isinstance(m.get("content"), list)
        for p in m["content"]
        if p.get("type") == "image_url"
    ]
    assert len(parts) == 1
    url = parts[0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == png


# ---------------------------------------------------------------------------- h


def test_h_429_with_retry_after_then_success(up: FakeUpstream, codex: CodexHarness) -> None:
    up.enqueue(
        error(
            429,
            {
                "error": {
                    "message": "Rate limit reached for requests",
                    "type": "requests",
                    "code": "rate_limit_exceeded",
                }
            },
            headers={"retry-after": "1"},
        ),
        text("Finished after the rate limit."),
    )
    run = codex.exec("Say something.")
    assert_ok(run)
    assert run.last_message.strip() == "Finished after the rate limit."
    chats = up.chat_requests()
    # Codex retried only because the relay passed the 429 on with Retry-After
    # (docs/codex-contract.md §8).
    assert len(chats) == 2
    assert chats[0]["messages"] == chats[1]["messages"]


# ---------------------------------------------------------------------------- i


def test_i_context_overflow_reported_as_such(up: FakeUpstream, codex: CodexHarness) -> None:
    up.enqueue(
        error(
            400,
            {
                "error": {
                    "message": (
                        "This model's maximum context length is 65536 tokens. However, you "
                        "requested 70123 tokens (70000 in the messages, 123 in the completion). "
                        "Please reduce the length of the messages or completion."
                    ),
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_request_error",
                }
            },
        )
    )
    run = codex.exec("Summarise everything.")
    assert run.returncode != 0
    out = run.stdout + run.stderr + "\n".join(run.errors())
    assert "ran out of room in the model's context window" in out, run.describe()
    # Not retried like a generic failure: Codex stops at once (docs/codex-contract.md §8).
    assert len(up.chat_requests()) == 1


# ---------------------------------------------------------------------------- j


def test_j_system_proxy_mode_unmodified_codex(
    upstream: FakeUpstream, up: FakeUpstream, codex_factory: Any, tmp_path: Path
) -> None:
    up.enqueue(
        tool_call("exec_command", {"cmd": "printf 'via proxy' > proxied.txt"}),
        text("Done through the proxy."),
    )
    with MitmRelay(
        tmp_path / "confdir",
        up.url,
        mode="regular",
        key=RELAY_KEY,
        options={"relay_model": "deepseek-chat"},
    ) as relay:
        codex = codex_factory(proxy=relay.url, ca=relay.ca, model="gpt-5.5")
        run = codex.exec("Create proxied.txt containing 'via proxy'.")
    assert_ok(run)
    assert (codex.workdir / "proxied.txt").read_text() == "via proxy"
    assert run.last_message.strip() == "Done through the proxy."
    chats = up.chat_requests()
    assert len(chats) == 2
    # Codex's side traffic (chatgpt.com, api.github.com; docs/codex-contract.md §2.4) is not relayed
    # upstream.
    assert {r["path"] for r in up.requests} == {"/v1/chat/completions"}
    assert {c["model"] for c in chats} == {"deepseek-chat"}
    for r in up.requests:
        assert r["headers"]["authorization"] == f"Bearer {RELAY_KEY}"
        assert CLIENT_KEY not in json.dumps(r["headers"])
        assert CLIENT_KEY.encode() not in r["raw"]


# ---------------------------------------------------------------------------- codex-config


def test_codex_config_output_works_verbatim(
    up: FakeUpstream, relay: MitmRelay, codex_factory: Any
) -> None:
    """What `mitmrelay codex-config` prints is a config.toml Codex runs with as is."""
    config = subprocess.run(
        [
            str(Path(sys.executable).with_name("mitmrelay")),
            "codex-config",
            "--reverse-port",
            str(relay.port),
            "--model",
            "deepseek-chat",
        ],
        env=scrubbed_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    key_var = re.search(r'env_key = "(\w+)"', config)
    assert key_var, config
    codex = codex_factory(config_text=config, extra_env={key_var.group(1): "unused-client-key"})
    up.enqueue(
        tool_call("exec_command", {"cmd": "printf configured > cfg.txt"}),
        text("Configured and done."),
    )
    run = codex.exec("Write cfg.txt.")
    assert_ok(run)
    assert (codex.workdir / "cfg.txt").read_text() == "configured"
    assert run.last_message.strip() == "Configured and done."
    assert [c["model"] for c in up.chat_requests()] == ["deepseek-chat", "deepseek-chat"]
    assert all(b"unused-client-key" not in r["raw"] for r in up.requests)
