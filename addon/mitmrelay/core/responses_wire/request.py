"""A Codex Responses request -> the Responses request one provider family takes, and the
context its answer needs.

Theory of operation
-------------------
The body is parsed once with ``json.loads`` (no pydantic per item: a long history is thousands
of items) and walked once: tools through ``_TOOL_RULES``, then the history and input items
through ``_ITEM_RULES``, both keyed by ``type``, then one pass that pairs calls with outputs,
then the top-level fields through ``_FIELD_RULES``. Each rule returns the pieces it keeps; a
tool or item no rule touches is passed on as the very dict that came in, so whatever the
provider accepts reaches it unchanged. What the answer must undo (renamed tools) goes into the
``TranslationContext`` of core/context.py, the record the Chat wire already hands its stream
side, so both wires restore names the same way.

Rules (each cites the fact it rests on; the switches are ``ResponsesRules`` rows):

1. Tools are cleaned before items, so a history call resolves to the name its tool was given.
   ``function`` passes. ``namespace`` tools (MCP servers, ``multi_agent_v1``) are flattened
   into functions named ``<namespace>__<name>`` (core/toolnames.py: reversible, <= 64
   characters, collisions refused) unless the row takes namespaces; Codex needs
   ``{name, namespace}`` back (docs/codex-contract.md §6). ``custom`` (freeform) tools become a
   function with one string parameter whose description carries the grammar, as on the Chat
   wire; answered as a ``function_call``, apply_patch would abort ("incompatible payload",
   docs/codex-contract.md §6). Hosted tools the row does not take are dropped.
2. Codex's client-executed ``tool_search`` (docs/tool-search.md §6): where the row has no
   ``tool_search`` of its own it is offered as a function of that name with Codex's own
   description and schema; a replayed ``tool_search_call`` is that function's call (its
   ``arguments`` as a JSON string) and a ``tool_search_output`` its answer, a short list of
   what was found; the tools found are offered too, within the row's ``max_tools``, flattened
   like ``tools`` (core/tool_search.py rules 1-4). Their ``defer_loading`` flag goes: it only
   means something to a server that searches. A hosted search (``execution`` not
   ``"client"``) is dropped; the tools it would search are offered as they are.
3. Items the row does not take: custom calls and outputs become function calls and outputs
   (arguments ``{"input": <raw text>}``); namespaced calls get their flat name; compaction
   items and hosted or unknown items are dropped, one DEBUG line per kind. For a model without
   vision each image (in a message or a tool output) becomes a short note, as on the Chat wire;
   so does an image the provider cannot fetch: a URL whose scheme its row does not take (Kimi
   reads data URLs only) or an OpenAI ``file_id``, which no other provider can resolve.
4. Reasoning items (reasoning_items.py): a blob the relay sealed for *this* provider opens into
   the provider's own item; any other reasoning (another provider's sealed blob, OpenAI's
   ``gAAAA…``, plain text) goes on as its readable text alone, in the row's form. A foreign
   blob is never sent. A turn whose calls come without reasoning gets what the caller kept
   for them (``kept``: the call_id -> reasoning map, for clients that drop reasoning items;
   kept.py), else, on rows that reject tool calls without reasoning, a placeholder.
5. Every output follows its call and every call gets an output: an output whose call is not
   before it is dropped (vLLM: "No call message found for <call_id>"), a call left without one
   gets ``MISSING_OUTPUT`` before the next message (OpenAI-style servers 400 on an unanswered
   call; docs/providers.md §5: an interrupted call poisons every later turn). Rows that take
   only string outputs get the text, and the images follow the turn's outputs in one user
   message, as on the Chat wire.
6. Fields: only the row's ``request_fields`` go on; ``reasoning`` keeps the row's keys with the
   effort mapped (none for a model that does not reason: ``reasoning=False``, which gets no
   placeholder either), ``text`` keeps a format the row takes (never ``verbosity``).
   Instructions go into the input for a provider that ignores the field.
7. ``previous_response_id`` never goes upstream: response ids are the relay's, so the caller's
   history for it is prepended instead, on every provider, stateful or not.
8. Remote compaction (docs/codex-contract.md §9: an input ending in ``compaction_trigger``):
   no family has it, so the relay's own path runs, as on the Chat wire (core/compaction.py):
   Codex's handoff prompt, no tools; the stream side seals the summary into one ``compaction``
   item. A replayed compaction item the relay sealed opens into the summary message.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mitmrelay.core.compaction import COMPACTION_PROMPT, SUMMARY_PREFIX
from mitmrelay.core.context import ToolKind, ToolOrigin, TranslationContext
from mitmrelay.core.errors import ClientRequestError
from mitmrelay.core.reasoning import ReasoningCarrier
from mitmrelay.core.request import IMAGE_OMITTED, MISSING_OUTPUT
from mitmrelay.core.tool_search import (
    SEARCH_FUNCTION_NAME,
    Discoveries,
    FoundTool,
    history_arguments,
    is_client_search,
    search_function,
)
from mitmrelay.core.toolnames import NameTable, upstream_name

from .kept import Kept, call_view, restored_item, turn_key
from .reasoning_items import native_item, readable_text, shaped
from .rules import ResponsesRules

logger = logging.getLogger(__name__)

Item = dict[str, Any]

# What a model without vision gets where an image was: the Chat wire's note (core/request.py
# rule 8), so a thread reads the same on either wire. Never sent, never a failure. An image
# the provider cannot fetch (a URL scheme its row does not take, an OpenAI file id) gets its
# own note.
IMAGE_UNREACHABLE = (
    "(an image was attached here by a reference this provider cannot fetch, so it was left out)"
)

# Codex-internal bookkeeping on items of its built-in provider (docs/codex-contract.md §5,
# "ignore it"); strict schemas reject unknown keys, so it never goes upstream.
_CODEX_ONLY_KEYS = frozenset({"internal_chat_message_metadata_passthrough"})
_CALLS = {"function_call": "function_call_output", "custom_tool_call": "custom_tool_call_output"}
_OUTPUTS = frozenset(_CALLS.values())
# Request fields a Response object echoes (OpenAI's Response schema), as on the Chat wire.
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
_OMIT = object()  # a field rule's answer for "leave the field out"


class _BadItem(Exception):
    """An item lacks a field a rule reads; named in the client's 400."""

    def __init__(self, field_name: str) -> None:
        super().__init__(field_name)
        self.field = field_name


