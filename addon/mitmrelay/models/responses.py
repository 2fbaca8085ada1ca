"""The Responses API request, exactly as the Codex CLI 0.169 sends it (docs/codex-contract.md §4–6).

Validated once, at the edge, with ``ResponsesRequest.model_validate_json`` (pydantic's fastest
path). Unknown fields are kept (``extra="allow"``): a new Codex release adding a field must not
break the relay. Unknown item, content-part and tool types fall to ``Unknown*`` shapes: they are
kept, logged once by the translator, and skipped.

Two kinds of shape, by how many a request holds:

- the request itself and its tools (tens per request) are pydantic models: attributes, defaults,
  ``model_dump`` for the response's echo;
- input items and their content parts (a long history holds ten thousand) are ``TypedDict``
  shapes: pydantic validates them just as strictly, from the raw JSON in Rust, but each becomes
  one plain ``dict`` of the fields sent (extras kept, no defaults filled in), where a model costs
  an instance, its ``__dict__``, a ``model_fields_set`` set and an extras dict. That was ~48 000
  objects for a history of 10 000 short items, built and then traversed by Python's cyclic GC
  while young (``bench/request_translate.py``, "2000 short turns"). Readers use ``.get`` for
  optional fields, and ``item.get("type", "message")``: only a typeless message has none. The
  history a ``previous_response_id`` continues is plain JSON of the same shapes
  (core/history.py), so the translator reads stored and new items alike.

Every union (items, content parts, tools) is built by ``_union`` with two branches, tried in
order:

- fast: the known shapes behind pydantic's own ``type`` discriminator, which pydantic-core reads
  from the raw JSON in Rust;
- tolerant: the same shapes plus the ``Unknown*`` catch-all behind a Python discriminator, which
  also makes a typeless item with a role a message (OpenAI's EasyInputMessage).

Only the tolerant branch could keep unknown types, but a Python discriminator costs: pydantic
must turn each value into Python objects just to call it, which made validation ~1.3x slower on
a history of many small items. The fast branch accepts a subset of what the tolerant one
accepts, through the same shapes, so when it succeeds the result is the one the tolerant branch
would give; when it fails (unknown or missing type, invalid value) the tolerant branch decides,
for that value only. When both fail, ``describe`` reports the tolerant branch's errors: the
message is the one it always was. tests/core/test_fast_path.py checks that the branches agree.

``field_path`` turns a pydantic error location into the path a user can find in their request
(``input[3].content[0].image_url``).

Hostile input is refused here, at the edge, with a 400 naming the field (``parse_request``):

- identifiers (``Identifier``: the model, tool and namespace names, call and item ids,
  ``previous_response_id``) hold no control characters, no line separators (C0, DEL, C1,
  U+2028, U+2029): they reach log lines, mitmweb comments, store keys and, once routed, headers,
  where a CR/LF or NUL would forge a line or a header. Nothing legitimate carries them (OpenAI
  restricts function names to ``[a-zA-Z0-9_-]``; ids are generated). Checked by
  pydantic-core's regex in Rust, so the per-item cost stays small on long histories;
- an image is fetched by the upstream, never by the relay, but a ``file:``, ``ftp:`` or
  ``gopher:`` URL (or one without a scheme) would make a provider that fetches images do a
  request no client should be able to ask for: only ``http``, ``https`` and ``data:`` pass
  (OpenAI's input_image: "A fully qualified URL or base64 encoded image in a data URL", the
  pinned openai SDK's ``types/responses/response_input_image_param.py``);
- NaN and Infinity (which the JSON parser accepts) are refused in every float field and in the
  free-form objects the relay sends on (``JsonObject``: tool parameters, formats, tool_choice,
  metadata), so the upstream body and the Response echoed to Codex stay strict JSON.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any, Literal, NotRequired, TypedDict, Union, get_args, get_type_hints

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    with_config,
)
from pydantic_core import PydanticCustomError

# NaN and Infinity parse from JSON (pydantic-core accepts them) but are not JSON: sent on, they
# would make the upstream body, or the Response echoed to Codex, unreadable.
_EXTRA = ConfigDict(extra="allow", allow_inf_nan=False)


class _Model(BaseModel):
    model_config = _EXTRA


@with_config(_EXTRA)
class _Shape(TypedDict):
    """Base of the dict shapes (module docstring); subclasses inherit ``extra="allow"``."""


# A model or a dict shape, as ``_union`` takes them.
_Kind = type[_Model] | type[_Shape]


# Labels of a union's two branches; they appear in error locations (``describe``).
_FAST, _TOLERANT = "fast", "tolerant"
_UNKNOWN = "unknown"
_TAGS: set[str] = set()  # every tolerant tag, for ``field_path``

# Module docstring: no C0 controls, DEL, C1 controls or Unicode line/paragraph separators.
IDENTIFIER_PATTERN = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$"
Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN)]
_IDENTIFIER_MESSAGE = "must not contain control characters or line breaks (CR, LF, NUL, ...)"
IMAGE_URL_SCHEMES = ("http", "https", "data")


def _finite_json(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` if it holds no NaN or Infinity at any depth (module docstring)."""
    stack: list[Any] = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, float) and not math.isfinite(node):
            raise PydanticCustomError(
                "finite_number", "must hold only finite numbers (NaN and Infinity are not JSON)"
            )
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_finite_json)]


