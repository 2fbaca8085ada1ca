"""Which requests the relay answers, from plain request facts (no mitmproxy objects).

- Reverse mode (Codex as a custom provider, ``base_url = http://127.0.0.1:4444/v1``): every
  request is ours. ``POST …/responses`` is translated, ``GET …/models`` answered, anything else
  is a 404: the dummy reverse target must never be contacted.
- Proxy modes (regular, transparent, wireguard, local): only the Responses paths of
  ``relay_hosts`` are ours; all other traffic passes untouched. The host is matched on the SNI /
  pretty host, since in transparent and local modes ``request.host`` is an IP
  (docs/mitmproxy-notes.md §2).
- A websocket upgrade on a Responses path gets 426: Codex's built-in provider then falls back to
  HTTP at once instead of retrying 7 times (docs/codex-contract.md §2.2).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class Route(enum.Enum):
    PASS = "pass"  # not ours: leave it alone
    RESPONSES = "responses"  # translate and relay
    MODELS = "models"  # answer from the upstream's model list
    UPGRADE = "upgrade"  # websocket upgrade on the Responses path: 426
    NOT_FOUND = "not_found"  # reverse mode, a path we do not serve


@dataclass(frozen=True, slots=True)
class InterceptRule:
    """``host`` plus a path prefix: ``api.openai.com/v1`` intercepts ``/v1/responses``."""

    host: str
    prefix: str

    @classmethod
    def parse(cls, spec: str) -> InterceptRule:
        spec = spec.strip().removeprefix("https://").removeprefix("http://")
        host, _, path = spec.partition("/")
        if not host or " " in host:
            raise ValueError(f"not a host[/path] spec: {spec!r}")
        return cls(host.lower(), "/" + path.strip("/") if path.strip("/") else "")


DEFAULT_HOSTS = ("api.openai.com/v1", "chatgpt.com/backend-api/codex")


def _path_only(path: str) -> str:
    return path.split("?", 1)[0].rstrip("/")


def classify(
    method: str,
    host: str,
    path: str,
    *,
    reverse: bool,
    upgrade: bool,
    rules: Iterable[InterceptRule],
) -> Route:
    bare = _path_only(path)
    if reverse:
        if bare.endswith("/responses") or bare == "/responses":
            if upgrade:
                return Route.UPGRADE
            return Route.RESPONSES if method == "POST" else Route.NOT_FOUND
        if (bare.endswith("/models") or bare == "/models") and method == "GET":
            return Route.MODELS
        return Route.NOT_FOUND
    host = host.lower()
    for rule in rules:
        if host == rule.host and bare == f"{rule.prefix}/responses":
            if upgrade:
                return Route.UPGRADE
            return Route.RESPONSES if method == "POST" else Route.PASS
    return Route.PASS