@dataclass(frozen=True, slots=True)
class _Scope:
    """Where a tool is declared: top level, or inside a namespace kept or flattened."""

    namespace: str | None = None
    flatten: bool = True


_TOP = _Scope()


@dataclass(slots=True)
class _Cleanup:
    rules: ResponsesRules
    origin: str
    carrier: ReasoningCarrier | None
    names: NameTable
    origins: dict[str, ToolOrigin] = field(default_factory=dict)
    extra_tools: dict[int, list[Item]] = field(default_factory=dict)  # id(item) -> tools
    images: dict[str, list[Item]] = field(default_factory=dict)  # call_id -> image parts
    dropped: set[str] = field(default_factory=set)
    vision: bool = True
    thinks: bool = True  # rule 6: False, a model that does not reason
    kept: Kept | None = None  # rule 4: the caller's call_id -> reasoning map
    compaction: bool = False
    joined: bool = False  # history or a prompt came to join the client's own input
    searches: Discoveries = field(default_factory=Discoveries)  # rule 2
    search_answers: dict[str, Item] = field(default_factory=dict)  # call_id -> its output item
    views: dict[str, tuple[str, str | None, str]] = field(default_factory=dict)  # kept.py

    def drop(self, what: str) -> None:
        """One DEBUG line per kind of thing left out of one request."""
        if what not in self.dropped:
            self.dropped.add(what)
            logger.debug("%s not sent to %s", what, self.rules.name)


# ----------------------------------------------------------------------------- tools


def _clean_tools(c: _Cleanup, tools: Sequence[Any], scope: _Scope = _TOP) -> list[Item]:
    out: list[Item] = []
    for tool in tools:
        kind = tool.get("type") if isinstance(tool, Mapping) else None
        rule = _TOOL_RULES.get(kind) if isinstance(kind, str) else None
        out += (rule or _other_tool)(c, tool, scope)
    return out


def _tool_name(tool: Any) -> str | None:
    name = tool.get("name")
    return name if isinstance(name, str) and name else None


