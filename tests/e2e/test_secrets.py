"""Neither key ever shows: the real Codex CLI works through the relay (under mitmweb, DEBUG
logging, every flow saved with ``-w``), then every log line, the saved flows file and
everything mitmweb's REST API hands out are scanned for the upstream key and the client's key.

Both ways Codex reaches the relay: as a custom provider (reverse mode; Codex sends its key as
``Authorization: Bearer``) and unmodified through the relay as its HTTPS proxy (Codex sends its
``OPENAI_API_KEY`` to api.openai.com). The cases cover a plain answer, a tool loop, a refused
upstream key (401) and a rate limit (429), whose error bodies and log lines are where a key
would most likely be quoted. The keys are really used (the upstream checks its key and records
the client's absence), so the scan cannot pass vacuously.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import io as mitmproxy_io
from support.codex import CLIENT_KEY, CODEX_VERSIONS, CodexHarness
from support.fake_upstream import FakeUpstream, error, text, tool_call
from support.mitmweb import MitmWeb

# What is scanned is the relay's output, not Codex's: one release is enough (~16 s a test).
pytestmark = [pytest.mark.e2e, pytest.mark.codex_versions(CODEX_VERSIONS[0])]

UPSTREAM_KEY = "sk-upstream-secret-4f1c9e7a"
SECRETS = {"upstream key": UPSTREAM_KEY.encode(), "client key": CLIENT_KEY.encode()}


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(key=UPSTREAM_KEY) as up:  # refuses any other key, as providers do
        yield up


def run_cases(codex: CodexHarness, upstream: FakeUpstream) -> None:
    """A plain answer, a shell tool loop, then a 401 and a 429 (each followed by success)."""
    upstream.enqueue(text("Plain answer."))
    assert codex.exec("Say something.").last_message.strip() == "Plain answer."
    upstream.enqueue(
        tool_call("exec_command", {"cmd": "printf 'secret-free' > out.txt"}),
        text("Wrote it."),
    )
    run = codex.exec("Write out.txt.")
    assert (codex.workdir / "out.txt").read_text() == "secret-free", run.describe()
    upstream.enqueue(
        error(
            401, {"error": {"message": "Incorrect API key provided.", "code": "invalid_api_key"}}
        ),
        text("After the refusal."),  # Codex retries a 401 (it reconnects)
    )
    refused = codex.exec("This one is refused once.")
    assert any("401" in e for e in refused.errors()), refused.describe()
    assert refused.last_message.strip() == "After the refusal."
    upstream.enqueue(
        error(
            429,
            {"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}},
            headers={"retry-after": "1"},
        ),
        text("After the limit."),
    )
    assert codex.exec("Again.").last_message.strip() == "After the limit."


def scan(web: MitmWeb, saved: Path) -> dict[str, list[str]]:
    """Where each secret shows, by place (empty lists: nowhere)."""
    flows = list(mitmproxy_io.FlowReader(saved.open("rb")).stream())
    places = {
        "log": web.text().encode(),
        "saved flows (raw file)": saved.read_bytes(),
        "saved flows (decoded)": "\n".join(repr(f.get_state()) for f in flows).encode(),
        "mitmweb REST": web.rest_dump(),
    }
    assert flows, "nothing was saved: the scan would be vacuous"
    return {
        name: [place for place, data in places.items() if secret in data]
        for name, secret in SECRETS.items()
    }


def assert_keys_were_used(upstream: FakeUpstream) -> None:
    chats = [r for r in upstream.requests if r["path"].endswith("/chat/completions")]
    assert len(chats) >= 7  # plain, tool loop (2), the 401 and its retry, the 429 and its retry
    assert all(r["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}" for r in chats)


def relay_options(saved: Path, **extra: str) -> dict[str, str]:
    return {
        "termlog_verbosity": "debug",  # every DEBUG line of the relay and of mitmproxy
        "save_stream_file": str(saved),  # what -w does
        **extra,
    }


def test_no_key_in_logs_saved_flows_or_mitmweb_custom_provider(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    saved = tmp_path / "flows.mitm"
    with MitmWeb(
        tmp_path / "conf", upstream.url, key=UPSTREAM_KEY, options=relay_options(saved)
    ) as web:
        codex = CodexHarness(base_url=f"{web.url}/v1", workdir=tmp_path / "work")
        try:
            run_cases(codex, upstream)
        finally:
            codex.cleanup()
        found = scan(web, saved)
    assert_keys_were_used(upstream)
    assert found == {"upstream key": [], "client key": []}


def test_no_key_in_logs_saved_flows_or_mitmweb_system_proxy(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    saved = tmp_path / "flows.mitm"
    options = relay_options(saved, relay_model="deepseek-chat")
    with MitmWeb(
        tmp_path / "conf", upstream.url, mode="regular", key=UPSTREAM_KEY, options=options
    ) as web:
        codex = CodexHarness(proxy=web.url, ca=web.ca, workdir=tmp_path / "work")
        try:
            run_cases(codex, upstream)
        finally:
            codex.cleanup()
        found: dict[str, Any] = scan(web, saved)
    assert_keys_were_used(upstream)
    assert found == {"upstream key": [], "client key": []}
