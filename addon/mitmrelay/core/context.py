"""What the response side needs to know about the request it answers.

The request translator builds one ``TranslationContext`` per exchange; the stream and
non-stream translators read it to undo what the request side did to tool names (namespaces
flattened, freeform tools wrapped in a one-string-parameter function) and to echo the request's
parameters in the Response object, as OpenAI's own API does.

It is plain data (frozen, JSON-friendly values), so the addon can keep it in flow metadata and
a state store can persist it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ToolKind(enum.StrEnum):
    """How the client declared a tool, and so which output item a call of it becomes
    (``CALL_ITEMS`` in core/output_items.py: one row per member)."""

    FUNCTION = "function"  # a function_call (with its namespace for an MCP tool)
    CUSTOM = "custom"  # a freeform tool: a custom_tool_call whose input is raw text
    # Codex's client-executed search, offered as a function: a tool_search_call whose arguments
    # are a JSON object (core/tool_search.py rule 5).
    TOOL_SEARCH = "tool_search"


@dataclass(frozen=True, slots=True)
class ToolOrigin:
    """How the client declared a tool that the upstream knows under another name.

    ``name`` and ``namespace`` are the client's (Codex must get ``function_call{name,
    namespace}`` back for MCP tools: docs/codex-contract.md §6). ``kind`` says which item the
    tool's calls go back as. A ``custom`` (freeform) tool is offered upstream as a function with
    the single string parameter ``input_param``, and its call goes back to the client as a
    ``custom_tool_call`` whose ``input`` is that string.

    ``freeform=True`` is the older spelling of ``kind=ToolKind.CUSTOM`` (and wins over
    ``kind``); either way both read consistently afterwards: ``freeform`` is True exactly for
    ``CUSTOM``. ``kind`` may be given as its string value (``"custom"``, as JSON has it);
    anything else raises ``ValueError``.
    """

    name: str
    namespace: str | None = None
    freeform: bool = False
    input_param: str = "input"
    kind: ToolKind = ToolKind.FUNCTION

    def __post_init__(self) -> None:
        kind = ToolKind.CUSTOM if self.freeform else ToolKind(self.kind)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "freeform", kind is ToolKind.CUSTOM)


@dataclass(frozen=True, slots=True)
class TranslationContext:
    """Per-exchange facts shared by the request and response translators.

    tools:          upstream function name -> the client's declaration. Names absent from the
                    map are passed through as plain function calls.
    response_echo:  the request parameters a Response object repeats (``instructions``,
                    ``tools`` as the client sent them, ``tool_choice``, ``parallel_tool_calls``,
                    ``reasoning``, ``text``, ``max_output_tokens``, ``temperature``, ``top_p``,
                    ``metadata``, ``previous_response_id``, ``store``, ...): JSON-ready values.
    call_ids:       upstream tool-call id -> client call_id, for providers whose ids are not
                    valid Responses call ids (Kimi's ``functions.name:0``). Filled by the
                    response side; the request side maps back with the same rule.
    """

    client_model: str
    upstream_model: str
    tools: Mapping[str, ToolOrigin] = field(default_factory=dict)
    response_echo: Mapping[str, Any] = field(default_factory=dict)
    stream: bool = True
    # Remote compaction (core/compaction.py): the answer is one sealed ``compaction`` item.
    compaction: bool = False
