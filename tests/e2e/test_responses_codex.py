"""The real Codex CLI through a real ``mitmdump`` to providers on the Responses wire.

Codex is configured as a user would configure it: the block ``mitmrelay codex-config --routes
FILE --catalog PATH`` prints, with the catalog it writes, for a routes file with one provider
per family row (``wire = "responses"``), each the strict fake of that family
(support/fake_responses.py). The unmodified Codex (built-in provider, ``gpt-5.5``, system-proxy
mode) covers what only it does: MCP tools deferred behind ``tool_search``, and remote
compaction.

- Every family at once (sessions side by side, one relay): a multi-round loop with reasoning,
  a shell call then ``apply_patch`` (the freeform tool), then the answer. The fake refused
  nothing, Codex did the work and showed the reasoning.
- An MCP tool called through its namespace, flattened (DeepSeek) and kept (Kimi).
- An image to a model that sees.
- ``gpt-5.5`` finds an MCP tool through ``tool_search``, calls it, and after a relay restart
  ``codex exec resume`` calls it again, the provider's own reasoning replayed to it.
- Remote compaction: the relay's own path, its summary sealed into Codex's compaction item.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.codex import (
    CLIENT_KEY,
    CODEX_BIN,
    CodexHarness,
    CodexRun,
    McpServer,
    codex_available,
    scrubbed_env,
)
from support.fake_responses import Call, FakeResponses, Reasoning, Text, Turn, say
from support.mitm import MitmRelay

from mitmrelay.core.compaction import COMPACTION_PROMPT, SUMMARY_PREFIX
from mitmrelay.core.responses_wire import RULES

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not codex_available(),
        reason="Codex CLI 0.169.0 not installed (run scripts/setup; needs node/npm)",
    ),
]

FAMILIES = sorted(RULES)
MCP_SERVER = Path(__file__).resolve().parents[1] / "support" / "mcp_server.py"
ECHO = "mcp__demo__echo_tool"
PATCH = "*** Begin Patch\n*** Add File: {name}.py\n+print('{name} patched')\n*** End Patch\n"
# A valid 1x1 PNG: Codex reads the file and sends it as a data URL.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)


def key_of(family: str) -> str:
    return f"sk-{family}-e2e-provider-key"


# ----------------------------------------------------------------------------- requests


def items(req: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [i for i in req["input"] if isinstance(i, dict) and i.get("type") == kind]


def outputs(req: dict[str, Any]) -> list[dict[str, Any]]:
    return items(req, "function_call_output") + items(req, "custom_tool_call_output")


def output_text(item: dict[str, Any]) -> str:
    out = item["output"]
    return out if isinstance(out, str) else "\n".join(p.get("text", "") for p in out)


def tool(req: dict[str, Any], name: str) -> dict[str, Any]:
    for t in req.get("tools", ()):
        if t.get("name") == name:
            return t
    raise AssertionError(f"no tool {name!r}: {[t.get('name') for t in req.get('tools', ())]}")


def user_texts(req: dict[str, Any]) -> str:
    out = []
    for m in items(req, "message"):
        if m.get("role") == "user":
            c = m["content"]
            out += [c] if isinstance(c, str) else [p.get("text", "") for p in c]
    return "\n".join(out)


def step_reasoning(family: str, step: int) -> str:
    return f"{family} step {step}: the next change, one at a time."


def loop_brain(family: str) -> Any:
    """A thinking model: a shell call, then apply_patch (Codex's freeform tool, offered as a
    function with one string parameter), each after its reasoning; then the answer."""

    def brain(req: dict[str, Any]) -> Turn:
        done = len(outputs(req))
        if done == 0:
            cmd = {"cmd": f"echo {family} >> steps.txt"}
            return Turn([Reasoning(step_reasoning(family, 0)), Call("exec_command", cmd, "c0")])
        if done == 1:
            (param,) = tool(req, "apply_patch")["parameters"]["properties"]
            patch = {param: PATCH.format(name=family)}
            return Turn([Reasoning(step_reasoning(family, 1)), Call("apply_patch", patch, "c1")])
        return Turn([Reasoning("Both changes are made."), Text(f"{family} finished.")])

    return brain


# ----------------------------------------------------------------------------- fixtures


def routes_text(fakes: dict[str, FakeResponses]) -> str:
    lines = []
    for family, fake in fakes.items():
        lines += [
            f"[providers.{family}]",
            f'base_url = "{fake.url}"',
            f'api_key_env = "{family.upper()}_KEY"',
            f'profile = "{family}"',
            'wire = "responses"',
            "",
            f'[models."{family}-model"]',
            f'provider = "{family}"',
            "context_window = 200000",
            "vision = true",
            "",
        ]
    return "\n".join(lines)


@dataclass
class Setup:
    fakes: dict[str, FakeResponses]
    relay: MitmRelay
    config: str  # what `mitmrelay codex-config --routes --catalog` printed
    key_var: str
    runs: dict[str, CodexRun]
    harnesses: dict[str, CodexHarness]

    def codex(self, label: str, extra: str = "") -> CodexHarness:
        harness = CodexHarness(
            config_text=self.config + extra,
            extra_env={self.key_var: CLIENT_KEY},
            label=f"responses-{label}",
        )
        self.harnesses[label] = harness
        return harness


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    with contextlib.ExitStack() as stack:
        fakes = {f: stack.enter_context(FakeResponses(f, key=key_of(f))) for f in FAMILIES}
        routes = tmp_path_factory.mktemp("routes") / "routes.toml"
        routes.write_text(routes_text(fakes))
        relay = stack.enter_context(
            MitmRelay(
                tmp_path_factory.mktemp("confdir"),
                "",
                env={f"{f.upper()}_KEY": key_of(f) for f in FAMILIES},
                options={"relay_routes": str(routes)},
            )
        )
        catalog = tmp_path_factory.mktemp("catalog") / "models.json"
        config = subprocess.run(
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
        key_var = re.search(r'env_key = "(\w+)"', config)
        assert key_var, config
        out = Setup(fakes, relay, config, key_var.group(1), {}, {})
        stack.callback(lambda: [h.cleanup() for h in out.harnesses.values()])
        for family, fake in fakes.items():
            fake.brain = loop_brain(family)

        def drive(family: str) -> tuple[str, CodexRun]:
            codex = out.codex(family)
            run = codex.exec(
                "Append a line to steps.txt, then add a file with apply_patch, then say so.",
                options=["-m", f"{family}-model"],
                timeout=180,
            )
            return family, run

        with ThreadPoolExecutor(len(FAMILIES)) as pool:
            out.runs = dict(pool.map(drive, FAMILIES))
        for fake in fakes.values():
            fake.brain = None
        yield out


def context(setup: Setup, family: str) -> str:
    run = setup.runs[family]
    rejected = [r.body for r in setup.fakes[family].rejections]
    return f"{run.describe()}\nrejections: {rejected}\nrelay:\n{setup.relay.text()[-3000:]}"


# ----------------------------------------------------------------------------- every family


@pytest.mark.parametrize("family", FAMILIES)
def test_a_tool_loop_with_reasoning_shell_and_apply_patch_for_every_family(
    setup: Setup, family: str
) -> None:
    run, fake = setup.runs[family], setup.fakes[family]
    why = context(setup, family)
    assert fake.rejections == [], why
    assert run.returncode == 0, why
    workdir = setup.harnesses[family].workdir
    assert (workdir / "steps.txt").read_text() == f"{family}\n"
    assert (workdir / f"{family}.py").read_text() == f"print('{family} patched')\n"
    assert [i["status"] for i in run.items("file_change")] == ["completed"], why
    assert run.last_message.strip() == f"{family} finished."
    requests = [r["json"] for r in fake.requests]
    assert len(requests) == 3, why  # nothing retried
    assert {r["headers"]["authorization"] for r in fake.requests} == {f"Bearer {key_of(family)}"}
    last = requests[-1]
    # The whole loop went back: both calls with their outputs, apply_patch as the function the
    # provider was offered (not Codex's custom_tool_call, which the plain subset lacks).
    calls = items(last, "function_call")
    assert [c["name"] for c in calls] == ["exec_command", "apply_patch"]
    assert [o["call_id"] for o in outputs(last)] == ["c0", "c1"]


@pytest.mark.parametrize("family", FAMILIES)
def test_codex_saw_the_reasoning_and_gave_it_back(setup: Setup, family: str) -> None:
    run = setup.runs[family]
    shown = " ".join(item.get("text", "") for item in run.items("reasoning"))
    for step in range(2):
        assert step_reasoning(family, step) in shown, context(setup, family)
    last = setup.fakes[family].requests[-1]["json"]
    replayed = json.dumps(items(last, "reasoning"))
    # Each provider got its own reasoning back in the shape it reads (an opaque blob it made,
    # for OpenRouter; the text otherwise).
    if family == "openrouter":
        blobs = [r.get("encrypted_content") for r in items(last, "reasoning")]
        assert len(blobs) == 2 and set(blobs) <= setup.fakes[family].blobs
    else:
        assert step_reasoning(family, 0) in replayed and step_reasoning(family, 1) in replayed


@pytest.mark.parametrize("family", FAMILIES)
def test_codex_reports_the_usage_each_family_sent(setup: Setup, family: str) -> None:
    run = setup.runs[family]
    turns = [e for e in run.events if e.get("type") == "turn.completed"]
    assert turns, context(setup, family)
    usage = turns[-1]["usage"]
    assert usage["input_tokens"] == 300, usage  # 100 per request, 3 requests
    cached = 0 if family == "glm" else 120  # Z.ai's usage carries no details
    assert usage["cached_input_tokens"] == cached, usage


# ----------------------------------------------------------------------------- MCP, image


def mcp_brain(req: dict[str, Any]) -> Turn:
    done = outputs(req)
    if not done:
        namespaces = {t["name"]: t for t in req["tools"] if t.get("type") == "namespace"}
        if namespaces:  # the family takes namespaces: the call names both
            assert [t["name"] for t in namespaces["mcp__demo"]["tools"]] == ["echo_tool"]
            call = Call("echo_tool", {"text": "ping-42"}, "call_mcp", namespace="mcp__demo")
        else:
            tool(req, ECHO)  # flattened
            call = Call(ECHO, {"text": "ping-42"}, "call_mcp")
        return Turn([Reasoning("Call the echo tool."), call])
    return say("The tool said: " + output_text(done[-1]).splitlines()[-1])


@pytest.mark.parametrize("family", ["deepseek", "kimi"])
def test_an_mcp_tool_is_called_through_its_namespace(
    setup: Setup, family: str, tmp_path: Path
) -> None:
    fake = setup.fakes[family]
    fake.requests.clear()
    fake.brain = mcp_brain
    calls_log = tmp_path / "mcp-calls.jsonl"
    server = McpServer("demo", sys.executable, [str(MCP_SERVER), "--calls", str(calls_log)])
    mcp = f"\n[mcp_servers.{server.name}]\ncommand = {json.dumps(server.command)}\n"
    mcp += f"args = {json.dumps(list(server.args))}\n"
    try:
        run = setup.codex(f"mcp-{family}", mcp).exec(
            "Call the echo tool with ping-42.", options=["-m", f"{family}-model"]
        )
    finally:
        fake.brain = None
    assert run.returncode == 0, run.describe()
    assert [json.loads(line) for line in calls_log.read_text().splitlines()] == [
        {"text": "ping-42"}
    ]
    assert run.last_message.strip() == "The tool said: echo: ping-42"
    assert [i["status"] for i in run.items("mcp_tool_call")] == ["completed"]
    assert fake.rejections == []


def test_an_image_reaches_a_model_that_sees(setup: Setup, tmp_path: Path) -> None:
    fake = setup.fakes["kimi"]
    fake.requests.clear()
    fake.enqueue(say("A single pixel."))
    image = tmp_path / "pixel.png"
    image.write_bytes(PNG)
    run = setup.codex("image").exec(
        "What is in this picture?", images=[image], options=["-m", "kimi-model"]
    )
    assert run.returncode == 0, run.describe()
    assert run.last_message.strip() == "A single pixel."
    (sent,) = [r["json"] for r in fake.requests]
    images = [
        p
        for m in items(sent, "message")
        if isinstance(m["content"], list)
        for p in m["content"]
        if p.get("type") == "input_image"
    ]
    assert len(images) == 1
    url = images[0]["image_url"]
    assert url.startswith("data:image/png;base64,") and base64.b64decode(url[22:]) == PNG


# ----------------------------------------------------------------------------- gpt-5.5


def proxy_routes(fake: FakeResponses, path: Path) -> Path:
    path.write_text(
        f"""
