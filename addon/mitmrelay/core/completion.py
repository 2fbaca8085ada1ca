"""The non-streaming path: a Chat completion JSON -> a Responses ``response`` object.

A completion is a stream of one chunk: its ``message`` becomes that chunk's ``delta``. Running
it through ``StreamTranslator`` keeps one set of rules for both paths (items, freeform and
namespace restore, reasoning sources, usage shapes, incomplete on ``length``, fail-closed on
malformed calls) instead of two that drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .context import TranslationContext
from .profiles import GENERIC, Profile
from .reasoning import ReasoningCarrier
from .stream import ReasoningMode, StreamTranslator


def translate_completion(
    body: bytes,
    ctx: TranslationContext,
    *,
    response_id: str,
    created_at: int,
    new_id: Callable[[str], str],
    reasoning_mode: ReasoningMode = "summary",
    carrier: ReasoningCarrier | None = None,
    profile: Profile = GENERIC,
    upstream: str = "upstream",
) -> dict[str, Any]:
    """The Response object (status completed, incomplete or failed); never raises."""
    translator = StreamTranslator(
        ctx,
        response_id=response_id,
        created_at=created_at,
        new_id=new_id,
        reasoning_mode=reasoning_mode,
        carrier=carrier,
        profile=profile,
        upstream=upstream,
    )
    try:
        chunk = completion_chunk(body)
    except ValueError:
        translator.fail(
            "upstream_invalid_json", f"{upstream} answered with a body that is not JSON"
        )
        return translator.response
    translator.feed_chunk(chunk)
    translator.finish()
    return translator.response


def completion_chunk(body: bytes) -> dict[str, Any]:
    """A whole Chat completion as the one stream chunk it is equivalent to, for
    ``StreamTranslator.feed_chunk``: the body is parsed once.

    Raises ValueError when the body is not a JSON object.
    """
    completion = json.loads(body)
    if not isinstance(completion, dict):
        raise ValueError("a chat completion is a JSON object")
    chunk = dict(completion)
    chunk["choices"] = [
        {**choice, "delta": _as_delta(choice.get("message") or {})}
        for choice in completion.get("choices") or ()
        if isinstance(choice, dict)
    ][:1]  # n=1: the relay never asks for more than one choice
    return chunk


def completion_as_sse(body: bytes) -> bytes:
    """A whole Chat completion as the one SSE chunk it is equivalent to (for a host that
    feeds bytes; ``completion_chunk`` + ``feed_chunk`` skips the round trip through JSON).

    Raises ValueError when the body is not a JSON object.
    """
    return b"data: " + json.dumps(completion_chunk(body)).encode() + b"\n\n"


def _as_delta(message: dict[str, Any]) -> dict[str, Any]:
    delta = dict(message)
    calls = delta.get("tool_calls")
    if isinstance(calls, list):
        # A whole message has no stream indices: number the calls in order.
        delta["tool_calls"] = [
            {**call, "index": i} for i, call in enumerate(calls) if isinstance(call, dict)
        ]
    return delta
