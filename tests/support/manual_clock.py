"""A clock the test moves by hand, for code that takes a ``mitmrelay.link.Clock``: timers run
when ``advance()`` passes their time, in time order, synchronously; nothing else moves it."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable


class ManualTimer:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when, self.callback = when, callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._timers: list[tuple[float, int, ManualTimer]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], None]) -> ManualTimer:
        timer = ManualTimer(when, callback)
        heapq.heappush(self._timers, (when, next(self._order), timer))
        return timer

    def advance(self, seconds: float) -> None:
        """Move time on by ``seconds``, running every timer due on the way (timers they set
        that fall within the span run too)."""
        end = self._now + seconds
        while self._timers and self._timers[0][0] <= end:
            when, _, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._now = max(self._now, when)
            timer.callback()
        self._now = end

    @property
    def pending(self) -> int:
        """Timers set and neither run nor cancelled."""
        return sum(1 for _, _, t in self._timers if not t.cancelled)
