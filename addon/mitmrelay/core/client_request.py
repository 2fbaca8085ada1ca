"""The client's Responses request, parsed once, into the form each wire reads.

Theory of operation
-------------------
The Chat wire reads the request validated into pydantic models (``parse_request``, the
relay's edge validation: a bad body is a 400 naming the field); the Responses wire cleans the
plain JSON (core/responses_wire/request.py), passing on what it does not touch as it came. A
long history makes either parse the biggest cost of a request (``bench/request_translate.py``),
so no request is parsed into both unless an exchange really calls both wires (a fallback
across wires): ``validated`` and ``raw`` are each made on first use, from the body.

Before the plan is known only the fields routing and the store read are needed (``model``,
``stream``, ``previous_response_id``, ``store``). ``parse`` reads them the cheapest way the
route table allows: a table of Chat providers only validates at once, as it always did; a
table of Responses providers only loads the JSON at once; a mixed table reads these alone
(pydantic skips the rest without building it: about a third of ``json.loads``), and the
first call parses what its wire needs.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from mitmrelay.models.responses import ResponsesRequest

from .errors import ClientRequestError
from .request import parse_request


class _Head(BaseModel):
    """The fields routing reads; everything else is skipped unparsed."""

    model_config = ConfigDict(extra="ignore")
    model: str
    stream: bool | None = None
    previous_response_id: str | None = None
    store: bool | None = None


class ClientRequest:
    """One client request: ``model``, ``stream``, ``previous_response_id`` and ``store``
    (None: not said; a ``store: false`` response is not kept, core/exchange.py rule 5) at
    once, the validated models (``validated``) and the plain JSON (``raw``) on first use. Both raise
    ``ClientRequestError`` for a body the wire cannot take."""

    __slots__ = (
        "_raw",
        "_validated",
        "body",
        "model",
        "previous_response_id",
        "store",
        "stream",
    )

    def __init__(
        self,
        body: bytes,
        *,
        model: str,
        stream: bool,
        previous_response_id: str | None,
        store: bool | None = None,
        validated: ResponsesRequest | None = None,
        raw: Mapping[str, Any] | None = None,
    ) -> None:
        self.body = body
        self.model = model
        self.stream = stream
        self.previous_response_id = previous_response_id
        self.store = store
        self._validated = validated
        self._raw = raw

    @classmethod
    def parse(cls, body: bytes, wires: Collection[str] = ("chat",)) -> ClientRequest:
        """The request, read as the providers of a table speaking ``wires`` need it. Raises
        ``ClientRequestError`` for a body whose routing fields are unusable."""
        if "responses" not in wires:
            return cls.of(parse_request(body), body)
        if "chat" not in wires:
            raw = _loads(body)
            model, stream, previous, store = (
                raw.get("model"),
                raw.get("stream"),
                raw.get("previous_response_id"),
                raw.get("store"),
            )
            if not isinstance(model, str):
                raise ClientRequestError("model: a string is required", param="model")
            if not isinstance(previous, str | None):
                raise ClientRequestError(
                    "previous_response_id: a string is required", param="previous_response_id"
                )
            return cls(
                body,
                model=model,
                stream=stream is True,
                previous_response_id=previous,
                store=store if isinstance(store, bool) else None,
                raw=raw,
            )
        try:
            head = _Head.model_validate_json(body)
        except ValidationError:
            parse_request(body)  # raises the 400 naming what is wrong, as a Chat table would
            raise ClientRequestError("invalid Responses request") from None
        return cls(
            body,
            model=head.model,
            stream=bool(head.stream),
            previous_response_id=head.previous_response_id,
            store=head.store,
        )

    @classmethod
    def of(cls, validated: ResponsesRequest, body: bytes = b"") -> ClientRequest:
        """A request already validated (its ``raw`` is then its models' JSON when no body)."""
        return cls(
            body,
            model=validated.model,
            stream=bool(validated.stream),
            previous_response_id=validated.previous_response_id,
            store=validated.store,
            validated=validated,
        )

    @property
    def validated(self) -> ResponsesRequest:
        if self._validated is None:
            self._validated = parse_request(self.body)
        return self._validated

    @property
    def raw(self) -> Mapping[str, Any]:
        if self._raw is None:
            if self.body:
                self._raw = _loads(self.body)
            else:
                assert self._validated is not None  # ``of`` without a body
                self._raw = self._validated.model_dump(mode="json", exclude_none=True)
        return self._raw

    @property
    def parsed_for(self) -> str:
        """The wire whose form the request was parsed into first: ``"chat"`` (models) or
        ``"responses"`` (plain JSON); ``input_items`` gives that form."""
        return "chat" if self._validated is not None else "responses"

    def input_items(self) -> list[Any]:
        """The request's own input items, in the form already parsed (models or plain)."""
        if self._validated is not None:
            items = self._validated.input
            if isinstance(items, list):
                return list(items)
            return [{"role": "user", "content": items}]
        items = self.raw.get("input", [])
        if isinstance(items, list):
            return list(items)
        return [{"type": "message", "role": "user", "content": items}]


def _loads(body: bytes) -> Mapping[str, Any]:
    try:
        raw = json.loads(body)
    except ValueError as e:
        raise ClientRequestError(f"request body is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise ClientRequestError("a Responses request is a JSON object")
    return raw