def _function_tool(c: _Cleanup, tool: Item, scope: _Scope) -> list[Item]:
    name = _tool_name(tool)
    if name is None:
        c.drop("a function tool without a name")
        return []
    flat = c.names.add(name, scope.namespace)
    if "defer_loading" in tool and "tool_search" not in c.rules.tool_types:  # rule 2
        tool = {k: v for k, v in tool.items() if k != "defer_loading"}
    if scope.namespace is None:
        return [tool]
    c.origins[flat] = ToolOrigin(name, scope.namespace)
    return [{**tool, "name": flat}] if scope.flatten else [tool]


def _namespace_tool(c: _Cleanup, tool: Item, scope: _Scope) -> list[Item]:
    name, nested = _tool_name(tool), tool.get("tools")
    if scope.namespace is not None or name is None or not isinstance(nested, list):
        c.drop("a namespace tool nested or without a name and tools")
        return []
    if "namespace" not in c.rules.tool_types:
        return _clean_tools(c, nested, _Scope(name))
    kept = _clean_tools(c, nested, _Scope(name, flatten=False))
    return [{**tool, "tools": kept}] if kept else []


def _custom_tool(c: _Cleanup, tool: Item, scope: _Scope) -> list[Item]:
    name = _tool_name(tool)
    if name is None:
        c.drop("a custom tool without a name")
        return []
    flat = c.names.add(name, scope.namespace)
    upstream = flat if scope.flatten else name
    if "custom" in c.rules.tool_types:
        if scope.namespace is not None:
            c.origins[flat] = ToolOrigin(name, scope.namespace)
        return [{**tool, "name": upstream}]
    origin = ToolOrigin(name, scope.namespace, freeform=True)
    c.origins[flat] = origin
    return [_freeform_function(upstream, tool, origin.input_param)]


def _freeform_function(name: str, tool: Mapping[str, Any], param: str) -> Item:
    """A freeform tool as a function with one string parameter; its grammar rides in the
    description so the model still writes valid input (the Chat wire's wording)."""
    description = tool.get("description") or f"The {tool['name']} tool."
    fmt = tool.get("format") if isinstance(tool.get("format"), Mapping) else {}
    grammar = fmt.get("definition")
    note = (
        f"\n\nPass the tool's raw input as the string parameter `{param}`; the input itself "
        "is not JSON."
    )
    if isinstance(grammar, str) and grammar:
        note += f" It must follow this {fmt.get('syntax', '')} grammar exactly:\n{grammar}"
    return {
        "type": "function",
        "name": name,
        "description": description + note,
        "parameters": {
            "type": "object",
            "properties": {param: {"type": "string"}},
            "required": [param],
            "additionalProperties": False,
        },
        "strict": False,
    }


def _tool_search(c: _Cleanup, tool: Item, scope: _Scope) -> list[Item]:
    """Rule 2: the client-executed search as a function the model can call."""
    if scope.namespace is None and "tool_search" in c.rules.tool_types:
        return [tool]
    if scope.namespace is not None or not is_client_search(tool):
        c.drop("a tool_search the server would run (its deferred tools are offered as they are)")
        return []
    spec = search_function(tool)
    c.names.add(spec.name)
    c.origins[spec.name] = ToolOrigin(spec.name, kind=ToolKind.TOOL_SEARCH)
    return [
        {
            "type": "function",
            "name": spec.name,
            "description": spec.description,
            "parameters": dict(spec.parameters),
        }
    ]


def _other_tool(c: _Cleanup, tool: Any, scope: _Scope) -> list[Item]:
    kind = tool.get("type") if isinstance(tool, Mapping) else None
    if scope.namespace is None and isinstance(kind, str) and kind in c.rules.tool_types:
        return [tool]
    c.drop(f"tool of type {kind!r}")
    return []


_TOOL_RULES: dict[str, Callable[[_Cleanup, Item, _Scope], list[Item]]] = {
    "function": _function_tool,
    "namespace": _namespace_tool,
    "custom": _custom_tool,
    "tool_search": _tool_search,
}


# ----------------------------------------------------------------------------- items


def _message(c: _Cleanup, item: Item) -> list[Item]:
    if not _CODEX_ONLY_KEYS.isdisjoint(item):
        item = {k: v for k, v in item.items() if k not in _CODEX_ONLY_KEYS}
    content = item.get("content")
    if isinstance(content, list) and _has_image(content):
        item = {**item, "content": _images_noted(c, content)}
    return [item]


def _has_image(parts: list[Any]) -> bool:
    return any(isinstance(p, Mapping) and p.get("type") == "input_image" for p in parts)


