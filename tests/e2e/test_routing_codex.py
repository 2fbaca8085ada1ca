"""The real Codex CLI through a real ``mitmdump`` serving a routes file with two providers.

Codex is configured exactly as a user would: the block ``mitmrelay codex-config --routes FILE
--catalog PATH`` prints, with the catalog it writes (built on the pinned Codex's own bundled
catalog). Each provider is a fake upstream that requires its own key; each test asserts both
what Codex did (files, messages, errors) and what each provider received.
"""

from __future__ import annotations

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
from support.codex import CLIENT_KEY, CODEX_BIN, CodexHarness, scrubbed_env
from support.fake_upstream import FakeUpstream, Reply, error, text, tool_call
from support.mitm import MitmRelay

from mitmrelay.core.request import IMAGE_OMITTED

# e2e: once per pinned Codex release, each required (tests/conftest.py).
pytestmark = [pytest.mark.e2e]

ALPHA_KEY = "sk-alpha-routing-e2e-key"
BETA_KEY = "sk-beta-routing-e2e-key"
COMPACTION_PROMPT = "You are performing a CONTEXT CHECKPOINT COMPACTION"


def routes_text(alpha: FakeUpstream, beta: FakeUpstream) -> str:
    return f"""
[providers.alpha]
base_url = "{alpha.url}"
api_key_env = "ALPHA_KEY"

[providers.beta]
base_url = "{beta.url}"
api_key_env = "BETA_KEY"

[models."deepseek-chat"]
provider = "alpha"
context_window = 1000000
vision = false

[models."kimi-k2"]
provider = "beta"
upstream_model = "kimi-k2-thinking"
context_window = 20000

[models."flaky-primary"]
provider = "alpha"
upstream_model = "primary-model"
fallbacks = ["kimi-k2"]

[models."textonly/*"]
provider = "alpha"
vision = false
"""


@pytest.fixture(scope="module")
def alpha() -> Iterator[FakeUpstream]:
    with FakeUpstream(key=ALPHA_KEY) as up:
        yield up


@pytest.fixture(scope="module")
def beta() -> Iterator[FakeUpstream]:
    with FakeUpstream(key=BETA_KEY) as up:
        yield up


@pytest.fixture(scope="module")
def routes(alpha, beta, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("routes") / "routes.toml"
    path.write_text(routes_text(alpha, beta))
    return path


@pytest.fixture(scope="module")
def relay(routes, tmp_path_factory) -> Iterator[MitmRelay]:
    with MitmRelay(
        tmp_path_factory.mktemp("confdir"),
        "",
        env={"ALPHA_KEY": ALPHA_KEY, "BETA_KEY": BETA_KEY},
        options={"relay_routes": str(routes)},
    ) as r:
        yield r


@pytest.fixture(scope="module")
def config(relay, routes, tmp_path_factory) -> str:
    """What ``mitmrelay codex-config --routes --catalog`` prints (and the catalog it writes)."""
    catalog = tmp_path_factory.mktemp("catalog") / "models.json"
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("mitmrelay")),
            "codex-config",
            "--reverse-port",
            str(relay.port),
            "--routes",
            str(routes),
            "--catalog",
            str(catalog),
            "--codex",
            str(CODEX_BIN),
        ],
        env=scrubbed_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.fixture
def codex(config: str, alpha: FakeUpstream, beta: FakeUpstream) -> Iterator[CodexHarness]:
    for up in (alpha, beta):
        up.requests.clear()
        up.replies.clear()
        up.brain = None
    key_var = re.search(r'env_key = "(\w+)"', config)
    assert key_var, config
    harness = CodexHarness(
        config_text=config, extra_env={key_var.group(1): CLIENT_KEY}, label="routing"
    )
    yield harness
    harness.cleanup()
    for up in (alpha, beta):
        up.brain = None


def assert_ok(run: Any) -> None:
    assert run.returncode == 0, run.describe()


