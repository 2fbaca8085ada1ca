"""A readable rendering of LLM traffic, for people: streams and request bodies.

Used by the mitmweb content views (webview.py). A Responses or Chat Completions SSE stream
becomes one line per item instead of hundreds of delta events — reasoning, text, tool calls with
their arguments, a ``tool_search`` with its query — then the terminal status and usage. A
Responses or Chat request body becomes its conversation, one line per item or message, with the
tools offered; a deferred-tools search's results read as the tools found (core/tool_search.py),
not as pages of JSON schema. Pure and tolerant: any bytes render to something, never an
exception.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .errors import UpstreamProtocolError
from .sse import SSEDecoder
from .tool_search import found_line, found_tools

# A line of the request view shows this much of a text; the base prompt (~17-21 KB,
# docs/codex-contract.md §4) only its start and its length.
MAX_TEXT_CHARS = 300
MAX_SYSTEM_CHARS = 80


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
    if any("choices" in e or "error" in e for e in events):
        return _summarize_chat(events)
    return "(no JSON events)"


def _summarize_responses(events: list[dict[str, Any]]) -> str:
    lines = []
    for e in events:
        kind = e.get("type")
        if kind == "response.output_item.done":
            item = e.get("item")
            lines.append(_item_line(item if isinstance(item, Mapping) else {}))
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            r = _mapping(e.get("response"))
            lines.append(
                f"== {r.get('status')}"
                + (f" {r['error']}" if r.get("error") else "")
                + (f" {r['incomplete_details']}" if r.get("incomplete_details") else "")
            )
            if r.get("usage"):
                lines.append(f"usage: {_json(r['usage'])}")
    return "\n".join(lines) or "(no finished items yet)"


def _item_line(item: Mapping[str, Any]) -> str:
    kind = item.get("type")
    if kind == "message":
        return "text: " + _parts_text(item.get("content"))
    if kind == "reasoning":
        text = _parts_text(item.get("summary") or item.get("content"))
        sealed = " [sealed]" if item.get("encrypted_content") else ""
        return f"reasoning{sealed}: {text}"
    if kind == "function_call":
        ns = f"{item['namespace']}." if item.get("namespace") else ""
        return f"call {item.get('call_id')}: {ns}{item.get('name')}({item.get('arguments')})"
    if kind == "custom_tool_call":
        return f"custom call {item.get('call_id')}: {item.get('name')}\n{item.get('input')}"
    if kind == "tool_search_call":
        return f"search {item.get('call_id')}: {_json(item.get('arguments'))}"
    return f"{kind}: {_json(item)[:200]}"


def _summarize_chat(events: list[dict[str, Any]]) -> str:
    reasoning, text, finish, usage = [], [], None, None
    calls: list[dict[str, str]] = []
    by_index: dict[Any, dict[str, str]] = {}
    for e in events:
        if e.get("error"):
            return f"error: {_json(e['error'])}"
        usage = e.get("usage") or usage
        for choice in _mappings(e.get("choices")):
            delta = _mapping(choice.get("delta"))
            reasoning.append(_str(delta.get("reasoning_content") or delta.get("reasoning")))
            text.append(_str(delta.get("content")))
            for tc in _mappings(delta.get("tool_calls")):
                # As the translator accumulates (core/stream.py rule 4): by index, the id only
                # in a call's first delta; a new id at a used index, or an id without an
                # index (Gemini), starts a new call.
                index, call_id = tc.get("index"), _str(tc.get("id"))
                call = by_index.get(index) if isinstance(index, int) else None
                if call is None and index is None and calls and not call_id:
                    call = calls[-1]
                if call is None or (call_id and call["id"] and call_id != call["id"]):
                    call = {"id": call_id, "name": "", "arguments": ""}
                    calls.append(call)
                    if isinstance(index, int):
                        by_index[index] = call
                call["id"] = call["id"] or call_id
                fn = _mapping(tc.get("function"))
                call["name"] += _str(fn.get("name"))
                call["arguments"] += _str(fn.get("arguments"))
            finish = choice.get("finish_reason") or finish
    lines = []
    if "".join(reasoning):
        lines.append("reasoning: " + "".join(reasoning))
    if "".join(text):
        lines.append("text: " + "".join(text))
    lines += [f"call {c['id'] or i}: {c['name']}({c['arguments']})" for i, c in enumerate(calls)]
    lines.append(f"== finish_reason: {finish}")
    if usage:
        lines.append(f"usage: {_json(usage)}")
    return "\n".join(lines)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _mappings(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _parts_text(parts: Any) -> str:
    return "".join(_str(p.get("text")) for p in _mappings(parts))


# ----------------------------------------------------------------------------- request bodies


def summarize_request(data: bytes) -> str:
    """A Responses (``input``) or Chat Completions (``messages``) request body, one line per
    item or message, after a header line with the model and the tools offered."""
    try:
        body = json.loads(data)
    except ValueError:
        return "(not JSON)"
    if not isinstance(body, dict):
        return "(not an LLM request)"
    if "input" in body:
        return _summarize_responses_request(body)
    if isinstance(body.get("messages"), list):
        return _summarize_chat_request(body)
    return "(not an LLM request)"


def _header(body: Mapping[str, Any], tools: list[str]) -> str:
    parts = [f"model: {body.get('model')}"]
    if body.get("stream"):
        parts.append("stream")
    if tools:
        parts.append(f"{len(tools)} tools: " + ", ".join(tools))
    return " | ".join(parts)


def _summarize_responses_request(body: Mapping[str, Any]) -> str:
    items = body.get("input")
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    items = [i for i in items if isinstance(i, Mapping)] if isinstance(items, list) else []
    tools = [
        t
        for source in (body.get("tools"), *(i.get("tools") for i in items if _is_extra(i)))
        if isinstance(source, list)
        for t in source
        if isinstance(t, Mapping)
    ]
    lines = [_header(body, [_tool_label(t) for t in tools])]
    lines += [_input_line(item) for item in items if not _is_extra(item)]
    return "\n".join(lines)


def _is_extra(item: Mapping[str, Any]) -> bool:
    return item.get("type") == "additional_tools"  # lite slugs: tools in the input


def _tool_label(tool: Mapping[str, Any]) -> str:
    kind, name = tool.get("type"), tool.get("name")
    if kind == "function":
        return str(name)
    if kind == "custom":
        return f"{name} (freeform)"
    if kind == "namespace":
        inner = [t.get("name") for t in tool.get("tools") or () if isinstance(t, Mapping)]
        return f"{name}.{{{', '.join(map(str, inner))}}}"
    if kind == "tool_search":
        return f"tool_search ({tool.get('execution') or 'hosted'})"
    return f"{kind} (hosted)"


def _input_line(item: Mapping[str, Any]) -> str:
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        limit = MAX_SYSTEM_CHARS if role in ("developer", "system") else MAX_TEXT_CHARS
        return f"{role}: {_clip(_content_text(item.get('content')), limit)}"
    if kind == "reasoning":
        text = "".join(
            p.get("text", "")
            for p in (item.get("summary") or item.get("content") or ())
            if isinstance(p, Mapping)
        )
        sealed = " [sealed]" if item.get("encrypted_content") else ""
        return f"reasoning{sealed}: {_clip(text, MAX_TEXT_CHARS)}"
    if kind in ("function_call", "custom_tool_call", "tool_search_call"):
        return _item_line(dict(item))
    if kind in ("function_call_output", "custom_tool_call_output"):
        output = _content_text(item.get("output"))
        return f"output {item.get('call_id')}: {_clip(output, MAX_TEXT_CHARS)}"
    if kind == "tool_search_output":
        return _search_results(item)
    return f"{kind}"


def _search_results(item: Mapping[str, Any]) -> str:
    """What a search found, as the model is told (core/tool_search.py rule 3)."""
    tools = item.get("tools")
    found = (
        found_tools(t for t in tools if isinstance(t, Mapping)) if isinstance(tools, list) else []
    )
    head = f"search results {item.get('call_id')}: "
    if not found:
        return head + "no tools found"
    lines = [
        "  " + found_line(f, f"{f.namespace}.{f.name}" if f.namespace else f.name) for f in found
    ]
    return head + f"{len(found)} tool{'s' if len(found) != 1 else ''}\n" + "\n".join(lines)


def _summarize_chat_request(body: Mapping[str, Any]) -> str:
    tools = [
        str((t.get("function") or {}).get("name") or t.get("type"))
        for t in body.get("tools") or ()
        if isinstance(t, Mapping)
    ]
    lines = [_header(body, tools)]
    for message in body["messages"]:
        if not isinstance(message, Mapping):
            continue
        role = message.get("role")
        text = _content_text(message.get("content"))
        if role == "tool":
            lines.append(f"tool {message.get('tool_call_id')}: {_clip(text, MAX_TEXT_CHARS)}")
            continue
        if text or not message.get("tool_calls"):
            limit = MAX_SYSTEM_CHARS if role == "system" else MAX_TEXT_CHARS
            lines.append(f"{role}: {_clip(text, limit)}")
        for call in message.get("tool_calls") or ():
            if isinstance(call, Mapping):
                fn = call.get("function") or {}
                lines.append(f"call {call.get('id')}: {fn.get('name')}({fn.get('arguments')})")
    return "\n".join(lines)


def _content_text(content: Any) -> str:
    """Text of a string or a list of parts; images as ``[image]``."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = []
    for part in content:
        if not isinstance(part, Mapping):
            continue
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif part.get("type") in ("input_image", "image_url"):
            texts.append("[image]")
    return "\n".join(texts)


def _clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, continuation lines indented; a cut says how long the
    whole was."""
    if len(text) > limit:
        text = f"{text[:limit]}… ({len(text)} chars)"
    return text.replace("\n", "\n  ")


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
