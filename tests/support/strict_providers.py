"""What each provider family refuses, expects and answers: the strict modes of the fake upstream.

Theory of operation. A ``Strictness`` row per family (``STRICT``) holds three things, all pure:

- ``rejections``: checks that turn a request into the error the real provider answers, with its
  status and its own wording (each cites where the wording was seen: docs/providers.md §2).
  Only documented or reported refusals are modelled: a provider that silently ignores a field
  is not made to refuse it.
- ``expectations``: rules whose breach the provider does not refuse but silently punishes (a
  dropped reasoning trace, arguments that would arrive in one late chunk, no usage). The fake
  records them as violations; the tests assert there are none.
- ``dialect``: the shapes of its answers (where reasoning goes, the tool-call id form, a missing
  tool-call ``index``, thought signatures, where usage goes and what it holds).

``check(family, request, memory)`` is what the fake runs on every Chat request; pure tests run it
over translated requests too, so the relay's output is held to the same rules without a socket.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

FAMILIES = (
    "generic",
    "deepseek",
    "kimi",
    "glm",
    "qwen",
    "openrouter",
    "groq",
    "mistral",
    "gemini",
    "ollama",
    "vllm",
    "llamacpp",
    "lmstudio",
)

# Provider wordings (docs/providers.md §1.2 and §2 give the sources).
DEEPSEEK_MISSING_REASONING = (
    "The reasoning_content in the thinking mode must be passed back to the API."
)
KIMI_MISSING_REASONING = (
    "thinking is enabled but reasoning_content is missing in assistant tool call message at "
    "index {index}"
)
GEMINI_MISSING_SIGNATURE = (
    "Function call is missing a thought_signature in functionCall parts. This is required for "
    "tools to work correctly, and missing thought_signature may lead to degraded model "
    "performance. Additional data, function call `default_api:{name}` , position {position}. "
    "Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
)
# OpenRouter hands encrypted reasoning back to the model's provider, which refuses a block it did
# not issue (anomalyco/opencode#4608); the wording as OpenAI's API gives it, code
# invalid_encrypted_content (smallmain/vscode-unify-chat-provider#178, openai/codex#8145).
UNVERIFIED_ENCRYPTED = (
    "The encrypted content for item {id} could not be verified. Reason: Encrypted content "
    "could not be decrypted or parsed."
)
MISTRAL_BAD_CALL_ID = "Tool call id was {id} but must be a-z, A-Z, 0-9, with a length of 9."
OPENAI_ORDER = (
    "An assistant message with 'tool_calls' must be followed by tool messages responding to "
    "each 'tool_call_id'."
)
EMPTY_TOOLS = "Invalid 'tools': empty array. Expected an array with minimum length 1."


@dataclass
class Memory:
    """What one fake produced, so that later requests can be checked against it."""

    reasoning: dict[str, str] = field(default_factory=dict)  # call id -> reasoning it followed
    details: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # OpenRouter
    encrypted: set[str] = field(default_factory=set)  # OpenRouter: encrypted blocks it issued
    signatures: dict[str, str] = field(default_factory=dict)  # Gemini: call id -> signature
    call_ids: set[str] = field(default_factory=set)  # every tool-call id it invented


@dataclass(frozen=True)
class Rejection:
    status: int
    body: bytes


Check = Callable[[dict[str, Any], Memory], Rejection | None]
Expectation = Callable[[dict[str, Any], Memory], Iterable[str]]
UsageShape = Callable[[int, int, int, int], dict[str, Any]]


# ----------------------------------------------------------------------------- error envelopes


def openai_error(
    status: int, message: str, code: str | None = "invalid_request_error"
) -> Rejection:
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    }
    return Rejection(status, json.dumps(body).encode())


def mistral_error(status: int, message: Any, kind: str, code: str | None) -> Rejection:
    body = {"object": "error", "message": message, "type": kind, "param": None, "code": code}
    return Rejection(status, json.dumps(body).encode())


def gemini_error(message: str) -> Rejection:
    # Google's compat layer answers a JSON list holding one error object
    # (Alishahryar1/free-claude-code#542, manthanabc/paws#103).
    body = [{"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}]
    return Rejection(400, json.dumps(body).encode())


def groq_error(message: str) -> Rejection:
    body = {"error": {"message": message, "type": "invalid_request_error"}}
    return Rejection(400, json.dumps(body).encode())


# ----------------------------------------------------------------------------- helpers


def _assistant_calls(request: Mapping[str, Any]) -> Iterable[tuple[int, dict[str, Any]]]:
    for index, message in enumerate(request.get("messages") or ()):
        if message.get("role") == "assistant" and message.get("tool_calls"):
            yield index, message


def _thinking_off(request: Mapping[str, Any]) -> bool:
    return (request.get("thinking") or {}).get("type") == "disabled"


def _parts(message: Mapping[str, Any]) -> list[Any]:
    content = message.get("content")
    return content if isinstance(content, list) else []


def _has_image(request: Mapping[str, Any]) -> int | None:
    for index, message in enumerate(request.get("messages") or ()):
        if any(isinstance(p, dict) and p.get("type") == "image_url" for p in _parts(message)):
            return index
    return None


# ----------------------------------------------------------------------------- shared rules


def message_order(request: dict[str, Any], memory: Memory) -> Rejection | None:
    """Every assistant ``tool_calls`` answered by tool messages right after it (OpenAI's rule,
    which every family enforces in its own words)."""
    messages = request.get("messages") or []
    for i, message in _assistant_calls(request):
        ids = [c.get("id") for c in message["tool_calls"]]
        answered = [
            m.get("tool_call_id")
            for m in messages[i + 1 : i + 1 + len(ids)]
            if m.get("role") == "tool"
        ]
        if answered != ids:
            return openai_error(400, OPENAI_ORDER)
    return None


def empty_tools(request: dict[str, Any], memory: Memory) -> Rejection | None:
    if request.get("tools") == []:
        return openai_error(400, EMPTY_TOOLS)
    return None


# ----------------------------------------------------------------------------- DeepSeek


def deepseek_reasoning(request: dict[str, Any], memory: Memory) -> Rejection | None:
    """Thinking mode (the default) refuses an assistant tool-call message without its
    reasoning_content (api-docs.deepseek.com/guides/thinking_mode; JohnnyZ93/
    oai-compatible-copilot#215 for the wording)."""
    if _thinking_off(request):
        return None
    for _, message in _assistant_calls(request):
        if not isinstance(message.get("reasoning_content"), str):
            return openai_error(400, DEEPSEEK_MISSING_REASONING)
    return None


def deepseek_text_parts(request: dict[str, Any], memory: Memory) -> Rejection | None:
    """The chat models take text parts only (esengine/DeepSeek-Reasonix#7859)."""
    index = _has_image(request)
    if index is None:
        return None
    column = len(json.dumps(request)) // 2
    return openai_error(
        400,
        "Failed to deserialize the JSON body into the target type: "
        f"messages[{index}]: unknown variant `image_url`, expected `text` "
        f"at line 1 column {column}",
    )


# ----------------------------------------------------------------------------- Kimi


def kimi_reasoning(request: dict[str, Any], memory: Memory) -> Rejection | None:
    """Kilo-Org/kilocode#10986, anomalyco/opencode#29690."""
    if _thinking_off(request):
        return None
    for index, message in _assistant_calls(request):
        if not isinstance(message.get("reasoning_content"), str):
            return openai_error(400, KIMI_MISSING_REASONING.format(index=index), code=None)
    return None


# ----------------------------------------------------------------------------- Groq

# Request properties Groq documents for chat completions; anything else is "property 'x' is
# unsupported" (fanenr/chatbot#21: "property 'store' is unsupported, did you mean 'stop'?").
GROQ_FIELDS = frozenset(
    {
        "model",
        "messages",
        "frequency_penalty",
        "include_reasoning",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "max_tokens",
        "metadata",
        "n",
        "parallel_tool_calls",
        "presence_penalty",
        "reasoning_effort",
        "reasoning_format",
        "response_format",
        "seed",
        "service_tier",
        "stop",
        "stream",
        "stream_options",
        "temperature",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "user",
        "citation_options",
        "search_settings",
        "compound_custom",
        "documents",
        "disable_tool_validation",
        "exclude_domains",
        "include_domains",
    }
)
GROQ_ASSISTANT_FIELDS = frozenset({"role", "content", "name", "tool_calls", "reasoning"})


def groq_properties(request: dict[str, Any], memory: Memory) -> Rejection | None:
    for name in request:
        if name not in GROQ_FIELDS:
            return groq_error(f"property '{name}' is unsupported")
    for index, message in _assistant_calls_and_texts(request):
        for name in message:
            if name not in GROQ_ASSISTANT_FIELDS:
                # tashfeenahmed/freellmapi#1070, NousResearch/hermes-agent#11089
                return groq_error(
                    f"'messages.{index}' : for 'role:assistant' the following must be "
                    f"satisfied[('messages.{index}' : property '{name}' is unsupported)]"
                )
    return None


def _assistant_calls_and_texts(request: Mapping[str, Any]) -> Iterable[tuple[int, dict]]:
    for index, message in enumerate(request.get("messages") or ()):
        if message.get("role") == "assistant":
            yield index, message


# ----------------------------------------------------------------------------- Mistral

# The fields Mistral's chat schema lists; any other is a 422 extra_forbidden
# (mistralai/platform-docs-public#7, dnakov/anon-kode#53, editor-code-assistant/eca#231).
MISTRAL_FIELDS = frozenset(
    {
        "model",
        "temperature",
        "top_p",
        "max_tokens",
        "stream",
        "stop",
        "random_seed",
        "metadata",
        "messages",
        "response_format",
        "tools",
        "tool_choice",
        "presence_penalty",
        "frequency_penalty",
        "n",
        "prediction",
        "parallel_tool_calls",
        "prompt_mode",
        "reasoning_effort",
        "safe_prompt",
        "guardrails",
        "prompt_cache_key",
    }
)
MISTRAL_MESSAGE_FIELDS = {
    "system": frozenset({"role", "content"}),
    "user": frozenset({"role", "content"}),
    "assistant": frozenset({"role", "content", "tool_calls", "prefix"}),
    "tool": frozenset({"role", "content", "tool_call_id", "name"}),
}
MISTRAL_CALL_FIELDS = frozenset({"id", "type", "function", "index"})
# The fields of the content chunks the relay sends, per chunk type (Mistral's OpenAPI schema:
# TextChunk, ThinkChunk, ImageURLChunk); a thinking chunk holds text chunks.
MISTRAL_CHUNK_FIELDS = {
    "text": frozenset({"type", "text"}),
    "thinking": frozenset({"type", "thinking", "closed"}),
    "image_url": frozenset({"type", "image_url"}),
}
_NINE = re.compile(r"[a-zA-Z0-9]{9}")


def _extra_forbidden(loc: list[Any], value: Any) -> Rejection:
    detail = [
        {
            "type": "extra_forbidden",
            "loc": loc,
            "msg": "Extra inputs are not permitted",
            "input": value,
        }
    ]
    return mistral_error(422, {"detail": detail}, "invalid_request_error", None)


def mistral_schema(request: dict[str, Any], memory: Memory) -> Rejection | None:
    for name, value in request.items():
        if name not in MISTRAL_FIELDS:
            return _extra_forbidden(["body", name], value)
    for index, message in enumerate(request.get("messages") or ()):
        role = message.get("role")
        allowed = MISTRAL_MESSAGE_FIELDS.get(role, frozenset())
        for name, value in message.items():
            if name not in allowed:  # charmbracelet/crush#1590: reasoning_content
                return _extra_forbidden(["body", "messages", index, role, name], value)
        for call in message.get("tool_calls") or ():
            for name, value in call.items():
                if name not in MISTRAL_CALL_FIELDS:
                    return _extra_forbidden(
                        ["body", "messages", index, role, "tool_calls", name], value
                    )
        for n, chunk in enumerate(_parts(message)):
            where = ["body", "messages", index, role, "content", n, chunk.get("type")]
            parts = [(chunk, where)]
            if chunk.get("type") == "thinking":  # its text chunks, one level down
                inner = enumerate(chunk.get("thinking") or ())
                parts += [(c, [*where, "thinking", i, c.get("type")]) for i, c in inner]
            for part, loc in parts:
                allowed = MISTRAL_CHUNK_FIELDS.get(part.get("type"), frozenset(part))
                for name, value in part.items():
                    if name not in allowed:
                        return _extra_forbidden([*loc, name], value)
    return None


def mistral_order(request: dict[str, Any], memory: Memory) -> Rejection | None:
    """datapizza-labs/datapizza-ai#98 (code 3230), swarmauri/swarmauri-sdk#162."""
    previous = None
    for message in request.get("messages") or ():
        role = message.get("role")
        if (previous, role) in (("tool", "user"), ("assistant", "system")):
            return mistral_error(
                400,
                f"Unexpected role '{role}' after role '{previous}'",
                "invalid_request_message_order",
                "3230",
            )
        previous = role
    return None


def mistral_call_ids(request: dict[str, Any], memory: Memory) -> Rejection | None:
    """openclaw/openclaw#57672 (code 3280), langchain-ai/langchain#24668."""
    for message in request.get("messages") or ():
        ids = [c.get("id") for c in message.get("tool_calls") or ()]
        if message.get("role") == "tool":
            ids.append(message.get("tool_call_id"))
        for call_id in ids:
            if not isinstance(call_id, str) or not _NINE.fullmatch(call_id):
                return mistral_error(
                    400, MISTRAL_BAD_CALL_ID.format(id=call_id), "invalid_function_call", "3280"
                )
    return None


# ----------------------------------------------------------------------------- Gemini

# What the compat layer maps onto a GenerateContent request; anything else is "Invalid JSON
# payload received. Unknown name" (Alishahryar1/free-claude-code#542).
GEMINI_FIELDS = frozenset(
    {
        "model",
        "messages",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "presence_penalty",
        "reasoning_effort",
        "response_format",
        "seed",
        "stop",
        "stream",
        "stream_options",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "extra_body",
        "modalities",
        "audio",
        "web_search_options",
        "prediction",
        "user",
    }
)
GEMINI_MESSAGE_FIELDS = frozenset({"role", "content", "name", "tool_calls", "tool_call_id"})


def gemini_schema(request: dict[str, Any], memory: Memory) -> Rejection | None:
    for name in request:
        if name not in GEMINI_FIELDS:
            return gemini_error(
                f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'
            )
    for index, message in enumerate(request.get("messages") or ()):
        for name in message:
            if name not in GEMINI_MESSAGE_FIELDS:
                return gemini_error(
                    f'Invalid JSON payload received. Unknown name "{name}" at '
                    f"'messages[{index}]': Cannot find field."
                )
    return None


def gemini_signatures(request: dict[str, Any], memory: Memory) -> Rejection | None:
    """A call Gemini signed must come back with its signature (AstrBotDevs/AstrBot#9217)."""
    for position, message in enumerate(request.get("messages") or (), start=1):
        for call in message.get("tool_calls") or ():
            signed = memory.signatures.get(call.get("id"))
            got = ((call.get("extra_content") or {}).get("google") or {}).get("thought_signature")
            if signed is not None and got != signed:
                name = (call.get("function") or {}).get("name", "")
                return gemini_error(GEMINI_MISSING_SIGNATURE.format(name=name, position=position))
    return None


# ----------------------------------------------------------------------------- Ollama


def ollama_effort(request: dict[str, Any], memory: Memory) -> Rejection | None:
    """ollama/ollama openai/openai.go, FromChatRequest."""
    effort = (request.get("reasoning") or {}).get("effort") or request.get("reasoning_effort")
    if effort and effort not in ("high", "medium", "low", "none"):
        return openai_error(
            400,
            f'invalid reasoning value: \'{effort}\' (must be "high", "medium", "low", or "none")',
            code=None,
        )
    return None


def ollama_images(request: dict[str, Any], memory: Memory) -> Rejection | None:
    """Only base64 data URLs of jpeg/png/webp are read (ollama/ollama openai/openai.go)."""
    for message in request.get("messages") or ():
        for part in _parts(message):
            if isinstance(part, dict) and part.get("type") == "image_url":
                url = (part.get("image_url") or {}).get("url", "")
                if not re.match(r"data:(image/(jpeg|jpg|png|webp))?;base64,", url):
                    return openai_error(400, "invalid image input", code=None)
    return None


# ----------------------------------------------------------------------------- expectations


def reasoning_back(field_name: str) -> Expectation:
    """Reasoning the server produced for a call comes back verbatim, under ``field_name``."""

    def expect(request: dict[str, Any], memory: Memory) -> Iterable[str]:
        for index, message in _assistant_calls(request):
            produced = memory.reasoning.get(message["tool_calls"][0].get("id"))
            if produced is not None and message.get(field_name) != produced:
                yield (
                    f"messages[{index}]: the reasoning this server produced did not come back "
                    f"as {field_name!r} (got {message.get(field_name)!r})"
                )

    return expect


def thinking_back(request: dict[str, Any], memory: Memory) -> Iterable[str]:
    """Mistral: the thinking this server streamed comes back as it came, a ``thinking`` chunk in
    the assistant's content; its own multi-turn example warns that dropping the ThinkChunks
    degrades the model (mistralai/client-python examples/mistral/chat/reasoning_multi_turn.py)."""
    for index, message in _assistant_calls(request):
        produced = memory.reasoning.get(message["tool_calls"][0].get("id"))
        got = "".join(
            part.get("text", "")
            for chunk in _parts(message)
            if chunk.get("type") == "thinking"
            for part in chunk.get("thinking") or ()
            if part.get("type") == "text"
        )
        if produced is not None and got != produced:
            yield (
                f"messages[{index}]: the thinking this server produced did not come back as a "
                f"thinking chunk (got {got!r})"
            )


def openrouter_encrypted(request: dict[str, Any], memory: Memory) -> Rejection | None:
    """OpenRouter: a ``reasoning.encrypted`` block this server (this key) did not issue, from
    another key or another provider, cannot be verified (docs/providers.md §1.2)."""
    blocks = [
        block
        for message in request.get("messages") or ()
        for block in message.get("reasoning_details") or ()
        if isinstance(block, dict) and block.get("type") == "reasoning.encrypted"
    ]
    for block in blocks:
        if block.get("data") not in memory.encrypted:
            text = UNVERIFIED_ENCRYPTED.format(id=block.get("id"))
            return openai_error(400, text, code="invalid_encrypted_content")
    return None


def details_back(request: dict[str, Any], memory: Memory) -> Iterable[str]:
    """OpenRouter: reasoning_details go back unmodified across turns."""
    for index, message in _assistant_calls(request):
        produced = memory.details.get(message["tool_calls"][0].get("id"))
        if produced and message.get("reasoning_details") != produced:
            yield f"messages[{index}]: reasoning_details did not come back unmodified"


def own_call_ids(request: dict[str, Any], memory: Memory) -> Iterable[str]:
    """Kimi's template renders its own ``functions.<name>:<n>`` ids back to the model."""
    for index, message in _assistant_calls(request):
        for call in message["tool_calls"]:
            if memory.call_ids and call.get("id") not in memory.call_ids:
                yield f"messages[{index}]: tool call id {call.get('id')!r} is not one Kimi gave"


def preserve_thinking(request: dict[str, Any], memory: Memory) -> Iterable[str]:
    """DashScope drops replayed reasoning_content unless preserve_thinking is set."""
    replayed = any(m.get("reasoning_content") for _, m in _assistant_calls(request))
    if replayed and request.get("preserve_thinking") is not True:
        yield "reasoning_content replayed without preserve_thinking: DashScope drops it"


def glm_preserved_thinking(request: dict[str, Any], memory: Memory) -> Iterable[str]:
    thinking = request.get("thinking") or {}
    if thinking.get("type") == "enabled" and thinking.get("clear_thinking") is not False:
        yield "thinking enabled without clear_thinking: false: earlier reasoning is cleared"
    if request.get("stream") and request.get("tools") and request.get("tool_stream") is not True:
        yield "streamed request with tools but no tool_stream: arguments arrive in one chunk"


def effort_on_ladder(ladder: frozenset[str], field_path: str = "reasoning_effort") -> Expectation:
    def expect(request: dict[str, Any], memory: Memory) -> Iterable[str]:
        value: Any = request
        for key in field_path.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None and value not in ladder:
            yield f"{field_path} {value!r} is not on this provider's ladder {sorted(ladder)}"

    return expect


def usage_asked(request: dict[str, Any], memory: Memory) -> Iterable[str]:
    """OpenAI-style servers send usage only when asked; without it Codex's context tracking
    breaks (docs/providers.md §1.4)."""
    if request.get("stream") and not (request.get("stream_options") or {}).get("include_usage"):
        yield "streamed request without stream_options.include_usage: no usage comes back"


def no_images(request: dict[str, Any], memory: Memory) -> Iterable[str]:
    index = _has_image(request)
    if index is not None:
        yield f"messages[{index}] holds an image, but this family's models are text-only"


def effort_with_thinking(request: dict[str, Any], memory: Memory) -> Iterable[str]:
    """DeepSeek and Kimi: an effort level means nothing with thinking switched off (DeepSeek's
    Anthropic endpoint refuses the pair: deepseek-ai/DeepSeek-V3#1397)."""
    if request.get("reasoning_effort") and (request.get("thinking") or {}).get("type") != "enabled":
        yield "reasoning_effort sent without thinking: {type: enabled}"


# ----------------------------------------------------------------------------- dialects


def _openai_usage(prompt: int, completion: int, cached: int, reasoning: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def _deepseek_usage(prompt: int, completion: int, cached: int, reasoning: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_cache_hit_tokens": cached,
        "prompt_cache_miss_tokens": prompt - cached,
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def _kimi_usage(prompt: int, completion: int, cached: int, reasoning: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cached_tokens": cached,
    }


def _plain_usage(prompt: int, completion: int, cached: int, reasoning: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _openai_id(name: str, n: int, tag: str) -> str:
    return f"call_{tag}_{n}"


def _kimi_id(name: str, n: int, tag: str) -> str:
    return f"functions.{name}:{n}"  # Kimi K2's own form (docs/providers.md §1.1)


def _mistral_id(name: str, n: int, tag: str) -> str:
    return f"{tag[:4]:x<4}{n:05d}"  # nine letters and digits


def _gemini_id(name: str, n: int, tag: str) -> str:
    return f"function-call-{tag}-{n}"


ReasoningShape = Literal[
    "reasoning_content", "reasoning", "reasoning_details", "thinking_chunks", "think_tags", "none"
]


@dataclass(frozen=True)
class Dialect:
    """How a family's streamed answer looks.

    reasoning:          where thinking text goes (``reasoning_details`` = OpenRouter's
                        ``reasoning`` plus typed ``reasoning_details``; ``thinking_chunks`` =
                        Mistral's typed content list; ``think_tags`` = inside the text;
                        ``none`` = not shown, Gemini's signature carries it).
    tool_index:         tool-call deltas carry ``index`` (Gemini's do not).
    signatures:         each call carries ``extra_content.google.thought_signature``.
    tool_finish_reason: the finish reason after tool calls (Gemini says ``stop``).
    usage_at:           ``asked`` = a last chunk with ``choices: []`` only when
                        ``stream_options.include_usage`` was sent; ``choice`` = inside
                        ``choices[0]`` of the finish chunk (Kimi); ``finish`` = top-level on the
                        finish chunk, always (GLM, Mistral).
    """

    reasoning: ReasoningShape = "reasoning_content"
    tool_index: bool = True
    signatures: bool = False
    tool_finish_reason: str = "tool_calls"
    usage_at: Literal["asked", "choice", "finish"] = "asked"
    usage: UsageShape = _openai_usage
    x_groq: bool = False
    call_id: Callable[[str, int, str], str] = _openai_id


@dataclass(frozen=True)
class Strictness:
    rejections: tuple[Check, ...] = (message_order, empty_tools)
    expectations: tuple[Expectation, ...] = ()
    dialect: Dialect = Dialect()


_BASE = (message_order, empty_tools)

STRICT: dict[str, Strictness] = {
    "generic": Strictness(expectations=(reasoning_back("reasoning_content"), usage_asked)),
    "deepseek": Strictness(
        rejections=(*_BASE, deepseek_reasoning, deepseek_text_parts),
        expectations=(
            reasoning_back("reasoning_content"),
            usage_asked,
            effort_with_thinking,
        ),
        dialect=Dialect(usage=_deepseek_usage),
    ),
    "kimi": Strictness(
        rejections=(*_BASE, kimi_reasoning),
        expectations=(
            reasoning_back("reasoning_content"),
            own_call_ids,
            effort_on_ladder(frozenset({"low", "medium", "high"})),
            effort_with_thinking,
        ),
        dialect=Dialect(usage_at="choice", usage=_kimi_usage, call_id=_kimi_id),
    ),
    "glm": Strictness(
        expectations=(reasoning_back("reasoning_content"), glm_preserved_thinking, no_images),
        dialect=Dialect(usage_at="finish"),
    ),
    "qwen": Strictness(
        expectations=(
            reasoning_back("reasoning_content"),
            preserve_thinking,
            usage_asked,
            no_images,
        ),
    ),
    "openrouter": Strictness(
        rejections=(*_BASE, openrouter_encrypted),
        expectations=(
            reasoning_back("reasoning"),
            details_back,
            usage_asked,
            effort_on_ladder(
                frozenset({"none", "minimal", "low", "medium", "high", "xhigh"}), "reasoning.effort"
            ),
        ),
        dialect=Dialect(reasoning="reasoning_details"),
    ),
    "groq": Strictness(
        rejections=(*_BASE, groq_properties),
        expectations=(
            usage_asked,
            no_images,
            effort_on_ladder(frozenset({"low", "medium", "high"})),
        ),
        dialect=Dialect(reasoning="reasoning", usage=_plain_usage, x_groq=True),
    ),
    "mistral": Strictness(
        rejections=(*_BASE, mistral_schema, mistral_order, mistral_call_ids),
        expectations=(effort_on_ladder(frozenset({"none", "high"})), thinking_back),
        dialect=Dialect(
            reasoning="thinking_chunks", usage_at="finish", usage=_plain_usage, call_id=_mistral_id
        ),
    ),
    "gemini": Strictness(
        rejections=(*_BASE, gemini_schema, gemini_signatures),
        expectations=(
            usage_asked,
            effort_on_ladder(frozenset({"none", "minimal", "low", "medium", "high"})),
        ),
        dialect=Dialect(
            reasoning="none",
            tool_index=False,
            signatures=True,
            tool_finish_reason="stop",
            call_id=_gemini_id,
        ),
    ),
    "ollama": Strictness(
        rejections=(*_BASE, ollama_effort, ollama_images),
        expectations=(reasoning_back("reasoning"), usage_asked),
        dialect=Dialect(reasoning="reasoning", usage=_plain_usage),
    ),
    "vllm": Strictness(
        expectations=(reasoning_back("reasoning"), usage_asked),
        dialect=Dialect(reasoning="reasoning"),
    ),
    "llamacpp": Strictness(
        expectations=(reasoning_back("reasoning_content"), usage_asked),
        dialect=Dialect(usage=_plain_usage),
    ),
    "lmstudio": Strictness(
        expectations=(usage_asked,),
        dialect=Dialect(reasoning="think_tags", usage=_plain_usage),
    ),
}


def check(
    family: str, request: dict[str, Any], memory: Memory
) -> tuple[Rejection | None, list[str]]:
    """The rejection the family's server answers this request with (or None), and the
    violations of what it expects but does not refuse."""
    strict = STRICT[family]
    rejection = next((r for rule in strict.rejections if (r := rule(request, memory))), None)
    violations = [v for expect in strict.expectations for v in expect(request, memory)]
    return rejection, violations


def call_id(family: str, name: str, n: int, tag: str = "x") -> str:
    """A tool-call id in the form the family's server invents (``tag``: letters and digits)."""
    return STRICT[family].dialect.call_id(name, n, tag)