def tool_messages(chat: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in chat["messages"] if m.get("role") == "tool"]


def tool_named(chat: dict[str, Any], name: str) -> dict[str, Any]:
    for tool in chat.get("tools") or ():
        if tool["function"]["name"] == name:
            return tool
    names = [t["function"]["name"] for t in chat.get("tools") or ()]
    raise AssertionError(f"no upstream tool {name!r}; tools: {names}")


def user_texts(chat: dict[str, Any]) -> str:
    out = []
    for m in chat["messages"]:
        if m.get("role") == "user":
            c = m.get("content")
            out += [c] if isinstance(c, str) else [p.get("text", "") for p in c or ()]
    return "\n".join(out)


PATCH = """*** Begin Patch
*** Add File: routed.py
+print("patched through a routed model")
*** End Patch
"""


def test_codex_m_picks_the_provider_and_the_catalog_offers_apply_patch(
    alpha: FakeUpstream, beta: FakeUpstream, codex: CodexHarness
) -> None:
    def patcher(req: dict[str, Any]) -> Reply:
        if not tool_messages(req):
            # A non-OpenAI name gets the freeform apply_patch from the generated catalog.
            params = tool_named(req, "apply_patch")["function"]["parameters"]
            (param,) = params["properties"]
            return tool_call("apply_patch", {param: PATCH}, call_id="call_patch")
        return text("Patched.")

    alpha.brain = patcher
    run = codex.exec("Create routed.py with apply_patch.", options=["-m", "deepseek-chat"])
    assert_ok(run)
    assert (codex.workdir / "routed.py").read_text() == 'print("patched through a routed model")\n'
    assert [i["status"] for i in run.items("file_change")] == ["completed"]
    assert beta.requests == []  # the other provider got nothing
    assert [r["json"]["model"] for r in alpha.requests] == ["deepseek-chat", "deepseek-chat"]
    assert {r["headers"]["authorization"] for r in alpha.requests} == {f"Bearer {ALPHA_KEY}"}

    beta.enqueue(text("Kimi here."))
    before = len(alpha.requests)
    run = codex.exec("Who are you?", options=["-m", "kimi-k2"])
    assert_ok(run)
    assert run.last_message.strip() == "Kimi here."
    assert len(alpha.requests) == before
    (sent,) = beta.requests
    assert sent["json"]["model"] == "kimi-k2-thinking"
    assert sent["headers"]["authorization"] == f"Bearer {BETA_KEY}"
    assert CLIENT_KEY.encode() not in sent["raw"]


def compaction_brain(reported_prompt: int) -> Any:
    """A first answer (a tool call) that reports ``reported_prompt`` input tokens; after it, a
    short final answer, and the handoff summary if Codex asks for one."""
    state = {"reported": False}

    def brain(req: dict[str, Any]) -> Reply:
        if COMPACTION_PROMPT in user_texts(req):
            return text("SUMMARY: the task is to run true.")
        if state["reported"]:
            return text("done")
        state["reported"] = True
        reply = tool_call("exec_command", {"cmd": "true"})
        reply.usage = {
            "prompt_tokens": reported_prompt,
            "completion_tokens": 10,
            "total_tokens": reported_prompt + 10,
        }
        return reply

    return brain


@pytest.mark.parametrize(
    ("model", "provider", "compacts"),
    [("kimi-k2", "beta", True), ("deepseek-chat", "alpha", False)],
)
def test_codex_compacts_by_the_routed_context_window(
    alpha: FakeUpstream,
    beta: FakeUpstream,
    codex: CodexHarness,
    model: str,
    provider: str,
    compacts: bool,
) -> None:
    # The same 19 000 reported input tokens: past 90 % of kimi-k2's 20 000-token window (Codex
    # compacts), nothing for deepseek-chat's 1 000 000 (docs/codex-contract.md §9.1); Codex's
    # own window for an unknown name, about 272 000 (docs/codex-contract.md §1.4), would not
    # tell them apart.
    up = {"alpha": alpha, "beta": beta}[provider]
    up.brain = compaction_brain(19_000)
    run = codex.exec("Run true, then say done.", options=["-m", model])
    assert_ok(run)
    asked = [COMPACTION_PROMPT in user_texts(c) for c in up.chat_requests()]
    assert any(asked) is compacts, asked


