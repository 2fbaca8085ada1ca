"""The test MCP server answers the exact handshake Codex 0.169.0 sends (teed from its stdin)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

MCP_SERVER = Path(__file__).resolve().parents[1] / "support" / "mcp_server.py"

# Verbatim from Codex 0.169.0, then one tools/call as Codex dispatches it.
CODEX_SESSION = [
    {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {
                "experimental": {"codex/auth-change": {}},
                "elicitation": {"form": {}, "url": {}},
            },
            "clientInfo": {"name": "codex-mcp-client", "title": "Codex", "version": "0.169.0"},
        },
    },
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {"progressToken": 0}}},
    {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "echo_tool", "arguments": {"text": "hi"}},
    },
    {"jsonrpc": "2.0", "id": 3, "method": "no/such/method"},
]


def test_codex_handshake_list_and_call(tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"
    proc = subprocess.run(
        [sys.executable, str(MCP_SERVER), "--calls", str(calls)],
        input="".join(json.dumps(m) + "\n" for m in CODEX_SESSION),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    replies = {r["id"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert sorted(replies) == [0, 1, 2, 3]  # the notification got no answer
    assert replies[0]["result"]["protocolVersion"] == "2025-06-18"
    assert "tools" in replies[0]["result"]["capabilities"]
    (tool,) = replies[1]["result"]["tools"]
    assert tool["name"] == "echo_tool" and tool["inputSchema"]["required"] == ["text"]
    assert replies[2]["result"]["content"] == [{"type": "text", "text": "echo: hi"}]
    assert replies[3]["error"]["code"] == -32601
    assert calls.read_text() == '{"text": "hi"}\n'
