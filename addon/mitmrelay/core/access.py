"""Who may spend the owner's upstream credits: client keys, and listeners beyond loopback.

Theory of operation. mitmproxy listens on every interface by default, so a relay started as
``mitmdump -s addon/relay.py`` lets any machine that reaches it use the upstream key. The
relay's answer is data, checked before anything else happens to a request:

1. ``ClientKeys.parse(text)``: the keys an environment variable holds, comma-separated
   (``relay_client_keys_env`` names the variable, never the keys: like the upstream key they
   stay off command lines and saved options). Blanks around keys are dropped; a variable that
   is set but holds no key is a configuration error, not an open door.
2. ``ClientKeys.allows(authorization)``: the request's ``Authorization`` header must be
   ``Bearer <one of the keys>`` (the scheme is case-insensitive, RFC 9110 §11.1). Each
   candidate is compared as a SHA-256 digest with ``hmac.compare_digest`` against *every*
   key, without stopping at a match, so the time taken says nothing about which key, how long
   it is, or how much of it matched.
3. ``invalid_api_key()``: the refusal, shaped as OpenAI's own 401 (``invalid_api_key``,
   ``invalid_request_error``), sent before any upstream call. Codex retries a 401 (6 attempts
   in all), then shows ``unexpected status 401 Unauthorized: <message>``
   (docs/codex-contract.md §8), so the message says what to do.
4. ``beyond_loopback(hosts)``: the listen hosts that other machines can reach (mitmproxy's
   default ``""`` means every interface), for the start line's warning when no client keys
   are set.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from .local_answers import Answer, error_answer


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class ClientKeys:
    """The accepted client keys, as digests (the keys themselves are not kept)."""

    digests: tuple[bytes, ...]

    @classmethod
    def parse(cls, text: str, *, variable: str = "the variable") -> ClientKeys:
        """Rule 1. Raises ``ValueError`` (one line, naming ``variable``, never a key) when
        ``text`` holds no key."""
        keys = [k.strip() for k in text.split(",")]
        keys = [k for k in keys if k]
        if not keys:
            raise ValueError(f"{variable} is set but holds no client key (comma-separated keys)")
        return cls(tuple(_digest(k) for k in keys))

    def allows(self, authorization: str | None) -> bool:
        """Rule 2: ``authorization`` is ``Bearer <one of the keys>``."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        candidate = _digest(token)
        matched = False
        for digest in self.digests:  # every key, no early exit
            matched |= hmac.compare_digest(candidate, digest)
        return matched and scheme.lower() == "bearer" and bool(token)


def invalid_api_key() -> Answer:
    """Rule 3: OpenAI's 401 for a wrong key, naming no key."""
    return error_answer(
        401,
        "mitmrelay: this relay needs a client key (Authorization: Bearer <key>), and the "
        "request carried none it accepts.",
        "invalid_api_key",
    )


def beyond_loopback(hosts: Iterable[str]) -> list[str]:
    """Rule 4: the hosts of ``hosts`` that are not loopback (``""`` is every interface; a
    name other than ``localhost`` is taken as reachable)."""
    exposed = []
    for host in hosts:
        name = host.strip("[]")
        if name == "localhost":
            continue
        try:
            if ipaddress.ip_address(name).is_loopback:
                continue
        except ValueError:
            pass  # "" (every interface) or a host name
        exposed.append(host or "every interface")
    return exposed
