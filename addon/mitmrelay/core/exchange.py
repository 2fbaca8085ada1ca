"""One relayed exchange, from the parsed Responses request to the record of how it ended.

Theory of operation
-------------------
The addon parses the request (core/client_request.py), finds its plan (core/routes.py) and
fetches what the state store holds for it; everything it then decides lives here, in pure
code that tests reach without a flow: which headers may reach a third-party upstream, the
history a ``previous_response_id`` continues, each attempt's upstream request (translated for
that target's provider, profile and wire), what the retry/fallback policy does with a failure
(core/attempts.py), how a whole answer becomes events, what to remember once the answer is
in, and the ``ExchangeOutcome`` the log line, mitmweb and the usage ledger read.

Rules:

1. Headers only Codex or OpenAI understand (its key, session and turn ids, OpenAI's
   organisation and beta switches) never reach a third-party upstream
   (docs/codex-contract.md §3); the relay's own key is added per provider by the link.
2. A ``previous_response_id`` the relay does not hold is answered as OpenAI answers it (400
   ``previous_response_not_found``), never translated with a hole in its history.
3. The client always sees the model name it asked for, whichever target served
   (``TranslationContext.client_model``); ids and the response object stay the first
   attempt's across retries and fallbacks (``StreamTranslator.continue_from``).
4. Each attempt is translated with its route's switches: ``vision`` (without it every image
   becomes a text note) and ``reasoning`` (without it no thinking switch and no reasoning
   placeholder: core/request.py rules 8 and 9). A route's ``max_output_tokens`` bounds the
   upstream's output (the lower of it and the client's own bound): Codex never sends one
   (docs/codex-contract.md §4) and its model catalog has no field for it.
5. The call_id -> reasoning map is kept per provider (``reasoning_key``): call ids are only
   unique within one provider (Kimi's ``functions.name:0`` and Mistral's 9-character ids
   repeat across conversations and providers), and one provider's reasoning is no answer to
   another's demand. Sealed reasoning is scoped the same way: each attempt's translator seals
   as its provider, and each attempt's request sends another provider's reasoning as its text
   alone (core/reasoning.py; a blob sent to another provider is refused as
   ``invalid_encrypted_content``, docs/providers.md §6.2). The conversation is kept for
   ``previous_response_id`` unless the request said ``store: false``: OpenAI keeps no such
   response, and a later ``previous_response_id`` naming it is answered
   ``previous_response_not_found`` (docs/providers.md §6.1), as rule 2 answers it here. Codex
   sends ``store: false`` on every call, with its whole history (docs/codex-contract.md §4):
   keeping each call's megabytes it never asks for again cost more CPU than translating them
   (notes/reqspeed.md).
6. A whole answer (a JSON completion or Response, or an SSE body read whole) is the stream it
   is equivalent to (core/wires.py ``as_sse``): one function turns it into events, for the
   link and the addon alike.
7. Each target is called on its provider's wire (core/wires.py): a Chat provider gets the
   Chat translation (core/request.py) and its stream is translated (core/stream.py); a
   Responses provider gets Codex's request cleaned up for its family
   (core/responses_wire/request.py) and its stream normalised. The plan may mix wires: every
   attempt is built for its own target, and either translator takes over the other's stream
   (``continue_from``). A ``previous_response_id`` is expanded from the relay's own record on
   both wires (response ids are the relay's, so no provider could resolve one).
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mitmrelay.models.responses import ResponsesRequest

from .attempts import AttemptPolicy, Decision, Failure, Step
from .body import Body, json_body
from .client_request import ClientRequest
from .context import TranslationContext
from .errors import ClientRequestError
from .history import conversation, history_items
from .ledger import format_cost
from .outcome import AttemptOutcome, ExchangeOutcome
from .reasoning import ReasoningCarrier, scoped
from .reasoning_recovery import (
    PLACEHOLDER,
    payload_record,
    restoration_keys,
    turn_fingerprint,
    with_reasoning_placeholders,
    with_restored_reasoning,
)
from .request import translate_request
from .responses_wire import ResponsesNormaliser, clean_request, rules_for
from .responses_wire.kept import kept_records
from .routes import Target
from .stream import ReasoningMode, StreamTranslator
from .wires import CHAT, WIRES, Wire

# The translator of a streamed answer, on either wire (same API: core/stream.py).
Translator = StreamTranslator | ResponsesNormaliser

# Rule 1. Names compared lower-case; every ``x-codex-*`` and ``x-openai-*`` header goes too.
CLIENT_ONLY_HEADERS = frozenset(
    {
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
    }
)
CLIENT_ONLY_PREFIXES = ("x-codex-", "x-openai-")
REASONING_KEY = "reasoning:"  # state-store key prefix of the call_id -> reasoning map


def client_only(name: str) -> bool:
    """Whether a request header must not reach the upstream (rule 1)."""
    lower = name.lower()
    return lower in CLIENT_ONLY_HEADERS or lower.startswith(CLIENT_ONLY_PREFIXES)


def reasoning_key(provider: str, call_id: str) -> str:
    """Where the reasoning that preceded ``call_id`` is kept for ``provider`` (rule 5)."""
    return f"{REASONING_KEY}{provider}:{call_id}"


def previous_history(
    request: ResponsesRequest | ClientRequest, record: Mapping[str, Any] | None
) -> list[Any]:
    """The items a ``previous_response_id`` continues from (rule 2), as the Chat wire reads
    them; ``record`` is what the store held for it (None: nothing). Raises
    ``ClientRequestError``."""
    if not request.previous_response_id:
        return []
    if record is None:
        raise ClientRequestError(
            f"Previous response with id '{request.previous_response_id}' not found.",
            code="previous_response_not_found",
            param="previous_response_id",
        )
    return history_items(dict(record))


def model_not_found(model: str, names: Sequence[str]) -> ClientRequestError:
    """The 400 for a model name no route matches: names the model and what is routed. Codex
    shows a ``model_not_found`` message alone and does not retry a 400
    (docs/codex-contract.md §8.1)."""
    listing = ", ".join(names) or "none"
    return ClientRequestError(
        f"The model '{model}' does not exist or is not routed by this relay "
        f"(mitmrelay routes: {listing}).",
        code="model_not_found",
        param="model",
    )


def answer_events(
    translator: Translator,
    body: bytes,
    *,
    event_stream: bool,
    upstream: str,
    wire: Wire = CHAT,
) -> bytes:
    """A whole upstream answer through ``translator`` (rule 6): an SSE body as it is, a JSON
    answer (a completion, or a Response on the Responses wire) as the stream it equals; a
    body that is not one fails the response. Never raises."""
    if event_stream:
        return translator.feed(body) + translator.finish()
    try:
        events = wire.as_sse(body)
    except ValueError:
        return translator.fail(
            "upstream_invalid_json", f"{upstream} answered with a body that is not JSON"
        )
    return translator.feed(events) + translator.finish()


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    """One attempt's request: where it goes, with which headers (the provider's key among
    them: kept out of ``repr``), the request as a dict (``chat``: a Chat request, or on the
    Responses wire the cleaned Responses request) and its bytes, and the context its answer is
    read with. ``kept_keys``: on the Responses wire, the store keys the cleanup looked up for
    turns whose reasoning the client dropped (rule 5)."""

    index: int  # the target's place in the plan
    target: Target
    chat: dict[str, Any] = field(repr=False)
    body: Body = field(repr=False)  # bytes, or a large body's parts (core/body.py)
    ctx: TranslationContext = field(repr=False)
    healed: bool = False
    kept_keys: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return self.target.provider.name

    @property
    def wire(self) -> Wire:
        return WIRES[self.target.provider.wire]

    @property
    def url(self) -> urllib.parse.SplitResult:
        return urllib.parse.urlsplit(self.target.provider.url)

    @property
    def upstream(self) -> str:
        """The upstream as named in error messages: its base URL (never a key)."""
        return self.target.provider.base_url

    def headers(self) -> dict[str, str]:
        return self.target.provider.request_headers()


class Exchange:
    """The pure state of one relayed exchange. Built by the addon once the request is parsed
    and its plan found; ids, times and the store's answers come in as arguments.

    ``request``:     the client's request (core/client_request.py; a validated
                     ``ResponsesRequest`` is taken as it is).
    ``started_at``:  the request's unix time (``created_at`` of the response).
    ``new_id``:      makes item ids (``new_id("msg")``), unique within the exchange.
    ``previous``:    what the store holds for the request's ``previous_response_id``
                     (``conversation_record``); None with such an id is a 400 (rule 2).
    Raises ``ClientRequestError`` (rule 2) and ``ValueError`` for an empty plan.
    """

    def __init__(
        self,
        request: ClientRequest | ResponsesRequest,
        plan: Sequence[Target],
        *,
        response_id: str,
        started_at: float,
        new_id: Callable[[str], str],
        previous: Mapping[str, Any] | None = None,
        carrier: ReasoningCarrier | None = None,
        reasoning_mode: ReasoningMode = "summary",
        retry_wait_s: float = 0.0,
    ) -> None:
        if not plan:
            raise ValueError("an exchange needs a plan with a target")
        if isinstance(request, ResponsesRequest):
            request = ClientRequest.of(request)
        previous_history(request, previous)  # rule 2: an id the relay does not hold
        self.request = request
        self.plan = tuple(plan)
        self.response_id = response_id
        self.started_at = started_at
        self.new_id = new_id
        self.previous = previous
        self._history: dict[str, list[Any]] = {}  # per wire, parsed as that wire reads it
        self.carrier = carrier
        self.reasoning_mode = reasoning_mode
        self.policy = AttemptPolicy(len(self.plan), retry_wait_s=retry_wait_s)
        self.failed: list[AttemptOutcome] = []  # attempts given up, in order
        self.calls: list[UpstreamCall] = []  # every attempt made, in order

    @property
    def client_model(self) -> str:
        return self.request.model

    @property
    def stream(self) -> bool:
        return self.request.stream

    def history(self, wire: str) -> list[Any]:
        """The items a ``previous_response_id`` stands for, as ``wire`` reads them: validated
        models for the Chat wire, the record's plain items for the Responses wire."""
        if wire not in self._history:
            record = self.previous
            if record is None:
                self._history[wire] = []
            elif wire == "chat":
                self._history[wire] = history_items(dict(record))
            else:
                self._history[wire] = [*record["input"], *record["output"]]
        return self._history[wire]

    def input_items(self) -> list[Any]:
        """The request's full input, its history first: what a later
        ``previous_response_id`` continues from (in whichever form was parsed)."""
        return [*self.history(self.request.parsed_for), *self.request.input_items()]

    # ------------------------------------------------------------------ attempts

    def first_call(self) -> UpstreamCall:
        """The first attempt's request. Raises ``ClientRequestError``."""
        return self._call(0)

    def reasoning_keys(self) -> list[str]:
        """The store keys whose records would restore reasoning missing from the latest
        attempt's assistant tool-call messages (for clients that drop reasoning items):
        fetch them, then ``restore``."""
        call = self.calls[-1]
        if call.wire is not CHAT:  # the cleanup listed the keys it looked for (rule 7)
            return list(call.kept_keys)
        if call.target.provider.profile.reasoning_replay == "none":
            return []
        return [reasoning_key(call.label, k) for k in restoration_keys(call.chat, _field(call))]

    def restore(self, kept: Mapping[str, Mapping[str, Any]]) -> UpstreamCall:
        """The latest attempt with the reasoning ``kept`` holds put back (rule 5); it
        replaces that attempt."""
        call = self.calls[-1]
        if not kept:
            return call
        if call.wire is not CHAT:  # cleaned again, the kept records at hand
            call = self.calls[-1] = self._responses_call(call.index, kept=kept)
            return call
        name = call.label
        chat, changed = with_restored_reasoning(
            call.chat, lambda key: kept.get(reasoning_key(name, key)), _field(call)
        )
        if changed:
            call = self.calls[-1] = _rebuilt(call, chat)
        return call

    def next_call(self, failure: Failure) -> tuple[float, UpstreamCall] | None:
        """After ``failure`` of the latest attempt: the delay and the next attempt's request,
        or None to give the client that failure (core/attempts.py)."""
        last = self.calls[-1]
        self.failed.append(
            AttemptOutcome(
                last.label, last.target.upstream_model, failure.status, failure.error.code
            )
        )
        decision = self.policy.next(failure)
        if decision is None:
            return None
        try:
            call = self._step(decision, last)
        except ClientRequestError:
            # The fallback's provider cannot take this request (e.g. its tool-name rules):
            # the failure that is known stands.
            return None
        return None if call is None else (decision.delay_s, call)

    def _step(self, decision: Decision, last: UpstreamCall) -> UpstreamCall | None:
        if decision.step is Step.WAIT:
            call = last
        elif decision.step is Step.HEAL and last.wire is not CHAT:
            healed = self._responses_call(last.index, heal=True)
            if healed.chat == last.chat:  # every turn already carries reasoning
                return None
            call = healed
        elif decision.step is Step.HEAL:
            field_name = _field(last)
            placeholder = last.target.provider.profile.reasoning_placeholder or " "
            chat, changed = with_reasoning_placeholders(last.chat, field_name, placeholder)
            if not changed:  # every tool call already carries reasoning: nothing to heal
                return None
            call = _rebuilt(last, chat, healed=True)
        else:
            return self._call(decision.target)
        self.calls.append(call)
        return call

    def _call(self, index: int) -> UpstreamCall:
        target = self.plan[index]
        if target.provider.wire != "chat":  # rule 7
            call = self._responses_call(index)
            self.calls.append(call)
            return call
        chat, ctx = translate_request(
            self.request.validated,
            upstream_model=target.upstream_model,
            profile=target.provider.profile,
            history=self.history("chat"),
            carrier=self.carrier,
            vision=target.vision,
            reasoning=target.reasoning,
            origin=target.provider.name,
        )
        _bound_output(chat, target)
        call = UpstreamCall(index, target, chat, json_body(chat, len(self.request.body)), ctx)
        self.calls.append(call)
        return call

    def _responses_call(
        self,
        index: int,
        *,
        kept: Mapping[str, Mapping[str, Any]] | None = None,
        heal: bool = False,
    ) -> UpstreamCall:
        """The request for a Responses provider (rule 7): Codex's request cleaned up for its
        family, with the records ``kept`` holds for turns without reasoning (rule 5; without
        it, the keys looked for are listed in ``kept_keys``) and, to ``heal``, a placeholder
        for any turn still without reasoning (core/attempts.py rule 1)."""
        target = self.plan[index]
        provider = target.provider
        rules = rules_for(provider.profile.name)
        if heal:
            # The Chat path's remedy for the same refusal (core/reasoning_recovery.py).
            rules = dataclasses.replace(rules, reasoning_placeholder=PLACEHOLDER)
        asked: list[str] = []

        def lookup(key: str) -> Mapping[str, Any] | None:
            scoped = reasoning_key(provider.name, key)
            asked.append(scoped)
            return kept.get(scoped) if kept else None

        body, ctx = clean_request(
            self.request.raw,
            rules,
            upstream_model=target.upstream_model,
            origin=provider.name,
            carrier=self.carrier,
            history=self.history("responses") if self.request.previous_response_id else None,
            vision=target.vision,
            reasoning=target.reasoning,
            kept=lookup,
        )
        bound = target.route.max_output_tokens
        if bound is not None and "max_output_tokens" in rules.request_fields:
            current = body.get("max_output_tokens")
            body["max_output_tokens"] = (
                bound if not isinstance(current, int) else min(current, bound)
            )
        return UpstreamCall(
            index,
            target,
            body,
            json_body(body, len(self.request.body)),
            ctx,
            healed=heal,
            kept_keys=tuple(asked),
        )

    def translator(self, call: UpstreamCall) -> Translator:
        """The stream translator for ``call``'s answer; the exchange's response id and time
        whichever attempt it is (rule 3)."""
        if call.wire is not CHAT:  # rule 7
            return ResponsesNormaliser(
                call.ctx,
                rules_for(call.target.provider.profile.name),
                response_id=self.response_id,
                created_at=int(self.started_at),
                new_id=self.new_id,
                origin=call.label,
                reasoning_mode=self.reasoning_mode,
                carrier=self.carrier,
                upstream=call.upstream,
            )
        return StreamTranslator(
            call.ctx,
            response_id=self.response_id,
            created_at=int(self.started_at),
            new_id=self.new_id,
            reasoning_mode=self.reasoning_mode,
            carrier=scoped(self.carrier, call.label),
            profile=call.target.provider.profile,
            upstream=call.upstream,
        )

    # ------------------------------------------------------------------ after the answer

    def records(self, response: Mapping[str, Any] | None) -> list[tuple[str, dict[str, Any]]]:
        """What to keep once the answer is in (key, record): the conversation under the
        response id (for ``previous_response_id``; not for ``store: false``), and each
        reasoning payload under the serving provider's call ids and turn fingerprint (rule 5).
        Nothing for an answer that did not complete."""
        if not response or response.get("status") not in ("completed", "incomplete"):
            return []
        output = response["output"]
        out: list[tuple[str, dict[str, Any]]] = []
        if self.request.store is not False:
            out.append((self.response_id, conversation(self.input_items(), output)))
        if self.carrier is None or not self.calls:
            return out
        call = self.calls[-1]
        name = call.label
        if call.wire is not CHAT:  # rule 7: the Responses wire's own records (kept.py)
            return out + [
                (reasoning_key(name, key), kept)
                for key, kept in kept_records(output, self.carrier.open)
            ]
        # Turn fingerprints are of the calls as the upstream will see them replayed.
        upstream_names = {(o.namespace, o.name): n for n, o in call.ctx.tools.items()}
        for item in output:
            blob = item.get("encrypted_content") if item["type"] == "reasoning" else None
            payload = self.carrier.open(blob) if blob else None
            if payload is None or not payload.call_ids:
                continue
            kept = payload_record(payload)
            out += [(reasoning_key(name, call_id), kept) for call_id in payload.call_ids]
            calls = [
                {
                    "function": {
                        "name": upstream_names.get((i.get("namespace"), i["name"]), i["name"]),
                        "arguments": i.get("arguments"),
                    }
                }
                for i in output
                if i.get("call_id") in payload.call_ids and i["type"] == "function_call"
            ]
            if calls:
                out.append((reasoning_key(name, "turn:" + turn_fingerprint(calls)), kept))
        return out

    def outcome(
        self,
        *,
        status: str,
        total_s: float,
        http_status: int | None,
        response: Mapping[str, Any] | None = None,
        failure: str | None = None,
        detail: str | None = None,
        first_event_s: float | None = None,
    ) -> ExchangeOutcome:
        """The record of this exchange: the serving attempt (the last one made) after those
        given up (``next_call``). ``http_status`` is the last attempt's upstream status."""
        last = self.calls[-1] if self.calls else None
        target = last.target if last else self.plan[0]
        attempts = list(self.failed)
        if last is not None and len(attempts) < len(self.calls):
            attempts.append(AttemptOutcome(last.label, target.upstream_model, http_status, failure))
        return ExchangeOutcome(
            response_id=self.response_id,
            client_model=self.client_model,
            provider=target.provider.name,
            upstream_model=target.upstream_model,
            status=status,
            stream=self.stream,
            started_at=self.started_at,
            total_s=total_s,
            first_event_s=first_event_s,
            failure=failure,
            detail=detail,
            usage=(response or {}).get("usage") or None,
            attempts=tuple(attempts),
            price=target.route.price,
        )


