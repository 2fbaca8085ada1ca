"""Hostile request bodies, structure-aware: shared by the core fuzz tests and the mitmdump sample.

- ``from_model(ResponsesRequest)``: a hypothesis strategy built by walking the wire models in
  ``models/responses.py`` (their annotations, literals, unions and nested models), so every
  item, content part and tool type is reached; each field sometimes gets a wrong-typed JSON
  value or a hostile string instead (CR/LF, NUL, U+2028, a forged log line), and objects
  sometimes carry unknown keys.
- ``mutate(doc, rng)``: a captured Codex request (tests/fixtures/) with a few random edits at
  random depths: a key deleted, a value replaced by junk or a hostile string, a list item
  duplicated, an item's ``type`` swapped for another one. ``rng`` is a ``random.Random``, so
  hypothesis drives it (``st.randoms()``) and a fixed seed reproduces it outside hypothesis.
- ``chat_problems(chat)``: what a real Chat Completions server would refuse in a translation.
"""

from __future__ import annotations

import copy
import functools
import random
import re
import types
from typing import (
    Annotated,
    Any,
    Literal,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

from hypothesis import strategies as st
from pydantic import BaseModel

from .captured import request_bodies

# Text that would forge a log line or a header if it reached one unescaped.
INJECTED = "INJECTED-LINE"
HOSTILE_STRINGS = (
    f"gpt-5.5\r\n{INJECTED}: yes",
    f"x\n{INJECTED}",
    "nul\x00byte",
    "sep\u2028arator",
    "nel\x85",
    "\x1b[31mred",
    "",
    " ",
    "a" * 300,
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_FLUSHALL",
    "data:image/png;base64,AAAA",
    "https://example.com/x.png",
    "𝕦𝕟𝕚𝕔𝕠𝕕𝕖",
)
ITEM_TYPES = (
    "message",
    "reasoning",
    "function_call",
    "function_call_output",
    "custom_tool_call",
    "custom_tool_call_output",
    "compaction",
    "compaction_trigger",
    "additional_tools",
    "tool_search_call",
    "tool_search_output",
    "input_text",
    "input_image",
    "output_text",
    "function",
    "custom",
    "namespace",
    "web_search",
    "no_such_type",
)
# Chat function names: OpenAI's rule, the strictest of the providers (docs/providers.md §1.5).
VALID_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
CHAT_ROLES = {"system", "user", "assistant", "tool"}

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(HOSTILE_STRINGS)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
hostile_text = st.text(max_size=16) | st.sampled_from(HOSTILE_STRINGS)


def _with_junk(proper: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the proper value, sometimes (1 in 8) any JSON value: a wrong type, a hostile
    string. Rarer would leave invalid input untried; more common would reject most bodies at
    their first field, leaving the translator untried."""
    return st.one_of(*[proper] * 7, json_values)


@functools.cache
def from_annotation(annotation: Any) -> st.SearchStrategy[Any]:
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is Any:
        return json_values
    if annotation is str:
        return hostile_text
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return st.integers(-(2**40), 2**40)
    if annotation is float:
        return st.floats(-5, 5, allow_nan=False)
    if annotation is type(None):
        return st.none()
    if origin is Literal:
        return st.sampled_from(args)
    if origin is Annotated:  # Identifier, and the fast/tolerant union wrappers
        return from_annotation(args[0])
    if origin in (Union, types.UnionType):
        return st.one_of([from_annotation(a) for a in args])
    if origin is list:
        return st.lists(_with_junk(from_annotation(args[0])), max_size=4)
    if origin is dict:
        return st.dictionaries(st.text(max_size=8), json_values, max_size=3)
    if is_typeddict(annotation) or (
        isinstance(annotation, type) and issubclass(annotation, BaseModel)
    ):
        return from_model(annotation)
    raise TypeError(f"no strategy for {annotation!r}")


@functools.cache
def from_model(model: Any, always: tuple[str, ...] = ()) -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects shaped by ``model`` (a pydantic model or a ``TypedDict`` shape): required
    fields (and ``always``) always there, optional ones drawn, each value sometimes junk, and
    sometimes unknown keys added."""
    required, optional = {}, {}
    for name, annotation, is_required in _fields(model):
        value = _with_junk(from_annotation(annotation))
        (required if is_required or name in always else optional)[name] = value
    shaped = st.fixed_dictionaries(required, optional=optional)
    extra = st.dictionaries(st.sampled_from(["x_new", "status", "extra"]), json_values, max_size=1)
    return st.builds(lambda d, e: {**e, **d}, shaped, extra)


def _fields(model: Any) -> list[tuple[str, Any, bool]]:
    """(name, annotation, required) of a model's or a shape's fields."""
    if is_typeddict(model):
        # get_type_hints strips NotRequired (and Annotated, which from_annotation would drop)
        return [
            (name, hint, name in model.__required_keys__)
            for name, hint in get_type_hints(model).items()
        ]
    return [(n, i.annotation, i.is_required()) for n, i in model.model_fields.items()]


def fixtures() -> list[tuple[str, dict[str, Any]]]:
    """(name, body) of every captured Responses request (support/captured.py)."""
    return [
        (name.removesuffix(".request.json"), body)
        for name, body in request_bodies().items()
        if name.endswith(".request.json") and isinstance(body, dict) and "input" in body
    ]


def _paths(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*path, i))
    return out


def _junk(rng: random.Random) -> Any:
    return rng.choice(
        [
            None,
            rng.choice(HOSTILE_STRINGS),
            rng.randint(-5, 10**12),
            -1.5,
            True,
            [],
            {},
            [rng.choice(HOSTILE_STRINGS)],
            {"type": rng.choice(ITEM_TYPES)},
        ]
    )


def mutate(doc: dict[str, Any], rng: random.Random, edits: int | None = None) -> dict[str, Any]:
    """A copy of ``doc`` with 1-4 random edits (module docstring)."""
    doc = copy.deepcopy(doc)
    for _ in range(edits or rng.randint(1, 4)):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = rng.choice(paths)
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        key = path[-1]
        kind = rng.choice(["delete", "junk", "hostile", "duplicate", "retype", "wrap"])
        if kind == "delete":
            del parent[key]
        elif kind == "junk":
            parent[key] = _junk(rng)
        elif kind == "hostile":
            parent[key] = rng.choice(HOSTILE_STRINGS)
        elif kind == "duplicate" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        elif kind == "retype" and isinstance(parent[key], dict):
            parent[key]["type"] = rng.choice(ITEM_TYPES)
        else:
            parent[key] = [parent[key]]
    return doc


def chat_problems(chat: dict[str, Any]) -> list[str]:
    """What a strict Chat Completions server would refuse in ``chat`` (empty: nothing)."""
    problems = []
    messages = chat.get("messages")
    if not isinstance(messages, list) or not messages:
        return ["no messages"]
    pending: list[str] = []  # tool_call ids still to be answered, in order
    for i, m in enumerate(messages):
        role = m.get("role")
        if role not in CHAT_ROLES:
            problems.append(f"messages[{i}].role {role!r}")
        if role == "tool":
            if not pending or m.get("tool_call_id") != pending.pop(0):
                problems.append(f"messages[{i}] answers no pending tool call")
            if not isinstance(m.get("content"), str):
                problems.append(f"messages[{i}].content is not text")
            continue
        if pending:
            problems.append(f"messages[{i}] comes before tool calls {pending} were answered")
            pending = []
        content = m.get("content")
        if role == "assistant" and m.get("tool_calls"):
            for call in m["tool_calls"]:
                name = call["function"]["name"]
                if not VALID_TOOL_NAME.match(name):
                    problems.append(f"tool call name {name!r}")
            pending = [c["id"] for c in m["tool_calls"]]
        elif not isinstance(content, str | list):
            problems.append(f"messages[{i}].content {type(content).__name__}")
    if pending:
        problems.append(f"tool calls {pending} never answered")
    for tool in chat.get("tools") or ():
        if not VALID_TOOL_NAME.match(tool["function"]["name"]):
            problems.append(f"tool name {tool['function']['name']!r}")
    if chat.get("tools") == []:
        problems.append("empty tools")
    return problems


def requests() -> st.SearchStrategy[dict[str, Any]]:
    """Responses request bodies built from the wire models, ``input`` always present: the
    items are where the translator's work, and its bugs, are."""
    from mitmrelay.models.responses import ResponsesRequest

    return from_model(ResponsesRequest, always=("input",))
