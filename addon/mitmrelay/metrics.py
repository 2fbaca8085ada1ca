"""Prometheus metrics and ``/healthz``, made from ``ExchangeOutcome``s (core/outcome.py).

``RelayMetrics`` holds the relay's metrics in a registry of its own (prometheus-client: the
exposition format is the library's, never written here) and is fed two signals: an exchange
started (for the active-streams gauge) and an exchange ended (everything else).
``MetricsServer`` serves ``/metrics`` (the library's WSGI app: text or OpenMetrics by the
scraper's ``Accept``, gzip when asked) and ``/healthz`` (core/health.py) on a loopback port,
from a thread of its own: a scrape never runs on mitmproxy's event loop.

Metrics (counters end in ``_total`` in the exposition):

- ``mitmrelay_requests_total{provider,model,status,failure}``: exchanges as they ended
  (``status`` as ``ExchangeOutcome.status``; ``failure`` the client's error code or "");
- ``mitmrelay_tokens_total{provider,model,kind}``: ``input`` (cached included),
  ``cached_input``, ``output`` (reasoning included), ``reasoning``, as the upstream reported;
- ``mitmrelay_cost_total{provider,model}``: core/ledger.py's cost, where a price is known;
- ``mitmrelay_upstream_failures_total{provider,model,cause}``: every upstream attempt given up
  or failed (core/ledger.py ``attempt_failures``);
- ``mitmrelay_fallbacks_total{provider}``: switches to another provider or model, labelled with
  the provider that finally served;
- ``mitmrelay_first_event_seconds{provider}`` / ``mitmrelay_exchange_seconds{provider}``:
  histograms of the time to the answer's first byte and of the whole exchange;
- ``mitmrelay_active_streams``: streamed exchanges under way;
- ``mitmrelay_store_errors_total{store,kind}``: store failures (the usage ledger's: ``write``,
  ``queue_full``, ``prune``).

Label values come from the relay's own configuration, but a client picks the model name when
the relay passes it through: each label keeps at most ``MAX_LABEL_VALUES`` distinct values,
later ones are counted as ``other``, so no client can grow the registry without bound.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from .core.health import Health
from .core.ledger import UsageRecord, record_of
from .core.outcome import ExchangeOutcome

logger = logging.getLogger("mitmrelay.metrics")

MAX_LABEL_VALUES = 200  # distinct values per label; then "other"
MAX_ACTIVE = 100_000  # stream ids tracked for the gauge (a started exchange never ended)
OTHER = "other"
LOOPBACK = "127.0.0.1"
# Seconds. The first event comes at once or after COMMIT_GRACE_S (link.py); a reasoning
# model's exchange can take minutes (relay_timeout defaults to 300 s of silence).
FIRST_EVENT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60)
EXCHANGE_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)


class LabelValues:
    """At most ``limit`` distinct values for one label; the rest become ``OTHER``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self.limit:
            return OTHER
        self._seen.add(value)
        return value


