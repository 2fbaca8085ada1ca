"""What each provider family's ``/responses`` endpoint takes, as data.

The request cleanup (``request.py``) and the stream normaliser (``stream.py``) read switches
from a ``ResponsesRules`` row; they never test a provider's name. Rows are keyed
by the family names of ``core/profiles.py`` and will become the ``responses`` section of those
``Profile`` rows once the Responses wire is wired into the routes file.

The default row is the plain subset every Responses server takes: ``function`` tools only;
input items ``message``, ``function_call`` (no ``namespace``), ``function_call_output`` (a
string) and ``reasoning``; reasoning blobs only from the provider that made them; the request
fields of OpenAI's own reference that carry meaning for a model. A row widens the subset only
where the provider documents support, and each widening or quirk names its source. Nothing
here was tried against a live provider API (docs/providers.md §5.1–5.10 says the same per
family, with what was re-checked); where a source is a
third party's reading of the provider's documentation, the comment says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from mitmrelay.core.tool_search import DEFAULT_MAX_TOOLS

# How reasoning text is put back into a ``reasoning`` input item for a provider that did not
# make it (its own items go back as it gave them): ``summary`` = OpenAI's reference shape (a
# ``summary_text`` part), ``content`` = a ``reasoning_text`` part and an empty summary,
# ``encrypted_text`` = Ollama's, which reads the thinking text from ``encrypted_content``.
ReasoningForm = Literal["summary", "content", "encrypted_text"]

PLAIN_TOOL_TYPES = frozenset({"function"})
PLAIN_ITEM_TYPES = frozenset({"message", "function_call", "function_call_output", "reasoning"})
# OpenAI's request fields that change what the model does; everything else a Codex request
# carries (``store``, ``include``, ``prompt_cache_key``, ``client_metadata``, ``service_tier``,
# ``truncation``, ``metadata``, ``previous_response_id``, ...) is bookkeeping for OpenAI's own
# platform and is not sent unless a row says its provider takes it.
PLAIN_FIELDS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning",
        "max_output_tokens",
        "temperature",
        "top_p",
        "stream",
        "text",
    }
)
# Efforts of a provider with three thinking strengths (low, high, max): Codex's five map onto
# them as the AI SDK's DeepSeek provider maps them (vercel/ai
# packages/deepseek/src/responses/deepseek-responses-language-model.ts, "DeepSeek V4 has three
# thinking strengths: low, high and max").
LOW_HIGH_MAX = MappingProxyType(
    {"minimal": "low", "low": "low", "medium": "high", "high": "high", "xhigh": "max"}
)


@dataclass(frozen=True, slots=True)
class ResponsesRules:
    """The switches of one family's ``/responses`` endpoint. Defaults: the plain subset.

    tool_types:          tool ``type``s sent as they are. ``namespace`` absent: namespaced tools
                         are flattened into functions with the Chat path's reversible names;
                         ``custom`` absent: freeform tools become a function with one string
                         parameter; any other type absent (hosted tools): dropped.
    item_types:          input item ``type``s sent as they are; custom calls become function
                         calls when ``custom_tool_call`` is absent, other items are dropped.
    reasoning_form:      how foreign reasoning text goes back (see ``ReasoningForm``).
    reasoning_placeholder: reasoning text put before a turn's tool calls when none survives,
                         for providers that reject tool calls without their reasoning.
    tool_output_parts:   tool outputs may be arrays of parts; otherwise their text is joined
                         and their images follow the turn's outputs in a user message.
    request_fields:      top-level request fields passed on.
    reasoning_fields:    keys of ``reasoning`` passed on.
    efforts:             Codex's ``reasoning.effort`` -> the provider's; others pass as they are.
    text_formats:        ``text.format`` types passed on; ``text.verbosity`` is never sent.
    tool_choices:        accepted ``tool_choice`` strings, plus ``function`` for a named tool.
    instructions_field:  the provider reads ``instructions``; otherwise they become the first
                         input message.
    max_tool_name_len:   longer flattened names are shortened with a stable hash.
    image_sources:       URL schemes of ``input_image`` parts the provider fetches; any other
                         image (another scheme, an OpenAI ``file_id``) becomes a note.
    max_tools:           functions per request (namespaces opened); the tools Codex's
                         ``tool_search`` found fill what the request's own leave
                         (core/tool_search.py rule 4).
    """

    name: str = "generic"
    tool_types: frozenset[str] = PLAIN_TOOL_TYPES
    item_types: frozenset[str] = PLAIN_ITEM_TYPES
    reasoning_form: ReasoningForm = "summary"
    reasoning_placeholder: str | None = None
    tool_output_parts: bool = False
    request_fields: frozenset[str] = PLAIN_FIELDS
    reasoning_fields: frozenset[str] = frozenset({"effort"})
    efforts: Mapping[str, str] = field(default_factory=dict)
    text_formats: frozenset[str] = frozenset({"text", "json_schema", "json_object"})
    tool_choices: frozenset[str] = frozenset({"auto", "none", "required", "function"})
    instructions_field: bool = True
    max_tool_name_len: int = 64
    max_tools: int = DEFAULT_MAX_TOOLS
    image_sources: frozenset[str] = frozenset({"data", "http", "https"})


GENERIC = ResponsesRules()

# Each row cites its source; a switch it does not set is the plain subset.
DEEPSEEK = ResponsesRules(
    name="deepseek",
    # api-docs.deepseek.com/guides/responses_api, as read by clients that follow it (one
    # quotes it: "reasoning input items take plain content only; summary and encrypted_content
    # are not supported") and by the AI SDK's DeepSeek provider (vercel/ai
    # convert-to-deepseek-responses-input.ts: `summary: []` plus one `reasoning_text` part).
    reasoning_form="content",
    # Thinking mode answers 400 "The reasoning_text in the thinking mode must be passed back to
    # the API." when a turn's tool calls come without their reasoning (seen by several
    # DeepSeek Responses clients). When none survives (a thread begun on another provider) a
    # single space stands in, the Chat path's remedy for the same rule (BerriAI/litellm#26660).
    reasoning_placeholder=" ",
    # The AI SDK types function_call_output.output as a string and drops image parts, "since
    # the API silently replaces them with placeholder text" (vercel/ai, same file).
    tool_output_parts=False,
    efforts=LOW_HIGH_MAX,
    # Web search is a server-side tool there (`{"type": "web_search"}`, web_search_call items
    # replayed with their action): not offered this round, because Codex's web_search carries
    # `external_web_access` (cached-only by default), which DeepSeek's live search ignores.
)
KIMI = ResponsesRules(
    name="kimi",
    # platform.kimi.com/docs/api/responses (as transcribed 2026-09-03): tools are `function`
    # and `namespace` (a Kimi extension whose calls come back with `namespace`); input items
    # message, reasoning (`content` read before `summary`), function_call (with namespace),
    # function_call_output (string or parts) and `additional_tools` (tools added mid-thread).
    tool_types=frozenset({"function", "namespace"}),
    item_types=PLAIN_ITEM_TYPES | {"additional_tools"},
    reasoning_form="content",
    tool_output_parts=True,
    # Same page: `tool_choice` accepts only "auto"; `temperature`, `top_p`,
    # `parallel_tool_calls` and `metadata` are not request fields; `prompt_cache_key` is, and
    # helps its context cache; `reasoning.effort` is low / high / max; `text.format` is
    # json_schema only. Kimi's tool_search_* rejection (router-for-me/CLIProxyAPI#5647) needs
    # no rule: those items are never sent.
    request_fields=(PLAIN_FIELDS - {"temperature", "top_p", "parallel_tool_calls"})
    | {"prompt_cache_key"},
    tool_choices=frozenset({"auto"}),
    efforts=LOW_HIGH_MAX,
    text_formats=frozenset({"json_schema"}),
    # Same page: images are data URLs only (Codex sends them so: `-i`, view_image).
    image_sources=frozenset({"data"}),
)
GLM = ResponsesRules(
    name="glm",
    # Z.ai documents Codex on https://api.z.ai/api/v1/responses (docs.z.ai/devpack/tool/codex)
    # but publishes no event or item catalogue. Captured streams (glm-5.3-flash, 2026-10-01)
    # carry reasoning as `reasoning_text` content with `encrypted_content: null`: replay it in
    # that shape. Reasoning levels low, high, max (docs.z.ai/guides/llm/glm-5.3).
    reasoning_form="content",
    efforts=LOW_HIGH_MAX,
)
QWEN = ResponsesRules(
    name="qwen",
    # help.aliyun.com/zh/model-studio/qwen-api-via-openai-responses: "requests process only
    # the parameters listed; others are ignored", and `instructions` is listed among the
    # unsupported ones: the base prompt would vanish silently, so it goes into the input.
    instructions_field=False,
)
GROQ = ResponsesRules(
    name="groq",
    # console.groq.com/docs/responses-api: function calling, text and image input, "doesn't
    # support stateful conversations yet". Nothing wider is documented: the plain subset.
)
OPENROUTER = ResponsesRules(
    name="openrouter",
    # openrouter.ai/docs/api_reference/responses: stateless ("store: true or a non-null
    # previous_response_id are rejected with a 400"); tools are `function` or `openrouter:*`
    # (openai/codex#12114: "Invalid Responses API request", invalid_union on tools[].type).
    # Its reasoning items come back with `encrypted_content` only when asked for, and that blob
    # is scoped to the key that made it (docs/providers.md §6.2): `include` is passed on, and
    # the carrier returns the blob to this provider alone.
    request_fields=PLAIN_FIELDS | {"include"},
)
OLLAMA = ResponsesRules(
    name="ollama",
    # ollama/ollama openai/responses.go: a reasoning input item's thinking is read from
    # `encrypted_content` (its output items put the plain thinking there too); any other
    # `reasoning.effort` than none / low / medium / high / max is a 400 ("invalid reasoning
    # value"). Tool outputs may be part arrays (text and images). Custom tool replay exists
    # locally but not on its cloud (docs.ollama.com/api/openai-compatibility), and namespaced
    # calls came back flattened as `mcp__x.y` (openai/codex#23186): both stay in the subset.
    reasoning_form="encrypted_text",
    tool_output_parts=True,
    efforts=MappingProxyType({"minimal": "low", "xhigh": "max"}),
)
LMSTUDIO = ResponsesRules(
    name="lmstudio",
    # lmstudio.ai/docs/developer/openai-compat/responses documents Codex; `namespace` tools are
    # a 400 (`{"error":{"code":"invalid_string","message":"Invalid","param":"tools.13.type",
    # ...}}`, lmstudio-ai/lms#537, lmstudio-bug-tracker#1810): the plain subset.
)
VLLM = ResponsesRules(
    name="vllm",
    # vllm-project/vllm entrypoints/openai (harmony_utils parse_response_input): a reasoning
    # input item is read from `content[0].text` (older releases assert exactly one part and
    # fail with a 500 without it). Namespaced tools are rejected by harmony models ("tool type
    # namespace not supported", vllm-project/vllm#49493) and came back flattened from others
    # (vllm-project/vllm#46737): flattened here.
    reasoning_form="content",
)

RULES: Mapping[str, ResponsesRules] = MappingProxyType(
    {
        r.name: r
        for r in (GENERIC, DEEPSEEK, KIMI, GLM, QWEN, GROQ, OPENROUTER, OLLAMA, LMSTUDIO, VLLM)
    }
)


def rules_for(family: str) -> ResponsesRules:
    """The row of a profile family; a family without a Responses row gets the plain subset."""
    return RULES.get(family, GENERIC)
