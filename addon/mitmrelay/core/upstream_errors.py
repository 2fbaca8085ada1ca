"""Upstream failures -> errors the Codex CLI acts on.

What Codex 0.169 does with each form (docs/codex-contract.md §8, fixtures/error-behaviour.json):

- ``context_length_exceeded`` (HTTP 400 or ``response.failed``): stops the turn and tells the
  user the context window is full. Not retried, and no compaction follows: Codex compacts only
  ahead of the limit, from the usage it was told (docs/codex-contract.md §9.1).
- HTTP 429 **with** ``Retry-After``: retried after that delay. Without it: not retried.
- ``rate_limit_exceeded`` whose message says "Please try again in Xs.": retried after X s.
- ``insufficient_quota``: stops with "Quota exceeded. Check your plan and billing details."
- HTTP 5xx: retried (request retries, then turn retries).
- other 4xx: the raw body is shown; 401 is retried 6 times and quoted. A 400 is never
  retried; ``model_not_found`` shows its message alone (docs/codex-contract.md §8.1).
- an unknown code inside ``response.failed``: retried like ``server_error``
  (docs/codex-contract.md §8.1), so a refusal retrying cannot cure goes out as an HTTP 4xx
  before the stream starts.

So every mapping keeps an HTTP status for errors known before streaming starts, and a code and
message for ``response.failed`` when the stream has begun. Peers sent ``code: "429"`` with the
raw body and dropped Retry-After, so Codex neither waited nor recognised an overflow
(docs/providers.md §3, 4).

Classification is a table of (predicate, code) rules tried in order, not a chain of branches.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

# Context-window wordings, each from a provider's real answers (docs/providers.md §2; vLLM's exact
# body is in providers.md under vLLM).
_CONTEXT_PATTERNS = re.compile(
    "|".join(
        (
            r"context[_ ]length[_ ]exceeded",  # OpenAI code, also in messages
            r"max(?:imum)? context length",  # OpenAI, DeepSeek, vLLM, Kimi, Ollama
            r"context window",  # Anthropic-compatible, Gemini, generic
            r"exceeds? the (?:available )?context size",  # llama.cpp
            r"exceed_context_size",  # llama.cpp error type
            r"prompt (?:is )?too long",  # Anthropic-compatible endpoints, Ollama
            r"input (?:is )?too long",  # Mistral, Qwen/DashScope ("Range of input length")
            r"range of input length",  # DashScope
            r"too many tokens",  # Ollama, Groq
            r"token limit",  # Gemini ("exceeds the maximum number of tokens"), others
            r"maximum number of tokens",
            r"reduce the length of the messages",  # OpenAI
        )
    ),
    re.IGNORECASE,
)
_QUOTA_PATTERNS = re.compile(
    r"insufficient[_ ](?:quota|balance)|quota|billing|credit|balance|payment required",
    re.IGNORECASE,
)
_TRY_AGAIN = re.compile(r"try again in\s+([0-9]+(?:\.[0-9]+)?)\s*(ms|s|seconds?)?", re.IGNORECASE)
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|h|m|s)")


@dataclass(frozen=True, slots=True)
class MappedError:
    """One upstream failure, in the forms Codex reads.

    status:        HTTP status to answer with when nothing was streamed yet.
    code / type:   the Responses error code and type.
    message:       human-readable; for rate limits it ends "Please try again in Xs." which
                   Codex parses for its retry delay.
    retry_after_s: the delay to advertise in ``Retry-After``, when known.
    """

    status: int
    code: str
    type: str
    message: str
    retry_after_s: float | None = None
    request_id: str | None = None

    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.retry_after_s is not None:
            # Codex honours Retry-After in whole seconds; never advertise 0 for a real wait.
            seconds = max(1, int(self.retry_after_s + 0.999))
            headers["retry-after"] = str(seconds)
        if self.request_id:
            headers["x-request-id"] = self.request_id
        return headers

    def body(self) -> bytes:
        return json.dumps(
            {
                "error": {
                    "message": self.message,
                    "type": self.type,
                    "param": None,
                    "code": self.code,
                }
            }
        ).encode()

    def failed_error(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def _retry_phrase(seconds: float) -> str:
    return f"Please try again in {seconds:g}s."


def parse_duration(text: str) -> float | None:
    """``1s``, ``6m0s``, ``20ms``, ``1h2m3.5s`` (OpenAI's x-ratelimit-reset-* forms) or seconds."""
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    total, pos = 0.0, 0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            return None
        value, unit = float(m.group(1)), m.group(2)
        total += value * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]
        pos = m.end()
    return total if pos == len(text) and pos else None


