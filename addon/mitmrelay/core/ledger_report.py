"""``mitmrelay usage``: the report's rules, apart from where the counters are read.

Theory of operation (sans-IO: ``usage_report.py`` reads a store and hands the rows here).

1. The report is made of the ledger's per-day counters (core/ledger.py rule 5), never of its
   records: a store returns, for the days asked, one row per group with every counter of
   ``core.ledger.COUNTERS`` summed, and the upstream failures per (provider, model, cause).
2. ``--since`` is a UTC day (core/ledger.py rule 4): an ISO date, or ``Nd`` for the last N
   days including today; the report runs to today.
3. ``--by`` names the groups: ``day``, ``provider``, ``model`` (an upstream model means
   something only with its provider, so it brings the provider along) and ``client`` (the
   model name the client sent). Several may be combined (``day,model``).
4. Cost is the sum over exchanges that have one (``priced``); a group with none shows no cost
   rather than 0, and one with some exchanges unpriced is flagged, since its sum is short.
   Costs are in each provider's currency, added as numbers.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .ledger import COUNTERS, SUMS, format_amount

# Rule 3: a grouping name -> the key columns it brings, in the order columns are shown.
GROUPINGS: Mapping[str, tuple[str, ...]] = {
    "day": ("day",),
    "provider": ("provider",),
    "model": ("provider", "upstream_model"),
    "client": ("client_model",),
}
KEY_ORDER = ("day", "provider", "upstream_model", "client_model")
# How key columns are named in the JSON report and the table.
KEY_NAMES = {
    "day": "day",
    "provider": "provider",
    "upstream_model": "model",
    "client_model": "client_model",
}
KEY_HEADERS = {
    "day": "day (UTC)",
    "provider": "provider",
    "upstream_model": "model",
    "client_model": "client model",
}
NONE_SHOWN = "-"  # a key the exchange did not have (a request refused before any upstream)
_SINCE_DAYS = re.compile(r"(\d+)d")


def parse_by(text: str) -> tuple[str, ...]:
    """The key columns of ``--by`` (rule 3). Raises ``ValueError`` naming the choices."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in GROUPINGS]
    if not names or unknown:
        raise ValueError(
            f"--by takes {', '.join(GROUPINGS)} (or several, comma-separated), got {text!r}"
        )
    wanted = {column for name in names for column in GROUPINGS[name]}
    return tuple(column for column in KEY_ORDER if column in wanted)


def parse_since(text: str, today: dt.date) -> dt.date:
    """The first day of ``--since`` (rule 2). Raises ``ValueError`` saying what is accepted."""
    days = _SINCE_DAYS.fullmatch(text.strip())
    if days:
        n = int(days.group(1))
        if n < 1:
            raise ValueError(f"--since {text!r}: count at least one day (1d is today)")
        return today - dt.timedelta(days=n - 1)
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since takes a date (2026-11-01) or a number of days (7d), got {text!r}"
        ) from None


@dataclass(frozen=True, slots=True)
class Group:
    """One row of the report: its key (values of the report's key columns) and counters."""

    key: tuple[str, ...]
    counts: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class FailureCount:
    provider: str
    upstream_model: str
    cause: str
    count: int


@dataclass(frozen=True, slots=True)
class Report:
    since: dt.date
    until: dt.date
    columns: tuple[str, ...]
    groups: tuple[Group, ...]
    failures: tuple[FailureCount, ...]

    def total(self) -> dict[str, float]:
        return _sum(group.counts for group in self.groups)


def _sum(rows: Iterable[Mapping[str, float]]) -> dict[str, float]:
    total = dict.fromkeys(COUNTERS, 0)
    for row in rows:
        for name in COUNTERS:
            total[name] += row.get(name, 0)
    return total


def aggregate(
    rows: Iterable[tuple[Mapping[str, str], Mapping[str, float]]], columns: Sequence[str]
) -> list[Group]:
    """Per-day counter rows (key column -> value, counters) summed into the report's groups,
    in report order. The SQL store does the same in SQL; this serves the others."""
    sums: dict[tuple[str, ...], list[Mapping[str, float]]] = {}
    for key, counts in rows:
        sums.setdefault(tuple(key[c] for c in columns), []).append(counts)
    return ordered([Group(key, _sum(parts)) for key, parts in sums.items()], columns)


def ordered(groups: Iterable[Group], columns: Sequence[str]) -> list[Group]:
    """Report order: by day when days are shown, then the costliest, then the busiest."""
    day = columns.index("day") if "day" in columns else None

    def rank(group: Group) -> tuple[object, ...]:
        first = group.key[day] if day is not None else ""
        return (first, -group.counts["cost"], -group.counts["requests"], group.key)

    return sorted(groups, key=rank)


