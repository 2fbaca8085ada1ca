"""Responses request -> Chat Completions request (and the context the answer needs).

Theory of operation: the validated request is walked once, item by item, through a table of
handlers (``_ITEM_HANDLERS``) that append to a ``_Conversation``; a final pass
(``_ordered``) enforces the Chat message-order invariant. Tools are translated once. The
result is plain dicts (no models), serialised by the caller.

A long history is thousands of small items, so the per-item path stays cheap
(``bench/request_translate.py``, "2000 short turns"): items and content parts are the plain
dicts validation made of them (models/responses.py), dispatched on their ``type`` string;
reasoning waits for its assistant message as plain text unless a sealed payload came with it;
tool names are resolved once per request (``NameTable``). Nothing here mutates an item: the
same dicts are what a ``previous_response_id`` record keeps.

Rules (each cites the fact it rests on):

1. Every ``developer``/``system`` message becomes a system message, all kept, in order: Codex's
   ~17 KB base prompt is the first developer item, and peers that "hoist" lose it
   (docs/codex-contract.md §4, docs/providers.md §3 item 1). ``instructions`` comes first when
   present.
2. Consecutive calls form one assistant message with ``tool_calls`` (ids kept, empty arguments
   -> ``"{}"``); each output becomes a tool message. Chat tool messages cannot carry images, so
   image parts of an output go into one user message right after that turn's tool messages
   (docs/codex-contract.md §13 item 2).
3. Message-order invariant: every assistant tool_call id is answered by exactly one tool
   message, right after it, in order. A call without output gets ``MISSING_OUTPUT``; an output
   without a call is dropped (logged).
4. Reasoning items never become visible text (docs/providers.md §1.2): they fill the reasoning field
   (``profile.reasoning_replay``) of the next assistant message, or, for a provider with no such
   field (``profile.thinking_chunks``: Mistral), a typed ``thinking`` chunk at the head of its
   content, and only when the routed model thinks (docs/providers.md §2 Mistral). Source, in
   order: the sealed carrier's payload, ``reasoning_text`` content, the summary text. Gemini's
   thought signatures in a payload go back on their calls by call id, wherever the item stands
   in the input (the stream side seals a signature into a reasoning item before its call, or
   after it when the signature came late: core/stream.py rule 5). A payload goes whole only to
   the provider that produced it (``origin``); any other gets its text alone, never its
   ``reasoning_details`` (OpenRouter refuses encrypted details it did not issue:
   docs/providers.md §1.2) nor its signatures (core/reasoning.py). A payload sealed before
   origins were has none and goes whole, as it always did.
5. Freeform (``custom``) tools become functions with one string parameter whose description
   carries the grammar, so the model writes a valid patch; namespaced tools get flattened,
   reversible names (core/toolnames.py); hosted tools are dropped, one log line each.
   Codex's client-executed ``tool_search`` is a function; its calls and outputs in the history
   are that function's calls and answers, and the tools it found are offered within
   ``max_tools`` (core/tool_search.py).
6. The upstream model is an input; provider differences come from the ``Profile``
   (core/profiles.py), read as switches here, never as provider names.
7. Tool-call ids go back in the form the provider accepts (``profile.tool_call_ids``): as they
   are (ids an upstream invented are valid Responses call ids already), derived
   deterministically from Codex's id (Mistral's nine characters), or restored (Kimi's own
   ``functions.<name>:<n>``): docs/providers.md §2. A pure function of the id, so every turn and
   every relay process agrees; a call and its tool message always carry the same id.
8. A model without vision (``vision=False``) never gets an image: each becomes a short text note
   in its place, in user messages and in tool outputs alike (DeepSeek rejects an image part:
   docs/providers.md §2 DeepSeek). Never a failure.
9. Codex's ``reasoning.effort`` reaches the upstream only through ``profile.thinking`` (the
   field, the level on the provider's ladder, the on/off switches); a model that does not
   think (``reasoning=False``) gets none of it, nor reasoning placeholders.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from pydantic import ValidationError

from mitmrelay.models.responses import (
    CustomTool,
    FunctionTool,
    NamespaceTool,
    ResponsesRequest,
    ToolSearchTool,
    describe,
)

from .compaction import COMPACTION_PROMPT, summary_message
from .context import ToolKind, ToolOrigin, TranslationContext
from .errors import ClientRequestError
from .profiles import GENERIC, Profile, Thinking
from .reasoning import ReasoningCarrier, ReasoningPayload
from .tool_search import (
    DEFAULT_MAX_TOOLS,
    SEARCH_FUNCTION_NAME,
    Discoveries,
    FoundTool,
    history_arguments,
    is_client_search,
    search_function,
)
from .toolnames import NameTable, upstream_name

logger = logging.getLogger(__name__)

# Sent upstream for a call whose output Codex never sent (an interrupted turn): the upstream
# requires an answer to every call (rule 3), and the model should know nothing came back.
MISSING_OUTPUT = "(no output: the tool call was interrupted before it returned)"
# Stands where an image was, for a model that cannot see (rule 8): the model learns that
# something was there and that it cannot look at it.
IMAGE_OMITTED = "(an image was attached here; this model cannot see images, so it was left out)"

# Request fields a Response object echoes back (OpenAI's Response schema).
_ECHOED = (
    "instructions",
    "tool_choice",
    "parallel_tool_calls",
    "max_output_tokens",
    "temperature",
    "top_p",
    "metadata",
    "previous_response_id",
    "store",
    "truncation",
    "service_tier",
    "prompt_cache_key",
    "user",
)


def parse_request(body: bytes) -> ResponsesRequest:
    """Validate a Responses request body. Raises ``ClientRequestError`` naming the field."""
    try:
        return ResponsesRequest.model_validate_json(body)
    except ValidationError as e:
        if any(err["type"] == "json_invalid" for err in e.errors()):
            raise ClientRequestError(
                f"request body is not valid JSON: {e.errors()[0]['msg']}"
            ) from None
        message = describe(e)
        # ``param`` is the field path, as OpenAI's own 400s name the offending parameter.
        raise ClientRequestError(
            f"invalid Responses request: {message}", param=message.split(":", 1)[0]
        ) from None


# Reasoning waiting for its assistant message: a payload, or only its text when text is all it
# has (the common case; a frozen payload per item cost ~10% of a long history's translation).
_Reasoning = ReasoningPayload | str


@dataclass(slots=True)
class _Conversation:
    profile: Profile
    carrier: ReasoningCarrier | None
    names: NameTable
    origins: dict[str, ToolOrigin] = field(default_factory=dict)  # filled before items are read
    messages: list[dict[str, Any]] = field(default_factory=list)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # call_id -> tool message
    output_images: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    reasoning: _Reasoning | None = None
    signatures: dict[str, str] = field(default_factory=dict)  # call_id -> Gemini's (rule 4)
    skipped: set[str] = field(default_factory=set)
    vision: bool = True  # rule 8
    thinks: bool = True  # rule 9
    origin: str | None = None  # the provider this request goes to (rule 4); None: any
    searches: Discoveries = field(default_factory=Discoveries)

    def opened(self, payload: ReasoningPayload) -> _Reasoning:
        """What this request may send of a sealed payload (rule 4): all of it when this
        provider produced it (or the caller or the payload names no provider), else its text."""
        if self.origin is None or not payload.origin or payload.origin == self.origin:
            if payload.signatures:
                self.signatures.update(payload.signatures)
            return payload
        return payload.text

    def assistant_for_calls(self) -> dict[str, Any]:
        """The assistant message to add calls to: the last message when it is an assistant
        message that may take (more) calls, else a new one."""
        last = self.messages[-1] if self.messages else None
        if last is None or last["role"] != "assistant" or "_closed" in last:
            return self.new_assistant()
        # Reasoning between two calls of one turn: Chat has one reasoning field per assistant
        # message, so it joins what that message already carries.
        if self.reasoning is not None:
            last["_reasoning"] = _joined(last.get("_reasoning"), self.reasoning)
            self.reasoning = None
        return last

    def new_assistant(self) -> dict[str, Any]:
        """A new assistant message, carrying any pending reasoning; its caller gives it text or
        calls. (Reasoning with nothing after it is never attached: nothing is sent for it.)"""
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if self.reasoning is not None:
            message["_reasoning"], self.reasoning = self.reasoning, None
        self.messages.append(message)
        return message


Item = Mapping[str, Any]  # a validated input item or content part (models/responses.py)
# Content parts whose text the upstream reads; "refusal" holds it under its own name.
_TEXT_PARTS = frozenset({"input_text", "output_text"})
_KNOWN_PARTS = frozenset({*_TEXT_PARTS, "refusal", "input_image"})


def _text_of(parts: str | Sequence[Item]) -> str:
    if isinstance(parts, str):
        return parts
    texts = []
    for part in parts:
        kind = part["type"]
        if kind in _TEXT_PARTS:
            texts.append(part["text"])
        elif kind == "refusal":
            texts.append(part["refusal"])
    return "\n\n".join(texts)


def _image_part(part: Item) -> dict[str, Any] | None:
    url = part.get("image_url")
    if not url:
        logger.info("input_image without image_url (file_id=%s) skipped", part.get("file_id"))
        return None
    image: dict[str, Any] = {"url": url}
    # Chat accepts auto/low/high; Codex's "original" (view_image) means full resolution.
    detail = part.get("detail")
    if detail in ("auto", "low", "high"):
        image["detail"] = detail
    elif detail == "original":
        image["detail"] = "high"
    return {"type": "image_url", "image_url": image}


def _user_content(parts: str | Sequence[Item], vision: bool) -> str | list[dict[str, Any]]:
    """Text only: one string. With images: Chat's list of parts (or, without vision, one string
    with a note where each image was: rule 8)."""
    if isinstance(parts, str):
        return parts
    texts = []
    for part in parts:
        kind = part["type"]
        if kind in _TEXT_PARTS:
            texts.append(part["text"])
        elif kind == "input_image":
            if vision:
                return _mixed_content(parts)
            texts.append(IMAGE_OMITTED)
    return "\n\n".join(texts)


def _mixed_content(parts: Sequence[Item]) -> str | list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for part in parts:
        kind = part["type"]
        if kind == "input_image":
            image = _image_part(part)
            if image:
                out.append(image)
        elif kind in _TEXT_PARTS:
            out.append({"type": "text", "text": part["text"]})
    if all(p["type"] == "text" for p in out):  # every image lacked a URL
        return "\n\n".join(p["text"] for p in out)
    return out


# ----------------------------------------------------------------------------- item handlers


def _on_message(conv: _Conversation, item: Item) -> None:
    content, role = item["content"], item["role"]
    if not isinstance(content, str):
        for part in content:
            if part["type"] not in _KNOWN_PARTS:  # input_file, input_audio, ...: no Chat form
                _on_skip(conv, part)
    if role == "user":
        conv.reasoning = None  # reasoning never crosses a user turn
        conv.messages.append({"role": "user", "content": _user_content(content, conv.vision)})
    elif role == "assistant":
        message = conv.new_assistant()
        message["content"] = (message["content"] or "") + _text_of(content)
    else:  # developer, system
        conv.messages.append({"role": "system", "content": _text_of(content)})


def _on_reasoning(conv: _Conversation, item: Item) -> None:
    reasoning: _Reasoning | None = None
    blob = item.get("encrypted_content")
    if blob and conv.carrier is not None:
        payload = conv.carrier.open(blob)
        if payload is not None:
            reasoning = conv.opened(payload)
    if reasoning is None:
        content = item.get("content")
        text = "".join([p["text"] for p in content]) if content else ""
        reasoning = text or "\n".join([p["text"] for p in item.get("summary") or ()])
    # Two reasoning items in a row: keep both, in order.
    conv.reasoning = _joined(conv.reasoning, reasoning)


def _joined(first: _Reasoning | None, second: _Reasoning) -> _Reasoning:
    if first is None:
        return second
    text = "\n\n".join(t for t in (_text(first), _text(second)) if t)
    if isinstance(first, str) and isinstance(second, str):
        return text
    first, second = _payload(first), _payload(second)
    return ReasoningPayload(
        text=text,
        details=first.details + second.details,
        signatures={**first.signatures, **second.signatures},
        call_ids=first.call_ids + second.call_ids,
    )


def _text(reasoning: _Reasoning) -> str:
    return reasoning if isinstance(reasoning, str) else reasoning.text


def _payload(reasoning: _Reasoning) -> ReasoningPayload:
    return ReasoningPayload(text=reasoning) if isinstance(reasoning, str) else reasoning


def _call(conv: _Conversation, call_id: str, name: str, arguments: str) -> None:
    call = {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments.strip() or "{}"},
    }
    message = conv.assistant_for_calls()
    calls = message.get("tool_calls")
    if calls is None:
        message["tool_calls"] = [call]
    else:
        calls.append(call)


def _on_function_call(conv: _Conversation, item: Item) -> None:
    name = conv.names.add(item["name"], item.get("namespace"))
    _call(conv, item["call_id"], name, item.get("arguments", ""))


def _on_custom_call(conv: _Conversation, item: Item) -> None:
    # The upstream saw this tool as a function with one string parameter (rule 5).
    name = conv.names.add(item["name"], item.get("namespace"))
    origin = conv.origins.get(name)
    param = origin.input_param if origin is not None else ToolOrigin(item["name"]).input_param
    _call(conv, item["call_id"], name, json.dumps({param: item["input"]}, ensure_ascii=False))


def _on_output(conv: _Conversation, item: Item) -> None:
    _close_calls(conv)
    output, call_id = item["output"], item["call_id"]
    images: list[dict[str, Any]] = []
    if isinstance(output, str):
        content = output
    elif conv.vision:
        content = _text_of(output)
        images = [img for p in output if p["type"] == "input_image" if (img := _image_part(p))]
    else:  # rule 8: a note where each image was, in order
        content = _user_content(output, vision=False)
    if call_id in conv.outputs:
        logger.info("second output for call %s dropped", call_id)
        return
    conv.outputs[call_id] = {"role": "tool", "tool_call_id": call_id, "content": content}
    if images:
        conv.output_images[call_id] = images


def _close_calls(conv: _Conversation) -> None:
    if conv.messages and conv.messages[-1]["role"] == "assistant":
        conv.messages[-1]["_closed"] = True


def _on_search_call(conv: _Conversation, item: Item) -> None:
    # A call of the search function the upstream was offered (core/tool_search.py rule 2).
    # Without a call_id the provider ran the search: nothing the upstream called.
    call_id, arguments = item.get("call_id"), item.get("arguments")
    if call_id is not None:
        conv.searches.add_call(call_id, arguments)
        _call(conv, call_id, SEARCH_FUNCTION_NAME, history_arguments(arguments))


def _on_search_output(conv: _Conversation, item: Item) -> None:
    # Its answer is written once every search is known (``_offer_found``): whether a found
    # tool is offered depends on the searches after it (core/tool_search.py rules 3-4).
    call_id = item.get("call_id")
    if call_id in conv.outputs:
        logger.info("second output for call %s dropped", call_id)
        return
    conv.searches.add_output(call_id, item.get("tools") or [])
    if call_id is not None:
        _close_calls(conv)
        conv.outputs[call_id] = {"role": "tool", "tool_call_id": call_id}


def _on_additional_tools(conv: _Conversation, item: Item) -> None:
    """Nothing to do in the item pass: ``translate_request`` reads these tools first, so calls
    in the history resolve to the names the tools were given."""


def _on_compaction(conv: _Conversation, item: Item) -> None:
    # A compaction item the relay sealed stands for the history it summarised: open it into
    # the message Codex itself writes after a local compaction (core/compaction.py).
    summary = None
    blob = item.get("encrypted_content")
    if blob and conv.carrier is not None:
        summary = conv.carrier.open_compaction(blob)
    if summary is None:
        logger.info("compaction item not made by this relay (or altered); skipped")
        return
    conv.reasoning = None
    conv.messages.append(summary_message(summary))


def _on_skip(conv: _Conversation, item: Item) -> None:
    kind = item.get("type", "?")
    if kind not in conv.skipped:
        conv.skipped.add(kind)
        logger.info("input of type %r has no Chat Completions form; skipped", kind)


# Keyed by an item's type (a typeless item is a message); a type not here (UnknownItem) is
# skipped like the trigger.
_ITEM_HANDLERS: dict[str, Callable[[_Conversation, Item], None]] = {
    "message": _on_message,
    "reasoning": _on_reasoning,
    "function_call": _on_function_call,
    "custom_tool_call": _on_custom_call,
    "function_call_output": _on_output,
    "custom_tool_call_output": _on_output,
    "additional_tools": _on_additional_tools,
    "compaction": _on_compaction,
    "compaction_trigger": _on_skip,
    "tool_search_call": _on_search_call,
    "tool_search_output": _on_search_output,
}


# ----------------------------------------------------------------------------- final pass


def _ordered(conv: _Conversation) -> list[dict[str, Any]]:
    """Rule 3, plus reasoning placement per profile."""
    out: list[dict[str, Any]] = []
    used: set[str] = set()
    profile = conv.profile
    outputs, output_images = conv.outputs, conv.output_images
    signatures = conv.signatures if profile.thought_signatures else None
    for message in conv.messages:
        if message["role"] != "assistant":
            out.append(message)
            continue
        message.pop("_closed", None)
        reasoning: _Reasoning | None = message.pop("_reasoning", None)
        _place_reasoning(message, reasoning, profile, conv.thinks)
        out.append(message)  # an assistant message has text or calls (``new_assistant``)
        calls = message.get("tool_calls")
        if not calls:
            continue
        for call in calls:
            call_id = call["id"]
            if signatures and call_id in signatures:
                call["extra_content"] = {"google": {"thought_signature": signatures[call_id]}}
            answer = outputs.get(call_id)
            if answer is None or call_id in used:
                answer = {"role": "tool", "tool_call_id": call_id, "content": MISSING_OUTPUT}
            used.add(call_id)
            out.append(answer)
        if output_images:
            _append_images(out, calls, output_images)
    for call_id in outputs.keys() - used:
        logger.info("output for unknown call %s dropped", call_id)
    if profile.merge_system_messages:
        out = _merge_systems(out)
    if profile.assistant_after_tool is not None:
        out = _assistant_after_tools(out, profile.assistant_after_tool)
    remap = _CALL_ID_FORMS[profile.tool_call_ids]
    if remap is not None:
        _remap_call_ids(out, remap)
    return out


def _append_images(
    out: list[dict[str, Any]],
    calls: list[dict[str, Any]],
    output_images: dict[str, list[dict[str, Any]]],
) -> None:
    """Rule 2: the images of a turn's outputs, in one user message after its tool messages."""
    images = [image for call in calls for image in output_images.get(call["id"], ())]
    if images:
        out.append(
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Images returned by the tool calls above:"},
                    *images,
                ],
            }
        )