def retry_delay(
    headers: Mapping[str, str], message: str, *, now: Callable[[], float] | None = None
) -> float | None:
    """Seconds to wait, from Retry-After (seconds or HTTP date), retry-after-ms,
    x-ratelimit-reset-requests/-tokens, or "try again in Xs" in the message."""
    lower = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in lower:
        try:
            return max(0.0, float(lower["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    if "retry-after" in lower:
        value = lower["retry-after"].strip()
        seconds = parse_duration(value)
        if seconds is not None:
            return seconds
        if now is not None:
            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - now())
            except (TypeError, ValueError):
                pass
    resets = [
        parse_duration(lower[h])
        for h in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
        if h in lower
    ]
    resets = [r for r in resets if r is not None]
    if resets:
        return max(resets)
    m = _TRY_AGAIN.search(message)
    if m:
        value = float(m.group(1))
        return value / 1000 if (m.group(2) or "").lower() == "ms" else value
    return None


def _extract(body: bytes | str | Mapping[str, Any] | None) -> tuple[str, str | None, str | None]:
    """(message, code, type) from any error body shape providers send."""
    obj: Any = body
    if isinstance(body, bytes):
        text = body.decode("utf-8", errors="replace")
        try:
            obj = json.loads(text)
        except ValueError:
            obj = text
    elif isinstance(body, str):
        try:
            obj = json.loads(body)
        except ValueError:
            obj = body
    if isinstance(obj, list) and obj:
        obj = obj[0]  # Gemini wraps its error object in a list
    if isinstance(obj, Mapping):
        inner = obj.get("error", obj)
        if isinstance(inner, str):
            return inner, None, None
        if isinstance(inner, Mapping):
            message = inner.get("message") or inner.get("detail") or obj.get("detail") or ""
            if not isinstance(message, str):
                message = json.dumps(message)
            code = inner.get("code") if isinstance(inner.get("code"), str) else None
            kind = inner.get("type") if isinstance(inner.get("type"), str) else None
            status_word = inner.get("status")  # Gemini: "RESOURCE_EXHAUSTED"
            if code is None and isinstance(status_word, str):
                code = status_word
            return message, code, kind
    if isinstance(obj, str):
        text = obj.strip()
        if text.lower().startswith(("<!doctype", "<html")):
            return "the upstream answered with an HTML error page", None, None
        return text[:2000], None, None
    return "", None, None


@dataclass(frozen=True, slots=True)
class _Rule:
    """One row: when it applies, and what Codex gets.

    status:   HTTP status sent to Codex; None keeps the upstream's (5xx, 401/403).
    template: the message; ``{upstream}``, ``{detail}`` and ``{status}`` are filled in.
    retry:    read the retry delay (Retry-After and friends) and, for rate limits, end the
              message with "Please try again in Xs." which Codex parses (docs/codex-contract.md §8).
    """

    code: str
    matches: Callable[[int | None, str, str | None, str | None], bool]
    status: int | None
    type: str
    template: str
    retry: bool = False


def _is_context(status: int | None, message: str, code: str | None, kind: str | None) -> bool:
    return (
        status == 413
        or code == "context_length_exceeded"
        or bool(_CONTEXT_PATTERNS.search(message) or (kind and _CONTEXT_PATTERNS.search(kind)))
    )


def _is_quota(status: int | None, message: str, code: str | None, kind: str | None) -> bool:
    if status == 402 or code in ("insufficient_quota", "insufficient_balance"):
        return True
    return status in (403, 429, None) and bool(_QUOTA_PATTERNS.search(message))


def _is_rate_limit(status: int | None, message: str, code: str | None, kind: str | None) -> bool:
    return (
        status == 429
        or code in ("rate_limit_exceeded", "RESOURCE_EXHAUSTED", "429")
        or "rate limit" in message.lower()
    )


def _is_auth(status: int | None, message: str, code: str | None, kind: str | None) -> bool:
    return status in (401, 403) or code in ("invalid_api_key", "401", "403")


def _is_server(status: int | None, message: str, code: str | None, kind: str | None) -> bool:
    return status is None or status >= 500 or ((code or "").isdigit() and int(code or 0) >= 500)


def _always(status: int | None, message: str, code: str | None, kind: str | None) -> bool:
    return True


# Tried in order: a 429 that says "quota" is a quota problem (Codex: insufficient_quota), a 400
# that talks about the context window is an overflow whatever else it says. The last row takes
# every other 4xx, with the upstream's own message (Codex shows it as is).
_RULES: tuple[_Rule, ...] = (
    # HTTP 400 context_length_exceeded: Codex stops the turn and does not compact
    # (docs/codex-contract.md §8).
    _Rule(
        "context_length_exceeded",
        _is_context,
        400,
        "invalid_request_error",
        "{upstream}: the prompt does not fit the model's context window ({detail})",
    ),
    # insufficient_quota: "Quota exceeded. Check your plan and billing details."
    _Rule(
        "insufficient_quota",
        _is_quota,
        429,
        "insufficient_quota",
        "{upstream}: quota or balance exhausted ({detail})",
    ),
    # 429 + Retry-After is retried after that delay; without a delay Codex does not retry.
    _Rule(
        "rate_limit_exceeded",
        _is_rate_limit,
        429,
        "requests",
        "{upstream}: rate limit reached ({detail}).",
        retry=True,
    ),
    _Rule(
        "invalid_api_key",
        _is_auth,
        None,
        "invalid_request_error",
        "{upstream} refused the relay's upstream API key (HTTP {status}: {detail}). This is "
        "the key mitmrelay sends (relay_api_key_env), not your OpenAI key.",
    ),
    # 5xx: retried by Codex's request and turn retries.
    _Rule("server_error", _is_server, None, "server_error", "{upstream}: {detail}", retry=True),
    _Rule("invalid_request_error", _always, None, "invalid_request_error", "{upstream}: {detail}"),
)
_DEFAULT_STATUS = {"invalid_api_key": 401, "server_error": 502, "invalid_request_error": 400}


def _classify(
    status: int | None,
    headers: Mapping[str, str],
    body: bytes | str | Mapping[str, Any] | None,
    upstream: str,
    now: Callable[[], float] | None,
) -> MappedError:
    message, code, kind = _extract(body)
    if code is None and isinstance(body, Mapping):
        raw = body.get("code")
        code = str(raw) if isinstance(raw, int) else code
    rule = next(r for r in _RULES if r.matches(status, message, code, kind))
    keep = status if status and (status >= 500 or rule.code != "server_error") else None
    http_status = rule.status or keep or _DEFAULT_STATUS[rule.code]
    detail = message or (f"HTTP {status}" if status else "no details")
    text = rule.template.format(upstream=upstream, detail=detail, status=http_status)
    delay = retry_delay(headers, message, now=now) if rule.retry else None
    if rule.code == "rate_limit_exceeded" and delay is not None:
        text = f"{text} {_retry_phrase(round(delay, 3))}"
    # An unclassified 4xx keeps the upstream's own code when it has a usable one.
    error_code = (code or rule.code) if rule.code == "invalid_request_error" else rule.code
    return MappedError(
        http_status,
        error_code,
        rule.type,
        text,
        retry_after_s=delay,
        request_id={k.lower(): v for k, v in headers.items()}.get("x-request-id"),
    )


def map_upstream_error(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    upstream: str,
    now: Callable[[], float] | None = None,
) -> MappedError:
    """A non-2xx upstream answer, before anything was streamed to the client."""
    return _classify(status, headers, body, upstream, now)


def map_error_payload(error: Mapping[str, Any], *, upstream: str) -> MappedError:
    """An ``{"error": …}`` chunk in the middle of a stream (OpenRouter: ``{"error":{"code":502,
    "message":"provider died"}}``). Only its code and message reach Codex, in
    ``response.failed``."""
    raw = error.get("code")
    status = raw if isinstance(raw, int) else None
    if status is None and isinstance(raw, str) and raw.isdigit():
        status = int(raw)
    return _classify(status, {}, {"error": dict(error)}, upstream, None)


_TRANSPORT = {
    "connect": ("could not connect to {upstream}: {detail}", 502),
    "tls": ("TLS handshake with {upstream} failed: {detail}", 502),
    "timeout": ("{upstream} sent nothing for too long: {detail}", 504),
    "cut": ("{upstream} closed the connection mid-answer: {detail}", 502),
}


def map_transport_error(kind: str, detail: str, *, upstream: str) -> MappedError:
    """A failure below HTTP. All are ``server_error`` so Codex retries them
    (docs/codex-contract.md §8)."""
    template, status = _TRANSPORT.get(kind, ("{upstream} failed: {detail}", 502))
    return MappedError(
        status, "server_error", "server_error", template.format(upstream=upstream, detail=detail)
    )
