"""The in-process backend: a bounded LRU, lost on restart."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from mitmrelay.core.bounds import BoundedLRU, Limits


class MemoryStore:
    def __init__(self, limits: Limits, clock: Callable[[], float]) -> None:
        self._lru: BoundedLRU[str] = BoundedLRU(limits, clock)
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            raw = self._lru.get(key)
        return json.loads(raw) if raw is not None else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        raw = json.dumps(value, separators=(",", ":"))
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