def test_a_text_only_model_gets_no_image_from_codex(
    alpha: FakeUpstream, codex: CodexHarness, tmp_path: Path
) -> None:
    (tmp_path / "red.png").write_bytes(tiny_png())
    alpha.enqueue(text("I cannot see images."))
    run = codex.exec(
        "What is in this image?", images=[tmp_path / "red.png"], options=["-m", "deepseek-chat"]
    )
    assert_ok(run)
    (chat,) = alpha.chat_requests()
    parts = [
        p
        for m in chat["messages"]
        if isinstance(m.get("content"), list)
        for p in m["content"]
        if p.get("type") != "text"
    ]
    assert parts == [] and "data:image" not in json.dumps(chat["messages"])
    # Codex itself leaves the image out for a model whose catalog entry says text only.
    assert "image content omitted because you do not support image input" in user_texts(chat)


def test_an_image_codex_sends_to_a_text_only_model_becomes_a_note(
    alpha: FakeUpstream, codex: CodexHarness, tmp_path: Path
) -> None:
    # A glob route has no catalog entry: Codex's fallback metadata takes images, so the image
    # reaches the relay, which puts a note in its place for the text-only route.
    (tmp_path / "red.png").write_bytes(tiny_png())
    alpha.enqueue(text("Noted."))
    run = codex.exec(
        "What is in this image?", images=[tmp_path / "red.png"], options=["-m", "textonly/m1"]
    )
    assert_ok(run)
    (chat,) = alpha.chat_requests()
    assert chat["model"] == "textonly/m1"
    assert "data:image" not in json.dumps(chat["messages"])
    assert IMAGE_OMITTED in user_texts(chat)
    assert "What is in this image?" in user_texts(chat)


def test_codex_shows_the_relays_model_not_found(
    alpha: FakeUpstream, beta: FakeUpstream, codex: CodexHarness
) -> None:
    run = codex.exec("Hello?", options=["-m", "gpt-9-unrouted"])
    assert run.returncode != 0
    shown = "\n".join(run.errors())
    # A 400 is never retried; model_not_found is a code Codex knows, so it shows the message
    # alone (docs/codex-contract.md §8.1).
    assert "The model 'gpt-9-unrouted' does not exist" in shown, run.describe()
    assert "deepseek-chat, kimi-k2, flaky-primary, textonly/*" in shown
    assert alpha.requests == beta.requests == []


def tiny_png() -> bytes:
    """A valid 2x2 red PNG (stdlib only)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + bytes((255, 0, 0)) * 2 for _ in range(2))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def test_a_503_falls_back_to_the_next_model_unseen_by_codex(
    alpha: FakeUpstream, beta: FakeUpstream, codex: CodexHarness, relay: MitmRelay
) -> None:
    alpha.enqueue(error(503, {"error": {"message": "overloaded, try later"}}))
    beta.enqueue(text("Served by the fallback."))
    run = codex.exec("Hello?", options=["-m", "flaky-primary"])
    assert_ok(run)
    assert run.last_message.strip() == "Served by the fallback."
    assert run.errors() == []  # Codex saw no failure and retried nothing
    (first,) = alpha.chat_requests()
    (second,) = beta.chat_requests()
    assert first["model"] == "primary-model" and second["model"] == "kimi-k2-thinking"
    assert beta.requests[0]["headers"]["authorization"] == f"Bearer {BETA_KEY}"
    line = [x for x in relay.log if "flaky-primary -> kimi-k2-thinking" in x][-1]
    assert "completed" in line and "via beta after alpha (http 503 server_error)" in line
