"""The usage ledger's arithmetic: one record per exchange, its cost, and the per-day counters
the report reads.

Theory of operation (sans-IO: the writer in ``state/ledger.py`` stores what this module builds).

1. A record is made from an ``ExchangeOutcome`` alone (core/outcome.py), after every exchange
   the relay saw: answered, failed, or refused before any upstream call. Nothing else of the
   relay is read, so any relay that builds outcomes feeds the ledger.
2. Tokens are the Responses ``usage`` object the client got, which core/usage.py read from the
   upstream's own report. Its conventions are the OpenAI ones: ``input_tokens`` *includes*
   ``input_tokens_details.cached_tokens`` and ``output_tokens`` *includes*
   ``output_tokens_details.reasoning_tokens`` (docs/codex-contract.md §7.4 shows the object;
   reasoning is billed as output, docs/providers.md §1.6;
   OpenAI's ``CompletionUsage``: reasoning tokens "are still counted in the total completion
   tokens for purposes of billing"; DeepSeek's ``prompt_cache_hit_tokens`` +
   ``prompt_cache_miss_tokens`` = ``prompt_tokens``, docs/providers.md §1.4). A count that is
   missing, negative or not an integer is absent; cached never exceeds input.
3. Cost (per million tokens, in the provider's currency, from the routes file's prices):
   ``(input - cached) × input price + cached × cached price (the input price when none) +
   output × output price``. Reasoning is not added again: it is part of the output. One
   exception: an upstream that reports ``total_tokens`` above ``input + output`` left some
   output out of ``completion_tokens`` (Gemini-style thought tokens, which Gemini bills as
   output and counts in its total: docs/providers.md §1.6),
   so the billed output is ``total - input``. No usage or no price: no cost (None), never 0.
4. Days are UTC days of the exchange's start (``started_at``), as providers' own usage pages
   count them; the report's ``--since`` is in the same days.
5. The report never reads records: each record also adds to counters per
   (day, provider, client model, upstream model) and, for each upstream attempt that was given
   up or failed, to a count per (day, provider, upstream model, cause). A year of records is
   then at most a few thousand counter rows, whatever the traffic.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .outcome import ExchangeOutcome, Price

PER_MILLION = 1_000_000
# The one status of an answer that did its job. ``incomplete`` (cut by the output limit) is a
# failure to Codex: "Incomplete response returned", not retried, exit 1
# (docs/codex-contract.md §7.2); ``failed`` and ``http <code>`` are failures to every client.
ANSWERED = frozenset({"completed"})

# The counters each record adds to its group (rule 5): integer counts, then sums of floats.
COUNTS = (
    "requests",
    "failed",  # the client got no usable answer (incomplete, response.failed, an HTTP error)
    "fallbacks",  # switches to another provider or model (ExchangeOutcome.fallbacks)
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "reasoning_tokens",
    "no_usage",  # exchanges whose upstream reported no usage
    "priced",  # exchanges with a cost
    "unpriced",  # exchanges with usage but no price for their model
    "first_events",  # exchanges that sent the client a first byte (first_event_s known)
)
SUMS = ("cost", "first_event_s", "total_s")
COUNTERS = COUNTS + SUMS


@dataclass(frozen=True, slots=True)
class Tokens:
    """Token counts as the upstream reported them (rule 2)."""

    input: int
    cached: int
    output: int
    reasoning: int
    total: int


@dataclass(frozen=True, slots=True)
class AttemptFailure:
    """An upstream attempt given up, or the serving one that failed: whose, and why."""

    provider: str
    upstream_model: str
    cause: str


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One exchange in the ledger. ``tokens`` None: the upstream reported no usage.
    ``cost`` None: no usage or no price. ``provider`` "" for a request the relay refused
    before calling any upstream."""

    at: float  # unix seconds, the exchange's start
    response_id: str
    client_model: str
    provider: str
    upstream_model: str
    status: str
    failure: str | None
    stream: bool
    tokens: Tokens | None
    cost: float | None
    first_event_s: float | None
    total_s: float
    fallbacks: int
    attempt_failures: tuple[AttemptFailure, ...]

    @property
    def day(self) -> str:
        return utc_day(self.at)

    @property
    def failed(self) -> bool:
        return self.status not in ANSWERED

    @property
    def group(self) -> tuple[str, str, str, str]:
        """The counter row this record adds to (rule 5)."""
        return (self.day, self.provider, self.client_model, self.upstream_model)


def utc_day(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).date().isoformat()


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def tokens_of(usage: Mapping[str, Any] | None) -> Tokens | None:
    """The counts of a Responses ``usage`` object, or None when it lacks input or output."""
    if not isinstance(usage, Mapping):
        return None
    inp, out = _count(usage.get("input_tokens")), _count(usage.get("output_tokens"))
    if inp is None or out is None:
        return None
    in_details = usage.get("input_tokens_details")
    out_details = usage.get("output_tokens_details")
    cached = _count(in_details.get("cached_tokens")) if isinstance(in_details, Mapping) else None
    reasoning = (
        _count(out_details.get("reasoning_tokens")) if isinstance(out_details, Mapping) else None
    )
    total = _count(usage.get("total_tokens"))
    return Tokens(
        input=inp,
        cached=min(cached or 0, inp),
        output=out,
        reasoning=reasoning or 0,
        total=total if total is not None else inp + out,
    )


