"""Remote compaction with an unmodified Codex (built-in provider, system-proxy mode).

Codex's built-in provider compacts remotely: once reported input tokens pass
``model_auto_compact_token_limit`` it sends a request ending in ``compaction_trigger`` and needs
exactly one ``compaction`` item back (docs/codex-contract.md §9). The relay asks the upstream for a
summary with Codex's own prompt and seals it into that item; on the next request it opens it
into the summary message.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.codex import CodexHarness
from support.fake_upstream import FakeUpstream, Reply, tool_call
from support.mitm import MitmRelay

from mitmrelay.core.compaction import COMPACTION_PROMPT, SUMMARY_PREFIX

pytestmark = [pytest.mark.e2e]
BIG = {"prompt_tokens": 250_000, "completion_tokens": 10, "total_tokens": 250_010}


def test_remote_compaction_round_trip_with_real_codex(tmp_path: Path) -> None:
    compactions = []

    def brain(request: dict) -> Reply:
        messages = request["messages"]
        if messages[-1].get("content") == COMPACTION_PROMPT:
            compactions.append(request)
            return Reply(chunks=[{"content": "SUMMARY: a.txt holds 'a'."}])
        if not any(m["role"] == "tool" for m in messages) and not compactions:
            # The first turn reports a huge prompt: Codex compacts before going on.
            reply = tool_call("exec_command", {"cmd": "printf a > a.txt"}, call_id="call_c1")
            reply.usage = BIG
            return reply
        return Reply(chunks=[{"content": "finished after compaction"}])

    with (
        FakeUpstream() as up,
        MitmRelay(
            tmp_path / "conf", up.url, mode="regular", options={"relay_model": "deepseek-chat"}
        ) as relay,
    ):
        up.brain = brain
        codex = CodexHarness(
            proxy=relay.url,
            ca=relay.ca,
            model="gpt-5.5",
            extra_config="model_auto_compact_token_limit = 1000\n",
        )
        run = codex.exec("Create a.txt containing a, then finish.")
    assert run.returncode == 0, run.stderr[-2000:]
    assert (codex.workdir / "a.txt").read_text() == "a"
    assert run.last_message.strip() == "finished after compaction"
    assert len(compactions) == 1
    assert "tools" not in compactions[0]  # a summary request offers no tools
    chats = up.chat_requests()
    after = chats[chats.index(compactions[0]) + 1]
    summaries = [
        m["content"]
        for m in after["messages"]
        if m["role"] == "user"
        and isinstance(m["content"], str)
        and m["content"].startswith(SUMMARY_PREFIX)
    ]
    assert summaries == [SUMMARY_PREFIX + "SUMMARY: a.txt holds 'a'."]
    # the summary travelled sealed: it never appears in Codex's own request bodies as text
    assert "a.txt holds" not in json.dumps([r["json"] for r in up.requests if r["json"]][:1])
