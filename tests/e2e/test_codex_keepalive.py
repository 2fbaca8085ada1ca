"""The real Codex CLI waiting on a model that thinks longer than Codex's stream idle timeout.

Codex fails an attempt after ``stream_idle_timeout_ms`` without an SSE *event* (comments do
not count: docs/codex-contract.md §7.1). The relay's keep-alives are ``response.in_progress``
events, so with them a 3 s idle timeout survives 6 s of upstream silence. The control run,
with keep-alives slower than the silence, shows the same setup failing: the test cannot pass
vacuously.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.codex import CodexHarness
from support.fake_upstream import FakeUpstream, Reply
from support.mitm import MitmRelay

pytestmark = [pytest.mark.e2e]

SILENCE_S = 6.0  # twice Codex's idle timeout below
IDLE_TIMEOUT_MS = 3000


@pytest.fixture
def harnesses() -> Iterator[list[CodexHarness]]:
    made: list[CodexHarness] = []
    yield made
    for h in made:
        h.cleanup()


def run_codex_through(
    tmp_path: Path, keepalive_s: int, harnesses: list[CodexHarness]
) -> tuple[object, int]:
    with (
        FakeUpstream() as up,
        MitmRelay(tmp_path, up.url, options={"relay_keepalive": str(keepalive_s)}) as relay,
    ):
        up.brain = lambda _req: Reply(chunks=[{"content": "worth the wait"}], think_s=SILENCE_S)
        codex = CodexHarness(
            base_url=relay.url + "/v1",
            idle_timeout_ms=IDLE_TIMEOUT_MS,
            stream_max_retries=0,
            label="keepalive",
        )
        harnesses.append(codex)
        run = codex.exec("Say something after thinking.", timeout=90)
        return run, len(up.chat_requests())


def test_keepalives_carry_codex_through_a_long_silence(tmp_path, harnesses):
    run, requests = run_codex_through(tmp_path, 1, harnesses)
    assert run.returncode == 0, run.describe()
    assert run.last_message.strip() == "worth the wait"
    assert requests == 1  # no retry was needed


def test_without_keepalives_the_same_silence_fails_codex(tmp_path, harnesses):
    run, _ = run_codex_through(tmp_path, 60, harnesses)
    assert run.returncode != 0
    assert any("idle timeout" in e for e in run.errors()), run.describe()