def billed_output(tokens: Tokens) -> int:
    """Output tokens to bill (rule 3): the reported output, or what the total says it hid."""
    return max(tokens.output, tokens.total - tokens.input)


def cost(tokens: Tokens | None, price: Price | None) -> float | None:
    """What the tokens cost at ``price`` (rule 3); None without usage or without a price."""
    if tokens is None or price is None:
        return None
    cached_price = price.input if price.cached_input is None else price.cached_input
    return (
        (tokens.input - tokens.cached) * price.input
        + tokens.cached * cached_price
        + billed_output(tokens) * price.output
    ) / PER_MILLION


def record_of(outcome: ExchangeOutcome) -> UsageRecord:
    """The ledger's record of one exchange (rules 1-3)."""
    tokens = tokens_of(outcome.usage)
    return UsageRecord(
        at=outcome.started_at,
        response_id=outcome.response_id,
        client_model=outcome.client_model,
        provider=outcome.provider,
        upstream_model=outcome.upstream_model,
        status=outcome.status,
        failure=outcome.failure,
        stream=outcome.stream,
        tokens=tokens,
        cost=cost(tokens, outcome.price),
        first_event_s=outcome.first_event_s,
        total_s=outcome.total_s,
        fallbacks=outcome.fallbacks,
        attempt_failures=tuple(
            AttemptFailure(a.provider, a.upstream_model, a.failure)
            for a in outcome.attempts
            if a.failure is not None
        ),
    )


def counters(record: UsageRecord) -> dict[str, int | float]:
    """What one record adds to its group's counters (every name in ``COUNTERS``)."""
    tokens = record.tokens
    return {
        "requests": 1,
        "failed": int(record.failed),
        "fallbacks": record.fallbacks,
        "input_tokens": tokens.input if tokens else 0,
        "cached_tokens": tokens.cached if tokens else 0,
        "output_tokens": tokens.output if tokens else 0,
        "reasoning_tokens": tokens.reasoning if tokens else 0,
        "no_usage": int(tokens is None),
        "priced": int(record.cost is not None),
        "unpriced": int(tokens is not None and record.cost is None),
        "first_events": int(record.first_event_s is not None),
        "cost": record.cost or 0.0,
        "first_event_s": record.first_event_s or 0.0,
        "total_s": record.total_s,
    }


# A record as stored: column -> plain value (the SQL table's columns, Redis's JSON document).
RECORD_COLUMNS = (
    "at",
    "day",
    "response_id",
    "client_model",
    "provider",
    "upstream_model",
    "status",
    "failure",
    "stream",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost",
    "first_event_s",
    "total_s",
    "fallbacks",
    "attempt_failures",
)


def record_row(record: UsageRecord) -> dict[str, Any]:
    """The record as stored (``RECORD_COLUMNS``); token counts None when no usage came,
    ``attempt_failures`` as ``[[provider, upstream model, cause], ...]``."""
    tokens = record.tokens
    return {
        "at": record.at,
        "day": record.day,
        "response_id": record.response_id,
        "client_model": record.client_model,
        "provider": record.provider,
        "upstream_model": record.upstream_model,
        "status": record.status,
        "failure": record.failure,
        "stream": record.stream,
        "input_tokens": tokens.input if tokens else None,
        "cached_tokens": tokens.cached if tokens else None,
        "output_tokens": tokens.output if tokens else None,
        "reasoning_tokens": tokens.reasoning if tokens else None,
        "total_tokens": tokens.total if tokens else None,
        "cost": record.cost,
        "first_event_s": record.first_event_s,
        "total_s": record.total_s,
        "fallbacks": record.fallbacks,
        "attempt_failures": [
            [f.provider, f.upstream_model, f.cause] for f in record.attempt_failures
        ],
    }


def batch_counters(
    records: Iterable[UsageRecord],
) -> tuple[
    dict[tuple[str, str, str, str], dict[str, int | float]], dict[tuple[str, str, str, str], int]
]:
    """A batch of records summed per group and per failure key, so a store makes one update
    per row touched instead of one per record."""
    groups: dict[tuple[str, str, str, str], dict[str, int | float]] = {}
    failures: dict[tuple[str, str, str, str], int] = {}
    for record in records:
        added = counters(record)
        into = groups.get(record.group)
        if into is None:
            groups[record.group] = added
        else:
            for name in COUNTERS:
                into[name] += added[name]
        for key in failure_keys(record):
            failures[key] = failures.get(key, 0) + 1
    return groups, failures


def failure_keys(record: UsageRecord) -> list[tuple[str, str, str, str]]:
    """The (day, provider, upstream model, cause) counts this record adds one to."""
    return [(record.day, f.provider, f.upstream_model, f.cause) for f in record.attempt_failures]


# ---------------------------------------------------------------------- what people read


def format_amount(amount: float) -> str:
    """A cost for people: cents-level precision from 1 up, three significant digits below."""
    if amount == 0:
        return "0"
    if amount >= 1:
        return f"{amount:,.2f}"
    return f"{amount:.{max(2, 2 - math.floor(math.log10(amount)))}f}"


def format_cost(outcome: ExchangeOutcome) -> str | None:
    """The cost part of mitmweb's comment (``"cost 0.00123"``, in the provider's currency),
    or None when the exchange has no cost (no price for its model, or no usage)."""
    amount = cost(tokens_of(outcome.usage), outcome.price)
    return None if amount is None else f"cost {format_amount(amount)}"
