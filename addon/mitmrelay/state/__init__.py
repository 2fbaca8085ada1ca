"""Cross-request state the relay keeps: conversations for ``previous_response_id``.

``open_store(url, confdir=…, limits=…)`` picks the backend from ``relay_state``:

- ``sqlite`` (default): a WAL-mode database in mitmproxy's confdir; survives restarts and is
  safe with concurrent flows and several relay processes on one machine;
- ``sqlite:///path/to/file.db``: the same at a chosen path;
- ``memory``: a bounded in-process LRU, gone on restart;
- ``redis://host:port/db``: shared by several relay instances behind a load balancer.

Every backend holds the same bounds (entry count, bytes, age) with least-recently-used
eviction (core/bounds.py documents the policy). Values are JSON-able dicts. Reasoning itself
needs no store: it travels sealed inside the items Codex replays (core/carrier.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from mitmrelay.core.bounds import Limits


class StateStore(Protocol):
    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, value: dict[str, Any]) -> None: ...

    def stats(self) -> dict[str, int]: ...

    def close(self) -> None: ...


SQLITE_FILE = "mitmrelay-state.sqlite3"


def open_store(
    url: str, *, confdir: Path, limits: Limits, clock: Callable[[], float] = time.time
) -> StateStore:
    """Raises ``ValueError`` for an unknown or unusable ``url``."""
    if url == "memory":
        from .memory import MemoryStore

        return MemoryStore(limits, clock)
    if url == "sqlite" or url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        path = confdir / SQLITE_FILE if url == "sqlite" else Path(url[len("sqlite:///") - 1 :])
        return SQLiteStore(path, limits, clock)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisStore

        return RedisStore(url, limits, clock)
    raise ValueError(
        f"relay_state must be memory, sqlite, sqlite:///path or redis://…, got {url!r}"
    )
