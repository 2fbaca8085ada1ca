"""``GET /healthz``: is the relay configured, and did each provider answer recently?

Theory of operation (sans-IO: the metrics server asks, the clock is the caller's).

1. What a provider's health rests on is the relay's own traffic: each ``ExchangeOutcome``'s
   attempts (core/outcome.py), taken when the exchange ends. No probe is sent: a probe would
   spend the user's quota and could not say more than the last real call.
2. A provider *answered* an attempt when it sent an HTTP status below 500. A transport failure
   (no status: refused, TLS, silence) or a 5xx is not an answer. A 4xx is an answer (the
   provider is there; the request or the key is what failed, and the log line says which).
3. Within ``window_s`` of now, a provider's state is its latest attempt's: reachable or not.
   Older than the window, or never tried, it is unknown (``null``): an idle relay is not an
   unhealthy one.
4. The answer is 200 when the relay is configured and no provider is known unreachable;
   otherwise 503. A load balancer or a monitor then sees a provider outage without reading the
   JSON, which says which provider and why.
5. Memory is bounded: at most ``MAX_PROVIDERS`` names are tracked (the least recently seen
   forgotten first); with a routes file the names are the configured providers anyway.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .outcome import ExchangeOutcome

MAX_PROVIDERS = 256
HEALTH_WINDOW_S = 300.0
SERVER_ERROR = 500


@dataclass(frozen=True, slots=True)
class ProviderState:
    at: float  # when the exchange of its latest attempt ended (the caller's clock)
    status: int | None
    failure: str | None

    @property
    def answered(self) -> bool:
        """Rule 2."""
        return self.status is not None and self.status < SERVER_ERROR


class Health:
    """The latest attempt per provider, and the /healthz answer made from them."""

    def __init__(self, window_s: float = HEALTH_WINDOW_S) -> None:
        self.window_s = window_s
        self._latest: OrderedDict[str, ProviderState] = OrderedDict()

    def saw(self, outcome: ExchangeOutcome, now: float) -> None:
        """Take the attempts of an exchange that ended at ``now`` (rule 1); a provider tried
        twice in one exchange keeps its later attempt."""
        for attempt in outcome.attempts:
            if not attempt.provider:
                continue
            self._latest.pop(attempt.provider, None)
            self._latest[attempt.provider] = ProviderState(now, attempt.status, attempt.failure)
        while len(self._latest) > MAX_PROVIDERS:
            self._latest.popitem(last=False)

    def answer(
        self, now: float, *, configured: bool, providers: Sequence[str] = ()
    ) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON document) of ``/healthz`` (rules 3 and 4). ``providers``: the
        configured ones, listed even when never tried."""
        report: dict[str, dict[str, Any]] = {}
        for name in [*providers, *(p for p in self._latest if p not in providers)]:
            state = self._latest.get(name)
            recent = state is not None and now - state.at <= self.window_s
            report[name] = {
                "reachable": state.answered if recent and state else None,
                "last_attempt_s_ago": round(now - state.at, 3) if state else None,
                "last_status": state.status if state else None,
                "last_failure": state.failure if state else None,
            }
        down = sorted(name for name, r in report.items() if r["reachable"] is False)
        healthy = configured and not down
        return (200 if healthy else 503), {
            "status": "ok" if healthy else ("unconfigured" if not configured else "failing"),
            "configured": configured,
            "unreachable": down,
            "window_s": self.window_s,
            "providers": report,
        }
