"""The upstream's reasoning, as it travels from one turn to the next.

Thinking models (DeepSeek, Kimi, GLM, Qwen) reject a tool loop whose assistant messages lack
the ``reasoning_content`` they produced (docs/providers.md §1.2). Codex replays every reasoning item
verbatim on every call, ``encrypted_content`` included, even after ``codex exec resume``
(docs/codex-contract.md §7.3), so the reasoning can travel inside the item itself.

This module holds the payload and the seam:

- the stream translator builds a ``ReasoningPayload`` for each reasoning item it finishes and
  asks a ``ReasoningCarrier`` for the item's ``encrypted_content``;
- the request translator asks the carrier to open the ``encrypted_content`` it finds on a
  replayed reasoning item, and falls back to the item's readable text.

Without a carrier (``carrier=None``) no ``encrypted_content`` is emitted and the readable text
(summary or ``reasoning_text``) is all that comes back.

Reasoning is scoped to the provider that produced it. Its text may go to any provider (a
fallback, a thread moved with ``-m``), but what only that provider can read may not: OpenRouter
refuses encrypted ``reasoning_details`` it did not issue (``The encrypted content for item rs_…
could not be verified``, docs/providers.md §1.2, §6.2), and Gemini's thought signatures are
Gemini's.
So every payload is sealed with its ``origin`` (``ScopedCarrier`` stamps it on the Chat wire;
the Responses wire sets it itself), and a request translator sends ``details``, ``signatures``
and ``item`` only back to that origin (core/request.py rule 4).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class ReasoningPayload:
    """Everything a provider needs back to accept the next turn of a tool loop.

    text:        the upstream's ``reasoning_content`` / ``reasoning`` text, verbatim.
    details:     OpenRouter/MiniMax ``reasoning_details`` blocks, verbatim (may be encrypted).
    signatures:  call_id -> Gemini ``thought_signature`` (``extra_content.google``).
    call_ids:    the tool calls this reasoning preceded, in order.
    origin:      the provider that produced the reasoning (a route's provider name):
                 ``details``, ``signatures`` and ``item`` go back only to it. Empty in a payload
                 sealed before origins were (its extras go anywhere, as they always did).
    item:        that provider's own fields of the reasoning item besides its text
                 (``id``, an opaque ``encrypted_content`` only it can read, where the text
                 went), replayed to it as it wants them and never to another provider.
    """

    text: str = ""
    details: tuple[Mapping[str, Any], ...] = ()
    signatures: Mapping[str, str] = field(default_factory=dict)
    call_ids: tuple[str, ...] = ()
    origin: str = ""
    item: Mapping[str, Any] = field(default_factory=dict)


class ReasoningCarrier(Protocol):
    """Seals a payload into an opaque ``encrypted_content`` string and opens it again."""

    def seal(self, payload: ReasoningPayload) -> str: ...

    def open(self, blob: str) -> ReasoningPayload | None:
        """The payload, or None for a blob this carrier did not make or that was altered."""
        ...

    def seal_compaction(self, summary: str) -> str: ...

    def open_compaction(self, blob: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class ScopedCarrier:
    """``carrier`` sealing every payload as ``origin``'s (a route's provider name) unless it
    names its origin already; everything else as ``carrier`` does. What the Chat wire's stream
    translator seals with, so the next request knows whose the reasoning is."""

    carrier: ReasoningCarrier
    origin: str

    def seal(self, payload: ReasoningPayload) -> str:
        stamped = payload if payload.origin else replace(payload, origin=self.origin)
        return self.carrier.seal(stamped)

    def open(self, blob: str) -> ReasoningPayload | None:
        return self.carrier.open(blob)

    def seal_compaction(self, summary: str) -> str:
        return self.carrier.seal_compaction(summary)

    def open_compaction(self, blob: str) -> str | None:
        return self.carrier.open_compaction(blob)


def scoped(carrier: ReasoningCarrier | None, origin: str) -> ReasoningCarrier | None:
    """``carrier`` sealing as ``origin`` (None stays None)."""
    return None if carrier is None else ScopedCarrier(carrier, origin)
