"""Answers the relay gives itself, without the upstream: Responses-shaped errors and the model
list. Pure: (status, headers, body) triples the addon hands to mitmproxy as they are.

Error bodies have OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, which
Codex quotes to the user and the openai SDK raises as typed exceptions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .errors import RelayError

Answer = tuple[int, dict[str, str], bytes]
_JSON = {"content-type": "application/json"}


def json_answer(obj: Any, status: int = 200) -> Answer:
    """A JSON body (the non-streaming Response object)."""
    return status, dict(_JSON), json.dumps(obj).encode()


def error_answer(
    status: int,
    message: str,
    code: str,
    kind: str = "invalid_request_error",
    param: str | None = None,
) -> Answer:
    return json_answer(
        {"error": {"message": message, "type": kind, "param": param, "code": code}}, status
    )


def client_error(error: RelayError) -> Answer:
    """A request the relay cannot translate (``ClientRequestError``): names the problem."""
    return error_answer(error.status, error.message, error.code, param=error.param)


def no_upstream() -> Answer:
    return error_answer(
        503,
        "mitmrelay has no upstream configured (relay_routes or relay_upstream)",
        "server_error",
        "server_error",
    )


def not_configured(why: str) -> Answer:
    """The relay is loaded but its configuration failed: nothing is relayed, and nothing goes
    on unrelayed either (the request carries the client's key)."""
    return error_answer(
        503,
        f"mitmrelay is not configured: {why}",
        "relay_not_configured",
        "server_error",
    )


def state_unavailable() -> Answer:
    """``previous_response_id`` could not be read because the state store failed (not an
    unknown id): a 5xx, which Codex retries (docs/codex-contract.md §8), rather than a turn
    sent on without its history."""
    return error_answer(
        503,
        "mitmrelay could not read the conversation previous_response_id names: its state "
        "store is not answering; retry",
        "server_error",
        "server_error",
    )


def websocket_refused() -> Answer:
    # 426 makes Codex fall back to HTTP at once, with no retries (docs/codex-contract.md §2.2).
    return error_answer(
        426,
        "mitmrelay serves the Responses API over HTTP only; use HTTPS POST",
        "websocket_not_supported",
    )


def not_served(method: str, path: str) -> Answer:
    return error_answer(404, f"mitmrelay does not serve {method} {path}", "not_found")


def internal_error(stage: str) -> Answer:
    """An unexpected failure inside the relay. The exception text stays in the relay's log:
    it could quote request data."""
    return error_answer(
        500, f"mitmrelay failed to {stage} (see the relay's log)", "server_error", "server_error"
    )


def model_list(upstream_body: bytes, routed: Sequence[str] = ()) -> Answer:
    """``GET …/models``: the names the relay routes, in order, then the upstream's own model
    ids (OpenAI-style ``data`` list, or Ollama's ``models``; ``b""`` when no upstream was
    asked), as one body both clients read: the OpenAI SDK reads ``object``/``data``; Codex
    reads ``models`` and treats an empty catalog as non-fatal (docs/codex-contract.md §10).
    Codex's own catalog entries come from ``mitmrelay codex-config --catalog`` instead: an
    entry served here would need Codex's full prompt to be usable."""
    try:
        upstream: Any = json.loads(upstream_body or b"{}")
    except ValueError:
        upstream = {}
    entries = []
    if isinstance(upstream, dict):
        entries = upstream.get("data") or upstream.get("models") or []
    ids: list[str] = [m for i, m in enumerate(routed) if m and m not in routed[:i]]
    for entry in entries if isinstance(entries, list) else []:
        model_id = entry.get("id") or entry.get("name") if isinstance(entry, dict) else None
        if isinstance(model_id, str) and model_id not in ids:
            ids.append(model_id)
    data = [{"id": i, "object": "model", "created": 0, "owned_by": "mitmrelay"} for i in ids]
    body = {"object": "list", "data": data, "models": []}
    return 200, dict(_JSON), json.dumps(body).encode()
