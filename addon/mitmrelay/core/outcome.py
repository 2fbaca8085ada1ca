"""What one relayed exchange came to: the record the log line, mitmweb's comment, the usage
ledger and the metrics are all made from.

The relay builds one ``ExchangeOutcome`` when an exchange ends (answered, failed, or refused
before any upstream call) and hands it to every consumer; none of them looks at flows or the
link. Plain frozen data, JSON-friendly values, no clock: times are measured by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Price:
    """A model's price per million tokens, in the provider's currency (routes file:
    ``price_input``, ``price_cached_input``, ``price_output``). ``cached_input`` None means
    cached input tokens cost the same as other input tokens."""

    input: float
    output: float
    cached_input: float | None = None


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """One upstream attempt of an exchange (the first call, a retry, or a fallback).

    ``failure`` is None for the attempt that served; else the code of why it was given up
    (``connect``, ``tls``, ``timeout``, ``rate_limit_exceeded``, ``server_error``, ...).
    ``status`` is the upstream's HTTP status, None when none came (transport failure).
    """

    provider: str
    upstream_model: str
    status: int | None
    failure: str | None = None


@dataclass(frozen=True, slots=True)
class ExchangeOutcome:
    """One relayed exchange, as it ended.

    status:         ``completed`` | ``incomplete`` | ``failed`` for an answer the client got as
                    a Response; ``http <code>`` when it got an HTTP error instead.
    failure:        the error code the client was given (None when it succeeded).
    detail:         the failure's message, for people (log line, mitmweb); never a key, never
                    prompt content, not meant to be parsed.
    provider:       the provider that served (the last attempt), or that failed last.
    usage:          the Responses ``usage`` object the client got, as the upstream reported
                    it (None when the upstream reported none).
    first_event_s:  seconds from the request to the first byte of the answer sent to the
                    client (None when nothing was sent); ``total_s`` to its end.
    price:          the serving model's price, when the routes file gives one.
    """

    response_id: str
    client_model: str
    provider: str
    upstream_model: str
    status: str
    stream: bool
    started_at: float  # unix seconds
    total_s: float
    first_event_s: float | None = None
    failure: str | None = None
    detail: str | None = None
    usage: Mapping[str, Any] | None = None
    attempts: tuple[AttemptOutcome, ...] = ()
    price: Price | None = None

    @property
    def fallbacks(self) -> int:
        """How many times another provider was tried after a failed attempt."""
        return sum(
            1
            for before, after in zip(self.attempts, self.attempts[1:], strict=False)
            if after.provider != before.provider or after.upstream_model != before.upstream_model
        )