def _image_note(c: _Cleanup, part: Any) -> str | None:
    """Rule 3: the note that stands for an image part the model cannot have, else None."""
    if not isinstance(part, Mapping) or part.get("type") != "input_image":
        return None
    if not c.vision:
        return IMAGE_OMITTED
    url = part.get("image_url")
    scheme = url.partition(":")[0].lower() if isinstance(url, str) else ""
    return None if scheme in c.rules.image_sources else IMAGE_UNREACHABLE


def _images_noted(c: _Cleanup, parts: list[Any]) -> list[Any]:
    """Rule 3's images: each one the model cannot have replaced by its note, in place; the
    list itself when every image can go."""
    notes = [_image_note(c, p) for p in parts]
    if not any(notes):
        return parts
    return [
        p if n is None else {"type": "input_text", "text": n}
        for p, n in zip(parts, notes, strict=True)
    ]


def _call_name(item: Mapping[str, Any]) -> tuple[str, str | None]:
    name, namespace = item.get("name"), item.get("namespace")
    if not isinstance(item.get("call_id"), str):
        raise _BadItem("call_id")
    if not isinstance(name, str) or not name:
        raise _BadItem("name")
    if namespace is not None and not isinstance(namespace, str):
        raise _BadItem("namespace")
    return name, namespace


def _function_call(c: _Cleanup, item: Item) -> list[Item]:
    name, namespace = _call_name(item)
    c.views[item["call_id"]] = call_view(item)
    if namespace is None or "namespace" in c.rules.tool_types:
        return [item]
    flat = c.names.add(name, namespace)
    c.origins.setdefault(flat, ToolOrigin(name, namespace))
    call = {k: v for k, v in item.items() if k != "namespace"}
    call["name"] = flat
    return [call]


def _custom_call(c: _Cleanup, item: Item) -> list[Item]:
    if "custom_tool_call" in c.rules.item_types:
        return _function_call(c, item)
    name, namespace = _call_name(item)
    text = item.get("input")
    if not isinstance(text, str):
        raise _BadItem("input")
    c.views[item["call_id"]] = call_view(item)
    flat = c.names.add(name, namespace)
    origin = c.origins.get(flat) or ToolOrigin(name, namespace, freeform=True)
    keep_namespace = namespace is not None and "namespace" in c.rules.tool_types
    call: Item = {
        "type": "function_call",
        "call_id": item.get("call_id"),
        "name": name if keep_namespace else flat,
        "arguments": json.dumps({origin.input_param: text}, ensure_ascii=False),
    }
    if keep_namespace:
        call["namespace"] = namespace
    return [call]


def _call_output(c: _Cleanup, item: Item) -> list[Item]:
    if not isinstance(item.get("call_id"), str):
        raise _BadItem("call_id")
    kind = item["type"]
    if kind not in c.rules.item_types:
        item = {
            "type": "function_call_output",
            "call_id": item["call_id"],
            "output": item.get("output"),
        }
    output = item.get("output")
    if isinstance(output, list) and _has_image(output):
        noted = _images_noted(c, output)
        if noted is not output:
            output = noted
            item = {**item, "output": output}
    if isinstance(output, list) and not c.rules.tool_output_parts:
        texts = [
            p["text"] for p in output if isinstance(p, Mapping) and isinstance(p.get("text"), str)
        ]
        images = [p for p in output if isinstance(p, Mapping) and p.get("type") == "input_image"]
        if images:
            c.images[item["call_id"]] = images
        item = {**item, "output": "\n".join(texts)}
    return [item]


def _reasoning(c: _Cleanup, item: Item) -> list[Item]:
    blob = item.get("encrypted_content")
    payload = None
    if isinstance(blob, str) and blob and c.carrier is not None:
        payload = c.carrier.open(blob)  # None for OpenAI's gAAAA…, another key, an altered blob
    if payload is not None and c.origin and payload.origin == c.origin and payload.item:
        return [native_item(payload.text, payload.item)]
    text = payload.text if payload is not None else readable_text(item)
    if not text:
        c.drop("reasoning with nothing readable (another provider's sealed blob)")
        return []
    return [shaped(text, c.rules.reasoning_form)]


