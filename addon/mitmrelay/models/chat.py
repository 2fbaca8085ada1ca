"""Chat Completions wire models: the request we send, the chunks and completions we get.

Used at the boundaries and in tests (the translator's output is validated against
``ChatCompletionRequest``), never per streamed chunk: the stream translator reads plain dicts
from ``json.loads`` to stay within the hot-path budget (DEVELOPERS.md). Upstreams add fields
freely (``reasoning_content``, ``reasoning_details``, ``extra_content``), so extras are allowed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class FunctionCall(_Model):
    name: str | None = None
    arguments: str | None = None


class ToolCall(_Model):
    id: str | None = None
    type: Literal["function"] | None = "function"
    function: FunctionCall
    index: int | None = None  # chunks only; Gemini leaves it out (docs/providers.md §1.3)


class ImageURL(_Model):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(_Model):
    type: Literal["text"]
    text: str


class ImagePart(_Model):
    type: Literal["image_url"]
    image_url: ImageURL


class Message(_Model):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart | ImagePart] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None


class FunctionDefinition(_Model):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Model):
    type: Literal["function"]
    function: FunctionDefinition


class ChatCompletionRequest(_Model):
    model: str
    messages: list[Message] = Field(min_length=1)
    tools: list[Tool] | None = Field(default=None, min_length=1)
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    reasoning_effort: str | None = None
    response_format: dict[str, Any] | None = None


class Delta(_Model):
    role: str | None = None
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCall] | None = None


class Usage(_Model):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int | None = None


class ChunkChoice(_Model):
    index: int = 0
    delta: Delta = Field(default_factory=Delta)
    finish_reason: str | None = None
    usage: Usage | None = None  # Kimi reports usage inside the choice


class ChatCompletionChunk(_Model):
    id: str | None = None
    object: str | None = None
    model: str | None = None
    choices: list[ChunkChoice] = Field(default_factory=list)
    usage: Usage | None = None


class CompletionChoice(_Model):
    index: int = 0
    message: Message
    finish_reason: str | None = None


class ChatCompletion(_Model):
    id: str | None = None
    object: str | None = None
    model: str | None = None
    choices: list[CompletionChoice]
    usage: Usage | None = None
