"""The link's sense of time: one small interface, so that timer-driven behaviour (the commit
grace, keep-alives, the idle timeout, the delay between attempts, job and pool expiry) runs on
the event loop's clock in production and on a hand-advanced clock in tests, which then assert
exact counts instead of sleeping.

``now()`` is monotonic seconds. On the loop it is ``loop.time()``, which asyncio's default loop
takes from ``time.monotonic()``: the relay can compare link times with its own
``time.monotonic()`` readings (docs/mitmproxy-notes.md §14 item 6).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""
        ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` on the loop once ``now() >= when``; ``cancel()`` the timer to skip."""
        ...


class LoopClock:
    """The running event loop's clock (``loop.time()``, ``loop.call_at``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.now = loop.time  # called per upstream event: no extra frame

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        return self._loop.call_at(when, callback)