def _additional_tools(c: _Cleanup, item: Item) -> list[Item]:
    # Its tools were cleaned with the top-level ones (``clean_request``); lifted there unless
    # the row takes the item itself (Kimi).
    if "additional_tools" not in c.rules.item_types:
        return []
    tools = c.extra_tools.get(id(item), [])
    return [{**item, "tools": tools}] if tools else []


def _compaction(c: _Cleanup, item: Item) -> list[Item]:
    blob = item.get("encrypted_content")
    summary = None
    if isinstance(blob, str) and c.carrier is not None:
        summary = c.carrier.open_compaction(blob)
    if summary is None:
        c.drop("a compaction item this relay did not make")
        return []
    return [_user_text(SUMMARY_PREFIX + summary)]


def _compaction_trigger(c: _Cleanup, item: Item) -> list[Item]:
    c.compaction = True  # the handoff prompt is appended once the items are in place
    return []


def _other_item(c: _Cleanup, item: Item) -> list[Item]:
    kind = item.get("type")
    if isinstance(kind, str) and kind in c.rules.item_types:
        return [item]
    c.drop(f"input item of type {kind!r}")
    return []


def _tool_search_item(c: _Cleanup, item: Item) -> list[Item]:
    """Rule 2: a replayed search is the search function's call, its output that call's answer
    (written once every search is known: ``_offer_found``)."""
    kind = item["type"]
    if kind in c.rules.item_types:
        return [item]
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        # A search the server ran (never one of Codex's): no call the model made. Its tools
        # are offered all the same.
        if kind == "tool_search_output":
            c.searches.add_output(None, _listed(item.get("tools")))
        c.drop(f"a {kind} of a search the server ran")
        return []
    if kind == "tool_search_call":
        arguments = history_arguments(item.get("arguments"))
        c.searches.add_call(call_id, item.get("arguments"))
        c.views[call_id] = (SEARCH_FUNCTION_NAME, None, arguments)
        call = {"type": "function_call", "call_id": call_id, "name": SEARCH_FUNCTION_NAME}
        return [{**call, "arguments": arguments}]
    c.searches.add_output(call_id, _listed(item.get("tools")))
    answer = c.search_answers.setdefault(
        call_id, {"type": "function_call_output", "call_id": call_id, "output": ""}
    )
    return [answer]


def _listed(tools: Any) -> list[Any]:
    return tools if isinstance(tools, list) else []


def _offer_found(c: _Cleanup, tools: list[Item]) -> list[Item]:
    """Rule 2: the tools the history's searches found, cleaned like ``tools``, within what
    ``max_tools`` leaves; each search's answer written."""
    declared = _function_names(tools)

    def unavailable(found: FoundTool) -> bool:
        """Offered already, or its name is another tool's: a found tool never fails a request
        (the conversation would be stuck with it: core/tool_search.py)."""
        try:
            return c.names.add(found.name, found.namespace) in declared
        except ClientRequestError:
            logger.info("tool_search found %s, whose name is taken; not offered", found.name)
            return True

    offered = c.searches.offered(c.rules.max_tools - len(declared), unavailable)
    out: list[Item] = []
    kept_namespaces = "namespace" in c.rules.tool_types
    grouped: dict[str, list[Any]] = {}
    for found in offered:
        tool = {k: v for k, v in found.tool.items() if k != "defer_loading"}
        if found.namespace is None:
            out += _clean_tools(c, [tool])
        elif kept_namespaces:
            grouped.setdefault(found.namespace, []).append(tool)
        else:
            out += _clean_tools(c, [tool], _Scope(found.namespace))
    for namespace, inner in grouped.items():
        spec = {"type": "namespace", "name": namespace, "tools": inner}
        out += _clean_tools(c, [{**spec, "description": f"Tools in the {namespace} namespace."}])
    max_len = c.rules.max_tool_name_len

    def model_name(name: str, namespace: str | None) -> str:
        if namespace is not None and kept_namespaces:
            return f"{namespace}.{name}"
        return upstream_name(name, namespace, max_len=max_len)

    for call_id in c.searches.answered():
        c.search_answers[call_id]["output"] = c.searches.answer(call_id, model_name)
    return out


def _function_names(tools: Sequence[Item]) -> set[str]:
    """Every function name the cleaned ``tools`` offer, namespaces opened (a namespace of three
    counts three against ``max_tools``)."""
    names: set[str] = set()
    for tool in tools:
        name = tool.get("name")
        if tool.get("type") == "namespace":
            names |= {upstream_name(inner["name"], name) for inner in tool.get("tools") or ()}
        elif isinstance(name, str):
            names.add(name)
    return names