[providers.deepseek]
base_url = "{fake.url}"
api_key_env = "DEEPSEEK_KEY"
profile = "deepseek"
wire = "responses"

[models."gpt-5.5"]
provider = "deepseek"
upstream_model = "deepseek-v4-pro"
"""
    )
    return path


def proxy_relay(fake: FakeResponses, confdir: Path, routes: Path) -> MitmRelay:
    return MitmRelay(
        confdir,
        "",
        mode="regular",
        env={"DEEPSEEK_KEY": key_of("deepseek")},
        options={"relay_routes": str(routes)},
    )


def search_brain(req: dict[str, Any]) -> Turn:
    """``gpt-5.5`` through the relay: its MCP tools deferred behind the search the relay offers
    as a function. Search, call what was found, answer; on the resumed turn call it again."""
    names = [t.get("name") for t in req.get("tools", ())]
    assert "tool_search" in names
    done = outputs(req)
    if "again" in user_texts(req).splitlines()[-1]:
        assert ECHO in names, "the found tool stays offered after the resume"
        if done[-1]["call_id"] != "call_echo_2":
            return Turn(
                [Reasoning("Call it again."), Call(ECHO, {"text": "ping-43"}, "call_echo_2")]
            )
        return say("Called it again: " + output_text(done[-1]).splitlines()[-1])
    if not done:
        assert ECHO not in names, "MCP tools are deferred"
        search = Call("tool_search", '{"query": "echo text tool", "limit": 8.0}', "call_search_1")
        return Turn([Reasoning("Search for an echo tool."), search])
    if done[-1]["call_id"] == "call_search_1":
        assert ECHO in names and "- mcp__demo__echo_tool(text)" in output_text(done[-1])
        return Turn(
            [Reasoning("Found it; call it."), Call(ECHO, {"text": "ping-42"}, "call_echo_1")]
        )
    return say("The tool said: " + output_text(done[-1]).splitlines()[-1])


def test_gpt_5_5_finds_an_mcp_tool_through_tool_search_and_resumes_after_a_relay_restart(
    tmp_path: Path,
) -> None:
    calls_log = tmp_path / "mcp-calls.jsonl"
    server = McpServer("demo", sys.executable, [str(MCP_SERVER), "--calls", str(calls_log)])
    confdir = tmp_path / "confdir"
    routes = proxy_routes
    with FakeResponses("deepseek", key=key_of("deepseek")) as fake:
        fake.brain = search_brain
        path = routes(fake, tmp_path / "routes.toml")
        with proxy_relay(fake, confdir, path) as relay:
            codex = CodexHarness(proxy=relay.url, ca=relay.ca, mcp_servers=[server], label="r-ts")
            try:
                first = codex.exec("Find the echo tool and call it with ping-42.")
                assert first.returncode == 0, first.describe()
            except BaseException:
                codex.cleanup()
                raise
        first_requests = len(fake.requests)
        # A fresh relay process: same confdir (its CA and reasoning key), a new port.
        with proxy_relay(fake, confdir, path) as relay2:
            codex.proxy = relay2.url
            try:
                second = codex.exec("Call the echo tool again.", resume_last=True)
            finally:
                codex.cleanup()
    assert second.returncode == 0, second.describe() + relay2.text()[-3000:]
    assert [json.loads(line) for line in calls_log.read_text().splitlines()] == [
        {"text": "ping-42"},
        {"text": "ping-43"},
    ]
    assert first.last_message.strip() == "The tool said: echo: ping-42"
    assert second.last_message.strip() == "Called it again: echo: ping-43"
    assert [i["status"] for i in second.items("mcp_tool_call")] == ["completed"]
    assert fake.rejections == []
    requests = [r["json"] for r in fake.requests]
    assert len(requests) == first_requests + 2 == 5  # nothing retried
    # Codex ran the search the relay handed it (its limit 8.0 went out as 8, which Codex
    # parses), and the search became a function call and its answer upstream.
    (search,) = [c for c in items(requests[1], "function_call") if c["name"] == "tool_search"]
    assert json.loads(search["arguments"]) == {"query": "echo text tool", "limit": 8}
    # After the restart the provider still got its own reasoning back for every call, not
    # DeepSeek's placeholder: the sealed blobs opened with the key kept in the confdir.
    resumed = requests[-1]
    texts = [r["content"][0]["text"] for r in items(resumed, "reasoning")]
    assert texts[:3] == ["Search for an echo tool.", "Found it; call it.", "Call it again."]


def test_remote_compaction_goes_through_the_relays_own_path(tmp_path: Path) -> None:
    """Unmodified Codex compacts remotely once reported usage passes its limit: the request
    ends in ``compaction_trigger`` and needs one ``compaction`` item back
    (docs/codex-contract.md §9). DeepSeek has no compaction endpoint: the relay asks it for
    Codex's handoff summary (no tools) and seals the summary into that item; the next request
    opens it into the summary message."""
    summaries: list[dict[str, Any]] = []

    def brain(req: dict[str, Any]) -> Turn:
        if COMPACTION_PROMPT in user_texts(req):
            summaries.append(req)
            return say("SUMMARY: a.txt holds 'a'.")
        if not outputs(req) and not summaries:
            turn = Turn([Reasoning("Write it."), Call("exec_command", {"cmd": "printf a > a.txt"})])
            turn.usage = (250_000, 10, 0, 5)  # Codex compacts before going on
            return turn
        return say("finished after compaction")

    with FakeResponses("deepseek", key=key_of("deepseek")) as fake:
        fake.brain = brain
        path = proxy_routes(fake, tmp_path / "routes.toml")
        with proxy_relay(fake, tmp_path / "confdir", path) as relay:
            codex = CodexHarness(
                proxy=relay.url,
                ca=relay.ca,
                extra_config="model_auto_compact_token_limit = 1000\n",
                label="r-compact",
            )
            try:
                run = codex.exec("Create a.txt containing a, then finish.")
            finally:
                codex.cleanup()
    assert run.returncode == 0, run.describe()
    assert run.last_message.strip() == "finished after compaction"
    assert fake.rejections == []
    (summary,) = summaries
    assert "tools" not in summary  # a summary request offers none
    requests = [r["json"] for r in fake.requests]
    after = requests[requests.index(summary) + 1]
    opened = [t for t in user_texts(after).split("\n") if t.startswith(SUMMARY_PREFIX.strip())]
    assert opened, user_texts(after)
    assert "SUMMARY: a.txt holds 'a'." in user_texts(after)
    # The summary travelled sealed inside Codex's compaction item, never as text Codex sent.
    assert not any(i.get("type") == "compaction" for i in after["input"])
