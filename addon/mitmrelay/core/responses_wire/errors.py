"""A Responses provider's error -> what Codex acts on, by the Chat wire's one rule table.

The classification itself is core/upstream_errors.py's (context overflow, quota, rate limits
with their delay, auth, server errors: docs/codex-contract.md §8). This module only reads the
places Responses providers put their error: an HTTP error body, a ``response.failed`` event's
``response.error``, a streamed ``{"type": "error", ...}`` event. OpenRouter's Responses codes
are lossy ("context_length_exceeded and invalid_request both surface as invalid_prompt") and
carry the precise kind in a top-level ``error_type`` (openrouter.ai/docs/api_reference/
responses/error-handling): that kind is the code classified when present.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from mitmrelay.core.upstream_errors import MappedError, map_error_payload, map_upstream_error


def _precise(error: Mapping[str, Any], holder: Mapping[str, Any]) -> dict[str, Any]:
    precise = holder.get("error_type")
    if isinstance(precise, str) and precise:
        return {**error, "code": precise}
    return dict(error)


def map_http_error(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    upstream: str,
    now: Callable[[], float] | None = None,
) -> MappedError:
    """A non-2xx answer from a Responses provider, before anything was streamed. ``now`` (unix
    time) reads a ``Retry-After`` given as an HTTP date."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, Mapping) and isinstance(parsed.get("error"), Mapping):
        error = _precise(parsed["error"], parsed)
        body = json.dumps({**parsed, "error": error}).encode()
    return map_upstream_error(status, headers, body, upstream=upstream, now=now)


def map_failed_response(response: Mapping[str, Any], *, upstream: str) -> MappedError:
    """The ``response`` of a ``response.failed`` event."""
    error = response.get("error")
    error = error if isinstance(error, Mapping) else {"message": "the response failed"}
    return map_error_payload(_precise(error, response), upstream=upstream)


def map_error_event(event: Mapping[str, Any], *, upstream: str) -> MappedError:
    """A streamed ``error`` event: ``{"type": "error", "code", "message"}`` (OpenAI's shape) or
    the same fields under ``error``."""
    inner = event.get("error")
    if isinstance(inner, Mapping):
        fields = dict(inner)
    else:  # the event itself: its "type" is "error", which says nothing about the kind
        fields = {k: event[k] for k in ("code", "message") if k in event}
    return map_error_payload(_precise(fields, event), upstream=upstream)
