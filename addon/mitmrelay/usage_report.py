"""``mitmrelay usage``: what the relay's exchanges cost, per day, model and provider.

    mitmrelay usage [--since 7d|2026-11-01] [--by model|provider|day|client[,…]] [--json]
                    [--confdir ~/.mitmproxy] [--state sqlite|sqlite:///path|redis://…]

It reads the usage ledger where the relay keeps it (``relay_state``, in mitmproxy's confdir by
default), read-only, from the per-day counters (core/ledger.py rule 5), so a report over a
million exchanges reads a few thousand rows at most. Errors are one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .core.ledger_report import Report, merge_failures, parse_by, parse_since, render, to_json
from .state.ledger import open_ledger

DEFAULT_SINCE = "30d"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mitmrelay usage",
        description="Tokens, failures and cost of the relay's exchanges, from its usage ledger.",
    )
    p.add_argument(
        "--since",
        default=DEFAULT_SINCE,
        help="first UTC day: a date (2026-11-01) or a number of days including today (7d); "
        f"default {DEFAULT_SINCE}",
    )
    p.add_argument(
        "--by",
        default="model",
        help="group by model (with its provider), provider, day or client (the model name "
        "the client sent); several comma-separated, e.g. day,model. Default: model",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--confdir", default="~/.mitmproxy", help="mitmproxy's confdir, as the relay's")
    p.add_argument(
        "--state",
        default="sqlite",
        help="the relay's relay_state: sqlite (in the confdir), sqlite:///path or "
        "redis://host:port/db. Default: sqlite",
    )
    return p


def build_report(
    state: str, confdir: Path, since: dt.date, until: dt.date, columns: tuple[str, ...]
) -> Report:
    """Raises ``ValueError`` (unusable ``state``), ``FileNotFoundError`` (no database) or the
    store's own errors (``sqlite3.Error``, ``redis.RedisError``)."""
    store = open_ledger(state, confdir=confdir, read_only=True)
    if store is None:
        raise ValueError("relay_state=memory keeps no usage ledger: nothing to report")
    try:
        groups = store.groups(since, until, columns)
        failures = merge_failures(store.failures(since, until))
    finally:
        store.close()
    return Report(since, until, columns, tuple(groups), failures)


def main(argv: list[str], *, clock: Callable[[], float] = time.time) -> int:
    args = _parser().parse_args(argv)
    today = dt.datetime.fromtimestamp(clock(), dt.UTC).date()
    try:
        columns = parse_by(args.by)
        since = parse_since(args.since, today)
        report = build_report(args.state, Path(args.confdir).expanduser(), since, today, columns)
    except FileNotFoundError as e:
        print(f"mitmrelay usage: {e} (has the relay run with this --confdir?)", file=sys.stderr)
        return 2
    except Exception as e:  # one line, never a traceback: a store error, a bad argument
        print(f"mitmrelay usage: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(to_json(report), indent=2))
    else:
        print(render(report))
    return 0
