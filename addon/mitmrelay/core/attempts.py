"""Retry and fall back: what the relay does when an upstream attempt fails before the answer
started.

Theory of operation
-------------------
A request has a plan: the targets of its route, then its fallbacks (core/routes.py). The link
makes the first attempt; when one fails *before any output item reached the client*
(transport failure, an HTTP error status, or a stream that failed before its first item), it
hands the failure to ``AttemptPolicy.next`` and gets a ``Decision``: which target to call
next, with which kind of request, after how long; or None, and the client gets that failure.
Once an output item went out nothing is retried: the client already holds part of the
answer, and a second one would be sent twice (``response.failed`` as without a plan).

Rules, tried in order on every failure (``RULES``):

1. **Heal**: a 400 in DeepSeek's or Kimi's words for "the reasoning you produced is missing"
   is retried once on the same target with placeholders on the tool-call messages that lack
   it (core/reasoning_recovery.py; docs/providers.md §1.2). Nothing else changes.
2. **Wait**: a rate limit whose ``Retry-After`` (or "try again in Xs") is at most
   ``retry_wait_s`` (``relay_retry_wait``) is retried once on the same target after that
   delay: a short wait costs less than a switch to another model. A quota error is not a
   rate limit (waiting does not refill a balance).
3. **Fall back**: a connect or TLS failure, a timeout or cut before the first item, a 5xx, a
   429 (longer wait, or already retried), a 402 or a quota error moves on to the plan's next
   target, each translated for its own provider and profile by the caller. Anything else (a
   400 the client caused, a 401 for a wrong key, a context overflow) is the client's answer:
   another provider would not make it right, and a wrong key must be seen, not hidden.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from .reasoning_recovery import is_missing_reasoning_error
from .upstream_errors import MappedError


class Step(enum.Enum):
    HEAL = "heal"  # the same target, the request with reasoning placeholders (rule 1)
    WAIT = "wait"  # the same target and request, after the upstream's delay (rule 2)
    FALL_BACK = "fall_back"  # the plan's next target (rule 3)


@dataclass(frozen=True, slots=True)
class Failure:
    """An attempt that failed before any output item reached the client.

    status: the upstream's HTTP status (200 for a stream that broke before its first item),
            None when no answer came (connect, TLS, timeout).
    error:  the failure as core/upstream_errors.py maps it (code, retry delay).
    body:   the upstream's error body (bounded), b"" when none.
    """

    status: int | None
    error: MappedError
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Decision:
    step: Step
    target: int  # index into the plan
    delay_s: float = 0.0


# Error codes (core/upstream_errors.py) another provider may well not have.
FALLBACK_CODES = frozenset({"server_error", "rate_limit_exceeded", "insufficient_quota"})
FALLBACK_STATUSES = frozenset({402, 429})


def is_rate_limit(failure: Failure) -> bool:
    return failure.error.code == "rate_limit_exceeded"


def falls_back(failure: Failure) -> bool:
    """Rule 3's failures: the provider could not serve, not the request was wrong."""
    status = failure.status
    return (
        status is None
        or status >= 500
        or status in FALLBACK_STATUSES
        or failure.error.code in FALLBACK_CODES
    )


class AttemptPolicy:
    """The rules for one exchange's plan of ``targets`` targets. ``next`` is called once per
    failed attempt, in order; the policy remembers what it already did per target (rules 1 and
    2 apply once each). Pure: no clock, the delay is the caller's to wait."""

    def __init__(self, targets: int, *, retry_wait_s: float) -> None:
        if targets < 1:
            raise ValueError("a plan has at least one target")
        self.targets = targets
        self.retry_wait_s = retry_wait_s
        self.current = 0  # the target of the attempt that failed last
        self.decisions: list[Decision] = []

    def next(self, failure: Failure) -> Decision | None:
        """What to do about ``failure`` of the current target's attempt (None: give up)."""
        for rule in RULES:
            decision = rule(self, failure)
            if decision is not None:
                self.decisions.append(decision)
                self.current = decision.target
                return decision
        return None

    def _done(self, step: Step) -> bool:
        return any(d.step is step and d.target == self.current for d in self.decisions)


def _heal(policy: AttemptPolicy, failure: Failure) -> Decision | None:
    if failure.status is None or policy._done(Step.HEAL):
        return None
    if not is_missing_reasoning_error(failure.status, failure.body):
        return None
    return Decision(Step.HEAL, policy.current)


def _wait(policy: AttemptPolicy, failure: Failure) -> Decision | None:
    delay = failure.error.retry_after_s
    if not is_rate_limit(failure) or delay is None or policy._done(Step.WAIT):
        return None
    if delay > policy.retry_wait_s:
        return None
    return Decision(Step.WAIT, policy.current, delay)


def _fall_back(policy: AttemptPolicy, failure: Failure) -> Decision | None:
    nxt = policy.current + 1
    if nxt >= policy.targets or not falls_back(failure):
        return None
    return Decision(Step.FALL_BACK, nxt)


RULES: tuple[Callable[[AttemptPolicy, Failure], Decision | None], ...] = (
    _heal,
    _wait,
    _fall_back,
)