def merge_failures(rows: Iterable[tuple[str, str, str, int]]) -> tuple[FailureCount, ...]:
    """(provider, upstream model, cause, count) rows of several days, most frequent first."""
    counts: dict[tuple[str, str, str], int] = {}
    for provider, model, cause, count in rows:
        counts[(provider, model, cause)] = counts.get((provider, model, cause), 0) + count
    return tuple(
        FailureCount(*key, count)
        for key, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    )


# ---------------------------------------------------------------------- output


def _derived(counts: Mapping[str, float]) -> dict[str, object]:
    """A group's figures as the JSON report gives them."""
    out: dict[str, object] = {name: int(counts[name]) for name in COUNTERS if name not in SUMS}
    out["cost"] = round(counts["cost"], 9) if counts["priced"] else None
    out["avg_first_event_s"] = (
        round(counts["first_event_s"] / counts["first_events"], 3)
        if counts["first_events"]
        else None
    )
    out["avg_total_s"] = (
        round(counts["total_s"] / counts["requests"], 3) if counts["requests"] else None
    )
    return out


def to_json(report: Report) -> dict[str, object]:
    """The ``--json`` document."""
    names = [KEY_NAMES[c] for c in report.columns]
    return {
        "since": report.since.isoformat(),
        "until": report.until.isoformat(),
        "days": "UTC",
        "by": names,
        "rows": [
            {**dict(zip(names, group.key, strict=True)), **_derived(group.counts)}
            for group in report.groups
        ],
        "total": _derived(report.total()),
        "upstream_failures": [
            {"provider": f.provider, "model": f.upstream_model, "cause": f.cause, "count": f.count}
            for f in report.failures
        ],
    }


def _cost_text(counts: Mapping[str, float]) -> str:
    if not counts["priced"]:
        return NONE_SHOWN
    return format_amount(counts["cost"]) + ("*" if counts["unpriced"] else "")


def _avg_text(total: float, n: float) -> str:
    return f"{total / n:.2f}" if n else NONE_SHOWN


# (header, figure of a group's counters) for the table's number columns.
NUMBER_COLUMNS = (
    ("requests", lambda c: f"{int(c['requests']):,}"),
    ("failed", lambda c: f"{int(c['failed']):,}"),
    ("input", lambda c: f"{int(c['input_tokens']):,}"),
    ("cached", lambda c: f"{int(c['cached_tokens']):,}"),
    ("output", lambda c: f"{int(c['output_tokens']):,}"),
    ("reasoning", lambda c: f"{int(c['reasoning_tokens']):,}"),
    ("cost", _cost_text),
    ("first s", lambda c: _avg_text(c["first_event_s"], c["first_events"])),
    ("total s", lambda c: _avg_text(c["total_s"], c["requests"])),
)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], keys: int) -> list[str]:
    """Key columns left-aligned, figures right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(w) if i < keys else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(header), *(line(r) for r in rows)]


def render(report: Report) -> str:
    """The report as a table for people."""
    span = f"{report.since.isoformat()} .. {report.until.isoformat()} (UTC days)"
    if not report.groups:
        return f"mitmrelay usage {span}: no exchanges recorded"
    header = [KEY_HEADERS[c] for c in report.columns] + [h for h, _ in NUMBER_COLUMNS]
    rows = [
        [value or NONE_SHOWN for value in group.key] + [f(group.counts) for _, f in NUMBER_COLUMNS]
        for group in report.groups
    ]
    total = report.total()
    rows.append(
        ["total", *[""] * (len(report.columns) - 1)] + [f(total) for _, f in NUMBER_COLUMNS]
    )
    lines = [f"mitmrelay usage {span}", "", *_table(header, rows, len(report.columns))]
    notes = ["input includes cached, output includes reasoning; costs in each provider's currency"]
    if total["unpriced"]:
        notes.append("* some exchanges of this row had no price in the routes file")
    if total["no_usage"]:
        notes.append(f"{int(total['no_usage']):,} exchange(s) without usage reported upstream")
    lines += ["", *notes]
    if report.failures:
        lines += ["", "upstream failures by cause (every attempt given up or failed)", ""]
        lines += _table(
            ["provider", "model", "cause", "count"],
            [
                [f.provider or NONE_SHOWN, f.upstream_model or NONE_SHOWN, f.cause, f"{f.count:,}"]
                for f in report.failures
            ],
            3,
        )
    return "\n".join(lines)
