"""The Responses API request, exactly as the Codex CLI 0.169 sends it (codex-contract.md §4–6).

Validated once, at the edge, with ``ResponsesRequest.model_validate_json`` (pydantic's fastest
path). Unknown fields are kept (``extra="allow"``): a new Codex release adding a field must not
break the relay. Unknown item, content-part and tool types fall to ``Unknown*`` models: they are
kept, logged once by the translator, and skipped.

Every union of typed models (items, content parts, tools) is built by ``_union`` with two
branches, tried in order:

- fast: the known models behind pydantic's own ``type`` discriminator, which pydantic-core reads
  from the raw JSON in Rust;
- tolerant: the same models plus the ``Unknown*`` catch-all behind a Python discriminator, which
  also makes a typeless item with a role a message (OpenAI's EasyInputMessage).

Only the tolerant branch could keep unknown types, but a Python discriminator costs: pydantic
must turn each value into Python objects just to call it, which made validation ~1.3x slower on
a history of many small items (``bench/request_translate.py``). The fast branch accepts a subset
of what the tolerant one accepts, through the same models, so when it succeeds the result is the
one the tolerant branch would give; when it fails (unknown or missing type, invalid value) the
tolerant branch decides, for that value only. So there is one set of classes whichever branch
validated, and a request with one unknown part pays the slow path for that part alone (a
fallback for the whole request would need a second set of container models). When both fail,
``describe`` reports the tolerant branch's errors: the message is the one it always was.
tests/core/test_fast_path.py checks that the branches agree.

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
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError


class _Model(BaseModel):
    # NaN and Infinity parse from JSON (pydantic-core accepts them) but are not JSON: sent on,
    # they would make the upstream body, or the Response echoed to Codex, unreadable.
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


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


def _union(
    models: dict[str, type[_Model]], unknown: type[_Model], default: str | None = None
) -> Any:
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


def _type_tags(models: dict[str, type[_Model]]) -> dict[str, str]:
    """``type`` value -> tag (several values share one tag: the hosted tools)."""
    return {
        value: tag
        for tag, model in models.items()
        for value in get_args(model.model_fields["type"].annotation)
    }


# ----------------------------------------------------------------------------- content parts


class InputText(_Model):
    type: Literal["input_text"]
    text: str


class InputImage(_Model):
    type: Literal["input_image"]
    image_url: str | None = None  # a data: URL (codex exec -i) or an http(s) URL
    file_id: Identifier | None = None
    detail: str | None = None  # "high" from -i, "original" from view_image (contract §5)

    @field_validator("image_url")
    @classmethod
    def _known_scheme(cls, url: str | None) -> str | None:
        if url is None:
            return url
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


class OutputText(_Model):
    type: Literal["output_text"]
    text: str
    annotations: list[Any] = Field(default_factory=list)


class Refusal(_Model):
    type: Literal["refusal"]
    refusal: str


class UnknownPart(_Model):
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


# Inside a namespace only functions and freeform tools have been seen (contract §6); anything
# else is kept as unknown and skipped, like an unknown top-level tool, never a 400.
NestedTool = _union({"function": FunctionTool, "custom": CustomTool}, unknown=UnknownTool)


class NamespaceTool(_Model):
    """MCP servers (``mcp__<server>``) and ``multi_agent_v1``: tools grouped under a name that
    Codex needs back on each call (contract §6)."""

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


class MessageItem(_Model):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]
    id: Identifier | None = None


class SummaryText(_Model):
    type: Literal["summary_text"] = "summary_text"
    text: str


class ReasoningText(_Model):
    type: Literal["reasoning_text"] = "reasoning_text"
    text: str


class ReasoningItem(_Model):
    type: Literal["reasoning"]
    id: Identifier | None = None
    summary: list[SummaryText] = Field(default_factory=list)
    content: list[ReasoningText] | None = None
    encrypted_content: str | None = None


class FunctionCallItem(_Model):
    type: Literal["function_call"]
    call_id: Identifier
    name: Identifier
    arguments: str = ""
    namespace: Identifier | None = None
    id: Identifier | None = None


class FunctionCallOutputItem(_Model):
    type: Literal["function_call_output"]
    call_id: Identifier
    output: str | list[ContentPart]
    id: Identifier | None = None


class CustomToolCallItem(_Model):
    type: Literal["custom_tool_call"]
    call_id: Identifier
    name: Identifier
    input: str
    namespace: Identifier | None = None
    id: Identifier | None = None


class CustomToolCallOutputItem(_Model):
    type: Literal["custom_tool_call_output"]
    call_id: Identifier
    output: str | list[ContentPart]
    id: Identifier | None = None


class CompactionItem(_Model):
    """Remote compaction's opaque summary, replayed verbatim (contract §9)."""

    type: Literal["compaction"]
    encrypted_content: str | None = None
    id: Identifier | None = None


class CompactionTriggerItem(_Model):
    type: Literal["compaction_trigger"]


class AdditionalToolsItem(_Model):
    """Lite slugs move the tools into the first input item (contract §1.3)."""

    type: Literal["additional_tools"]
    tools: list[Tool] = Field(default_factory=list)
    role: str | None = None
    id: Identifier | None = None


class ToolSearchCallItem(_Model):
    """A deferred-tools search the model asked for (docs/tool-search.md): ``arguments`` is a
    JSON object (``{"query", "limit"}``), not a string; ``call_id`` pairs it with its output."""

    type: Literal["tool_search_call"]
    call_id: Identifier | None = None
    execution: str | None = None
    arguments: Any = None
    status: str | None = None
    id: Identifier | None = None


class ToolSearchOutputItem(_Model):
    """What Codex's search found: tool definitions (functions, namespaces of functions) the
    model may call from then on, although ``tools`` never lists them."""

    type: Literal["tool_search_output"]
    call_id: Identifier | None = None
    execution: str | None = None
    status: str | None = None
    tools: list[Tool] = Field(default_factory=list)
    id: Identifier | None = None


class UnknownItem(_Model):
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
    input: str | list[InputItem] = Field(default_factory=list)
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
