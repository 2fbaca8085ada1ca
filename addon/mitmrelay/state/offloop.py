"""The state stores, off mitmproxy's event loop: every call in a worker thread, with a deadline.

Why. The stores (memory, SQLite, Redis) are synchronous. Called from a hook they run on
mitmproxy's one event loop, so a hung Redis (``SIGSTOP``, a network partition) stalled *every*
exchange of the relay for the client's socket timeout, and a SQLite file locked by another
process for its busy timeout. Here a call costs only the exchange that waits for it, and at most
``deadline_s``.

Rules:

1. Each call runs in a worker thread; the caller awaits it for at most ``deadline_s`` (default
   200 ms, well under what Codex notices, far over a healthy store's ~0.2 ms: README's
   ``bench/state.py`` figures). Past it the caller gets ``StoreUnavailable`` and goes on
   without state; the thread finishes on its own (a thread cannot be interrupted) and its
   result is dropped.
2. At most ``max_in_flight`` calls run at once, counting the ones abandoned at their deadline.
   The pool has as many threads, so a call never queues behind a hung one: when all are taken
   (a hung store), the next call fails at once ("busy") instead of piling up work and threads.
   Calls complete, and free their slot, when the store answers or its client gives up
   (``socket_timeout`` for Redis, ``busy_timeout`` for SQLite).
3. A failing store is logged once a minute (``LOG_EVERY_S``, on the injected clock) with the
   number of calls that failed meanwhile, not once per call; the first success after failures
   logs that it recovered. Recovery needs nothing: the next call simply tries again (the Redis
   client reconnects by itself, SQLite retries its lock).
4. No call raises anything but ``StoreUnavailable`` (the store's own error becomes its message),
   so a caller needs one ``except``. Secrets never reach the log: a store's name is its URL
   without credentials (``state.display_url``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from . import StateStore

logger = logging.getLogger("mitmrelay.state")

DEFAULT_DEADLINE_S = 0.2
DEFAULT_MAX_IN_FLIGHT = 8
LOG_EVERY_S = 60.0

T = TypeVar("T")


class StoreUnavailable(Exception):
    """The store did not answer within the deadline, was busy with hung calls, or failed."""


class _FailureLog:
    """Rule 3: one warning per ``LOG_EVERY_S`` while failing, one line on recovery."""

    def __init__(self, name: str, clock: Callable[[], float]) -> None:
        self.name, self.clock = name, clock
        self.failing = False
        self.failed = 0  # calls failed since the last line
        self.total_failed = 0  # calls failed since the store last worked
        self.last_logged = 0.0

    def failure(self, operation: str, why: str) -> None:
        now = self.clock()
        self.failed += 1
        self.total_failed += 1
        if self.failing and now - self.last_logged < LOG_EVERY_S:
            return
        more = f" ({self.failed} failed calls since the last report)" if self.failing else ""
        logger.warning(
            "mitmrelay: state store %s: %s failed: %s; relaying without stored state%s",
            self.name,
            operation,
            why,
            more,
        )
        self.failing, self.failed, self.last_logged = True, 0, now

    def success(self) -> None:
        if self.failing:
            logger.info(
                "mitmrelay: state store %s answers again (%d calls had failed)",
                self.name,
                self.total_failed,
            )
        self.failing, self.failed, self.total_failed = False, 0, 0


def _get_many(store: StateStore, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    found = {}
    for key in keys:
        value = store.get(key)
        if value is not None:
            found[key] = value
    return found


def _put_many(store: StateStore, items: Sequence[tuple[str, dict[str, Any]]]) -> None:
    for key, value in items:
        store.put(key, value)


class AsyncStore:
    """``await get/put/stats`` on a ``StateStore``, off the event loop (module docstring).

    ``name`` is how the log names the store (``open_async_store`` passes ``display_url(url)``);
    ``clock`` only paces the failure log. ``close()`` closes the store without waiting for
    hung calls.
    """

    def __init__(
        self,
        store: StateStore,
        *,
        name: str = "",
        deadline_s: float = DEFAULT_DEADLINE_S,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if deadline_s <= 0 or max_in_flight < 1:
            raise ValueError("deadline_s must be positive and max_in_flight at least 1")
        self.store = store
        self.deadline_s = deadline_s
        self.max_in_flight = max_in_flight
        self._log = _FailureLog(name or type(store).__name__, clock)
        self._pool = ThreadPoolExecutor(max_in_flight, thread_name_prefix="mitmrelay-state")
        self._lock = threading.Lock()  # guards _in_flight: done callbacks run in the threads
        self._in_flight = 0
        self._idle = threading.Event()  # set while no call is in flight
        self._idle.set()

    @property
    def in_flight(self) -> int:
        """Calls running in threads, abandoned ones included (for tests and metrics)."""
        with self._lock:
            return self._in_flight

    @property
    def failing(self) -> bool:
        return self._log.failing

    async def get(self, key: str) -> dict[str, Any] | None:
        """The value of ``key`` or None. Raises ``StoreUnavailable``."""
        return await self._call("get", self.store.get, key)

    async def put(self, key: str, value: dict[str, Any]) -> None:
        """Keep ``value`` under ``key``. Raises ``StoreUnavailable``."""
        await self._call("put", self.store.put, key, value)

    async def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The values of those of ``keys`` the store holds, read in one call (one thread, one
        deadline). Raises ``StoreUnavailable``."""
        return await self._call("get", _get_many, self.store, tuple(keys))

    async def put_many(self, items: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Keep every ``(key, value)``, in one call. Raises ``StoreUnavailable``."""
        await self._call("put", _put_many, self.store, tuple(items))

    async def stats(self) -> dict[str, int]:
        return await self._call("stats", self.store.stats)

    async def _call(self, operation: str, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            busy = self._in_flight >= self.max_in_flight
            if not busy:
                self._in_flight += 1
                self._idle.clear()
        if busy:
            why = f"busy ({self.max_in_flight} calls still waiting on it)"
            self._log.failure(operation, why)
            raise StoreUnavailable(why)
        try:
            future = self._pool.submit(fn, *args)
        except RuntimeError as e:  # the pool was shut down (close() raced a late call)
            self._release()
            raise StoreUnavailable("closed") from e
        future.add_done_callback(lambda _: self._release())
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(future), self.deadline_s)
        except TimeoutError:
            why = f"no answer within {self.deadline_s * 1000:g} ms"
            self._log.failure(operation, why)
            raise StoreUnavailable(why) from None
        except Exception as e:  # the store's own error (redis.ConnectionError, sqlite3.Error...)
            why = f"{type(e).__name__}: {e}"
            self._log.failure(operation, why)
            raise StoreUnavailable(why) from None
        self._log.success()
        return result

    def _release(self) -> None:
        with self._lock:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    def close(self) -> None:
        """Stop taking calls and close the store. Calls in flight (the writes an exchange
        that just ended left) get up to ``deadline_s`` to finish first, so a healthy store
        keeps them across a restart; a hung call is not waited for longer (its thread ends
        when the store's client gives up)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._idle.wait(self.deadline_s)
        closer = threading.Thread(target=self.store.close, name="mitmrelay-state-close")
        closer.daemon = True
        closer.start()
        closer.join(self.deadline_s)