def _known_scheme(url: str) -> str:
    """``url`` if its scheme is one of ``IMAGE_URL_SCHEMES`` (module docstring)."""
    scheme, colon, _ = url[:16].partition(":")
    if colon and scheme.lower() in IMAGE_URL_SCHEMES:
        return url
    # Name the scheme, never the URL: it may be megabytes long or carry credentials.
    shown = repr(scheme[:10]) if colon else "none"
    raise PydanticCustomError(
        "image_url_scheme",
        "must be an http(s) URL or a data: URL (scheme {scheme})",
        {"scheme": shown},
    )


ImageUrl = Annotated[str, AfterValidator(_known_scheme)]


def _list_or_text(part: Any) -> Any:
    """``list[part] | str``, the list tried first and the string only when it fails. Not
    pydantic's default (smart) mode, which tries every branch: a branch that fails keeps the
    value as its error's input, a Python copy of it, so a 64 MB image in a content list cost
    a transient copy per union around it. A list value costs nothing more this way; a string
    costs one failed list check (pydantic's "Input should be a valid list")."""
    return Annotated[Union[list[part], str], Field(union_mode="left_to_right")]  # noqa: UP007


def _type_of(tags: dict[str, str], default: str | None) -> Callable[[Any], str]:
    """The tolerant branch's discriminator: the tag of a value's ``type``, ``default`` when it
    has none, ``unknown`` when it is not one of ``tags``."""

    def discriminate(value: Any) -> str:
        kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
        if kind is None and default is not None:
            return default
        # Not a string (``"type": []``): the catch-all model then names the field in a 400.
        return tags.get(kind, _UNKNOWN) if isinstance(kind, str) else _UNKNOWN

    return discriminate


def _union(models: dict[str, _Kind], unknown: _Kind, default: str | None = None) -> Any:
    """``models`` (tag -> model, told apart by their ``Literal`` ``type`` field) and the
    ``unknown`` catch-all, as a fast branch then a tolerant one (module docstring). ``default``
    is the tag of a value without a ``type``."""
    fast = Annotated[Union[tuple(models.values())], Field(discriminator="type")]  # noqa: UP007
    choices = {**models, _UNKNOWN: unknown}
    _TAGS.update(choices)
    tolerant = Annotated[
        Union[tuple(Annotated[model, Tag(tag)] for tag, model in choices.items())],  # noqa: UP007
        Discriminator(_type_of(_type_tags(models), default)),
    ]
    return Annotated[
        Annotated[fast, Tag(_FAST)] | Annotated[tolerant, Tag(_TOLERANT)],
        Field(union_mode="left_to_right"),
    ]


def _type_tags(models: dict[str, _Kind]) -> dict[str, str]:
    """``type`` value -> tag (several values share one tag: the hosted tools)."""
    return {value: tag for tag, model in models.items() for value in _literals(model)}


def _literals(model: _Kind) -> tuple[str, ...]:
    """The ``type`` values a model or shape takes (its ``Literal``, maybe ``NotRequired``)."""
    if issubclass(model, BaseModel):
        return get_args(model.model_fields["type"].annotation)
    hint = get_type_hints(model)["type"]  # NotRequired[...] is stripped here
    return get_args(hint)


# ----------------------------------------------------------------------------- content parts


class InputText(_Shape):
    type: Literal["input_text"]
    text: str


class InputImage(_Shape):
    type: Literal["input_image"]
    image_url: NotRequired[ImageUrl | None]  # a data: URL (codex exec -i) or an http(s) URL
    file_id: NotRequired[Identifier | None]
    # "high" from -i, "original" from view_image (docs/codex-contract.md §5)
    detail: NotRequired[str | None]


