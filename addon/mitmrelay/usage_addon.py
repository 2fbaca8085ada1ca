"""The mitmproxy addon for usage, cost and health: options, lifecycle, and the two signals the
relay sends it.

The relay (addon.py) announces each exchange with ``mitmrelay_exchange_started`` and ends it
with ``mitmrelay_exchange_ended(outcome)``; this addon implements both hooks and needs nothing
else of the relay but ``status()``: whether it is configured and which providers it has (for
``/healthz``). From each outcome it makes one ledger record (core/ledger.py), queues it for the
writer thread (state/ledger.py: never on the event loop, never delaying the answer) and counts
it in the metrics (metrics.py).

Options: ``relay_usage_days`` (records kept that many days; 0 keeps no ledger) and
``relay_metrics_port`` (the loopback port of ``/metrics`` and ``/healthz``; unset: off). The
ledger lives where ``relay_state`` keeps the relay's state, so this addon is registered after
the relay, which declares that option.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions

from .config import whole_number
from .core.ledger import record_of
from .core.outcome import ExchangeOutcome
from .metrics import MetricsServer, RelayMetrics, StatusSource
from .state.ledger import LedgerWriter, open_ledger, where

logger = logging.getLogger("mitmrelay.usage")

DEFAULT_USAGE_DAYS = 90
DAY_S = 86400.0
LEDGER_OPTIONS = frozenset({"relay_usage_days", "relay_state", "confdir"})


class Usage:
    """Usage ledger, Prometheus metrics and /healthz for the relay."""

    def __init__(self, status: StatusSource = lambda: (True, ())) -> None:
        self.status = status
        self.metrics = RelayMetrics()
        self.writer: LedgerWriter | None = None
        self.server: MetricsServer | None = None
        self._ledger_at = "nowhere"
        self._running = False
        self._refusal: str | None = None  # a configuration error seen before running
        self._days = DEFAULT_USAGE_DAYS

    def load(self, loader: Any) -> None:
        loader.add_option(
            "relay_usage_days",
            str,  # parsed here: a malformed int would unload the script silently
            # (config.number; docs/mitmproxy-notes.md §7.3)
            str(DEFAULT_USAGE_DAYS),
            "Days the usage ledger keeps each exchange's record (tokens, cost, status) where "
            "relay_state keeps the relay's state; read it with `mitmrelay usage`. "
            "0: no ledger (relay_state=memory keeps none either).",
        )
        loader.add_option(
            "relay_metrics_port",
            str,
            "",
            "Loopback port serving Prometheus /metrics and /healthz. Empty: off; "
            "0: any free port (the start line names it).",
        )

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        try:
            if "relay_usage_days" in updated:
                self._days = _days(opts.relay_usage_days)
            if "relay_metrics_port" in updated:
                self._serve(_port(opts.relay_metrics_port))
        except ValueError as e:
            self._refuse(str(e))
            return
        if LEDGER_OPTIONS & updated and all(name in opts for name in LEDGER_OPTIONS):
            self._open_ledger(opts.relay_state, Path(opts.confdir).expanduser())

    def refusal(self) -> str | None:
        """The configuration error this addon refused to start with, if any (the relay
        relays nothing meanwhile: addon.py ``Relay.requires``)."""
        return self._refusal

    def _refuse(self, message: str) -> None:
        """A configuration error: before the relay runs, one ERROR line in ``running`` (which
        makes mitmdump exit: docs/mitmproxy-notes.md §7.1) instead of a traceback; once running,
        the change is refused and the previous setting stays."""
        if self._running:
            raise exceptions.OptionsError(message)
        self._refusal = message

    def _serve(self, port: int | None) -> None:
        """Raises ``ValueError`` for a port out of range or one that cannot be bound."""
        if port is not None and not 0 <= port <= 65535:
            raise ValueError(f"relay_metrics_port must be 0-65535, got {port}")
        if self.server is not None:
            self.server.close()
            self.server = None
        if port is None:
            return
        try:
            self.server = MetricsServer(self.metrics, self.status, port)
        except OSError as e:
            raise ValueError(
                f"relay_metrics_port: cannot listen on 127.0.0.1:{port}: {e.strerror or e}"
            ) from None

    def _open_ledger(self, url: str, confdir: Path) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        days = self._days
        if days == 0 or url == "memory":
            self._ledger_at = "off"
            return
        self.writer = LedgerWriter(
            lambda: _ledger(url, confdir),
            retention_s=days * DAY_S,
            on_error=lambda kind: self.metrics.store_error("ledger", kind),
        )
        self._ledger_at = f"{where(url, confdir)}, {days} days"

    def running(self) -> None:
        self._running = True
        if self._refusal is not None:
            logger.error("mitmrelay: %s", self._refusal)
            return
        configured, _ = self.status()
        if not configured:
            return  # the relay said why it cannot start; its one line is the one that matters
        metrics = f"{self.server.url}/metrics and /healthz" if self.server else "off"
        logger.info("mitmrelay: usage ledger %s; metrics %s", self._ledger_at, metrics)

    def done(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.server is not None:
            self.server.close()
            self.server = None

    # ------------------------------------------------------------------ the relay's signals

    def mitmrelay_exchange_started(self, response_id: str, client_model: str, stream: bool) -> None:
        self.metrics.started(response_id, stream)

    def mitmrelay_exchange_ended(self, outcome: ExchangeOutcome) -> None:
        record = record_of(outcome)
        if self.writer is not None:
            self.writer.submit(record)
        self.metrics.ended(outcome, record)


def _days(text: str) -> int:
    """``relay_usage_days``; raises ``ValueError`` (``ConfigError``, one line)."""
    return whole_number(
        {"relay_usage_days": text}, "relay_usage_days", "0 (no ledger) or more", zero_ok=True
    )


def _port(text: str) -> int | None:
    """``relay_metrics_port``: None when empty; raises ``ValueError`` (one line)."""
    text = text.strip()
    if not text:
        return None
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ValueError(f"relay_metrics_port must be 0-65535, got {text}")
    return port


def _ledger(url: str, confdir: Path) -> Any:
    store = open_ledger(url, confdir=confdir)
    assert store is not None  # memory is handled before a writer is made
    return store
