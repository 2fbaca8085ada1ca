"""The non-streaming path: a provider's Response object -> the client's Response object.

A whole Response is the stream it stands for: response.created, each output item added and
done, and the event of its status. Running it through ``ResponsesNormaliser`` keeps one set of
rules for both paths (names restored, freeform calls, reasoning sealed, usage completed,
failures mapped, calls that do not parse refused), as core/completion.py does on the Chat wire.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from mitmrelay.core.context import TranslationContext
from mitmrelay.core.reasoning import ReasoningCarrier
from mitmrelay.core.stream import ReasoningMode

from .rules import GENERIC, ResponsesRules
from .stream import ResponsesNormaliser

_TERMINAL = frozenset({"completed", "incomplete", "failed"})


def normalise_response(
    body: bytes,
    ctx: TranslationContext,
    rules: ResponsesRules = GENERIC,
    *,
    response_id: str,
    created_at: int,
    new_id: Callable[[str], str],
    origin: str = "",
    reasoning_mode: ReasoningMode = "summary",
    carrier: ReasoningCarrier | None = None,
    upstream: str = "upstream",
) -> dict[str, Any]:
    """The client's Response object (status completed, incomplete or failed); never raises."""
    normaliser = ResponsesNormaliser(
        ctx,
        rules,
        response_id=response_id,
        created_at=created_at,
        new_id=new_id,
        origin=origin,
        reasoning_mode=reasoning_mode,
        carrier=carrier,
        upstream=upstream,
    )
    try:
        stream = response_as_sse(body)
    except ValueError:
        normaliser.fail(
            "upstream_invalid_json", f"{upstream} answered with a body that is not a Response"
        )
        return normaliser.response
    normaliser.feed(stream)
    normaliser.finish()
    return normaliser.response


def response_as_sse(body: bytes) -> bytes:
    """The SSE stream a whole Response object is equivalent to. Raises ValueError when the
    body is not a JSON object."""
    response = json.loads(body)
    if not isinstance(response, dict):
        raise ValueError("a Response is a JSON object")
    status = response.get("status", "completed")
    if status not in _TERMINAL:
        # A background response (queued, in_progress) is not an answer: the relay never asks
        # for one, so it fails rather than reporting output that is not there.
        error = {"code": "server_error", "message": f"the response came back {status!r}"}
        response, status = {**response, "error": error}, "failed"
    events: list[dict[str, Any]] = [{"type": "response.created", "response": response}]
    for index, item in enumerate(response.get("output") or ()):
        events.append({"type": "response.output_item.added", "output_index": index, "item": item})
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    events.append({"type": f"response.{status}", "response": response})
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