def refused_outcome(
    *,
    client_model: str,
    response_id: str,
    stream: bool,
    started_at: float,
    total_s: float,
    status: int,
    code: str,
    detail: str,
) -> ExchangeOutcome:
    """The record of a request the relay answered itself, before any upstream call."""
    return ExchangeOutcome(
        response_id=response_id,
        client_model=client_model,
        provider="",
        upstream_model="",
        status=f"http {status}",
        stream=stream,
        started_at=started_at,
        total_s=total_s,
        failure=code,
        detail=detail,
    )


# ---------------------------------------------------------------------- what people read


def tokens_text(usage: Mapping[str, Any] | None) -> str:
    if not usage:
        return "no usage"
    return f"{usage.get('input_tokens', '?')} in / {usage.get('output_tokens', '?')} out"


def route_text(outcome: ExchangeOutcome) -> str:
    """``via deepseek``, and the attempts given up before: ``after kimi (http 503
    server_error)``. Empty when no provider was called."""
    if not outcome.provider:
        return ""
    given_up = outcome.attempts[:-1]
    text = f"via {outcome.provider}"
    if given_up:
        text += " after " + ", ".join(_attempt_text(a) for a in given_up)
    return text


def _attempt_text(attempt: AttemptOutcome) -> str:
    status = f"http {attempt.status}" if attempt.status is not None else "no answer"
    return f"{attempt.provider} ({status} {attempt.failure or 'failed'})"