def _place_reasoning(
    message: dict[str, Any], reasoning: _Reasoning | None, profile: Profile, thinks: bool
) -> None:
    """Fills the message's reasoning fields (rule 4)."""
    text = _text(reasoning) if reasoning is not None else ""
    if profile.thinking_chunks and text and thinks:
        message["content"] = _thinking_content(text, message["content"])
    field_name = profile.reasoning_replay
    if field_name == "none":
        return
    placeholder = profile.reasoning_placeholder
    if not text and thinks and placeholder is not None and message.get("tool_calls"):
        text = placeholder
    if text:
        message[field_name] = text
    if isinstance(reasoning, ReasoningPayload) and reasoning.details:
        message["reasoning_details"] = [dict(d) for d in reasoning.details]


def _thinking_content(reasoning: str, text: str | None) -> list[dict[str, Any]]:
    """Mistral's assistant content with its thinking: a ``thinking`` chunk holding one text
    chunk, then the text, as Mistral streams them and its own SDK replays them (ThinkChunk,
    TextChunk: docs/providers.md §2 Mistral)."""
    chunks: list[dict[str, Any]] = [
        {"type": "thinking", "thinking": [{"type": "text", "text": reasoning}]}
    ]
    if text:
        chunks.append({"type": "text", "text": text})
    return chunks


