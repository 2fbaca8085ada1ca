"""The upstream APIs a provider may speak (its ``wire`` in the routes file), as data.

Theory of operation
-------------------
A provider speaks Chat Completions (``wire = "chat"``, the default: the relay translates
Codex's Responses request into a Chat request and the Chat stream back, core/request.py and
core/stream.py) or serves the Responses API itself (``wire = "responses"``: the relay cleans
Codex's request up for the provider's family and normalises its stream,
core/responses_wire/). The exchange builds each attempt's request and translator for its
target's wire (core/exchange.py); what the code around the translators needs to know of a wire
is one ``Wire`` row, carried by the attempt, so the link and the addon never test a wire's
name:

- ``path``: where under the provider's ``base_url`` the call goes (OpenAI's own paths:
  ``/chat/completions``, ``/responses``);
- ``as_sse``: a whole (non-streamed) answer as the stream it stands for, so one translator
  serves both paths (core/completion.py, core/responses_wire/completion.py);
- ``map_error``: an HTTP error answer as what Codex acts on (core/upstream_errors.py's one
  rule table; the Responses wire first reads where its providers put the precise kind,
  core/responses_wire/errors.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

from .completion import completion_as_sse
from .responses_wire.completion import response_as_sse
from .responses_wire.errors import map_http_error
from .upstream_errors import MappedError, map_upstream_error


class ErrorMap(Protocol):
    def __call__(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        *,
        upstream: str,
        now: Callable[[], float] | None = None,
    ) -> MappedError: ...


@dataclass(frozen=True, slots=True)
class Wire:
    """One upstream API: its path, its whole answers as streams, its error answers mapped."""

    name: str
    path: str
    as_sse: Callable[[bytes], bytes]  # raises ValueError for a body that is not an answer
    map_error: ErrorMap


CHAT = Wire("chat", "/chat/completions", completion_as_sse, map_upstream_error)
RESPONSES = Wire("responses", "/responses", response_as_sse, map_http_error)
WIRES: Mapping[str, Wire] = MappingProxyType({w.name: w for w in (CHAT, RESPONSES)})