def printable(text: str) -> str:
    """``text`` safe for one log line or comment: control characters (a client's CR/LF in a
    model name) escaped, never interpreted."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def log_line(flow_id: str, outcome: ExchangeOutcome) -> str:
    """The one INFO line per exchange (no prompt content, no key)."""
    parts = [
        f"relay {flow_id[:8]}: {printable(outcome.client_model)} -> "
        f"{printable(outcome.upstream_model) or '-'}",
        outcome.status,
        tokens_text(outcome.usage),
        f"in {outcome.total_s:.2f}s",
    ]
    route = route_text(outcome)
    if route:
        parts.append(route)
    line = " ".join(parts)
    if outcome.failure:
        why = f"{outcome.failure}: {outcome.detail}" if outcome.detail else outcome.failure
        line += f" ({printable(why)})"
    return line


def comment(outcome: ExchangeOutcome) -> str:
    """mitmweb's comment on the client leg."""
    parts = [
        f"mitmrelay: {printable(outcome.client_model)} -> "
        f"{printable(outcome.upstream_model) or '-'}",
        outcome.status,
        tokens_text(outcome.usage),
    ]
    cost = format_cost(outcome)
    if cost:
        parts.append(cost)
    route = route_text(outcome)
    if route:
        parts.append(route)
    return " | ".join(parts)


# ---------------------------------------------------------------------- helpers


def _bound_output(chat: dict[str, Any], target: Target) -> None:
    """Rule 4, on the translated request."""
    profile = target.provider.profile
    bound = target.route.max_output_tokens
    name = profile.max_tokens_field
    if bound is not None and name not in profile.drop_params:
        current = chat.get(name)
        chat[name] = bound if not isinstance(current, int) else min(current, bound)


def _field(call: UpstreamCall) -> str:
    replay = call.target.provider.profile.reasoning_replay
    return "reasoning_content" if replay == "none" else replay


def _rebuilt(call: UpstreamCall, chat: dict[str, Any], *, healed: bool = False) -> UpstreamCall:
    return UpstreamCall(
        call.index, call.target, chat, json_body(chat, len(call.body)), call.ctx, healed
    )
