"""Tool names the upstream accepts, and the way back to the client's names.

Chat Completions function names must match ``^[a-zA-Z0-9_-]{1,64}$`` (OpenAI's rule, which
DeepSeek and others enforce). Codex declares MCP tools inside namespaces and must get
``{name, namespace}`` back (docs/codex-contract.md §6), so a namespaced tool becomes
``<namespace>__<name>``; dots fail strict checks (docs/providers.md §3, item 9). A name over the
limit keeps a readable prefix plus a stable hash of the whole, so the same tool always gets the
same name across turns and relay restarts. Two different tools that would get one name are a
client error, never a silent overwrite.
"""

from __future__ import annotations

import hashlib
import re

from .errors import ClientRequestError

_INVALID = re.compile(r"[^a-zA-Z0-9_-]")
NAMESPACE_SEPARATOR = "__"


def upstream_name(name: str, namespace: str | None = None, *, max_len: int = 64) -> str:
    """The function name the upstream sees for ``name`` in ``namespace``."""
    full = f"{namespace}{NAMESPACE_SEPARATOR}{name}" if namespace else name
    clean = _INVALID.sub("_", full) or "_"
    if len(clean) <= max_len:
        return clean
    digest = hashlib.sha256(full.encode()).hexdigest()[:10]
    return f"{clean[: max_len - len(digest) - 1]}_{digest}"


class NameTable:
    """Collects upstream names for one request and refuses collisions."""

    def __init__(self, max_len: int = 64) -> None:
        self.max_len = max_len
        self._owner: dict[str, tuple[str | None, str]] = {}
        self._known: dict[tuple[str | None, str], str] = {}  # (namespace, name) -> flat

    def add(self, name: str, namespace: str | None = None) -> str:
        # A long history names the same few tools thousands of times: answer those from memory.
        known = self._known.get((namespace, name))
        if known is not None:
            return known
        flat = upstream_name(name, namespace, max_len=self.max_len)
        owner = self._owner.setdefault(flat, (namespace, name))
        if owner != (namespace, name):
            first = f"{owner[0]}.{owner[1]}" if owner[0] else owner[1]
            second = f"{namespace}.{name}" if namespace else name
            raise ClientRequestError(
                f"tools {first!r} and {second!r} both become the upstream function name "
                f"{flat!r}; rename one of them",
                param="tools",
            )
        self._known[(namespace, name)] = flat
        return flat
