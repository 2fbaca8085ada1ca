"""Each provider profile's proof: a multi-round tool loop with reasoning, the real Codex CLI,
a real ``mitmdump`` with ``relay_profile=<family>``, and that family's strict fake upstream.

For every family at once (one relay and one fake per family, started together, the Codex
sessions run side by side so the whole set costs about one session's time): Codex asks, the
model thinks and calls ``exec_command``, Codex runs it and sends the output, the model thinks
again and calls again, then answers. The fake refuses what the real provider refuses (with its
wording), records what the provider would silently punish, and answers in its own shapes
(``support/strict_providers.py``). A family passes when Codex did the work, the fake refused
nothing and recorded nothing, and what must survive a round trip did: the reasoning (in the
family's field, or Mistral's thinking chunks), Kimi's ids, Gemini's signatures, the usage Codex
reports.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.codex import CodexHarness, CodexRun
from support.fake_upstream import FakeUpstream, Reply, text, tool_call
from support.mitm import MitmRelay
from support.strict_providers import FAMILIES, call_id

from mitmrelay.core.request import IMAGE_OMITTED

# e2e: once per pinned Codex release, each required (tests/conftest.py).
pytestmark = [pytest.mark.e2e]

KEY = "sk-relay-profile-key"
# A valid 1x1 PNG: Codex reads the file and sends it as a data URL.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)
ROUNDS = 2
# Families whose thinking text the relay shows Codex: all but Gemini, which sends none (each
# call's signature stands for it). Mistral's comes as typed content chunks.
SHOWS_REASONING = frozenset(FAMILIES) - {"gemini"}
# Families whose usage carries no cached-token count (the others report 40 of 100 cached, each
# in its own shape: strict_providers' dialects).
PLAIN_USAGE = frozenset({"generic", "groq", "mistral", "ollama", "llamacpp", "lmstudio"})


def step_reasoning(family: str, step: int) -> str:
    return f"{family} step {step}: append a line to steps.txt, then look at the result."


def loop_brain(family: str) -> Any:
    """A thinking model: reasons before each of ``ROUNDS`` calls, then answers."""

    def brain(request: dict[str, Any]) -> Reply:
        done = sum(1 for m in request["messages"] if m.get("role") == "tool")
        if done < ROUNDS:
            return tool_call(
                "exec_command",
                {"cmd": f"echo {family}-{done} >> steps.txt"},
                call_id=call_id(family, "exec_command", done, tag="loop"),
                reasoning=step_reasoning(family, done),
            )
        return text(f"{family} finished.", reasoning="Both lines are there; done.")

    return brain


@dataclass
class Session:
    family: str
    upstream: FakeUpstream
    relay: MitmRelay
    codex: CodexHarness
    run: CodexRun | None = None


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Session]]:
    with contextlib.ExitStack() as stack:
        upstreams = {f: stack.enter_context(FakeUpstream(family=f, key=KEY)) for f in FAMILIES}

        # mktemp is not thread-safe: the folders are made before the relays start together.
        confdirs = {f: tmp_path_factory.mktemp(f"confdir-{f}") for f in FAMILIES}

        def start(family: str) -> MitmRelay:
            relay = MitmRelay(
                confdirs[family],
                upstreams[family].url,
                key=KEY,
                options={"relay_profile": family},
            )
            return relay.__enter__()

        with ThreadPoolExecutor(len(FAMILIES)) as pool:
            started = {f: pool.submit(start, f) for f in FAMILIES}
        relays: dict[str, MitmRelay] = {}
        failures = []
        for family, future in started.items():  # every relay that started is stopped
            if future.exception() is None:
                relays[family] = future.result()
                stack.callback(relays[family].stop)
            else:
                failures.append(future.exception())
        if failures:
            raise failures[0]  # type: ignore[misc]
        out: dict[str, Session] = {}
        for family in FAMILIES:
            upstreams[family].brain = loop_brain(family)
            codex = CodexHarness(
                base_url=relays[family].url + "/v1", model=f"{family}-model", label=family
            )
            stack.callback(codex.cleanup)
            out[family] = Session(family, upstreams[family], relays[family], codex)

        def drive(session: Session) -> None:
            session.run = session.codex.exec(
                "Append two lines to steps.txt, one command at a time, then say you are done.",
                timeout=180,
            )

        with ThreadPoolExecutor(len(FAMILIES)) as pool:
            list(pool.map(drive, out.values()))
        yield out


def assistant_calls(chat: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in chat["messages"] if m.get("role") == "assistant" and m.get("tool_calls")]


@pytest.mark.parametrize("family", FAMILIES)
def test_tool_loop_with_reasoning_is_accepted_by_the_strict_fake(
    sessions: dict[str, Session], family: str
) -> None:
    session = sessions[family]
    run, up = session.run, session.upstream
    assert run is not None
    context = f"{run.describe()}\nrelay log:\n{session.relay.text()[-3000:]}"
    # The provider refused nothing and would have punished nothing.
    assert [json.loads(r.body) for r in up.rejections] == [], context
    assert up.violations == [], context
    # Codex did the work, one call per round, and got the answer.
    assert run.returncode == 0, context
    assert (session.codex.workdir / "steps.txt").read_text() == f"{family}-0\n{family}-1\n"
    assert run.last_message.strip() == f"{family} finished."
    chats = up.chat_requests()
    assert len(chats) == ROUNDS + 1, context  # nothing retried
    # Every round sent the whole loop so far, with the family's own ids on both sides.
    last = chats[-1]
    calls = assistant_calls(last)
    sent_ids = [c["id"] for m in calls for c in m["tool_calls"]]
    assert sent_ids == [call_id(family, "exec_command", n, tag="loop") for n in range(ROUNDS)]
    answered = [m["tool_call_id"] for m in last["messages"] if m.get("role") == "tool"]
    assert answered == sent_ids


# What each family got for Codex's effort "medium" (the catalog's default level): its own
# switch and level (core/profiles.py, docs/providers.md §2).
SWITCHES: dict[str, dict[str, Any]] = {
    "generic": {"reasoning_effort": "medium"},
    "deepseek": {"thinking": {"type": "enabled"}, "reasoning_effort": "medium"},
    "kimi": {"thinking": {"type": "enabled"}, "reasoning_effort": "medium"},
    "glm": {"thinking": {"type": "enabled", "clear_thinking": False}, "tool_stream": True},
    "qwen": {"enable_thinking": True, "preserve_thinking": True},
    "openrouter": {"reasoning": {"effort": "medium"}},
    "groq": {"reasoning_effort": "medium"},
    "mistral": {"reasoning_effort": "high", "stream_options": None},
    "gemini": {"reasoning_effort": "medium"},
    "ollama": {"reasoning_effort": "medium"},
    "vllm": {"reasoning_effort": "medium"},
    "llamacpp": {"reasoning_effort": "medium"},
    "lmstudio": {"reasoning_effort": "medium"},
}


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_got_its_own_thinking_switch(sessions: dict[str, Session], family: str) -> None:
    first = sessions[family].upstream.chat_requests()[0]
    assert {k: first.get(k) for k in SWITCHES[family]} == SWITCHES[family]


@pytest.mark.parametrize("family", sorted(SHOWS_REASONING))
def test_codex_saw_the_reasoning(sessions: dict[str, Session], family: str) -> None:
    run = sessions[family].run
    assert run is not None
    shown = " ".join(item.get("text", "") for item in run.items("reasoning"))
    for step in range(ROUNDS):
        assert step_reasoning(family, step) in shown, run.describe()


def test_mistral_got_its_thinking_back_as_thinking_chunks(sessions: dict[str, Session]) -> None:
    """Mistral streamed its thinking as typed content chunks; Codex showed it (above) and the
    relay sent it back the same way, at the head of each call message's content, never as a
    reasoning field (its strict schema refuses one)."""
    last = sessions["mistral"].upstream.chat_requests()[-1]
    thoughts = [
        [part["thinking"][0]["text"] for part in m["content"] if part["type"] == "thinking"]
        for m in assistant_calls(last)
    ]
    assert thoughts == [[step_reasoning("mistral", step)] for step in range(ROUNDS)]


def test_gemini_signatures_went_back_on_their_calls(sessions: dict[str, Session]) -> None:
    """Gemini signs each call and sends no thought text: the relay seals each signature into a
    reasoning item without text (core/stream.py rule 5), Codex replays it, and the next request
    puts the signature back on its call."""
    up = sessions["gemini"].upstream
    last = up.chat_requests()[-1]
    signed = {
        c["id"]: c["extra_content"]["google"]["thought_signature"]
        for m in assistant_calls(last)
        for c in m["tool_calls"]
    }
    assert signed == up.memory.signatures
    # Gemini takes no thought text back, only the signatures.
    assert not any("reasoning_content" in m or "reasoning" in m for m in assistant_calls(last))


@pytest.mark.parametrize("family", FAMILIES)
def test_codex_reports_the_usage_the_family_sent(sessions: dict[str, Session], family: str) -> None:
    """Each family's usage shape (cached tokens in every form) reaches Codex's token count."""
    run = sessions[family].run
    assert run is not None
    turns = [e for e in run.events if e.get("type") == "turn.completed"]
    assert turns, run.describe()
    usage = turns[-1]["usage"]
    cached = 0 if family in PLAIN_USAGE else 40
    assert usage["input_tokens"] == 100 * (ROUNDS + 1), usage
    assert usage["cached_input_tokens"] == cached * (ROUNDS + 1), usage


def test_the_relay_log_names_each_profile(sessions: dict[str, Session]) -> None:
    for family, session in sessions.items():
        assert f"profile {family}" in session.relay.text(), family


def test_an_image_to_a_text_only_family_becomes_a_note(
    sessions: dict[str, Session], tmp_path: Path
) -> None:
    """DeepSeek's chat models refuse image parts (its strict fake answers DeepSeek's 400): the
    relay sends a note in the image's place and the turn goes on."""
    session = sessions["deepseek"]
    up = session.upstream
    up.brain = None
    up.enqueue(text("I cannot see images, but I read your question."))
    before = len(up.chat_requests())
    image = tmp_path / "red.png"
    image.write_bytes(PNG)
    run = session.codex.exec("What colour is this picture?", images=[image])
    assert run.returncode == 0, run.describe()
    assert run.last_message.strip() == "I cannot see images, but I read your question."
    assert up.rejections == []
    sent = up.chat_requests()[before]
    messages = json.dumps(sent["messages"])
    assert '"type": "image_url"' not in messages
    assert IMAGE_OMITTED in messages
