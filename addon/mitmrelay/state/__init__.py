"""Cross-request state the relay keeps: conversations for ``previous_response_id``.

``open_store(url, confdir=…, limits=…)`` picks the backend from ``relay_state``:

- ``sqlite`` (default): a WAL-mode database in mitmproxy's confdir; survives restarts and is
  safe with concurrent flows and several relay processes on one machine;
- ``sqlite:///path/to/file.db``: the same at a chosen path;
- ``memory``: a bounded in-process LRU, gone on restart;
- ``redis://host:port/db``: shared by several relay instances behind a load balancer.

``open_async_store`` wraps the result for use on an event loop (state/offloop.py: every call in
a thread, with a deadline), which is how the relay's hooks must call a store.

Every backend holds the same bounds (entry count, bytes, age) with least-recently-used
eviction (core/bounds.py documents the policy). Values are JSON-able dicts. Reasoning itself
needs no store: it travels sealed inside the items Codex replays (core/carrier.py).
"""

from __future__ import annotations

import sqlite3
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mitmrelay.core.bounds import Limits

if TYPE_CHECKING:
    from .offloop import AsyncStore


class StateStore(Protocol):
    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, value: dict[str, Any]) -> None: ...

    def stats(self) -> dict[str, int]: ...

    def close(self) -> None: ...


SQLITE_FILE = "mitmrelay-state.sqlite3"


def display_url(url: str) -> str:
    """``url`` without its user and password (``redis://:secret@host`` -> ``redis://host``):
    how logs and error messages name a store."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def open_store(
    url: str, *, confdir: Path, limits: Limits, clock: Callable[[], float] = time.time
) -> StateStore:
    """The store ``url`` names, reachable now.

    Raises ``ValueError`` for an unknown, unreachable or unusable ``url``, with a one-line
    message that names the store without credentials and carries no exception chain: the
    caller shows it as it is (an unreachable store at start is one line, never a traceback).
    """
    try:
        return _open(url, confdir, limits, clock)
    except ValueError as e:
        raise ValueError(str(e)) from None
    except (OSError, sqlite3.Error) as e:
        raise ValueError(f"cannot use {display_url(url)}: {type(e).__name__}: {e}") from None


def open_async_store(
    url: str,
    *,
    confdir: Path,
    limits: Limits,
    clock: Callable[[], float] = time.time,
    deadline_s: float | None = None,
    log_clock: Callable[[], float] = time.monotonic,
) -> AsyncStore:
    """``open_store`` wrapped for the event loop (state/offloop.py). Opening itself is
    synchronous: it runs once, at start, where failing loudly is right. ``clock`` is the
    store's (ages of entries), ``log_clock`` paces the wrapper's failure log."""
    from .offloop import DEFAULT_DEADLINE_S, AsyncStore

    store = open_store(url, confdir=confdir, limits=limits, clock=clock)
    return AsyncStore(
        store,
        name=display_url(url),
        deadline_s=DEFAULT_DEADLINE_S if deadline_s is None else deadline_s,
        clock=log_clock,
    )


def _open(url: str, confdir: Path, limits: Limits, clock: Callable[[], float]) -> StateStore:
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
        f"relay_state must be memory, sqlite, sqlite:///path or redis://…, got {display_url(url)!r}"
    )
