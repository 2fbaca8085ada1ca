"""The Responses API request, exactly as the Codex CLI 0.169 sends it (codex-contract.md §4–6).

Validated once, at the edge, with ``ResponsesRequest.model_validate_json`` (pydantic's fastest
path). Unknown fields are kept (``extra="allow"``): a new Codex release adding a field must not
break the relay. Unknown item, content-part and tool types fall to ``Unknown*`` models through
callable discriminators: they are kept, logged once by the translator, and skipped.

``field_path`` turns a pydantic error location into the path a user can find in their request
(``input[3].content[0].image_url``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


def _type_of(known: frozenset[str], default: str | None = None):
    def discriminate(value: Any) -> str:
        kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
        if kind is None and default is not None:
            return default
        return kind if kind in known else "unknown"

    return discriminate


# ----------------------------------------------------------------------------- content parts


class InputText(_Model):
    type: Literal["input_text"]
    text: str


class InputImage(_Model):
    type: Literal["input_image"]
    image_url: str | None = None  # a data: URL (codex exec -i) or an http(s) URL
    file_id: str | None = None
    detail: str | None = None  # "high" from -i, "original" from view_image (contract §5)


class OutputText(_Model):
    type: Literal["output_text"]
    text: str
    annotations: list[Any] = Field(default_factory=list)


class Refusal(_Model):
    type: Literal["refusal"]
    refusal: str


class UnknownPart(_Model):
    type: str


_PART_TYPES = frozenset({"input_text", "input_image", "output_text", "refusal"})
ContentPart = Annotated[
    Annotated[InputText, Tag("input_text")]
    | Annotated[InputImage, Tag("input_image")]
    | Annotated[OutputText, Tag("output_text")]
    | Annotated[Refusal, Tag("refusal")]
    | Annotated[UnknownPart, Tag("unknown")],
    Discriminator(_type_of(_PART_TYPES)),
]


# ----------------------------------------------------------------------------- tools


class FunctionTool(_Model):
    type: Literal["function"]
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class CustomTool(_Model):
    """A freeform tool (apply_patch, the lite models' JavaScript ``exec``): raw text input,
    optionally constrained by a grammar (``format: {type: grammar, syntax: lark, …}``)."""

    type: Literal["custom"]
    name: str
    description: str | None = None
    format: dict[str, Any] | None = None


class UnknownTool(_Model):
    type: str


# Inside a namespace only functions and freeform tools have been seen (contract §6); anything
# else is kept as unknown and skipped, like an unknown top-level tool, never a 400.
_NESTED_TYPES = frozenset({"function", "custom"})
NestedTool = Annotated[
    Annotated[FunctionTool, Tag("function")]
    | Annotated[CustomTool, Tag("custom")]
    | Annotated[UnknownTool, Tag("unknown")],
    Discriminator(_type_of(_NESTED_TYPES)),
]


class NamespaceTool(_Model):
    """MCP servers (``mcp__<server>``) and ``multi_agent_v1``: tools grouped under a name that
    Codex needs back on each call (contract §6)."""

    type: Literal["namespace"]
    name: str
    description: str | None = None
    tools: list[NestedTool] = Field(default_factory=list)


class HostedTool(_Model):
    """Tools the provider runs itself; Chat Completions has no form for them."""

    type: Literal[
        "web_search",
        "web_search_preview",
        "tool_search",
        "local_shell",
        "image_generation",
        "file_search",
        "code_interpreter",
        "computer_use_preview",
        "mcp",
    ]


_HOSTED = frozenset(HostedTool.model_fields["type"].annotation.__args__)  # type: ignore[union-attr]
_TOOL_TYPES = frozenset({"function", "custom", "namespace"}) | _HOSTED
Tool = Annotated[
    Annotated[FunctionTool, Tag("function")]
    | Annotated[CustomTool, Tag("custom")]
    | Annotated[NamespaceTool, Tag("namespace")]
    | Annotated[HostedTool, Tag("hosted")]
    | Annotated[UnknownTool, Tag("unknown")],
    Discriminator(
        lambda v: "hosted" if _type_of(_TOOL_TYPES)(v) in _HOSTED else _type_of(_TOOL_TYPES)(v)
    ),
]


# ----------------------------------------------------------------------------- input items


class MessageItem(_Model):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]
    id: str | None = None


class SummaryText(_Model):
    type: Literal["summary_text"] = "summary_text"
    text: str


class ReasoningText(_Model):
    type: Literal["reasoning_text"] = "reasoning_text"
    text: str


class ReasoningItem(_Model):
    type: Literal["reasoning"]
    id: str | None = None
    summary: list[SummaryText] = Field(default_factory=list)
    content: list[ReasoningText] | None = None
    encrypted_content: str | None = None


class FunctionCallItem(_Model):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str = ""
    namespace: str | None = None
    id: str | None = None


class FunctionCallOutputItem(_Model):
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[ContentPart]
    id: str | None = None


class CustomToolCallItem(_Model):
    type: Literal["custom_tool_call"]
    call_id: str
    name: str
    input: str
    namespace: str | None = None
    id: str | None = None


class CustomToolCallOutputItem(_Model):
    type: Literal["custom_tool_call_output"]
    call_id: str
    output: str | list[ContentPart]
    id: str | None = None


class CompactionItem(_Model):
    """Remote compaction's opaque summary, replayed verbatim (contract §9)."""

    type: Literal["compaction"]
    encrypted_content: str | None = None
    id: str | None = None


class CompactionTriggerItem(_Model):
    type: Literal["compaction_trigger"]


class AdditionalToolsItem(_Model):
    """Lite slugs move the tools into the first input item (contract §1.3)."""

    type: Literal["additional_tools"]
    tools: list[Tool] = Field(default_factory=list)
    role: str | None = None
    id: str | None = None


class ToolSearchCallItem(_Model):
    """In Codex 0.169's ``ResponseItem`` enum, never seen on the wire (contract §5); kept so a
    replay of one validates, then skipped: the tool it belongs to is hosted (no Chat form)."""

    type: Literal["tool_search_call"]
    call_id: str | None = None
    id: str | None = None


class ToolSearchOutputItem(_Model):
    type: Literal["tool_search_output"]
    call_id: str | None = None
    id: str | None = None


class UnknownItem(_Model):
    type: str


_ITEM_TYPES = frozenset(
    {
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
    }
)
InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[ReasoningItem, Tag("reasoning")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[CustomToolCallItem, Tag("custom_tool_call")]
    | Annotated[CustomToolCallOutputItem, Tag("custom_tool_call_output")]
    | Annotated[CompactionItem, Tag("compaction")]
    | Annotated[CompactionTriggerItem, Tag("compaction_trigger")]
    | Annotated[AdditionalToolsItem, Tag("additional_tools")]
    | Annotated[ToolSearchCallItem, Tag("tool_search_call")]
    | Annotated[ToolSearchOutputItem, Tag("tool_search_output")]
    | Annotated[UnknownItem, Tag("unknown")],
    # An item with a role and no type is a message (OpenAI's EasyInputMessage).
    Discriminator(_type_of(_ITEM_TYPES, default="message")),
]


# ----------------------------------------------------------------------------- request


class ReasoningConfig(_Model):
    effort: str | None = None
    summary: str | None = None


class TextConfig(_Model):
    format: dict[str, Any] | None = None
    verbosity: str | None = None


class ResponsesRequest(_Model):
    model: str
    input: str | list[InputItem] = Field(default_factory=list)
    instructions: str | None = None
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
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
    previous_response_id: str | None = None
    metadata: dict[str, Any] | None = None
    client_metadata: dict[str, Any] | None = None
    service_tier: str | None = None
    truncation: str | None = None
    user: str | None = None


# Tag names pydantic puts into error locations; they mean nothing to a user.
_LOC_NOISE = _ITEM_TYPES | _PART_TYPES | _TOOL_TYPES | {"unknown", "hosted", "str"}


def field_path(loc: tuple[int | str, ...]) -> str:
    """``('input', 3, 'message', 'content', 'list[...]', 0, 'input_image', 'image_url')`` ->
    ``input[3].content[0].image_url``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _LOC_NOISE or "[" in part or part.startswith("function-"):
            continue
        else:
            out += f".{part}" if out else part
    return out or "(body)"


def describe(error: ValidationError) -> str:
    """One line naming the first problem and where it is, e.g.
    ``input[3].content[0].image_url: Input should be a valid string``."""
    errors = error.errors(include_url=False)
    # With unions (``str | list[...]``) pydantic reports one error per branch; the deepest
    # location is the one that names the actual problem.
    first = max(errors, key=lambda e: len(field_path(tuple(e["loc"]))))
    more = len({field_path(tuple(e["loc"])) for e in errors}) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{field_path(tuple(first['loc']))}: {first['msg']}{suffix}"
