"""A bounded least-recently-used map: entry count, total bytes and age, clock injected.

Every piece of cross-request memory in the relay lives in one of these: a
long-running relay must not grow without limit, whatever its clients do. Eviction order: expired
entries first (on access), then least recently used until both the count and the byte bounds
hold. An entry larger than the byte bound on its own is not kept.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    max_entries: int = 1000
    max_bytes: int = 256 * 1024 * 1024
    ttl_s: float = 24 * 3600.0


class BoundedLRU[V]:
    def __init__(self, limits: Limits, clock: Callable[[], float]) -> None:
        self.limits = limits
        self._clock = clock
        self._items: OrderedDict[str, tuple[V, int, float]] = OrderedDict()
        self.bytes = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> V | None:
        entry = self._items.get(key)
        if entry is None:
            return None
        value, _, stored = entry
        if self._clock() - stored > self.limits.ttl_s:
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return value

    def put(self, key: str, value: V, size: int) -> None:
        if key in self._items:
            self._drop(key)
        if size > self.limits.max_bytes:
            self.evictions += 1
            return
        self._items[key] = (value, size, self._clock())
        self.bytes += size
        while len(self._items) > self.limits.max_entries or self.bytes > self.limits.max_bytes:
            self._drop(next(iter(self._items)))
            self.evictions += 1

    def _drop(self, key: str) -> None:
        _, size, _ = self._items.pop(key)
        self.bytes -= size