_ITEM_RULES: dict[str, Callable[[_Cleanup, Item], list[Item]]] = {
    "message": _message,
    "reasoning": _reasoning,
    "function_call": _function_call,
    "custom_tool_call": _custom_call,
    "function_call_output": _call_output,
    "custom_tool_call_output": _call_output,
    "additional_tools": _additional_tools,
    "compaction": _compaction,
    "compaction_trigger": _compaction_trigger,
    "tool_search_call": _tool_search_item,
    "tool_search_output": _tool_search_item,
}


def _user_text(text: str) -> Item:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def _clean_items(c: _Cleanup, items: Sequence[Any], first_index: int) -> list[Item]:
    out: list[Item] = []
    for n, item in enumerate(items):
        where = f"input[{n - first_index}]" if n >= first_index else "history"
        if not isinstance(item, dict):
            raise ClientRequestError(f"{where}: an input item is a JSON object", param="input")
        kind = item.get("type", "message" if "role" in item else None)
        rule = _ITEM_RULES.get(kind) if isinstance(kind, str) else None
        try:
            out += (rule or _other_item)(c, item)
        except _BadItem as e:
            raise ClientRequestError(
                f"{where}.{e.field}: missing or not a string", param=f"{where}.{e.field}"
            ) from None
    return out


# ----------------------------------------------------------------------------- pairing


@dataclass(slots=True)
class _Turn:
    """Calls of the current model turn still waiting for their outputs, and its images."""

    open: dict[str, str] = field(default_factory=dict)  # call_id -> output type
    images: list[Item] = field(default_factory=list)
    in_outputs: bool = False
    reasoned: bool = False
    calls: list[str] = field(default_factory=list)  # its call ids, in order
    slot: Item | None = None  # where its reasoning goes when its calls came without one


def _paired(c: _Cleanup, items: list[Item]) -> list[Item]:
    """Rule 5 (outputs after their calls, a missing output supplied) and rule 4's placeholder."""
    called: set[str] = set()
    answered: set[str] = set()
    kept: list[Item] = []
    for item in items:
        kind, call_id = item.get("type"), item.get("call_id")
        if kind in _CALLS and isinstance(call_id, str):
            called.add(call_id)
        elif kind in _OUTPUTS:
            if call_id not in called or call_id in answered:
                c.drop("a tool output without its call (or a second one)")
                continue
            answered.add(call_id)
        kept.append(item)
    out: list[Item] = []
    turn = _Turn()
    for item in kept:
        _step(c, turn, item, out)
    _close_turn(c, turn, out)
    return out if all(out) else [item for item in out if item]  # slots left empty go


def _step(c: _Cleanup, turn: _Turn, item: Item, out: list[Item]) -> None:
    kind = item.get("type")
    if kind in _OUTPUTS:
        turn.open.pop(item["call_id"], None)
        turn.images += c.images.get(item["call_id"], ())
        turn.in_outputs = True
        out.append(item)
        return
    # A model's response is its reasoning, text and calls; its outputs, or any other message,
    # end it (DeepSeek reads a reasoning item with the text and calls after it: vercel/ai
    # convert-to-deepseek-responses-input.ts).
    own = kind in _CALLS or kind == "reasoning" or item.get("role") == "assistant"
    if turn.in_outputs or not own:
        _close_turn(c, turn, out)
    if kind == "reasoning":
        turn.reasoned = True
    elif kind in _CALLS:
        if not turn.reasoned:  # filled when the turn closes, once all its calls are known
            turn.slot = {}
            out.append(turn.slot)
        turn.reasoned = True
        turn.open[item["call_id"]] = _CALLS[kind]
        turn.calls.append(item["call_id"])
    out.append(item)


def _close_turn(c: _Cleanup, turn: _Turn, out: list[Item]) -> None:
    if turn.slot is not None:
        turn.slot.update(_missing_reasoning(c, turn.calls))
    for call_id, output_type in turn.open.items():
        out.append({"type": output_type, "call_id": call_id, "output": MISSING_OUTPUT})
    if turn.images:
        text = {"type": "input_text", "text": "Images returned by the tool calls above:"}
        out.append({"type": "message", "role": "user", "content": [text, *turn.images]})
    turn.open, turn.images, turn.in_outputs, turn.reasoned = {}, [], False, False
    turn.calls, turn.slot = [], None


