"""The in-process backend: a bounded LRU, lost on restart."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from mitmrelay.core.body import LARGE_BODY, Body, json_body
from mitmrelay.core.bounds import BoundedLRU, Limits


class MemoryStore:
    def __init__(self, limits: Limits, clock: Callable[[], float]) -> None:
        self._lru: BoundedLRU[Body] = BoundedLRU(limits, clock)
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            raw = self._lru.get(key)
        return json.loads(bytes(raw)) if raw is not None else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        # Kept as JSON (a later change to ``value`` cannot reach the store), and a record
        # holding a long string (an image) keeps that very string, not a copy of it
        # (core/body.py): a 64 MB image costs the store no second 64 MB.
        raw = json_body(value, LARGE_BODY)
        with self._lock:
            self._lru.put(key, raw, len(raw))

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "entries": len(self._lru),
                "bytes": self._lru.bytes,
                "evictions": self._lru.evictions,
            }

    def close(self) -> None:
        pass
