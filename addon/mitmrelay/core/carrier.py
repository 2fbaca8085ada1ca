"""The sealed reasoning carrier: upstream reasoning inside the reasoning item Codex replays.

Codex sends every reasoning item back verbatim on every later call, ``encrypted_content``
included, even after ``codex exec resume`` in a new process (docs/codex-contract.md §7.3). So the
provider's reasoning and its extras (``reasoning_details``, Gemini thought signatures per call)
can travel with the conversation itself and survive relay restarts, with no server-side state.

Blob format (text, safe in JSON): ``mr1.`` + urlsafe-base64(nonce[12] || AES-GCM(ciphertext ||
tag)). The ``mr1.`` prefix is also the associated data, so a blob cannot be replayed under
another version. The plaintext is compact JSON of the ``ReasoningPayload``, UTF-8 encoded with
``surrogatepass``: JSON lets an upstream send a lone surrogate (``"\ud83d"``), which strict UTF-8
cannot encode, and the text must come back exactly as the upstream sent it. Every string without
one encodes to the same bytes as strict UTF-8, so blobs sealed before this rule open unchanged.

Opening never raises: a blob from OpenAI (``gAAAA…``), another relay (another key), or one that
was altered is ignored with one log line, and the caller falls back to the readable summary.
Encrypted reasoning is scoped to the issuing key, as providers scope theirs (OpenRouter:
``The encrypted content for item rs_… could not be verified``, docs/providers.md §1.2, §6.2).

The key and the nonces are injected (the core reads no files and draws no randomness).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .reasoning import ReasoningPayload

logger = logging.getLogger(__name__)

PREFIX = "mr1."
COMPACTION_PREFIX = "mrc1."  # a sealed compaction summary (core/compaction.py)
KEY_BYTES = 32
NONCE_BYTES = 12
# The plaintext's UTF-8 error handler: lone surrogates from the upstream round-trip (see above).
_SURROGATES = "surrogatepass"


class SealedReasoningCarrier:
    """``ReasoningCarrier`` with AES-256-GCM. ``nonce_source(n)`` returns n fresh random bytes
    (``os.urandom`` in production)."""

    def __init__(self, key: bytes, nonce_source: Callable[[int], bytes]) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the reasoning key must be {KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(key)
        self._nonce = nonce_source

    def seal(self, payload: ReasoningPayload) -> str:
        record: dict[str, object] = {
            "t": payload.text,
            "d": [dict(d) for d in payload.details],
            "s": dict(payload.signatures),
            "c": list(payload.call_ids),
        }
        # Only the Responses wire sets these; blobs without them stay as they always were.
        if payload.origin:
            record["o"] = payload.origin
        if payload.item:
            record["i"] = dict(payload.item)
        plain = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        return PREFIX + self._encrypt(plain.encode("utf-8", _SURROGATES), PREFIX)

    def seal_compaction(self, summary: str) -> str:
        """A remote-compaction summary, sealed like reasoning under its own prefix."""
        plain = summary.encode("utf-8", _SURROGATES)
        return COMPACTION_PREFIX + self._encrypt(plain, COMPACTION_PREFIX)

    def open_compaction(self, blob: str) -> str | None:
        """The summary, or None for a blob this relay did not make or that was altered."""
        plain = self._decrypt(blob, COMPACTION_PREFIX)
        return plain.decode("utf-8", _SURROGATES) if plain is not None else None

    def _encrypt(self, plain: bytes, prefix: str) -> str:
        nonce = self._nonce(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plain, prefix.encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def _decrypt(self, blob: str, prefix: str) -> bytes | None:
        if not blob.startswith(prefix):
            return None
        try:
            body = blob[len(prefix) :]
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], prefix.encode())
        except (InvalidTag, ValueError, binascii.Error):
            logger.info("a sealed blob did not open (another relay's key, or altered); ignored")
            return None

    def open(self, blob: str) -> ReasoningPayload | None:
        if not blob.startswith(PREFIX):
            logger.debug("reasoning blob not made by mitmrelay; using its readable text")
            return None
        plain = self._decrypt(blob, PREFIX)
        if plain is None:
            return None
        try:
            data = json.loads(plain.decode("utf-8", _SURROGATES))
            return ReasoningPayload(
                text=str(data.get("t", "")),
                details=tuple(d for d in data.get("d", ()) if isinstance(d, dict)),
                signatures={str(k): str(v) for k, v in dict(data.get("s", {})).items()},
                call_ids=tuple(str(c) for c in data.get("c", ())),
                origin=str(data.get("o", "")),
                item=dict(data.get("i", {})),
            )
        except (ValueError, TypeError, AttributeError):
            logger.info("a reasoning blob held no payload; using its readable text instead")
            return None