def _missing_reasoning(c: _Cleanup, call_ids: list[str]) -> Item:
    """Rule 4, for a turn whose calls came without reasoning: what the caller kept for it (by
    its first call id, else by what its calls do: clients that replay calls under ids of their
    own), else the row's placeholder for a model that reasons, else nothing (``{}``)."""
    if c.kept is not None:
        record = c.kept(call_ids[0])
        views = [c.views[i] for i in call_ids if i in c.views]
        if record is None and views:
            record = c.kept("turn:" + turn_key(views))
        item = restored_item(record, c.rules.reasoning_form) if record is not None else None
        if item is not None:
            return item
    placeholder = c.rules.reasoning_placeholder
    if placeholder is not None and c.thinks:
        return shaped(placeholder, c.rules.reasoning_form)
    return {}


# ----------------------------------------------------------------------------- fields


def _reasoning_field(c: _Cleanup, value: Any) -> Any:
    if not isinstance(value, Mapping) or not c.thinks:
        return _OMIT
    kept = {k: v for k, v in value.items() if k in c.rules.reasoning_fields}
    effort = kept.get("effort")
    if isinstance(effort, str):
        kept["effort"] = c.rules.efforts.get(effort, effort)
    return kept or _OMIT


def _text_field(c: _Cleanup, value: Any) -> Any:
    fmt = value.get("format") if isinstance(value, Mapping) else None
    if isinstance(fmt, Mapping) and fmt.get("type") in c.rules.text_formats:
        return {"format": fmt}
    return _OMIT


def _tool_choice_field(c: _Cleanup, value: Any) -> Any:
    if isinstance(value, str):
        return value if value in c.rules.tool_choices else _OMIT
    if not isinstance(value, Mapping) or "function" not in c.rules.tool_choices:
        return _OMIT
    name, namespace = value.get("name"), value.get("namespace")
    if value.get("type") not in ("function", "custom") or not isinstance(name, str):
        return _OMIT
    flat = c.names.add(name, namespace if isinstance(namespace, str) else None)
    if flat in c.origins or value.get("type") == "custom":
        return {"type": "function", "name": flat}
    return value


_FIELD_RULES: dict[str, Callable[[_Cleanup, Any], Any]] = {
    "reasoning": _reasoning_field,
    "text": _text_field,
    "tool_choice": _tool_choice_field,
}


def _fields(c: _Cleanup, req: Mapping[str, Any], tools: list[Item]) -> dict[str, Any]:
    """Rule 6, for every field but ``model``, ``input``, ``tools`` and ``instructions``."""
    out: dict[str, Any] = {}
    left_out: list[str] = []
    for key, value in req.items():
        if key in ("model", "input", "tools", "instructions"):
            continue
        if key not in c.rules.request_fields or value is None:
            left_out.append(key)
            continue
        if key in ("tool_choice", "parallel_tool_calls") and not tools:
            continue
        rule = _FIELD_RULES.get(key)
        kept = rule(c, value) if rule is not None else value
        if kept is not _OMIT:
            out[key] = kept
    if left_out:
        c.drop("fields " + ", ".join(sorted(left_out)))
    return out


# ----------------------------------------------------------------------------- entry point