def _merge_systems(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    systems = [m["content"] for m in messages if m["role"] == "system"]
    rest = [m for m in messages if m["role"] != "system"]
    return ([{"role": "system", "content": "\n\n".join(systems)}] if systems else []) + rest


def _assistant_after_tools(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """A short assistant message between a tool message and a user message right after it, for
    providers that refuse "user after tool" (Mistral: docs/providers.md §2 Mistral). Codex puts
    user messages there (an interrupted turn, a follow-up), and so does rule 2's image message."""
    out: list[dict[str, Any]] = []
    previous = None
    for message in messages:
        if previous == "tool" and message["role"] == "user":
            out.append({"role": "assistant", "content": text})
        out.append(message)
        previous = message["role"]
    return out


# ----------------------------------------------------------------------------- call ids (rule 7)

_ALNUM = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_NINE_ALNUM = re.compile(r"[A-Za-z0-9]{9}")
# The stream translator turns Kimi's "functions.<name>:<n>" into "call_functions_<name>_<n>"
# (core/stream.py, _client_call_id); flattened tool names hold no "." or ":" (core/toolnames.py),
# so the last "_<digits>" is the counter and the rest the name.
_KIMI_CLIENT_ID = re.compile(r"call_functions_(.+)_(\d+)")


def _alnum9(call_id: str, name: str) -> str:
    """Mistral's id form: nine characters [a-zA-Z0-9]. Ids already in that form (the ones
    Mistral invented) stay; any other id gets nine base-62 digits of its SHA-256, so the same
    Codex id maps to the same upstream id on every turn and across relay restarts."""
    if _NINE_ALNUM.fullmatch(call_id):
        return call_id
    number = int.from_bytes(hashlib.sha256(call_id.encode()).digest()[:8], "big")
    digits = []
    for _ in range(9):
        number, digit = divmod(number, 62)
        digits.append(_ALNUM[digit])
    return "".join(digits)


def _kimi(call_id: str, name: str) -> str:
    """Kimi's own ``functions.<name>:<n>`` id back from the client id the relay gave Codex. Only
    when the id names the call's own function: the stream translator shortens ids over 64
    characters, and such an id (or one from a thread begun on another provider) is sent as it
    is rather than restored wrongly."""
    match = _KIMI_CLIENT_ID.fullmatch(call_id)
    return f"functions.{name}:{match[2]}" if match and match[1] == name else call_id


IdForm = Callable[[str, str], str]  # (client call id, upstream function name) -> upstream id

_CALL_ID_FORMS: dict[str, IdForm | None] = {
    "keep": None,
    "alnum9": _alnum9,
    "kimi": _kimi,
}


def _remap_call_ids(messages: list[dict[str, Any]], form: IdForm) -> None:
    """Rewrites every assistant tool-call id with ``form`` and each tool message's
    ``tool_call_id`` to its call's new id, in place (rule 3 put every call before its output).
    Two different ids that would become one are a client error: the upstream could not tell
    their outputs apart."""
    upstream_of: dict[str, str] = {}  # client id -> upstream id
    owner_of: dict[str, str] = {}  # upstream id -> client id
    for message in messages:
        for call in message.get("tool_calls") or ():
            client = call["id"]
            upstream = form(client, call["function"]["name"])
            owner = owner_of.setdefault(upstream, client)
            if owner != client:
                raise ClientRequestError(
                    f"tool call ids {owner!r} and {client!r} both become {upstream!r} for this "
                    "provider; the upstream could not tell them apart",
                    param="input",
                )
            call["id"] = upstream_of[client] = upstream
        if message["role"] == "tool":
            client = message["tool_call_id"]
            message["tool_call_id"] = upstream_of.get(client, client)


# ----------------------------------------------------------------------------- tools


def _freeform_function(name: str, tool: CustomTool, param: str) -> dict[str, Any]:
    description = tool.description or f"The {tool.name} tool."
    fmt = tool.format or {}
    grammar = fmt.get("definition")
    note = (
        f"\n\nPass the tool's raw input as the string parameter `{param}`; the input itself "
        "is not JSON."
    )
    if grammar:
        note += f" It must follow this {fmt.get('syntax', '')} grammar exactly:\n{grammar}"
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description + note,
            "parameters": {
                "type": "object",
                "properties": {param: {"type": "string"}},
                "required": [param],
                "additionalProperties": False,
            },
        },
    }


