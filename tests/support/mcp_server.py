"""A tiny stdio MCP server with one tool, ``echo_tool``, for the Codex end-to-end tests.

Protocol: newline-delimited JSON-RPC 2.0 on stdin/stdout (MCP stdio transport). Codex 0.169.0
sends ``initialize`` with ``protocolVersion: "2025-06-18"`` (clientInfo ``codex-mcp-client``),
then ``notifications/initialized`` and ``tools/list`` (observed by teeing its stdin). We answer
with the version the client asked for, so a later Codex revision is accepted too.
``tools/list`` offers ``echo_tool``; ``tools/call`` answers
``{"content":[{"type":"text","text":"echo: <text>"}]}``. Requests it does not know get JSON-RPC
error -32601; notifications are ignored. Each call's arguments are appended as one JSON line to
the file named by ``--calls <path>``, so a test can prove Codex really invoked the tool.

Run: ``python mcp_server.py --calls /path/calls.jsonl``. Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

SERVER_INFO = {"name": "mitmrelay-test-echo", "version": "1.0.0"}
ECHO_TOOL = {
    "name": "echo_tool",
    "description": "Echo the given text back, prefixed with 'echo: '.",
    "inputSchema": {
        "type": "object",
        "properties": {"text": {"type": "string", "description": "Text to echo."}},
        "required": ["text"],
        "additionalProperties": False,
    },
}
FALLBACK_PROTOCOL = "2025-06-18"


def handle(msg: dict[str, Any], calls_path: str | None) -> dict[str, Any] | None:
    """The response to one JSON-RPC message, or None for notifications."""
    method = msg.get("method")
    if "id" not in msg:
        return None  # notification (e.g. notifications/initialized)
    rid = msg["id"]
    params = msg.get("params") or {}
    if method == "initialize":
        result: dict[str, Any] = {
            "protocolVersion": params.get("protocolVersion") or FALLBACK_PROTOCOL,
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": SERVER_INFO,
        }
    elif method == "ping":
        result = {}
    elif method == "tools/list":
        result = {"tools": [ECHO_TOOL]}
    elif method == "tools/call" and params.get("name") == "echo_tool":
        args = params.get("arguments") or {}
        if calls_path:
            with open(calls_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(args) + "\n")
        result = {
            "content": [{"type": "text", "text": f"echo: {args.get('text', '')}"}],
            "isError": False,
        }
    elif method in ("resources/list", "resources/templates/list", "prompts/list"):
        key = {"resources/list": "resources", "prompts/list": "prompts"}.get(
            method, "resourceTemplates"
        )
        result = {key: []}
    else:
        return {
            "jsonrpc": "2.0",
            "id": rid,
            "error": {"code": -32601, "message": f"method not found: {method}"},
        }
    return {"jsonrpc": "2.0", "id": rid, "result": result}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", help="append each echo_tool call's arguments here (JSONL)")
    opts = parser.parse_args(argv)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if not isinstance(msg, dict):
            continue
        reply = handle(msg, opts.calls)
        if reply is not None:
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