class RelayMetrics:
    """The relay's metrics. ``started``/``ended`` are called from mitmproxy's event loop and
    are cheap (a few dict operations and counter increments); the registry is thread-safe,
    so the server thread reads it as it is."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        max_label_values: int = MAX_LABEL_VALUES,
        max_active: int = MAX_ACTIVE,
    ) -> None:
        self.clock = clock
        self.max_active = max_active
        self.registry = CollectorRegistry(auto_describe=True)
        self.health = Health()
        self._lock = threading.Lock()  # the health table, read by the server thread
        self._active: OrderedDict[str, None] = OrderedDict()
        self._provider, self._model, self._failure = (
            LabelValues(max_label_values) for _ in range(3)
        )
        r = self.registry
        self.requests = Counter(
            "mitmrelay_requests",
            "Relayed exchanges as they ended, by provider, upstream model, status and failure.",
            ["provider", "model", "status", "failure"],
            registry=r,
        )
        self.tokens = Counter(
            "mitmrelay_tokens",
            "Tokens as the upstream reported them: input (cached included), cached_input, "
            "output (reasoning included), reasoning.",
            ["provider", "model", "kind"],
            registry=r,
        )
        self.cost = Counter(
            "mitmrelay_cost",
            "Cost from the routes file's prices, in the provider's currency.",
            ["provider", "model"],
            registry=r,
        )
        self.upstream_failures = Counter(
            "mitmrelay_upstream_failures",
            "Upstream attempts given up or failed, by provider, upstream model and cause.",
            ["provider", "model", "cause"],
            registry=r,
        )
        self.fallbacks = Counter(
            "mitmrelay_fallbacks",
            "Switches to another provider or model, by the provider that finally served.",
            ["provider"],
            registry=r,
        )
        self.first_event = Histogram(
            "mitmrelay_first_event_seconds",
            "Time from the request to the first byte of the answer sent to the client.",
            ["provider"],
            buckets=FIRST_EVENT_BUCKETS,
            registry=r,
        )
        self.duration = Histogram(
            "mitmrelay_exchange_seconds",
            "Time from the request to the end of the answer.",
            ["provider"],
            buckets=EXCHANGE_BUCKETS,
            registry=r,
        )
        self.active_streams = Gauge(
            "mitmrelay_active_streams", "Streamed exchanges under way.", registry=r
        )
        self.store_errors = Counter(
            "mitmrelay_store_errors",
            "State store failures by store and kind (the answers were not affected).",
            ["store", "kind"],
            registry=r,
        )

    # ------------------------------------------------------------------ signals

    def started(self, response_id: str, stream: bool) -> None:
        if not stream:
            return
        self._active[response_id] = None
        self.active_streams.inc()
        if len(self._active) > self.max_active:  # an end that never came: stop counting it
            self._active.popitem(last=False)
            self.active_streams.dec()

    def ended(self, outcome: ExchangeOutcome, record: UsageRecord | None = None) -> None:
        """Count one exchange. ``record``: its ledger record when already made (it is the
        same arithmetic; made here otherwise)."""
        if outcome.response_id in self._active:
            del self._active[outcome.response_id]
            self.active_streams.dec()
        record = record if record is not None else record_of(outcome)
        provider, model = self._provider(record.provider), self._model(record.upstream_model)
        self.requests.labels(
            provider, model, record.status, self._failure(record.failure or "")
        ).inc()
        tokens = record.tokens
        if tokens is not None:
            for kind, count in (
                ("input", tokens.input),
                ("cached_input", tokens.cached),
                ("output", tokens.output),
                ("reasoning", tokens.reasoning),
            ):
                self.tokens.labels(provider, model, kind).inc(count)
        if record.cost is not None:
            self.cost.labels(provider, model).inc(record.cost)
        for failure in record.attempt_failures:
            self.upstream_failures.labels(
                self._provider(failure.provider),
                self._model(failure.upstream_model),
                self._failure(failure.cause),
            ).inc()
        if record.fallbacks:
            self.fallbacks.labels(provider).inc(record.fallbacks)
        if record.first_event_s is not None:
            self.first_event.labels(provider).observe(record.first_event_s)
        self.duration.labels(provider).observe(record.total_s)
        with self._lock:
            self.health.saw(outcome, self.clock())

    def store_error(self, store: str, kind: str) -> None:
        self.store_errors.labels(store, kind).inc()

    def healthz(self, *, configured: bool, providers: Sequence[str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            return self.health.answer(self.clock(), configured=configured, providers=providers)


# ---------------------------------------------------------------------- the server


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not news: nothing on mitmproxy's console per request."""


StatusSource = Callable[[], tuple[bool, Sequence[str]]]


def wsgi_app(metrics: RelayMetrics, status: StatusSource) -> Callable[..., Iterable[bytes]]:
    """``/healthz`` here, ``/metrics`` by prometheus-client, 404 for anything else.
    ``status()`` says whether the relay is configured and which providers it has."""
    exposition = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            configured, providers = status()
            code, doc = metrics.healthz(configured=configured, providers=providers)
            start_response(
                "200 OK" if code == 200 else "503 Service Unavailable",
                [("Content-Type", "application/json"), ("Cache-Control", "no-store")],
            )
            return [json.dumps(doc).encode()]
        if path == "/metrics":
            return exposition(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"mitmrelay serves /metrics and /healthz here\n"]

    return app


class MetricsServer:
    """The endpoint on ``127.0.0.1:port`` (0: any free port; ``port`` then tells which).
    Raises ``OSError`` when the port cannot be bound."""

    def __init__(self, metrics: RelayMetrics, status: StatusSource, port: int) -> None:
        self._server = make_server(
            LOOPBACK, port, wsgi_app(metrics, status), _Server, handler_class=_QuietHandler
        )
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="mitmrelay-metrics", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