class OutputText(_Shape):
    type: Literal["output_text"]
    text: str
    annotations: NotRequired[list[Any]]


class Refusal(_Shape):
    type: Literal["refusal"]
    refusal: str


class UnknownPart(_Shape):
    type: str


ContentPart = _union(
    {
        "input_text": InputText,
        "input_image": InputImage,
        "output_text": OutputText,
        "refusal": Refusal,
    },
    unknown=UnknownPart,
)


# ----------------------------------------------------------------------------- tools


class FunctionTool(_Model):
    type: Literal["function"]
    name: Identifier
    description: str | None = None
    parameters: JsonObject | None = None
    strict: bool | None = None


class CustomTool(_Model):
    """A freeform tool (apply_patch, the lite models' JavaScript ``exec``): raw text input,
    optionally constrained by a grammar (``format: {type: grammar, syntax: lark, …}``)."""

    type: Literal["custom"]
    name: Identifier
    description: str | None = None
    format: JsonObject | None = None


class UnknownTool(_Model):
    type: str


# Inside a namespace only functions and freeform tools have been seen (docs/codex-contract.md §6);
# anything else is kept as unknown and skipped, like an unknown top-level tool, never a 400.
NestedTool = _union({"function": FunctionTool, "custom": CustomTool}, unknown=UnknownTool)


class NamespaceTool(_Model):
    """MCP servers (``mcp__<server>``) and ``multi_agent_v1``: tools grouped under a name that
    Codex needs back on each call (docs/codex-contract.md §6)."""

    type: Literal["namespace"]
    name: Identifier
    description: str | None = None
    tools: list[NestedTool] = Field(default_factory=list)


class HostedTool(_Model):
    """Tools the provider runs itself; Chat Completions has no form for them."""

    type: Literal[
        "web_search",
        "web_search_preview",
        "local_shell",
        "image_generation",
        "file_search",
        "code_interpreter",
        "computer_use_preview",
        "mcp",
    ]


class ToolSearchTool(_Model):
    """Deferred tools (docs/tool-search.md): ``execution: "client"`` means Codex runs the search
    itself and sends the tools found in a ``tool_search_output`` item (core/tool_search.py);
    without it the provider would search (a hosted tool)."""

    type: Literal["tool_search"]
    execution: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None


Tool = _union(
    {
        "function": FunctionTool,
        "custom": CustomTool,
        "namespace": NamespaceTool,
        "tool_search": ToolSearchTool,
        "hosted": HostedTool,
    },
    unknown=UnknownTool,
)


# ----------------------------------------------------------------------------- input items


class MessageItem(_Shape):
    type: NotRequired[Literal["message"]]  # absent: a typeless message (EasyInputMessage)
    role: Literal["user", "assistant", "system", "developer"]
    content: _list_or_text(ContentPart)
    id: NotRequired[Identifier | None]


class SummaryText(_Shape):
    type: NotRequired[Literal["summary_text"]]
    text: str


class ReasoningText(_Shape):
    type: NotRequired[Literal["reasoning_text"]]
    text: str


class ReasoningItem(_Shape):
    type: Literal["reasoning"]
    id: NotRequired[Identifier | None]
    summary: NotRequired[list[SummaryText]]
    content: NotRequired[list[ReasoningText] | None]
    encrypted_content: NotRequired[str | None]


class FunctionCallItem(_Shape):
    type: Literal["function_call"]
    call_id: Identifier
    name: Identifier
    arguments: NotRequired[str]
    namespace: NotRequired[Identifier | None]
    id: NotRequired[Identifier | None]


class FunctionCallOutputItem(_Shape):
    type: Literal["function_call_output"]
    call_id: Identifier
    output: _list_or_text(ContentPart)
    id: NotRequired[Identifier | None]


class CustomToolCallItem(_Shape):
    type: Literal["custom_tool_call"]
    call_id: Identifier
    name: Identifier
    input: str
    namespace: NotRequired[Identifier | None]
    id: NotRequired[Identifier | None]


class CustomToolCallOutputItem(_Shape):
    type: Literal["custom_tool_call_output"]
    call_id: Identifier
    output: _list_or_text(ContentPart)
    id: NotRequired[Identifier | None]


class CompactionItem(_Shape):
    """Remote compaction's opaque summary, replayed verbatim (docs/codex-contract.md §9)."""

    type: Literal["compaction"]
    encrypted_content: NotRequired[str | None]
    id: NotRequired[Identifier | None]


class CompactionTriggerItem(_Shape):
    type: Literal["compaction_trigger"]


