"""Provider profiles: every difference between Chat Completions upstreams, as data.

Theory of operation: the request translator (core/request.py) and the stream translator read
switches from a ``Profile``; they never test a provider's name. A new provider
is a new ``PROFILES`` row plus a strict fake in ``tests/support/fake_upstream.py``.

Rules every row follows (the facts behind them are in docs/providers.md):

1. A switch says what the provider does or demands, never who it is. Each row's comments name
   the provider and the source of each quirk (a docs page, the provider's server source, or a
   public issue quoting its error).
2. Defaults describe a plain OpenAI-style server: every field sent, reasoning replayed as
   ``reasoning_content``, Codex's effort passed through as ``reasoning_effort``.
3. Codex's ``reasoning.effort`` (none, minimal, low, medium, high, xhigh: docs/codex-contract.md §3)
   reaches a provider only through its ``Thinking`` row: the field it reads, the level each
   Codex effort becomes on the provider's ladder, and the switch fields it wants for thinking on
   and off. A level the provider does not accept is never sent (Ollama answers 400 "invalid
   reasoning value" for anything but high/medium/low/none).
4. ``vision`` and ``reasoning`` are the family's typical model; a route may say otherwise.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

ReasoningReplay = Literal["reasoning_content", "reasoning", "none"]
# How assistant tool-call ids are sent back (core/request.py, rule 7):
#   keep:    as Codex replays them (ids the upstream invented are valid already);
#   alnum9:  exactly nine characters [a-zA-Z0-9], derived deterministically (Mistral);
#   kimi:    the ``functions.<name>:<n>`` ids Kimi invented, restored from the call ids the
#            stream translator gave Codex (``call_functions_<name>_<n>``).
ToolCallIds = Literal["keep", "alnum9", "kimi"]

# Codex's efforts (docs/codex-contract.md §3) and the ladders providers accept.
CODEX_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")


def _frozen(mapping: Mapping[str, object]) -> Mapping[str, object]:
    return MappingProxyType(dict(mapping))


# Codex effort -> provider level; None = send no level.
PASS_THROUGH = _frozen({e: e for e in CODEX_EFFORTS})
# low/medium/high only (gpt-oss style servers): the ends fold inward, "none" sends nothing.
THREE_LEVELS = _frozen(
    {
        "none": None,
        "minimal": "low",
        "low": "low",
        "medium": "medium",
        "high": "high",
        "xhigh": "high",
    }
)
# The same ladder with an explicit "none" that turns thinking off.
THREE_LEVELS_OR_NONE = _frozen({**THREE_LEVELS, "none": "none"})


@dataclass(frozen=True, slots=True)
class Thinking:
    """How Codex's ``reasoning.effort`` becomes the provider's thinking controls.

    effort_field:  where the level goes (a dotted path nests: ``reasoning.effort`` ->
                   ``{"reasoning": {"effort": …}}``); None = the provider takes no level.
    levels:        Codex effort -> the provider's level (None: no level for that effort).
    on / off:      fields merged into the request when the effort asks for thinking (any effort
                   but ``none``) or for none; deep-merged with the level's object.
    """

    effort_field: str | None = "reasoning_effort"
    levels: Mapping[str, object] = PASS_THROUGH
    on: Mapping[str, object] = field(default_factory=dict)
    off: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Profile:
    """Switches for one provider family. The defaults describe a plain OpenAI-style server.

    merge_system_messages:   join every system message into one at the start, for servers that
                             refuse a system message after the conversation began; by default
                             all are kept, in place.
    assistant_after_tool:    text of an assistant message put between a tool message and a
                             user message that follows it (servers that refuse that order);
                             None = the order is left as it is.
    max_tokens_field:        the name the upstream reads the output bound from.
    accepts_stream_options / accepts_parallel_tool_calls / accepts_tool_choice /
    accepts_strict_tools:    whether those request fields (``strict`` on a function) may be sent.
    thinking:                how Codex's effort is sent (see ``Thinking``); None = never sent.
    stream_extra:            fields merged into a streamed request that offers tools.
    reasoning_replay:        the assistant-message field that carries reasoning back upstream,
                             or "none" to strip it (Groq rejects ``reasoning_content``).
    thinking_chunks:         reasoning goes back as a typed ``thinking`` chunk at the head of the
                             assistant message's ``content`` (the shape the provider streams it
                             in), for providers with no reasoning field (Mistral).
    reasoning_placeholder:   text sent as reasoning on an assistant tool-call message when none
                             survives, for providers that demand it (DeepSeek, Kimi); None = never.
    thought_signatures:      send Gemini's per-call ``extra_content.google.thought_signature``
                             back (servers with strict schemas reject the unknown field).
    tool_call_ids:           how assistant tool-call ids are written (``ToolCallIds``).
    max_tool_name_len:       longer flattened tool names are shortened with a stable hash.
    think_tags:              split ``<think>…</think>`` out of content (servers without a
                             reasoning parser).
    extra_body:              fields merged into every Chat request.
    drop_params:             Chat request fields never to send.
    vision / reasoning:      what the family's models do by default (a route may say
                             otherwise): accept images; think before answering.
    hosts:                   API host names of the family, for guessing a provider's profile
                             from its base URL (a host ending in ``.`` + one of them matches too).
    """

    name: str = "generic"
    merge_system_messages: bool = False
    assistant_after_tool: str | None = None
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    accepts_stream_options: bool = True
    accepts_parallel_tool_calls: bool = True
    accepts_tool_choice: bool = True
    accepts_strict_tools: bool = True
    thinking: Thinking | None = Thinking()
    stream_extra: Mapping[str, object] = field(default_factory=dict)
    reasoning_replay: ReasoningReplay = "reasoning_content"
    thinking_chunks: bool = False
    reasoning_placeholder: str | None = None
    thought_signatures: bool = True
    tool_call_ids: ToolCallIds = "keep"
    max_tool_name_len: int = 64
    think_tags: bool = True
    extra_body: Mapping[str, object] = field(default_factory=dict)
    drop_params: frozenset[str] = frozenset()
    vision: bool = True
    reasoning: bool = True
    hosts: tuple[str, ...] = ()


# Every citation below points into docs/providers.md §2 (one subsection per family), where the
# source of each fact is given in full.

GENERIC = Profile()

DEEPSEEK = Profile(
    name="deepseek",
    hosts=("api.deepseek.com",),
    # Thinking mode (the default) is switched by {"thinking": {"type": "enabled"|"disabled"}};
    # the effort ladder low/high/max takes every OpenAI level and maps it itself
    # (api-docs.deepseek.com/guides/thinking_mode; docs/providers.md §2 DeepSeek).
    thinking=Thinking(
        levels=_frozen({**PASS_THROUGH, "none": None}),
        on=_frozen({"thinking": {"type": "enabled"}}),
        off=_frozen({"thinking": {"type": "disabled"}}),
    ),
    # An assistant tool-call message must carry the reasoning_content it produced ("The
    # reasoning_content in the thinking mode must be passed back to the API."). When none
    # survives (a thread begun on another model), a single space is accepted: the placeholder
    # LiteLLM's DeepSeek adapter sends (BerriAI/litellm#26660).
    reasoning_placeholder=" ",
    # The chat models take text parts only: an image_url part is a 400 "unknown variant
    # `image_url`, expected `text`" (esengine/DeepSeek-Reasonix#7859).
    vision=False,
    # Thought signatures are Gemini's (§1.2); a thread that switched models carries them, and
    # only the generic, OpenRouter and Gemini rows (which may front Gemini) send them on.
    thought_signatures=False,
)

KIMI = Profile(
    name="kimi",
    hosts=("api.moonshot.ai", "api.moonshot.cn", "api.kimi.com"),
    # kimi-k2.5/k2.6 think by default and take {"thinking": {"type": "disabled"}}; Kimi's own
    # CLI sends thinking enabled plus a top-level reasoning_effort (platform.moonshot.ai
    # "Using thinking models"; MoonshotAI/kimi-cli kosong chat_provider/kimi.py).
    thinking=Thinking(
        levels=THREE_LEVELS,
        on=_frozen({"thinking": {"type": "enabled"}}),
        off=_frozen({"thinking": {"type": "disabled"}}),
    ),
    # "thinking is enabled but reasoning_content is missing in assistant tool call message at
    # index N" (Kilo-Org/kilocode#10986): same rule and remedy as DeepSeek.
    reasoning_placeholder=" ",
    # Kimi invents ids "functions.<name>:<n>" and its chat template renders them back to the
    # model; Codex got them as call_functions_<name>_<n> (core/stream.py), so they are restored.
    tool_call_ids="kimi",
    thought_signatures=False,
)

GLM = Profile(
    name="glm",
    hosts=("api.z.ai", "open.bigmodel.cn"),
    # Z.ai: thinking on by default since GLM-4.7, off with {"type": "disabled"}; preserved
    # thinking across turns needs "clear_thinking": false (docs.z.ai/guides/capabilities/
    # thinking-mode; duolahypercho/codex-router#315). No effort ladder before GLM-5.2.
    thinking=Thinking(
        effort_field=None,
        on=_frozen({"thinking": {"type": "enabled", "clear_thinking": False}}),
        off=_frozen({"thinking": {"type": "disabled"}}),
    ),
    # Without tool_stream a call's arguments arrive as one chunk after the whole call was
    # generated: minutes of silence for a large patch (adolfousier/opencrabs glm_reasoning.rs).
    stream_extra=_frozen({"tool_stream": True}),
    # GLM takes only max_tokens, tool_choice "auto" (its default), no tool "strict" and no
    # stream_options; usage always comes in the last chunk (agentscope GLM formatter notes).
    accepts_stream_options=False,
    accepts_tool_choice=False,
    accepts_strict_tools=False,
    thought_signatures=False,
    vision=False,  # GLM-4.6/5 are text models; the V models are routed with vision = true
)

QWEN = Profile(
    name="qwen",
    hosts=("dashscope.aliyuncs.com", "dashscope-intl.aliyuncs.com", "dashscope-us.aliyuncs.com"),
    # DashScope: enable_thinking switches hybrid models (help.aliyun.com model-studio
    # deep-thinking). It rejects reasoning_effort next to a thinking budget
    # (QwenLM/qwen-code#8488), so no level is sent.
    thinking=Thinking(
        effort_field=None,
        on=_frozen({"enable_thinking": True}),
        off=_frozen({"enable_thinking": False}),
    ),
    # Replayed reasoning_content is dropped silently unless preserve_thinking is set; Qwen Code
    # sends it on every DashScope request (QwenLM/qwen-code#5637), whatever the effort.
    extra_body=_frozen({"preserve_thinking": True}),
    thought_signatures=False,
    vision=False,  # qwen3-coder and the text Qwen3 models; the -vl models are routed with vision
)

OPENROUTER = Profile(
    name="openrouter",
    hosts=("openrouter.ai",),
    # One normalised control for every model: "reasoning": {"effort": …}, from "none" to
    # "xhigh" (openrouter.ai/docs/use-cases/reasoning-tokens).
    thinking=Thinking(effort_field="reasoning.effort"),
    # OpenRouter streams reasoning as delta.reasoning and reads it back under the same name,
    # with reasoning_details (restored from the sealed carrier) alongside.
    reasoning_replay="reasoning",
)

GROQ = Profile(
    name="groq",
    hosts=("api.groq.com",),
    # gpt-oss takes reasoning_effort low/medium/high (console.groq.com/docs/reasoning).
    thinking=Thinking(levels=THREE_LEVELS),
    max_tokens_field="max_completion_tokens",  # max_tokens is deprecated on Groq
    # "'messages.1' : for 'role:assistant' the following must be satisfied[('messages.1' :
    # property 'reasoning_content' is unsupported)]" (tashfeenahmed/freellmapi#1070); the same
    # for "reasoning" (musistudio/llms#64): strip both.
    reasoning_replay="none",
    thought_signatures=False,  # unknown properties are refused ("property 'x' is unsupported")
    vision=False,  # gpt-oss, kimi-k2 and qwen3 on Groq are text models
)

MISTRAL = Profile(
    name="mistral",
    hosts=("api.mistral.ai", "codestral.mistral.ai"),
    # reasoning_effort "high" or "none" on mistral-small/medium-3.5 (docs.mistral.ai/
    # capabilities/reasoning). Thinking streams as typed content chunks and goes back the same
    # way, at the head of the assistant's content: Mistral's own multi-turn example says to
    # replay the turn "with its ThinkChunks intact", as dropping them degrades the model
    # (mistralai/client-python examples/mistral/chat/reasoning_multi_turn.py).
    thinking_chunks=True,
    thinking=Thinking(
        levels=_frozen({e: ("none" if e == "none" else "high") for e in CODEX_EFFORTS})
    ),
    # Any field its schema lacks is a 422 "Extra inputs are not permitted" (extra_forbidden):
    # stream_options (dnakov/anon-kode#53), max_completion_tokens
    # (editor-code-assistant/eca#231), an assistant's reasoning_content (charmbracelet/crush#1590).
    accepts_stream_options=False,
    reasoning_replay="none",
    thought_signatures=False,
    # "Unexpected role 'user' after role 'tool'" (datapizza-labs/datapizza-ai#98) and
    # "Unexpected role 'system' after role 'assistant'" (swarmauri/swarmauri-sdk#162).
    assistant_after_tool="Done.",
    merge_system_messages=True,
    # Tool-call ids "must be a-z, A-Z, 0-9, with a length of 9" (anomalyco/opencode#1680).
    tool_call_ids="alnum9",
)

GEMINI = Profile(
    name="gemini",
    hosts=("generativelanguage.googleapis.com",),
    # reasoning_effort none/low/medium/high map to thinking budgets (ai.google.dev/gemini-api/
    # docs/openai); Gemini 3 Flash alone has "minimal", so it folds to low.
    thinking=Thinking(levels=THREE_LEVELS_OR_NONE),
    # The thought text is not sent back: the signature per call is what Gemini reads ("Function
    # call is missing a thought_signature in functionCall parts", AstrBotDevs/AstrBot#9217), and
    # unknown message fields are "Invalid JSON payload received. Unknown name" 400s.
    reasoning_replay="none",
    thought_signatures=True,
)

OLLAMA = Profile(
    name="ollama",
    hosts=("ollama.com",),
    # Its /v1 layer reads reasoning_effort (or reasoning.effort) and refuses anything but
    # high/medium/low/none: "invalid reasoning value: 'xhigh' (must be \"high\", \"medium\",
    # \"low\", or \"none\")"; reasoning goes out and comes back as "reasoning"
    # (ollama/ollama openai/openai.go).
    thinking=Thinking(levels=THREE_LEVELS_OR_NONE),
    reasoning_replay="reasoning",
    thought_signatures=False,
)

VLLM = Profile(
    name="vllm",
    # vLLM renamed reasoning_content to reasoning and dropped the old name from its answers
    # (vllm-project/vllm#27752, #33402); older servers read only "reasoning" back (#38488).
    # Without a reasoning parser the model's <think> tags stay in the content (think_tags).
    reasoning_replay="reasoning",
    thinking=Thinking(levels=THREE_LEVELS),
    thought_signatures=False,
    vision=False,
)

LLAMACPP = Profile(
    name="llamacpp",
    # llama-server (--jinja, reasoning format auto by default) answers reasoning_content and
    # sends usage only when stream_options.include_usage asks (ggml-org/llama.cpp#16052).
    thinking=Thinking(levels=THREE_LEVELS),
    thought_signatures=False,
    vision=False,  # images need a model started with --mmproj
)

LMSTUDIO = Profile(
    name="lmstudio",
    # LM Studio separates reasoning_content from content when its server setting asks
    # (Mintplex-Labs/anything-llm#4267); otherwise the <think> tags stay in the text.
    thinking=Thinking(levels=THREE_LEVELS),
    thought_signatures=False,
    vision=False,
)

PROFILES: Mapping[str, Profile] = MappingProxyType(
    {
        p.name: p
        for p in (
            GENERIC,
            DEEPSEEK,
            KIMI,
            GLM,
            QWEN,
            OPENROUTER,
            GROQ,
            MISTRAL,
            GEMINI,
            OLLAMA,
            VLLM,
            LLAMACPP,
            LMSTUDIO,
        )
    }
)


def guess_profile(base_url: str) -> Profile:
    """The profile whose ``hosts`` name the base URL's host (or a parent domain of it), else
    ``GENERIC``. Local servers (Ollama, vLLM, llama.cpp, LM Studio) listen on any host and
    port, so they are never guessed: a route names them."""
    host = (urllib.parse.urlsplit(base_url).hostname or "").lower()
    for profile in PROFILES.values():
        if any(host == h or host.endswith("." + h) for h in profile.hosts):
            return profile
    return GENERIC