def _translate_tools(
    tools: Iterable[Any],
    names: NameTable,
    origins: dict[str, ToolOrigin],
    namespace: str | None = None,
    *,
    strict: bool = True,
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for tool in tools:
        if isinstance(tool, NamespaceTool):
            out += _translate_tools(tool.tools, names, origins, tool.name, strict=strict)
        elif isinstance(tool, FunctionTool):
            name = names.add(tool.name, namespace)
            origins[name] = ToolOrigin(tool.name, namespace)
            function: dict[str, Any] = {"name": name}
            if tool.description:
                function["description"] = tool.description
            function["parameters"] = tool.parameters or {"type": "object", "properties": {}}
            if tool.strict and strict:
                function["strict"] = True
            out.append({"type": "function", "function": function})
        elif isinstance(tool, CustomTool):
            name = names.add(tool.name, namespace)
            origins[name] = ToolOrigin(tool.name, namespace, freeform=True)
            out.append(_freeform_function(name, tool, origins[name].input_param))
        elif isinstance(tool, ToolSearchTool) and is_client_search(tool):
            spec = search_function(tool)
            origins[spec.name] = ToolOrigin(spec.name, kind=ToolKind.TOOL_SEARCH)
            out.append(
                {
                    "type": "function",
                    "function": {
                        "name": spec.name,
                        "description": spec.description,
                        "parameters": dict(spec.parameters),
                    },
                }
            )
        else:  # hosted, unknown, or a tool_search the provider would run
            logger.info(
                "tool of type %r has no Chat Completions form; not sent upstream", tool.type
            )
    return out


def _offer_found(
    conv: _Conversation, tools: list[dict[str, Any]], max_tools: int
) -> list[dict[str, Any]]:
    """The tools the history's searches found, as upstream functions within ``max_tools``, and
    each search's answer filled in (core/tool_search.py rules 3-4)."""
    declared = {tool["function"]["name"] for tool in tools}
    names, origins = conv.names, conv.origins

    def unavailable(found: FoundTool) -> bool:
        """Offered already, or its flat name is another tool's: a found tool never makes a
        request fail (the conversation would be stuck with it)."""
        try:
            return names.add(found.name, found.namespace) in declared
        except ClientRequestError:
            logger.info("tool_search found %s, whose name is taken; not offered", found.name)
            return True

    offered = conv.searches.offered(max_tools - len(tools), unavailable)
    strict = conv.profile.accepts_strict_tools
    out = [
        t
        for f in offered
        for t in _translate_tools([f.tool], names, origins, f.namespace, strict=strict)
    ]
    max_len = names.max_len
    for call_id in conv.searches.answered():
        conv.outputs[call_id]["content"] = conv.searches.answer(
            call_id, lambda name, namespace: upstream_name(name, namespace, max_len=max_len)
        )
    return out


def _tool_choice(choice: str | dict[str, Any] | None, names: NameTable) -> Any:
    if choice is None or isinstance(choice, str):
        return choice
    name = choice.get("name") or (choice.get("function") or {}).get("name")
    if choice.get("type") in ("function", "custom") and name:
        return {"type": "function", "function": {"name": names.add(name, choice.get("namespace"))}}
    return "auto"


def _response_format(fmt: dict[str, Any] | None) -> dict[str, Any] | None:
    if not fmt:
        return None
    if fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    return None


# ----------------------------------------------------------------------------- thinking (rule 9)


def thinking_fields(thinking: Thinking, effort: str) -> dict[str, Any]:
    """The request fields that carry Codex's ``effort`` to a provider with this ``Thinking``
    row: its level at ``effort_field`` (when the ladder has one for it) plus the ``on`` or
    ``off`` switches. An effort Codex may add later and the row does not know is left to the
    provider's default (nothing sent) rather than sent raw and refused."""
    fields: dict[str, Any] = {}
    _merge(fields, thinking.off if effort == "none" else thinking.on)
    level = thinking.levels.get(effort)
    if thinking.effort_field is not None and level is not None:
        *parents, leaf = thinking.effort_field.split(".")
        nested: dict[str, Any] = {leaf: level}
        for parent in reversed(parents):
            nested = {parent: nested}
        _merge(fields, nested)
    return fields


def _merge(into: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Deep-merges ``extra`` into ``into`` (objects merge key by key, anything else replaces);
    copies what it takes, so the profile's frozen values are never shared with a request."""
    for key, value in extra.items():
        current = into.get(key)
        if isinstance(value, Mapping):
            target = current if isinstance(current, dict) else {}
            _merge(target, value)
            into[key] = target
        else:
            into[key] = value


# ----------------------------------------------------------------------------- entry point


def translate_request(
    req: ResponsesRequest,
    *,
    upstream_model: str,
    profile: Profile = GENERIC,
    history: Sequence[Item] = (),
    carrier: ReasoningCarrier | None = None,
    vision: bool | None = None,
    reasoning: bool | None = None,
    max_tools: int = DEFAULT_MAX_TOOLS,
    origin: str | None = None,
) -> tuple[dict[str, Any], TranslationContext]:
    """The Chat Completions request (a JSON-ready dict) and the context for the answer.

    ``history`` (the prior items of a ``previous_response_id`` chain) is prepended to the
    input. ``vision`` and ``reasoning`` describe the routed model (None: the profile's family
    default): without vision every image becomes a text note (rule 8); a model that does not
    reason gets no thinking switches and no reasoning placeholders (rule 9). ``max_tools``
    bounds the tools sent upstream once deferred tools found by ``tool_search`` join them (the
    client's own tools are always sent). ``origin`` names the provider the request goes to
    (a route's provider name): sealed reasoning another provider produced goes as its text
    alone (rule 4); None sends every payload whole. Raises ``ClientRequestError`` for requests
    that cannot be translated (tool-name or tool-call-id collisions).
    """
    vision = profile.vision if vision is None else vision
    thinks = profile.reasoning if reasoning is None else reasoning
    names = NameTable(profile.max_tool_name_len)
    origins: dict[str, ToolOrigin] = {}
    conv = _Conversation(
        profile, carrier, names, origins, vision=vision, thinks=thinks, origin=origin
    )
    if req.instructions:
        conv.messages.append({"role": "system", "content": req.instructions})
    items: Sequence[Item] = (
        req.input if isinstance(req.input, list) else [{"role": "user", "content": req.input}]
    )
    # Tools first, so calls in the history resolve to the names the tools were given.
    extra_tools = [
        t for i in items if i.get("type") == "additional_tools" for t in i.get("tools") or ()
    ]
    tools = _translate_tools(
        [*(req.tools or ()), *extra_tools], names, origins, strict=profile.accepts_strict_tools
    )
    if sum(tool["function"]["name"] == SEARCH_FUNCTION_NAME for tool in tools) > 1:
        raise ClientRequestError(
            f"a tool named {SEARCH_FUNCTION_NAME!r} and the tool_search tool both become the "
            f"upstream function {SEARCH_FUNCTION_NAME!r}; rename the tool",
            param="tools",
        )
    handler = _ITEM_HANDLERS.get
    for item in chain(history, items):
        handler(item.get("type", "message"), _on_skip)(conv, item)
    if conv.searches:
        tools += _offer_found(conv, tools, max_tools)

    # Remote compaction (docs/codex-contract.md §9): the input ends with a compaction_trigger; the
    # upstream is asked for a handoff summary with Codex's own prompt, and no tools.
    compaction = bool(items) and items[-1].get("type") == "compaction_trigger"
    if compaction:
        conv.messages.append({"role": "user", "content": COMPACTION_PROMPT})
        tools = []
    messages = _ordered(conv)
    if not messages:
        raise ClientRequestError(
            "the request has no input the upstream can read (no messages, and no tool call "
            "for the tool outputs it carries)",
            param="input",
        )
    chat: dict[str, Any] = {"model": upstream_model, "messages": messages}
    if tools:  # "tools": [] is rejected by several backends (docs/providers.md §1.5)
        chat["tools"] = tools
        if profile.accepts_tool_choice and req.tool_choice is not None:
            chat["tool_choice"] = _tool_choice(req.tool_choice, names)
        if profile.accepts_parallel_tool_calls and req.parallel_tool_calls is not None:
            chat["parallel_tool_calls"] = req.parallel_tool_calls
    effort = req.reasoning.effort if req.reasoning else None
    if effort and thinks and profile.thinking is not None:
        _merge(chat, thinking_fields(profile.thinking, effort))
    if req.max_output_tokens is not None:
        chat[profile.max_tokens_field] = req.max_output_tokens
    for name in ("temperature", "top_p"):
        if getattr(req, name) is not None:
            chat[name] = getattr(req, name)
    response_format = _response_format(req.text.format if req.text else None)
    if response_format:
        chat["response_format"] = response_format
    if req.stream:
        chat["stream"] = True
        if profile.accepts_stream_options:
            # Without usage Codex's context tracking and auto-compaction break
            # (docs/providers.md §1.4).
            chat["stream_options"] = {"include_usage": True}
        if tools:
            chat.update(profile.stream_extra)
    chat.update(profile.extra_body)
    for name in profile.drop_params:
        chat.pop(name, None)

    echo: dict[str, Any] = {
        name: getattr(req, name) for name in _ECHOED if getattr(req, name) is not None
    }
    echo["tools"] = [t.model_dump(mode="json", exclude_none=True) for t in req.tools or ()]
    if req.reasoning:
        echo["reasoning"] = req.reasoning.model_dump(mode="json", exclude_none=True)
    if req.text:
        echo["text"] = req.text.model_dump(mode="json", exclude_none=True)
    context = TranslationContext(
        client_model=req.model,
        upstream_model=upstream_model,
        tools=origins,
        response_echo=echo,
        stream=req.stream,
        compaction=compaction,
    )
    return chat, context