class AdditionalToolsItem(_Shape):
    """Lite slugs move the tools into the first input item (docs/codex-contract.md §1.3)."""

    type: Literal["additional_tools"]
    tools: NotRequired[list[Tool]]
    role: NotRequired[str | None]
    id: NotRequired[Identifier | None]


class ToolSearchCallItem(_Shape):
    """A deferred-tools search the model asked for (docs/tool-search.md): ``arguments`` is a
    JSON object (``{"query", "limit"}``), not a string; ``call_id`` pairs it with its output."""

    type: Literal["tool_search_call"]
    call_id: NotRequired[Identifier | None]
    execution: NotRequired[str | None]
    arguments: NotRequired[Any]
    status: NotRequired[str | None]
    id: NotRequired[Identifier | None]


class ToolSearchOutputItem(_Shape):
    """What Codex's search found: tool definitions (functions, namespaces of functions) the
    model may call from then on, although ``tools`` never lists them."""

    type: Literal["tool_search_output"]
    call_id: NotRequired[Identifier | None]
    execution: NotRequired[str | None]
    status: NotRequired[str | None]
    tools: NotRequired[list[Tool]]
    id: NotRequired[Identifier | None]


class UnknownItem(_Shape):
    type: str


InputItem = _union(
    {
        "message": MessageItem,
        "reasoning": ReasoningItem,
        "function_call": FunctionCallItem,
        "function_call_output": FunctionCallOutputItem,
        "custom_tool_call": CustomToolCallItem,
        "custom_tool_call_output": CustomToolCallOutputItem,
        "compaction": CompactionItem,
        "compaction_trigger": CompactionTriggerItem,
        "additional_tools": AdditionalToolsItem,
        "tool_search_call": ToolSearchCallItem,
        "tool_search_output": ToolSearchOutputItem,
    },
    unknown=UnknownItem,
    # An item with a role and no type is a message (OpenAI's EasyInputMessage).
    default="message",
)


# ----------------------------------------------------------------------------- request


class ReasoningConfig(_Model):
    effort: str | None = None
    summary: str | None = None


class TextConfig(_Model):
    format: JsonObject | None = None
    verbosity: str | None = None


class ResponsesRequest(_Model):
    model: Identifier
    input: _list_or_text(InputItem) = Field(default_factory=list)
    instructions: str | None = None
    tools: list[Tool] | None = None
    tool_choice: str | JsonObject | None = None
    parallel_tool_calls: bool | None = None
    reasoning: ReasoningConfig | None = None
    text: TextConfig | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stream: bool = False
    store: bool | None = None
    include: list[str] | None = None
    prompt_cache_key: str | None = None
    previous_response_id: Identifier | None = None
    metadata: JsonObject | None = None
    client_metadata: JsonObject | None = None
    service_tier: str | None = None
    truncation: str | None = None
    user: str | None = None


# Tag names pydantic puts into error locations; they mean nothing to a user.
_LOC_NOISE = frozenset({_FAST, _TOLERANT, "str"})


def field_path(loc: tuple[int | str, ...]) -> str:
    """``('input', 3, 'fast', 'message', 'content', 'list[...]', 0, 'input_image', 'image_url')``
    -> ``input[3].content[0].image_url``. A union's tag comes right after an index or a branch
    label; elsewhere the same word is a field (``function_call.namespace``)."""
    out = ""
    after_index = False
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            after_index = True
            continue
        if part in _LOC_NOISE or "[" in part or part.startswith("function-"):
            continue
        if not (after_index and part in _TAGS):
            out += f".{part}" if out else part
        after_index = False
    return out or "(body)"


def describe(error: ValidationError) -> str:
    """One line naming the first problem and where it is, e.g.
    ``input[3].content[0].image_url: Input should be a valid string``."""
    errors = error.errors(include_url=False)
    # A union fails only when its tolerant branch fails too; the fast branch's errors only
    # repeat those or complain about the tag (module docstring): they are left out.
    errors = [e for e in errors if _FAST not in e["loc"]] or errors
    # With unions (``str | list[...]``) pydantic reports one error per branch; the deepest
    # location is the one that names the actual problem.
    first = max(errors, key=lambda e: len(field_path(tuple(e["loc"]))))
    more = len({field_path(tuple(e["loc"])) for e in errors}) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{field_path(tuple(first['loc']))}: {_message(first)}{suffix}"


def _message(error: Any) -> str:
    """pydantic's message, except for our pattern, which would read as line noise."""
    if error["type"] == "string_pattern_mismatch":
        return _IDENTIFIER_MESSAGE
    return str(error["msg"])
