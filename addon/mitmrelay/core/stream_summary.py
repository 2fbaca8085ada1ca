"""A readable rendering of a Responses or Chat Completions SSE stream, for people.

Used by the mitmweb content view: instead of hundreds of delta events, one line per item —
reasoning, text, tool calls with their arguments — then the terminal status and usage.
Pure and tolerant: any bytes render to something, never an exception.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import UpstreamProtocolError
from .sse import SSEDecoder


def _events(data: bytes) -> list[dict[str, Any]]:
    decoder = SSEDecoder()
    try:
        raw = decoder.feed(data) + decoder.close()
    except UpstreamProtocolError:
        return []
    out = []
    for event in raw:
        try:
            obj = json.loads(event.data)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def summarize_stream(data: bytes) -> str:
    events = _events(data)
    if any(str(e.get("type", "")).startswith("response.") for e in events):
        return _summarize_responses(events)
    if any("choices" in e for e in events):
        return _summarize_chat(events)
    return "(no JSON events)"


def _summarize_responses(events: list[dict[str, Any]]) -> str:
    lines = []
    for e in events:
        kind = e.get("type")
        if kind == "response.output_item.done":
            lines.append(_item_line(e.get("item") or {}))
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            r = e.get("response") or {}
            lines.append(
                f"== {r.get('status')}"
                + (f" {r['error']}" if r.get("error") else "")
                + (f" {r['incomplete_details']}" if r.get("incomplete_details") else "")
            )
            if r.get("usage"):
                lines.append(f"usage: {json.dumps(r['usage'])}")
    return "\n".join(lines) or "(no finished items yet)"


def _item_line(item: dict[str, Any]) -> str:
    kind = item.get("type")
    if kind == "message":
        return "text: " + "".join(p.get("text", "") for p in item.get("content") or [])
    if kind == "reasoning":
        text = "".join(
            p.get("text", "") for p in (item.get("summary") or item.get("content") or [])
        )
        sealed = " [sealed]" if item.get("encrypted_content") else ""
        return f"reasoning{sealed}: {text}"
    if kind == "function_call":
        ns = f"{item['namespace']}." if item.get("namespace") else ""
        return f"call {item.get('call_id')}: {ns}{item.get('name')}({item.get('arguments')})"
    if kind == "custom_tool_call":
        return f"custom call {item.get('call_id')}: {item.get('name')}\n{item.get('input')}"
    return f"{kind}: {json.dumps(item)[:200]}"


def _summarize_chat(events: list[dict[str, Any]]) -> str:
    reasoning, text, finish, usage = [], [], None, None
    calls: list[dict[str, str]] = []
    by_index: dict[Any, dict[str, str]] = {}
    for e in events:
        if e.get("error"):
            return f"error: {json.dumps(e['error'])}"
        usage = e.get("usage") or usage
        for choice in e.get("choices") or ():
            delta = choice.get("delta") or {}
            reasoning.append(delta.get("reasoning_content") or delta.get("reasoning") or "")
            text.append(delta.get("content") or "")
            for tc in delta.get("tool_calls") or ():
                # As the translator accumulates (core/stream.py rule 4): by index, the id only
                # in a call's first delta; a new id at a used index, or an id without an
                # index (Gemini), starts a new call.
                index, call_id = tc.get("index"), tc.get("id") or ""
                call = by_index.get(index) if index is not None else None
                if call is None and index is None and calls and not call_id:
                    call = calls[-1]
                if call is None or (call_id and call["id"] and call_id != call["id"]):
                    call = {"id": call_id, "name": "", "arguments": ""}
                    calls.append(call)
                    by_index[index] = call
                call["id"] = call["id"] or call_id
                fn = tc.get("function") or {}
                call["name"] += fn.get("name") or ""
                call["arguments"] += fn.get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    lines = []
    if "".join(reasoning):
        lines.append("reasoning: " + "".join(reasoning))
    if "".join(text):
        lines.append("text: " + "".join(text))
    lines += [f"call {c['id'] or i}: {c['name']}({c['arguments']})" for i, c in enumerate(calls)]
    lines.append(f"== finish_reason: {finish}")
    if usage:
        lines.append(f"usage: {json.dumps(usage)}")
    return "\n".join(lines)
