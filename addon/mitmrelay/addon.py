"""The mitmproxy layer: options, hooks, and the glue between flows and the sans-IO core.

Nothing protocol-specific lives here; every decision is the core's. The hooks:

- ``request``: route the flow (core.routing). Ours: translate the body with the core and
  reroute the Chat request to the relay's upstream link (link.py), a loopback server that
  calls ``{relay_upstream}/chat/completions`` with the relay's key and, for a streamed call,
  runs the flow's ``StreamTranslator``: it answers unreachable, silent or cut upstreams with
  errors Codex understands and keeps Codex informed while the model thinks, which mitmproxy's
  own upstream connection cannot (mitmproxy-notes.md §5-§6). Fail closed: an exception
  answers locally, because mitmproxy forwards a flow whose hook raised **unmodified, client
  API key included** (mitmproxy-notes.md §4).
- ``responseheaders``: the link's translated stream is carried to the client as it comes
  (``stream = True``); anything else is buffered and rewritten in ``response``.
- ``response`` / ``error``: errors mapped to what Codex acts on, non-streamed answers
  translated; the flow is annotated for mitmweb (comment, marker, metadata) and shown beside
  its upstream leg (inspection.py).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import ssl
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from mitmproxy import connection, ctx, exceptions, hooks, http
from mitmproxy.proxy import mode_specs

from . import inspection
from .core import local_answers
from .core.bounds import Limits
from .core.carrier import SealedReasoningCarrier
from .core.completion import completion_as_sse
from .core.context import TranslationContext
from .core.errors import ClientRequestError
from .core.history import conversation_record, history_items
from .core.ledger import format_cost
from .core.outcome import AttemptOutcome, ExchangeOutcome
from .core.profiles import GENERIC, PROFILES, Profile
from .core.reasoning_recovery import (
    is_missing_reasoning_error,
    payload_record,
    turn_fingerprint,
    with_reasoning_placeholders,
    with_restored_reasoning,
)
from .core.request import parse_request, translate_request
from .core.routing import DEFAULT_HOSTS, InterceptRule, Route, classify
from .core.stream import StreamTranslator
from .core.upstream_errors import map_upstream_error
from .inspection import META  # flow.metadata key; filter in mitmweb with ~meta mitmrelay
from .keyfile import load_or_create_key
from .link import JOB_HEADER, LOCAL_HEADER, MAX_RECORDED, LinkJob, LinkSettings, UpstreamLink
from .state import StateStore, open_store
from .state.memory import MemoryStore

logger = logging.getLogger("mitmrelay")

REASONING_MODES = ("summary", "raw", "hidden")
# Headers only Codex or OpenAI understand; none of them may reach a third-party upstream.
CLIENT_ONLY_HEADERS = (
    "authorization",
    "openai-beta",
    "openai-organization",
    "openai-project",
    "chatgpt-account-id",
    "session-id",
    "thread-id",
    "originator",
    "version",
    "x-client-request-id",
    "cookie",
)
REASONING_KEY = "reasoning:"  # state-store key prefix of the call_id -> reasoning map


# ---------------------------------------------------------------------- usage hand-over
# The exchange's outcome to the usage addon (usage_addon.py), until the routing rewrite of this
# module builds one ExchangeOutcome per exchange and triggers these same two hooks itself.


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


@dataclass
class _Exchange:
    """Per-flow state of one relayed call (kept in the addon, not in flow.metadata, because
    metadata is deep-copied and saved: it must stay JSON-like)."""

    ctx: TranslationContext
    response_id: str
    started: float
    stream: bool
    translator: StreamTranslator | None = None
    input_items: list[Any] = field(default_factory=list)  # full input, history included
    link_token: str | None = None
    link_job: LinkJob | None = None
    client_request: http.Request | None = None  # as the client sent it, for mitmweb
    started_at: float = field(default_factory=time.time)  # unix s, for the usage ledger
    first_byte: float | None = None  # monotonic: the answer's headers reached mitmproxy


class Relay:
    """Relay Codex's Responses API calls to a Chat Completions upstream."""

    def __init__(self) -> None:
        self.upstream: urllib.parse.SplitResult | None = None
        self.profile: Profile = GENERIC
        self.rules: list[InterceptRule] = [InterceptRule.parse(s) for s in DEFAULT_HOSTS]
        self.exchanges: dict[str, _Exchange] = {}
        self.carrier: SealedReasoningCarrier | None = None
        self.link = UpstreamLink(LinkSettings("(none)", 300.0, 10.0, self._upstream_tls))
        self._tls: tuple[tuple[Any, ...], ssl.SSLContext] | None = None
        # response id -> conversation, for clients that chain with previous_response_id.
        self.history: StateStore = MemoryStore(Limits(), time.time)

    # ------------------------------------------------------------------ options

    def load(self, loader: Any) -> None:
        loader.add_option(
            "relay_upstream",
            str,
            os.environ.get("CODEX_RELAY_UPSTREAM", ""),
            "Chat Completions base URL of the upstream, e.g. https://api.deepseek.com/v1 "
            "(default: $CODEX_RELAY_UPSTREAM).",
        )
        loader.add_option(
            "relay_api_key_env",
            str,
            "CODEX_RELAY_API_KEY",
            "Name of the environment variable holding the upstream API key. The key itself "
            "is never an option, so it never appears on a command line or in a saved config.",
        )
        loader.add_option(
            "relay_model",
            str,
            "",
            "Upstream model for requests whose model is not mapped by relay_model_map "
            "(an unmodified Codex sends gpt-5.5). Empty: the client's model is sent as is.",
        )
        loader.add_option(
            "relay_model_map",
            Sequence[str],
            [],
            "Model mappings client=upstream, e.g. gpt-5.5=deepseek-chat.",
        )
        loader.add_option(
            "relay_hosts",
            Sequence[str],
            list(DEFAULT_HOSTS),
            "In proxy modes, host/path prefixes whose /responses endpoint is relayed.",
        )
        loader.add_option(
            "relay_reasoning",
            str,
            "summary",
            "How upstream reasoning is shown to Codex: summary | raw | hidden.",
        )
        loader.add_option(
            "relay_timeout",
            int,
            300,
            "Seconds the upstream may stay silent (connecting, before its headers, or between "
            "stream chunks) before the relay gives up on it; Codex then retries.",
        )
        loader.add_option(
            "relay_keepalive",
            int,
            10,
            "Seconds of upstream silence after which the client is sent a sign of life "
            "(response.in_progress), so its idle timeout does not fire while a model thinks.",
        )
        loader.add_option(
            "relay_state",
            str,
            "sqlite",
            "Where conversations for previous_response_id are kept: sqlite (a file in the "
            "confdir; survives restarts), sqlite:///path, memory, or redis://host:port/db "
            "(shared by several relays).",
        )
        loader.add_option(
            "relay_history_entries",
            int,
            Limits().max_entries,
            "Conversations kept for previous_response_id (least recently used evicted first).",
        )
        loader.add_option(
            "relay_history_mb",
            int,
            Limits().max_bytes // (1024 * 1024),
            "Megabytes of conversations kept for previous_response_id.",
        )
        loader.add_option(
            "relay_history_ttl",
            int,
            int(Limits().ttl_s),
            "Seconds a conversation is kept for previous_response_id.",
        )
        loader.add_option(
            "relay_profile",
            str,
            GENERIC.name,
            f"Provider profile: {', '.join(sorted(PROFILES))}.",
        )

    def configure(self, updated: set[str]) -> None:
        opts = ctx.options
        if "relay_upstream" in updated:
            self.upstream = self._parse_upstream(opts.relay_upstream)
        if "relay_reasoning" in updated and opts.relay_reasoning not in REASONING_MODES:
            raise exceptions.OptionsError(
                f"relay_reasoning must be one of {', '.join(REASONING_MODES)}, "
                f"got {opts.relay_reasoning!r}"
            )
        if "relay_profile" in updated:
            if opts.relay_profile not in PROFILES:
                raise exceptions.OptionsError(
                    f"relay_profile {opts.relay_profile!r} is unknown; "
                    f"choose one of {', '.join(sorted(PROFILES))}"
                )
            self.profile = PROFILES[opts.relay_profile]
        if "relay_hosts" in updated:
            try:
                self.rules = [InterceptRule.parse(s) for s in opts.relay_hosts]
            except ValueError as e:
                raise exceptions.OptionsError(f"relay_hosts: {e}") from e
        if "relay_model_map" in updated:
            for spec in opts.relay_model_map:
                if "=" not in spec or not all(p.strip() for p in spec.split("=", 1)):
                    raise exceptions.OptionsError(
                        f"relay_model_map entries are client=upstream, got {spec!r}"
                    )
        state_opts = {
            "relay_state",
            "relay_history_entries",
            "relay_history_mb",
            "relay_history_ttl",
            "confdir",
        }
        if state_opts & updated and all(name in opts for name in state_opts):
            self._open_state()
        if "relay_timeout" in updated and opts.relay_timeout <= 0:
            raise exceptions.OptionsError("relay_timeout must be a positive number of seconds")
        if "relay_keepalive" in updated and opts.relay_keepalive <= 0:
            raise exceptions.OptionsError("relay_keepalive must be a positive number of seconds")
        if {"relay_upstream", "relay_timeout", "relay_keepalive", "mode"} & updated:
            self.link.settings = LinkSettings(
                upstream=self._upstream_base(),
                idle_timeout_s=float(opts.relay_timeout),
                keepalive_s=float(opts.relay_keepalive),
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
                raise exceptions.OptionsError(f"mitmrelay reasoning key: {e}") from e
        # Without lazy, mitmproxy dials the original target (the dummy reverse target, or
        # api.openai.com) before our hook runs, and an offline or firewalled machine answers
        # Codex's CONNECT with 502: Codex then loops on "Reconnecting..." (contract §2.3).
        if "connection_strategy" in opts and opts.connection_strategy != "lazy":
            opts.update(connection_strategy="lazy")

    def _open_state(self) -> None:
        opts = ctx.options
        if min(opts.relay_history_entries, opts.relay_history_mb, opts.relay_history_ttl) <= 0:
            raise exceptions.OptionsError("relay_history_* options must be positive")
        limits = Limits(
            opts.relay_history_entries,
            opts.relay_history_mb * 1024 * 1024,
            float(opts.relay_history_ttl),
        )
        try:
            store = open_store(
                opts.relay_state, confdir=Path(opts.confdir).expanduser(), limits=limits
            )
        except (ValueError, OSError) as e:
            raise exceptions.OptionsError(f"relay_state: {e}") from e
        self.history.close()
        self.history = store

    def done(self) -> None:
        self.link.close()
        self.history.close()

    @staticmethod
    def _parse_upstream(value: str) -> urllib.parse.SplitResult | None:
        if not value:
            return None
        url = urllib.parse.urlsplit(value)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise exceptions.OptionsError(
                f"relay_upstream must be an http(s) URL such as https://api.deepseek.com/v1, "
                f"got {value!r}"
            )
        return url

    def running(self) -> None:
        if self.upstream is None:
            # An ERROR during startup makes mitmdump exit: the right outcome for a relay with
            # nowhere to relay to (mitmproxy-notes.md §7).
            logger.error(
                "mitmrelay: no upstream. Set --set relay_upstream=https://host/v1 or the "
                "CODEX_RELAY_UPSTREAM environment variable."
            )
            return
        opts = ctx.options
        key_state = "set" if os.environ.get(opts.relay_api_key_env) else "MISSING"
        mapping = ", ".join(opts.relay_model_map) or "none"
        logger.info(
            "mitmrelay: upstream %s (profile %s, key $%s %s); model %s, map %s; modes %s",
            self._upstream_base(),
            self.profile.name,
            opts.relay_api_key_env,
            key_state,
            opts.relay_model or "as sent by the client",
            mapping,
            ", ".join(opts.mode),
        )

    # ------------------------------------------------------------------ hooks

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        try:
            route = self._route(flow)
            if route is Route.PASS:
                return
            if self.upstream is None:
                flow.response = _answer(*local_answers.no_upstream())
                return
            await self.link.start()
            if route is Route.RESPONSES:
                self._relay(flow)
            elif route is Route.MODELS:
                self._reroute(flow, "/models", b"")
                flow.metadata[META] = {"route": "models"}
            elif route is Route.UPGRADE:
                flow.response = _answer(*local_answers.websocket_refused())
            else:
                flow.response = _answer(
                    *local_answers.not_served(flow.request.method, flow.request.path)
                )
        except Exception:
            # Fail closed: the original request carries the client's OpenAI key and must
            # never leave (mitmproxy-notes.md §4).
            logger.exception("relay: request hook failed; answering locally")
            exchange = self.exchanges.pop(flow.id, None)
            if exchange is not None:
                self.link.discard(exchange.link_token)
            flow.response = _answer(*local_answers.internal_error("translate this request"))
        if flow.response is not None and META in flow.metadata:
            flow.metadata[META]["status"] = flow.response.status_code

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """The link's translated stream goes to the client as it comes (mitmproxy only
        carries it); anything else is buffered and rewritten in ``response``."""
        if flow.id not in self.exchanges or flow.response is None:
            return
        self.exchanges[flow.id].first_byte = time.monotonic()
        if flow.response.headers.get(LOCAL_HEADER) == "translated":
            del flow.response.headers[LOCAL_HEADER]
            flow.response.stream = True

    def response(self, flow: http.HTTPFlow) -> None:
        meta = flow.metadata.get(META)
        local = flow.response is not None and flow.response.headers.pop(LOCAL_HEADER, None)
        if meta and meta.get("route") == "models":
            if not local:
                self._answer_models(flow)
            return
        exchange = self.exchanges.pop(flow.id, None)
        if exchange is None or flow.response is None:
            return
        try:
            if not local:  # the link's own answers (transport errors) are final as they are
                self._finish_exchange(flow, exchange)
        except Exception:
            logger.exception("relay: response hook failed")
            flow.response = _answer(
                *local_answers.internal_error("translate the upstream's answer")
            )
        self._annotate(flow, exchange)
        self._show_legs(flow, exchange)

    def error(self, flow: http.HTTPFlow) -> None:
        exchange = self.exchanges.pop(flow.id, None)
        if exchange is None:
            return
        self.link.discard(exchange.link_token)
        meta = flow.metadata.setdefault(META, {})
        meta["status"] = "error"
        flow.marked = ":x:"
        flow.comment = f"mitmrelay: {flow.error.msg if flow.error else 'error'}"
        logger.info(
            "relay %s: %s -> %s failed: %s",
            flow.id[:8],
            exchange.ctx.client_model,
            exchange.ctx.upstream_model,
            flow.error.msg if flow.error else "?",
        )
        outcome = self._usage_outcome(exchange, "failed", "flow_error", None)
        ctx.master.addons.trigger(RelayExchangeEndedHook(outcome))
        self._show_legs(flow, exchange)

    def _show_legs(self, flow: http.HTTPFlow, exchange: _Exchange) -> None:
        """The flow becomes the client's leg; the upstream's leg joins mitmweb's list."""
        job, client_request = exchange.link_job, exchange.client_request
        if job is None or client_request is None:
            return
        try:
            link_request = flow.request
            reverse = isinstance(flow.client_conn.proxy_mode, mode_specs.ReverseMode)
            listener = flow.client_conn.sockname[:2] if reverse else None
            inspection.show_client_leg(flow, client_request, listener=listener)
            if inspection.has_flow_list():
                inspection.add_to_flow_list(inspection.upstream_leg(flow, link_request, job))
        except Exception:  # inspection must never cost the client its answer
            logger.exception("relay: could not show flow %s's legs", flow.id[:8])

    # ------------------------------------------------------------------ internals

    def _route(self, flow: http.HTTPFlow) -> Route:
        mode = flow.client_conn.proxy_mode
        reverse = isinstance(mode, mode_specs.ReverseMode)
        req = flow.request
        upgrade = req.headers.get("upgrade", "").lower() == "websocket"
        # pretty_host follows Host / :authority / SNI, so transparent and local modes match
        # even when request.host is an IP (mitmproxy-notes.md §2).
        return classify(
            req.method,
            req.pretty_host,
            req.path,
            reverse=reverse,
            upgrade=upgrade,
            rules=self.rules,
        )

    def _relay(self, flow: http.HTTPFlow) -> None:
        try:
            body = flow.request.get_content()  # decodes gzip / br / zstd bodies
        except ValueError as e:
            flow.response = _answer(
                *local_answers.error_answer(
                    400, f"request body could not be decoded ({e})", "invalid_request_error"
                )
            )
            return
        try:
            request = parse_request(body or b"")
            history: list[Any] = []
            if request.previous_response_id:
                record = self.history.get(request.previous_response_id)
                if record is None:
                    # As OpenAI answers an id it does not know (or no longer keeps): never
                    # translate a history with a hole in it.
                    raise ClientRequestError(
                        f"Previous response with id '{request.previous_response_id}' not found.",
                        code="previous_response_not_found",
                        param="previous_response_id",
                    )
                history = history_items(record)
            upstream_model = self._upstream_model(request.model)
            chat, tctx = translate_request(
                request,
                upstream_model=upstream_model,
                profile=self.profile,
                history=history,
                carrier=self.carrier,
            )
        except ClientRequestError as e:
            flow.response = _answer(*local_answers.client_error(e))
            return
        if self.profile.reasoning_replay != "none":
            # Clients that drop reasoning items: what the relay kept per call id fills in.
            chat, _ = with_restored_reasoning(
                chat, self._kept_reasoning, self.profile.reasoning_replay
            )
        exchange = _Exchange(
            ctx=tctx,
            response_id="resp_" + secrets.token_hex(12),
            started=time.monotonic(),
            stream=bool(chat.get("stream")),
            input_items=[*history, *request.input]
            if isinstance(request.input, list)
            else [*history, {"type": "message", "role": "user", "content": request.input}],
        )
        self.exchanges[flow.id] = exchange
        exchange.client_request = flow.request.copy()
        exchange.link_token, exchange.link_job = self._reroute(
            flow,
            "/chat/completions",
            json.dumps(chat).encode(),
            translator=self._translator(exchange) if exchange.stream else None,
            retry_body=self._healer(flow, chat),
        )
        flow.metadata[META] = {
            "route": "responses",
            "client_model": tctx.client_model,
            "upstream_model": tctx.upstream_model,
            "response_id": exchange.response_id,
            "profile": self.profile.name,
        }
        ctx.master.addons.trigger(
            RelayExchangeStartedHook(exchange.response_id, tctx.client_model, exchange.stream)
        )

    def _upstream_model(self, client_model: str) -> str:
        for spec in ctx.options.relay_model_map:
            client, _, upstream = spec.partition("=")
            if client.strip() == client_model:
                return upstream.strip()
        return ctx.options.relay_model or client_model

    def _reroute(
        self,
        flow: http.HTTPFlow,
        endpoint: str,
        body: bytes,
        *,
        translator: StreamTranslator | None = None,
        retry_body: Callable[[int, bytes], bytes | None] | None = None,
    ) -> tuple[str, LinkJob]:
        """Send the flow to the upstream link, which calls ``{relay_upstream}{endpoint}`` with
        the relay's key. The key is the link's: it is never on the flow (mitmweb, ``-w``)."""
        up = self.upstream
        assert up is not None
        req = flow.request
        headers = req.headers
        for name in CLIENT_ONLY_HEADERS:
            headers.pop(name, None)
        for name in [
            n
            for n in headers
            if n.lower().startswith("x-codex-") or n.lower().startswith("x-openai-")
        ]:
            headers.pop(name, None)
        # Pop content-encoding BEFORE setting the body: mitmproxy re-encodes to match it
        # (mitmproxy-notes.md §3).
        headers.pop("content-encoding", None)
        headers["accept-encoding"] = "identity"  # SSE must arrive uncompressed
        if endpoint == "/models":
            req.method = "GET"
            headers.pop("content-type", None)
            req.content = b""
        else:
            headers["content-type"] = "application/json"
            headers["accept"] = "text/event-stream" if translator else "application/json"
            req.content = body
        key = os.environ.get(ctx.options.relay_api_key_env, "")
        job = LinkJob(
            url=up._replace(path=up.path.rstrip("/") + endpoint, query="", fragment=""),
            headers={"authorization": f"Bearer {key}"} if key else {},
            translator=translator,
            retry_body=retry_body,
            # Only a flow list (mitmweb, console) shows the upstream's raw bytes (inspection.py).
            record_limit=MAX_RECORDED if inspection.has_flow_list() else 0,
        )
        token = self.link.register(job)
        headers[JOB_HEADER] = token
        req.scheme, req.host, req.port = "http", "127.0.0.1", self.link.port
        req.path = job.url.path
        if flow.server_conn.via is not None:
            # mitmproxy's upstream proxy (--mode upstream:) cannot reach our loopback link;
            # the link itself goes through that proxy (mitmproxy-notes.md §2).
            flow.server_conn = connection.Server(address=None)
        return token, job

    def _healer(
        self, flow: http.HTTPFlow, chat: dict[str, Any]
    ) -> Callable[[int, bytes], bytes | None]:
        """DeepSeek/Kimi refuse a history that lost reasoning they want back: the link then
        retries once with placeholders (core/reasoning_recovery.py)."""
        field_name = self.profile.reasoning_replay

        def heal(status: int, body: bytes) -> bytes | None:
            if not is_missing_reasoning_error(status, body):
                return None
            healed, changed = with_reasoning_placeholders(
                chat, field="reasoning_content" if field_name == "none" else field_name
            )
            if not changed:
                return None
            logger.info(
                "relay %s: upstream wants reasoning the history lost; retrying once with "
                "placeholders on %d message(s)",
                flow.id[:8],
                changed,
            )
            return json.dumps(healed).encode()

        return heal

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
        Built once per set of options (loading the system's CAs takes milliseconds)."""
        opts = ctx.options
        key = (
            opts.ssl_verify_upstream_trusted_ca,
            opts.ssl_verify_upstream_trusted_confdir,
            opts.ssl_insecure,
        )
        if self._tls is not None and self._tls[0] == key:
            return self._tls[1]
        context = ssl.create_default_context(
            cafile=opts.ssl_verify_upstream_trusted_ca or None,
            capath=opts.ssl_verify_upstream_trusted_confdir or None,
        )
        if opts.ssl_insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        self._tls = (key, context)
        return context

    def _translator(self, exchange: _Exchange) -> StreamTranslator:
        counter = iter(range(1, 1 << 62))
        prefix = exchange.response_id.removeprefix("resp_")[:16]
        return StreamTranslator(
            exchange.ctx,
            response_id=exchange.response_id,
            created_at=int(time.time()),
            new_id=lambda kind: f"{kind}_{prefix}{next(counter):04d}",
            reasoning_mode=ctx.options.relay_reasoning,
            carrier=self.carrier,
            profile=self.profile,
            upstream=self._upstream_base(),
        )

    def _finish_exchange(self, flow: http.HTTPFlow, exchange: _Exchange) -> None:
        response = flow.response
        assert response is not None
        job = exchange.link_job
        if job is not None and job.committed:
            # Translated by the link as it streamed: keep what was sent so mitmweb does not
            # show "content missing" (mitmproxy-notes.md §8).
            exchange.translator = job.translator
            response.content = bytes(job.answered)
            return
        if response.status_code >= 400:
            mapped = map_upstream_error(
                response.status_code,
                dict(response.headers),
                response.get_content(strict=False) or b"",
                upstream=self._upstream_base(),
                now=time.time,
            )
            flow.response = http.Response.make(mapped.status, mapped.body(), mapped.headers())
            flow.metadata[META]["error"] = mapped.code
            return
        translator = self._translator(exchange)
        exchange.translator = translator
        body = response.get_content(strict=False) or b""
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            out = translator.feed(body) + translator.finish()
        else:
            # A whole completion: either "stream" was false, or the server ignored it. It is
            # the one-chunk stream it is equivalent to (core/completion.py).
            try:
                out = translator.feed(completion_as_sse(body)) + translator.finish()
            except ValueError:
                out = translator.fail(
                    "upstream_invalid_json",
                    f"{self._upstream_base()} answered with a body that is not JSON",
                )
        if exchange.stream:
            flow.response = http.Response.make(
                200, out, {"content-type": "text/event-stream; charset=utf-8"}
            )
        else:
            flow.response = _answer(*local_answers.json_answer(translator.response))

    def _answer_models(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            body = flow.response.get_content(strict=False) or b""
            flow.response = _answer(*local_answers.model_list(body, [ctx.options.relay_model]))

    def _kept_reasoning(self, call_id: str) -> dict[str, Any] | None:
        try:
            return self.history.get(REASONING_KEY + call_id)
        except Exception:  # a lost Redis must not fail the request: the carrier still works
            logger.exception("relay: could not read kept reasoning")
            return None

    def _remember(self, exchange: _Exchange) -> None:
        """Keep a finished conversation for previous_response_id (core/history.py), and each
        reasoning payload under the call ids it preceded (the call_id -> reasoning map)."""
        response = exchange.translator.response if exchange.translator else None
        if not response or response.get("status") not in ("completed", "incomplete"):
            return
        record, _ = conversation_record(exchange.input_items, response["output"])
        # Turn fingerprints are of the calls as the upstream will see them replayed.
        upstream_names = {(o.namespace, o.name): n for n, o in exchange.ctx.tools.items()}
        try:
            self.history.put(exchange.response_id, record)
            for item in response["output"]:
                blob = item.get("encrypted_content") if item["type"] == "reasoning" else None
                payload = self.carrier.open(blob) if blob and self.carrier else None
                if payload is None or not payload.call_ids:
                    continue
                kept = payload_record(payload)
                for call_id in payload.call_ids:
                    self.history.put(REASONING_KEY + call_id, kept)
                calls = [
                    {
                        "function": {
                            "name": upstream_names.get((i.get("namespace"), i["name"]), i["name"]),
                            "arguments": i.get("arguments"),
                        }
                    }
                    for i in response["output"]
                    if i.get("call_id") in payload.call_ids and i["type"] == "function_call"
                ]
                if calls:
                    self.history.put(REASONING_KEY + "turn:" + turn_fingerprint(calls), kept)
        except Exception:  # a full disk or a lost Redis must not fail the answer already sent
            logger.exception("relay: could not keep conversation %s", exchange.response_id)

    def _annotate(self, flow: http.HTTPFlow, exchange: _Exchange) -> None:
        self._remember(exchange)
        meta = flow.metadata.setdefault(META, {})
        response = exchange.translator.response if exchange.translator else None
        status = (response or {}).get("status") or (
            f"http {flow.response.status_code}" if flow.response else "?"
        )
        usage = (response or {}).get("usage") or {}
        meta.update(status=status, usage=usage or None)
        if exchange.link_job is not None and exchange.link_job.retried:
            meta["healed"] = True  # one self-healing retry (link.py, core/reasoning_recovery.py)
        tokens = (
            f"{usage.get('input_tokens', '?')} in / {usage.get('output_tokens', '?')} out"
            if usage
            else "no usage"
        )
        flow.comment = (
            f"mitmrelay: {exchange.ctx.client_model} -> {exchange.ctx.upstream_model}"
            f" | {status} | {tokens}"
        )
        if status not in ("completed",):
            flow.marked = ":warning:"
        duration = time.monotonic() - exchange.started
        error = (response or {}).get("error") or {}
        failure = exchange.link_job.failure if exchange.link_job else None
        why = f"{error.get('code')}: {error.get('message')}" if error else None
        if failure is not None and not error:
            why = f"{failure.code}: {failure.message}"
        logger.info(
            "relay %s: %s -> %s %s %s in %.2fs%s",
            flow.id[:8],
            exchange.ctx.client_model,
            exchange.ctx.upstream_model,
            status,
            tokens,
            duration,
            f" ({why})" if why else "",
        )
        code = error.get("code") or meta.get("error") or (failure.code if failure else None)
        answered = status in ("completed", "incomplete")
        outcome = self._usage_outcome(exchange, status, None if answered else code, usage or None)
        cost = format_cost(outcome)
        if cost:
            flow.comment += f" | {cost}"
        ctx.master.addons.trigger(RelayExchangeEndedHook(outcome))

    def _usage_outcome(
        self,
        exchange: _Exchange,
        status: str,
        failure: str | None,
        usage: dict[str, Any] | None,
    ) -> ExchangeOutcome:
        """The exchange as the usage addon reads it. The one provider is named after the
        upstream's host; a self-healing retry is an attempt given up before the last."""
        provider = (self.upstream.hostname or "") if self.upstream else ""
        model = exchange.ctx.upstream_model
        job = exchange.link_job
        attempts = []
        if job is not None and job.retried:
            attempts.append(AttemptOutcome(provider, model, 400, "invalid_request_error"))
        attempts.append(AttemptOutcome(provider, model, job.status if job else None, failure))
        return ExchangeOutcome(
            response_id=exchange.response_id,
            client_model=exchange.ctx.client_model,
            provider=provider,
            upstream_model=model,
            status=status,
            stream=exchange.stream,
            started_at=exchange.started_at,
            total_s=time.monotonic() - exchange.started,
            first_event_s=None
            if exchange.first_byte is None
            else exchange.first_byte - exchange.started,
            failure=failure,
            usage=usage,
            attempts=tuple(attempts),
        )

    def usage_status(self) -> tuple[bool, list[str]]:
        """For /healthz: whether the relay has an upstream, and its provider's name."""
        host = self.upstream.hostname if self.upstream else None
        return host is not None, [host] if host else []

    def _upstream_base(self) -> str:
        up = self.upstream
        return f"{up.scheme}://{up.netloc}{up.path}" if up else "(none)"
