"""Builders for upstream Chat Completions SSE streams, in the shapes real providers send
(docs/providers.md §1). Shared by the stream, completion and SDK-oracle tests."""

from __future__ import annotations

import itertools
import json
from typing import Any

from mitmrelay.core.context import ToolOrigin, TranslationContext
from mitmrelay.core.stream import StreamTranslator

CTX = TranslationContext(
    client_model="gpt-5.5",
    upstream_model="deepseek-chat",
    tools={
        "apply_patch": ToolOrigin("apply_patch", freeform=True),
        "mcp__demo__echo_tool": ToolOrigin("echo_tool", namespace="mcp__demo"),
    },
    response_echo={"tool_choice": "auto", "parallel_tool_calls": True, "tools": []},
)


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> bytes:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up",
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
    }
    body.update(extra)
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def usage(prompt: int = 100, completion: int = 20, **extra: Any) -> bytes:
    u = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        **extra,
    }
    return (
        b"data: " + json.dumps({"id": "chatcmpl-1", "choices": [], "usage": u}).encode() + b"\n\n"
    )


DONE = b"data: [DONE]\n\n"


def text_stream(*pieces: str, finish: str = "stop") -> bytes:
    return b"".join(chunk({"content": p}) for p in pieces) + chunk(finish=finish) + usage() + DONE


def call(
    index: int | None,
    id: str | None = None,
    name: str | None = None,
    args: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    tc: dict[str, Any] = {"function": {}}
    if index is not None:
        tc["index"] = index
    if id is not None:
        tc["id"], tc["type"] = id, "function"
    if name is not None:
        tc["function"]["name"] = name
    if args is not None:
        tc["function"]["arguments"] = args
    tc.update(extra)
    return tc


def translator(**kw: Any) -> StreamTranslator:
    ids = itertools.count(1)
    kw.setdefault("new_id", lambda prefix: f"{prefix}_{next(ids)}")
    return StreamTranslator(
        kw.pop("ctx", CTX),
        response_id="resp_1",
        created_at=1700000000,
        upstream=kw.pop("upstream", "deepseek"),
        **kw,
    )


def run(raw: bytes, *, step: int | None = None, **kw: Any) -> bytes:
    t = translator(**kw)
    if step is None:
        return t.feed(raw) + t.finish()
    out = b"".join(t.feed(raw[i : i + step]) for i in range(0, len(raw), step))
    return out + t.finish()


def events(out: bytes) -> list[dict[str, Any]]:
    result = []
    for block in out.decode().split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: "):
                result.append(json.loads(line[6:]))
    return result


def types(out: bytes) -> list[str]:
    return [e["type"] for e in events(out)]


def terminal(out: bytes) -> dict[str, Any]:
    last = events(out)[-1]
    assert last["type"] in ("response.completed", "response.failed", "response.incomplete")
    return last