def _parse(body: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(body, Mapping):
        req: Any = body
    else:
        try:
            req = json.loads(body)
        except ValueError as e:
            raise ClientRequestError(f"request body is not valid JSON: {e}") from None
    if not isinstance(req, Mapping):
        raise ClientRequestError("a Responses request is a JSON object")
    if not isinstance(req.get("model"), str):
        raise ClientRequestError("model: a string is required", param="model")
    if not isinstance(req.get("input", []), str | list):
        raise ClientRequestError("input: a string or a list of items is required", param="input")
    if not isinstance(req.get("tools", []), list | None):
        raise ClientRequestError("tools: a list is required", param="tools")
    return req


def _echo(req: Mapping[str, Any]) -> dict[str, Any]:
    echo = {k: req[k] for k in _ECHOED if req.get(k) is not None}
    echo["tools"] = req.get("tools") or []
    for key in ("reasoning", "text"):
        if isinstance(req.get(key), Mapping):
            echo[key] = req[key]
    return echo


def _all_tools(c: _Cleanup, req: Mapping[str, Any], items: Sequence[Any]) -> list[Item]:
    """Rule 1: every tool cleaned before any item, ``additional_tools`` items' too (lifted to
    the top level unless the row takes the item)."""
    tools = _clean_tools(c, req.get("tools") or [])
    for item in items:
        if isinstance(item, dict) and item.get("type") == "additional_tools":
            cleaned = _clean_tools(c, item.get("tools") or [])
            c.extra_tools[id(item)] = cleaned
            if "additional_tools" not in c.rules.item_types:
                tools += cleaned
    if sum(t.get("name") == SEARCH_FUNCTION_NAME for t in tools) > 1:
        raise ClientRequestError(
            f"a tool named {SEARCH_FUNCTION_NAME!r} and the tool_search tool both become the "
            f"upstream function {SEARCH_FUNCTION_NAME!r}; rename the tool",
            param="tools",
        )
    return tools


def _body(
    c: _Cleanup, req: Mapping[str, Any], items: list[Item], tools: list[Item], model: str
) -> dict[str, Any]:
    """The provider's request around the cleaned items and tools (rule 6). A plain string
    input stays one (every server takes it) when nothing came to join it."""
    instructions = req.get("instructions")
    if not isinstance(instructions, str) or not instructions:
        instructions = None
    elif not c.rules.instructions_field:
        items.insert(0, {"type": "message", "role": "system", "content": instructions})
        instructions = None
    if not items:
        raise ClientRequestError("the request has no input the provider can read", param="input")
    out: dict[str, Any] = {"model": model}
    if instructions is not None:
        out["instructions"] = instructions
    raw_input = req.get("input")
    alone = len(items) == 1 and not c.joined
    out["input"] = raw_input if isinstance(raw_input, str) and alone else items
    if tools:  # "tools": [] is refused by several servers (docs/providers.md §1.5)
        out["tools"] = tools
    out.update(_fields(c, req, tools))
    return out


def clean_request(
    body: bytes | str | Mapping[str, Any],
    rules: ResponsesRules,
    *,
    upstream_model: str,
    origin: str,
    carrier: ReasoningCarrier | None = None,
    history: Sequence[Mapping[str, Any]] | None = None,
    vision: bool = True,
    reasoning: bool = True,
    kept: Kept | None = None,
) -> tuple[dict[str, Any], TranslationContext]:
    """The request for the provider (a JSON-ready dict) and the context for its answer.

    ``body`` is the client's request: its bytes, or the object they parse to (read, never
    changed). ``origin`` names the provider (the route's provider name): reasoning it made
    goes back to it alone. ``history`` is the conversation a ``previous_response_id`` stands
    for (the caller's state store); it is required when the request carries one. ``vision``
    says whether the routed model sees images: without it each image becomes a short note.
    ``reasoning`` False: the model does not reason (no effort, no placeholder). ``kept`` looks
    up what the caller kept for a turn whose calls came without reasoning (rule 4; kept.py
    names the keys). Raises ``ClientRequestError`` for a request that cannot be sent (not
    JSON, no model, an item without a field a rule reads, tool names that collide, nothing
    readable left).
    """
    req = _parse(body)
    if req.get("previous_response_id") is not None and history is None:
        raise ClientRequestError(
            f"previous response {req['previous_response_id']!r} not found",
            code="previous_response_not_found",
            param="previous_response_id",
        )
    c = _Cleanup(
        rules,
        origin,
        carrier,
        NameTable(rules.max_tool_name_len),
        vision=vision,
        thinks=reasoning,
        kept=kept,
    )
    raw_input = req.get("input", [])
    items = [_user_text(raw_input)] if isinstance(raw_input, str) else raw_input
    tools = _all_tools(c, req, items)
    past = list(history or ())
    cleaned = _clean_items(c, [*past, *items], len(past))
    if c.searches:  # rule 2
        tools += _offer_found(c, tools)
    cleaned = _paired(c, cleaned)
    if c.compaction:  # rule 8
        cleaned.append(_user_text(COMPACTION_PROMPT))
        tools = []
    c.joined = bool(past) or c.compaction
    context = TranslationContext(
        client_model=req["model"],
        upstream_model=upstream_model,
        tools=c.origins,
        response_echo=_echo(req),
        stream=bool(req.get("stream")),
        compaction=c.compaction,
    )
    return _body(c, req, cleaned, tools, upstream_model), context
