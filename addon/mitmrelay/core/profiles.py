"""Provider profiles: every difference between Chat Completions upstreams, as data.

The translators read switches from a ``Profile``; they never test a provider's name
(STYLE.md §2.6). A new provider is a new ``PROFILES`` row plus fixtures, and each quirk's
comment names the provider and what was observed (providers.md §2).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

ReasoningReplay = Literal["reasoning_content", "reasoning", "none"]


@dataclass(frozen=True, slots=True)
class Profile:
    """Switches for one provider family. The defaults describe a plain OpenAI-style server.

    merge_system_messages:   join every system message into one (for servers that accept a
                             single system message); by default all are kept, in order.
    max_tokens_field:        the name the upstream reads the output bound from.
    accepts_reasoning_effort / accepts_stream_options / accepts_parallel_tool_calls /
    accepts_tool_choice:     whether those request fields may be sent at all.
    reasoning_replay:        the assistant-message field that carries reasoning back upstream,
                             or "none" to strip it (Groq rejects ``reasoning_content``).
    reasoning_placeholder:   text sent as reasoning on an assistant tool-call message when none
                             survives, for providers that demand it (DeepSeek, Kimi); None = never.
    max_tool_name_len:       longer flattened tool names are shortened with a stable hash.
    think_tags:              split ``<think>…</think>`` out of content (vLLM without a parser).
    extra_body:              fields merged into every Chat request (e.g. ``thinking``).
    drop_params:             Chat request fields never to send.
    vision / reasoning:      what the family's models do by default (a route may say
                             otherwise): accept images; think before answering.
    hosts:                   API host names of the family, for guessing a provider's profile
                             from its base URL (a host ending in ``.`` + one of them matches too).
    """

    name: str = "generic"
    merge_system_messages: bool = False
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    accepts_reasoning_effort: bool = True
    accepts_stream_options: bool = True
    accepts_parallel_tool_calls: bool = True
    accepts_tool_choice: bool = True
    reasoning_replay: ReasoningReplay = "reasoning_content"
    reasoning_placeholder: str | None = None
    max_tool_name_len: int = 64
    think_tags: bool = True
    extra_body: Mapping[str, object] = field(default_factory=dict)
    drop_params: frozenset[str] = frozenset()
    vision: bool = True
    reasoning: bool = True
    hosts: tuple[str, ...] = ()


GENERIC = Profile()

# Each row's switches cite what was observed (providers.md §1.2, §2).
DEEPSEEK = Profile(
    name="deepseek",
    hosts=("api.deepseek.com",),
    # Thinking mode rejects an assistant tool-call message without the reasoning_content it
    # produced ("The reasoning_content in the thinking mode must be passed back to the API.").
    # When none survives (a thread begun on another model), a single space is accepted: the
    # placeholder LiteLLM's DeepSeek adapter sends (BerriAI/litellm#26660).
    reasoning_placeholder=" ",
)
KIMI = Profile(
    name="kimi",
    hosts=("api.moonshot.ai", "api.moonshot.cn"),
    # "thinking is enabled but reasoning_content is missing in assistant tool call message"
    # (Kilo-Org/kilocode#10986): same rule and remedy as DeepSeek.
    reasoning_placeholder=" ",
)
GROQ = Profile(
    name="groq",
    hosts=("api.groq.com",),
    # Groq answers 400 "unsupported" for reasoning_content in replayed history
    # (tashfeenahmed/freellmapi#1070): strip it.
    reasoning_replay="none",
)
OPENROUTER = Profile(
    name="openrouter",
    hosts=("openrouter.ai",),
    # OpenRouter streams reasoning as delta.reasoning and reads it back under the same name,
    # with reasoning_details (restored from the sealed carrier) alongside.
    reasoning_replay="reasoning",
)

PROFILES: Mapping[str, Profile] = {p.name: p for p in (GENERIC, DEEPSEEK, KIMI, GROQ, OPENROUTER)}


def guess_profile(base_url: str) -> Profile:
    """The profile whose ``hosts`` name the base URL's host (or a parent domain of it), else
    ``GENERIC``."""
    host = (urllib.parse.urlsplit(base_url).hostname or "").lower()
    for profile in PROFILES.values():
        if any(host == h or host.endswith("." + h) for h in profile.hosts):
            return profile
    return GENERIC
