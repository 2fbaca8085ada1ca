"""The mitmproxy layer: options, hooks, and the wiring between flows, the core and the link.

Every decision is the core's (``core/exchange.py`` for an exchange, ``core/routes.py`` for
the routing table); options are read once into a ``RelayConfig`` (config.py) when they are
set. The hooks:

- ``request``: is the flow ours (core/routing.py)? If it is a Responses call: parse it, find
  its plan in the routing table (the routes file, re-read when it changes), build the first
  attempt's request for that provider (a Chat request, or for a provider on the Responses wire
  Codex's request cleaned up for it: core/wires.py), and reroute the flow to the upstream link
  (link/), a loopback server that calls the provider with its key and, for a streamed call,
  runs the attempt's translator: it answers unreachable, silent or cut upstreams with errors
  Codex understands and keeps Codex informed while the model thinks, which mitmproxy's own
  upstream connection cannot (docs/mitmproxy-notes.md §5-§6). A failed attempt goes back to the
  exchange's retry/fallback policy. Fail closed: an exception answers locally, because
  mitmproxy forwards a flow whose hook raised **unmodified, client API key included**
  (docs/mitmproxy-notes.md §4).
- ``responseheaders``: the link's translated stream is carried to the client as it comes
  (``stream = True``); anything else is buffered and rewritten in ``response``.
- ``response`` / ``error``: errors mapped to what Codex acts on, non-streamed answers
  translated; one ``ExchangeOutcome`` per exchange makes the INFO line and mitmweb's comment,
  and goes to every other addon through the ``mitmrelay_exchange_ended`` hook (the usage
  ledger, metrics); the flow is shown beside its upstream leg (inspection.py).

A bad option or routes file at start is one ERROR line (no traceback) and mitmdump exits;
once running, a bad option change is refused and the previous configuration stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from mitmproxy import connection, ctx, exceptions, hooks, http
from mitmproxy.proxy import mode_specs

from . import inspection
from .config import (
    OPTION_SPECS,
    OPTIONS,
    SINGLE_VALUE_OPTIONS,
    ConfigError,
    RelayConfig,
    load_config,
    start_line,
    table_line,
    take_unusable,
)
from .core import access, local_answers
from .core.attempts import Failure
from .core.bounds import Limits
from .core.carrier import SealedReasoningCarrier
from .core.client_request import ClientRequest
from .core.errors import ClientRequestError
from .core.exchange import (
    Exchange,
    Translator,
    UpstreamCall,
    answer_events,
    client_only,
    comment,
    log_line,
    model_not_found,
    refused_outcome,
)
from .core.outcome import ExchangeOutcome
from .core.routes import RouteTable
from .core.routing import DEFAULT_HOSTS, InterceptRule, Route, classify
from .core.upstream_errors import MappedError
from .inspection import META  # flow.metadata key; filter in mitmweb with ~meta mitmrelay
from .keyfile import load_or_create_key
from .link import (
    JOB_HEADER,
    LOCAL_HEADER,
    MAX_RECORDED,
    AttemptFailure,
    LinkAttempt,
    LinkJob,
    LinkSettings,
    NextAttempt,
    UpstreamLink,
)
from .state import open_async_store
from .state.memory import MemoryStore
from .state.offloop import AsyncStore, StoreUnavailable

logger = logging.getLogger("mitmrelay")

UNCONFIGURED_RULES = tuple(InterceptRule.parse(h) for h in DEFAULT_HOSTS)
ROUTES_CHECK_S = 2.0  # how often a running relay looks at the routes file between requests
TLS_OPTIONS = frozenset(
    {"ssl_verify_upstream_trusted_ca", "ssl_verify_upstream_trusted_confdir", "ssl_insecure"}
)


@dataclass
class RelayExchangeStartedHook(hooks.Hook):
    """A relayed exchange was sent on its way (for gauges of exchanges in flight)."""

    name: ClassVar[str] = "mitmrelay_exchange_started"
    response_id: str
    client_model: str
    stream: bool


@dataclass
class RelayExchangeEndedHook(hooks.Hook):
    """A relayed exchange ended: what it came to (core/outcome.py), for every consumer."""

    name: ClassVar[str] = "mitmrelay_exchange_ended"
    outcome: ExchangeOutcome


def _answer(status: int, headers: dict[str, str], body: bytes) -> http.Response:
    return http.Response.make(status, body, headers)


class _State:
    """The one seam to the state store (conversations, kept reasoning), off the event loop:
    every call runs in a worker thread with a deadline (state/offloop.py,
    ``relay_state_deadline_ms``), so a slow, hung or dead store costs only the exchange that
    waits for it, never the others. Failures are logged by the wrapper, once a minute.

    - ``get`` raises ``StoreUnavailable``: a conversation that cannot be read is the caller's
      to refuse (a 503 Codex retries), never a turn sent on without its history;
    - ``get_many`` (kept reasoning) answers what it could read: a failure only skips the
      restore;
    - ``put_many`` returns at once; the write runs in the background and a failure loses only
      what that exchange left. Until it is done, what it writes is answered from here, so the
      next turn of the same conversation finds it even before the store has it.
    """

    def __init__(self, store: AsyncStore) -> None:
        self.store = store
        self._pending: dict[str, dict[str, Any]] = {}  # being written
        self._writes: set[asyncio.Task[None]] = set()  # referenced until done

    async def get(self, key: str) -> dict[str, Any] | None:
        if key in self._pending:
            return self._pending[key]
        return await self.store.get(key)

    async def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        found = {key: self._pending[key] for key in keys if key in self._pending}
        rest = [key for key in keys if key not in found]
        if rest:
            # On failure the restore is skipped; the sealed carrier still works.
            with contextlib.suppress(StoreUnavailable):
                found.update(await self.store.get_many(rest))
        return found

    def put_many(self, items: Iterable[tuple[str, dict[str, Any]]]) -> None:
        items = list(items)
        if not items:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside a loop (hook tests): there is no loop to stall
            with contextlib.suppress(Exception):
                for key, value in items:
                    self.store.store.put(key, value)
            return
        self._pending.update(items)
        task = loop.create_task(self._write(items))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        try:
            await self.store.put_many(items)
        except StoreUnavailable:
            pass  # logged by the store's wrapper; the exchange's answer is already out
        finally:
            for key, value in items:
                if self._pending.get(key) is value:
                    del self._pending[key]

    def close(self) -> None:
        self.store.close()


@dataclass
class _Flight:
    """A relayed exchange while its flow is live (kept here, not in flow.metadata, which is
    deep-copied and saved: it must stay JSON-like)."""

    exchange: Exchange
    started: float  # monotonic
    job: LinkJob
    token: str
    client_request: http.Request  # as the client sent it, for mitmweb
    first_byte: float | None = None  # monotonic: the answer's headers reached mitmproxy
    translator: Translator | None = None
    error: MappedError | None = None  # the mapped upstream error the client got


class Relay:
    """Relay Codex's Responses API calls to the providers of a route table, each on its wire
    (Chat Completions, or the provider's own Responses API)."""

    def __init__(self, *, state_clock: Callable[[], float] = time.monotonic) -> None:
        """``state_clock`` paces the state store's failure log (injected by tests)."""
        self._state_clock = state_clock
        self.config: RelayConfig | None = None
        self.flights: dict[str, _Flight] = {}
        self.carrier: SealedReasoningCarrier | None = None
        self.link = UpstreamLink(LinkSettings("(none)", 300.0, 10.0, self._upstream_tls))
        self._tls: ssl.SSLContext | None = None
        # response id -> conversation, and the per-provider call_id -> reasoning map.
        self.state = _State(AsyncStore(MemoryStore(Limits(), time.time), name="memory"))
        self._running = False
        self._refusal: str | None = None  # a configuration error seen before running
        self._unusable: str | None = None  # --set values mitmproxy could not have parsed
        self._peers: list[Callable[[], str | None]] = []  # see requires()
        self._ticker: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ options

    def load(self, loader: Any) -> None:
        # Numbers are declared as strings and parsed in config.py: a value mitmproxy's own
        # --set parse rejects would unload the whole script silently, and mitmdump would
        # pass Codex's request on with its key (docs/mitmproxy-notes.md §7.3).
        for option in OPTION_SPECS:
            loader.add_option(option.name, option.typespec, option.default, option.help)
        self._unusable = take_unusable(loader.master.options.deferred, SINGLE_VALUE_OPTIONS)

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        # Without lazy, mitmproxy dials the original target (the dummy reverse target, or
        # api.openai.com) before our hook runs, and an offline or firewalled machine answers
        # Codex's CONNECT with 502: Codex then loops on "Reconnecting..."
        # (docs/codex-contract.md §2.3). First, so that a configuration refused below dials
        # nothing either.
        if "connection_strategy" in opts and opts.connection_strategy != "lazy":
            opts.update(connection_strategy="lazy")
        if set(OPTIONS) & updated:
            try:
                config = load_config({name: getattr(opts, name) for name in OPTIONS}, os.environ)
            except ConfigError as e:
                self._refuse(str(e))
                return
            previous, self.config, self._refusal = self.config, config, self._unusable
            if previous is None or previous.state != config.state:
                self._open_state(config)
        if TLS_OPTIONS & updated:
            self._tls = None  # rebuilt on the next upstream connection, once
        if self.config is not None and {*OPTIONS, "mode"} & updated:
            self.link.settings = LinkSettings(
                upstream="the upstream",
                idle_timeout_s=self.config.timeout_s,
                keepalive_s=self.config.keepalive_s,
                tls=self._upstream_tls,
                proxy=self._upstream_proxy(),
            )
        if "confdir" in updated or self.carrier is None:
            # Reasoning is sealed into the items Codex replays (core/carrier.py); the key
            # lives beside mitmproxy's CA so it survives restarts.
            confdir = Path(opts.confdir).expanduser()
            try:
                self.carrier = SealedReasoningCarrier(load_or_create_key(confdir), os.urandom)
            except (OSError, ValueError) as e:
                self._refuse(f"mitmrelay reasoning key: {e}")

    def _refuse(self, message: str) -> None:
        """A configuration error. Before the relay runs it is kept for ``running`` to log as
        one ERROR line, which makes mitmdump exit (an exception here would print a traceback
        and exit); once running, an ``OptionsError`` rolls the change back and the previous
        config stays (docs/mitmproxy-notes.md §7.1)."""
        if self._running:
            raise exceptions.OptionsError(message)
        self._refusal = message

    def requires(self, refusal: Callable[[], str | None]) -> None:
        """Another addon of the script whose configuration must succeed too: ``refusal()``
        says why it did not (None: it did)."""
        self._peers.append(refusal)

    def _unconfigured(self) -> str | None:
        """Why the relay cannot relay (a configuration that failed, or none yet), or None.
        Such a flow is answered locally: passed on, it would reach the original target with
        the client's key (docs/mitmproxy-notes.md §4)."""
        if self._refusal is not None:
            return self._refusal
        for peer in self._peers:
            why = peer()
            if why is not None:
                return why
        if self.config is None:
            return "no configuration was loaded"
        if self.carrier is None:
            return "no reasoning key"
        return None

    def _open_state(self, config: RelayConfig) -> None:
        try:
            store = open_async_store(
                config.state.url,
                confdir=config.state.confdir,
                limits=config.state.limits,
                deadline_s=config.state.deadline_s,
                log_clock=self._state_clock,
            )
        except (ValueError, OSError) as e:
            self._refuse(f"relay_state: {e}")
            return
        self.state.close()
        self.state = _State(store)

    def running(self) -> None:
        self._running = True
        config = self.config
        if self._refusal is not None:
            # An ERROR during startup makes mitmdump exit (docs/mitmproxy-notes.md §7, §7.1).
            logger.error("mitmrelay: %s", self._refusal)
            return
        if config is None or config.routes is None:
            logger.error(
                "mitmrelay: no upstream. Set --set relay_routes=FILE (several providers), or "
                "--set relay_upstream=https://host/v1 or the CODEX_RELAY_UPSTREAM environment "
                "variable (one)."
            )
            return
        logger.info("mitmrelay: %s; modes %s", start_line(config), ", ".join(ctx.options.mode))
        if config.client_keys is not None:
            logger.info(
                "mitmrelay: relayed requests need a client key from $%s", config.client_keys_env
            )
        elif not ("proxyauth" in ctx.options and ctx.options.proxyauth):
            # Without mitmproxy's own check (proxyauth) on every listener either:
            exposed = access.beyond_loopback(_listen_hosts(ctx.options.mode, ctx.options))
            if exposed:
                logger.warning(
                    "mitmrelay: listening on %s with no client keys: anyone who can reach "
                    "this port can spend your upstream key. Set relay_client_keys_env to the "
                    "name of a variable holding client keys, or listen on 127.0.0.1 only "
                    "(--set listen_host=127.0.0.1, or @127.0.0.1:PORT in --mode).",
                    ", ".join(exposed),
                )
        if config.routes_file is not None:
            self._schedule_routes_check()

    def done(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        self.link.close()
        self.state.close()

    # ------------------------------------------------------------------ the routes file

    def _schedule_routes_check(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on a loop (addon tests): requests still check the file
            return

        def tick() -> None:
            self._routes()
            self._ticker = loop.call_later(ROUTES_CHECK_S, tick)

        self._ticker = loop.call_later(ROUTES_CHECK_S, tick)

    def usage_status(self) -> tuple[bool, list[str]]:
        """For the usage addon's ``/healthz``: whether the relay has a working configuration,
        and the names of the providers it routes to."""
        config = self.config
        table = None
        if config is not None:
            table = config.routes_file.table if config.routes_file else config.routes
        return table is not None and self._refusal is None, list(table.providers) if table else []

    def _routes(self) -> RouteTable | None:
        """The table in force, after a look at the routes file (cheap: one ``stat``)."""
        config = self.config
        if config is None:
            return None
        watched = config.routes_file
        if watched is None:
            return config.routes
        table, why = watched.check()
        if table is not None:
            logger.info(
                "mitmrelay: %s changed; routes in force: %s", watched.path, table_line(table)
            )
        elif why is not None:
            logger.warning("mitmrelay: %s; the previous routes stay in force", why)
        return watched.table

    # ------------------------------------------------------------------ hooks

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        try:
            route = self._route(flow)
            if route is Route.PASS:
                return
            why = self._unconfigured()
            if why is not None:
                flow.response = _answer(*local_answers.not_configured(why))
                return
            keys = self.config.client_keys if self.config else None
            if keys is not None and not keys.allows(flow.request.headers.get("authorization")):
                # Before anything else happens to the request: no upstream call, no state.
                flow.response = _answer(*access.invalid_api_key())
                return
            table = self._routes()
            if table is None or self.config is None:
                flow.response = _answer(*local_answers.no_upstream())
                return
            if route is Route.RESPONSES:
                await self.link.start()
                await self._relay(flow, self.config, table)
            elif route is Route.MODELS:
                await self._models(flow, table)
            elif route is Route.UPGRADE:
                flow.response = _answer(*local_answers.websocket_refused())
            else:
                flow.response = _answer(
                    *local_answers.not_served(flow.request.method, flow.request.path)
                )
        except Exception:
            # Fail closed: the original request carries the client's OpenAI key and must
            # never leave (docs/mitmproxy-notes.md §4).
            logger.exception("relay: request hook failed; answering locally")
            flight = self.flights.pop(flow.id, None)
            if flight is not None:
                self.link.discard(flight.token)
            flow.response = _answer(*local_answers.internal_error("translate this request"))
        if flow.response is not None:  # answered here: the request never left
            inspection.hide_client_key(flow.request)
            if META in flow.metadata:
                flow.metadata[META]["status"] = flow.response.status_code

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """The link's translated stream goes to the client as it comes (mitmproxy only
        carries it); anything else is buffered and rewritten in ``response``."""
        flight = self.flights.get(flow.id)
        if flight is None or flow.response is None:
            return
        flight.first_byte = time.monotonic()
        if flow.response.headers.get(LOCAL_HEADER) == "translated":
            del flow.response.headers[LOCAL_HEADER]
            flow.response.stream = True

    def response(self, flow: http.HTTPFlow) -> None:
        meta = flow.metadata.get(META)
        local = flow.response is not None and flow.response.headers.pop(LOCAL_HEADER, None)
        if meta and meta.get("route") == "models":
            if not local and flow.response is not None:
                body = flow.response.get_content(strict=False) or b""
                flow.response = _answer(*local_answers.model_list(body, meta["routed"]))
            return
        flight = self.flights.pop(flow.id, None)
        if flight is None or flow.response is None:
            return
        try:
            if not local:  # the link's own answers (transport errors) are final as they are
                self._finish(flow, flight)
        except Exception:
            logger.exception("relay: response hook failed")
            flow.response = _answer(
                *local_answers.internal_error("translate the upstream's answer")
            )
        outcome = self._outcome(flow, flight)
        response = flight.translator.response if flight.translator else None
        self.state.put_many(flight.exchange.records(response))
        self._publish(flow, outcome)
        self._show_legs(flow, flight)

    def error(self, flow: http.HTTPFlow) -> None:
        flight = self.flights.pop(flow.id, None)
        if flight is None:
            return
        self.link.discard(flight.token)
        why = flow.error.msg if flow.error else "?"
        outcome = flight.exchange.outcome(
            status="failed",
            total_s=time.monotonic() - flight.started,
            http_status=flight.job.status,
            failure="flow_error",
            detail=why,
            first_event_s=self._first_event_s(flight),
        )
        self._publish(flow, outcome)
        flow.marked = ":x:"
        self._show_legs(flow, flight)

    # ------------------------------------------------------------------ internals

    def _route(self, flow: http.HTTPFlow) -> Route:
        mode = flow.client_conn.proxy_mode
        reverse = isinstance(mode, mode_specs.ReverseMode)
        req = flow.request
        upgrade = req.headers.get("upgrade", "").lower() == "websocket"
        # Unconfigured, the default hosts still decide what is ours, so those flows are
        # refused rather than passed on.
        rules: Sequence[InterceptRule] = self.config.rules if self.config else UNCONFIGURED_RULES
        # pretty_host follows Host / :authority / SNI, so transparent and local modes match
        # even when request.host is an IP (docs/mitmproxy-notes.md §2).
        return classify(
            req.method, req.pretty_host, req.path, reverse=reverse, upgrade=upgrade, rules=rules
        )

    async def _relay(self, flow: http.HTTPFlow, config: RelayConfig, table: RouteTable) -> None:
        started, started_at = time.monotonic(), time.time()
        response_id = "resp_" + secrets.token_hex(12)
        client_model, stream = "?", False

        def refused(status: int, code: str, detail: str) -> None:
            """An exchange that ends here: announced and recorded like any other."""
            self._announce(response_id, client_model, stream)
            outcome = refused_outcome(
                client_model=client_model,
                response_id=response_id,
                stream=stream,
                started_at=started_at,
                total_s=time.monotonic() - started,
                status=status,
                code=code,
                detail=detail,
            )
            self._publish(flow, outcome)

        try:
            try:
                body = flow.request.get_content()  # decodes gzip / br / zstd bodies
            except ValueError as e:
                raise ClientRequestError(f"request body could not be decoded ({e})") from e
            request = ClientRequest.parse(body or b"", table.wires)
            client_model, stream = request.model, request.stream
            plan = table.plan(request.model)
            if not plan:  # a 400 Codex shows as is and never retries (docs/codex-contract.md §8.1)
                raise model_not_found(request.model, table.names())
            record = None
            if request.previous_response_id:
                try:
                    record = await self.state.get(request.previous_response_id)
                except StoreUnavailable:
                    flow.response = _answer(*local_answers.state_unavailable())
                    refused(503, "server_error", "the state store did not answer")
                    return
            exchange = Exchange(
                request,
                plan,
                response_id=response_id,
                started_at=started_at,
                new_id=_id_maker(response_id),
                previous=record,
                carrier=self.carrier,
                reasoning_mode=config.reasoning_mode,  # type: ignore[arg-type]
                retry_wait_s=config.retry_wait_s,
            )
            call = exchange.first_call()
            keys = exchange.reasoning_keys()
            if keys:
                # Clients that drop reasoning items: what the relay kept fills in.
                call = exchange.restore(await self.state.get_many(keys))
            client_request = flow.request.copy()
            job, token = self._to_link(flow, exchange, call)
        except ClientRequestError as e:
            flow.response = _answer(*local_answers.client_error(e))
            refused(e.status, e.code, e.message)
            return
        except Exception:
            # The request hook answers it (fail closed) and logs the traceback.
            refused(500, "server_error", "the relay failed to translate this request")
            raise
        self.flights[flow.id] = _Flight(exchange, started, job, token, client_request)
        flow.metadata[META] = {
            "route": "responses",
            "client_model": exchange.client_model,
            "provider": call.label,
            "upstream_model": call.target.upstream_model,
            "response_id": response_id,
            "profile": call.target.provider.profile.name,
        }
        self._announce(response_id, exchange.client_model, exchange.stream)

    @staticmethod
    def _announce(response_id: str, client_model: str, stream: bool) -> None:
        """Every exchange is announced once, then ends once (``_publish``), refused or not."""
        ctx.master.addons.trigger(RelayExchangeStartedHook(response_id, client_model, stream))

    def _to_link(
        self, flow: http.HTTPFlow, exchange: Exchange, call: UpstreamCall
    ) -> tuple[LinkJob, str]:
        """Send the flow to the upstream link, which makes ``call`` and, when it fails before
        the client got any output, the attempts the exchange's policy names after it. The
        provider's key is the link's, never on the flow (mitmweb, ``-w``); so is the Chat
        body: the link takes it from the job, in memory, instead of mitmproxy serialising it
        onto the loopback socket for the link to parse again."""
        req = flow.request
        headers = req.headers
        for name in [n for n in headers if client_only(n)]:
            headers.pop(name, None)
        # Pop content-encoding BEFORE setting the body: mitmproxy re-encodes to match it
        # (docs/mitmproxy-notes.md §3).
        headers.pop("content-encoding", None)
        headers["accept-encoding"] = "identity"  # SSE must arrive uncompressed
        headers["content-type"] = "application/json"
        headers["accept"] = "text/event-stream" if exchange.stream else "application/json"
        req.content = b""
        job = LinkJob(
            _attempt(exchange, call),
            next_attempt=self._next_attempt(flow, exchange),
            # Only a flow list (mitmweb, console) shows the upstream's raw bytes (inspection.py).
            record_limit=MAX_RECORDED if inspection.has_flow_list() else 0,
        )
        return job, self._reroute(flow, job)

    def _reroute(self, flow: http.HTTPFlow, job: LinkJob) -> str:
        """Point the flow at the link, which makes ``job``; returns the job's token."""
        req = flow.request
        token = req.headers[JOB_HEADER] = self.link.register(job)
        req.scheme, req.host, req.port = "http", "127.0.0.1", self.link.port
        req.path = job.url.path
        if flow.server_conn.via is not None:
            # mitmproxy's upstream proxy (--mode upstream:) cannot reach our loopback link;
            # the link itself goes through that proxy (docs/mitmproxy-notes.md §2).
            flow.server_conn = connection.Server(address=None)
        return token

    @staticmethod
    def _next_attempt(flow: http.HTTPFlow, exchange: Exchange) -> NextAttempt:
        """The link's policy callback: the exchange decides (core/attempts.py); this only
        converts between the link's terms and the core's."""

        def next_attempt(failure: AttemptFailure) -> tuple[float, LinkAttempt] | None:
            last = exchange.calls[-1]
            step = exchange.next_call(Failure(failure.status, failure.error, failure.body))
            if step is None:
                return None
            delay, call = step
            logger.debug(
                "relay %s: %s failed (%s %s); %s",
                flow.id[:8],
                last.label,
                failure.status if failure.status is not None else "no answer",
                failure.error.code,
                _step_text(last, call, delay),
            )
            return delay, _attempt(exchange, call)

        return next_attempt

    async def _models(self, flow: http.HTTPFlow, table: RouteTable) -> None:
        """``GET …/models``: the routed names; with a ``*`` route, also what its provider
        lists (every such name is routable)."""
        catch = table.catch_all()
        routed = table.exact_names()
        if catch is not None and catch.upstream_model:
            routed.append(catch.upstream_model)
        if catch is None:
            flow.response = _answer(*local_answers.model_list(b"", routed))
            return
        await self.link.start()
        provider = table.providers[catch.provider]
        req = flow.request
        for name in [n for n in req.headers if client_only(n)]:
            req.headers.pop(name, None)
        req.headers.pop("content-encoding", None)
        req.headers.pop("content-type", None)
        req.headers["accept-encoding"] = "identity"
        req.method, req.content = "GET", b""
        job = LinkJob(
            LinkAttempt(
                url=urllib.parse.urlsplit(provider.models_url),
                headers=provider.request_headers(),
                label=provider.name,
                method="GET",
                upstream=provider.base_url,
            ),
            record_limit=0,
        )
        self._reroute(flow, job)
        flow.metadata[META] = {"route": "models", "routed": routed}

    def _finish(self, flow: http.HTTPFlow, flight: _Flight) -> None:
        response = flow.response
        assert response is not None
        job, exchange = flight.job, flight.exchange
        if job.committed:
            # Translated by the link as it streamed: keep what was sent so mitmweb does not
            # show "content missing" (docs/mitmproxy-notes.md §8).
            flight.translator = job.translator
            response.content = bytes(job.answered)
            return
        call = exchange.calls[-1]
        if response.status_code >= 400:
            mapped = call.wire.map_error(
                response.status_code,
                dict(response.headers),
                response.get_content(strict=False) or b"",
                upstream=call.upstream,
                now=time.time,
            )
            flow.response = http.Response.make(mapped.status, mapped.body(), mapped.headers())
            flight.error = mapped
            return
        translator = job.translator or exchange.translator(call)
        flight.translator = translator
        out = answer_events(
            translator,
            response.get_content(strict=False) or b"",
            event_stream=response.headers.get("content-type", "").startswith("text/event-stream"),
            upstream=call.upstream,
            wire=call.wire,
        )
        if exchange.stream:
            flow.response = http.Response.make(
                200, out, {"content-type": "text/event-stream; charset=utf-8"}
            )
        else:
            flow.response = _answer(*local_answers.json_answer(translator.response))

    def _outcome(self, flow: http.HTTPFlow, flight: _Flight) -> ExchangeOutcome:
        response = flight.translator.response if flight.translator else None
        failure = detail = None
        if response is not None:
            status = response.get("status") or "?"
            error = response.get("error") or {}
            failure, detail = error.get("code"), error.get("message")
        else:
            status = f"http {flow.response.status_code}" if flow.response else "?"
            mapped = flight.error or flight.job.failure
            if mapped is not None:
                failure, detail = mapped.code, mapped.message
        return flight.exchange.outcome(
            status=status,
            total_s=time.monotonic() - flight.started,
            http_status=flight.job.status,
            response=response,
            failure=failure,
            detail=detail,
            first_event_s=self._first_event_s(flight),
        )

    @staticmethod
    def _first_event_s(flight: _Flight) -> float | None:
        """From the request to the first byte of the answer sent to the client: the link's
        record (its clock is the loop's monotonic one), else the answer's headers reaching
        mitmproxy."""
        first = flight.job.first_byte_at or flight.first_byte
        return None if first is None else max(0.0, first - flight.started)

    def _publish(self, flow: http.HTTPFlow, outcome: ExchangeOutcome) -> None:
        """The outcome to its consumers: the INFO line, mitmweb's comment and marker, the
        flow's metadata, and every addon implementing ``mitmrelay_exchange_ended``."""
        logger.info("%s", log_line(flow.id, outcome))
        flow.comment = comment(outcome)
        if outcome.status != "completed":
            flow.marked = ":warning:"
        meta = flow.metadata.setdefault(META, {})
        meta.update(
            status=outcome.status,
            usage=dict(outcome.usage) if outcome.usage else None,
            provider=outcome.provider or None,
            attempts=[
                {"provider": a.provider, "status": a.status, "failure": a.failure}
                for a in outcome.attempts
            ],
        )
        if any(a.failure for a in outcome.attempts[:-1]):
            meta["retried"] = True
        ctx.master.addons.trigger(RelayExchangeEndedHook(outcome))

    def _show_legs(self, flow: http.HTTPFlow, flight: _Flight) -> None:
        """The flow becomes the client's leg; the upstream's leg joins mitmweb's list."""
        try:
            link_request = flow.request
            reverse = isinstance(flow.client_conn.proxy_mode, mode_specs.ReverseMode)
            listener = flow.client_conn.sockname[:2] if reverse else None
            inspection.show_client_leg(flow, flight.client_request, listener=listener)
            if inspection.has_flow_list():
                inspection.add_to_flow_list(inspection.upstream_leg(flow, link_request, flight.job))
        except Exception:  # inspection must never cost the client its answer
            logger.exception("relay: could not show flow %s's legs", flow.id[:8])

    def _upstream_proxy(self) -> tuple[str, int] | None:
        """The HTTP proxy of ``--mode upstream:http://host:port``, which the link goes through
        as mitmproxy would."""
        for spec in ctx.options.mode:
            mode = mode_specs.ProxyMode.parse(spec)
            if isinstance(mode, mode_specs.UpstreamMode):
                if mode.scheme != "http":
                    raise exceptions.OptionsError(
                        f"mitmrelay reaches its upstream through http:// proxies only, got {spec!r}"
                    )
                return mode.address
        return None

    def _upstream_tls(self) -> ssl.SSLContext:
        """Verify the upstream as mitmproxy would: its CA options and ssl_insecure apply.
        Built once per change of those options (loading the system's CAs takes milliseconds),
        when the first upstream connection needs it."""
        if self._tls is None:
            opts = ctx.options
            context = ssl.create_default_context(
                cafile=opts.ssl_verify_upstream_trusted_ca or None,
                capath=opts.ssl_verify_upstream_trusted_confdir or None,
            )
            if opts.ssl_insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._tls = context
        return self._tls


def _listen_hosts(modes: Sequence[str], options: Any) -> list[str]:
    """The hosts mitmproxy's listeners bind (a mode's own ``@host`` or ``listen_host``; ""
    is every interface). Local, tun and system-proxy modes take traffic from this machine
    only and have no listener others could reach."""
    hosts = []
    for spec in modes:
        try:
            mode = mode_specs.ProxyMode.parse(spec)
        except ValueError:
            continue
        if isinstance(mode, mode_specs.LocalMode | mode_specs.TunMode | mode_specs.OsProxyMode):
            continue
        hosts.append(mode.listen_host(options.listen_host))
    return hosts


def _id_maker(response_id: str) -> Callable[[str], str]:
    counter = iter(range(1, 1 << 62))
    prefix = response_id.removeprefix("resp_")[:16]
    return lambda kind: f"{kind}_{prefix}{next(counter):04d}"


def _attempt(exchange: Exchange, call: UpstreamCall) -> LinkAttempt:
    """One ``UpstreamCall`` as the link runs it: a streamed call gets its own translator (the
    link makes it continue the client's stream when it is not the first)."""
    return LinkAttempt(
        url=call.url,
        headers=call.headers(),
        body=call.body,
        translator=exchange.translator(call) if exchange.stream else None,
        label=call.label,
        upstream=call.upstream,
        wire=call.wire,
    )


def _step_text(last: UpstreamCall, call: UpstreamCall, delay: float) -> str:
    if call.index != last.index:
        return f"falling back to {call.label} ({call.target.upstream_model})"
    if call.healed:
        return "retrying once with placeholders for the reasoning the history lost"
    return f"retrying in {delay:g}s (Retry-After)"
