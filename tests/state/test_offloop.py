"""The state stores off the event loop (state/offloop.py): a slow, hung or dead store costs only
the call that waits, never the loop; failures are logged once a minute; recovery is automatic.

Against the real things: a redis-server stopped with SIGSTOP and killed, a SQLite file locked by
another process. No assert on wall-clock time: "the loop was not stalled" is shown by order
(calls on a healthy store all finish while the hung calls are still pending) and "the deadline
cut the wait" by the failure's cause (the deadline, not the Redis client's 5 s socket timeout).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from support.local_servers import free_port, start_redis
from support.manual_clock import ManualClock
from support.mitm import MitmRelay
from support.waiting import wait_until

from mitmrelay.core.bounds import Limits
from mitmrelay.state import open_async_store, open_store
from mitmrelay.state.memory import MemoryStore
from mitmrelay.state.offloop import LOG_EVERY_S, AsyncStore, StoreUnavailable

pytestmark = pytest.mark.requires("redis-server")

LOGGER = "mitmrelay.state"


class SwitchableStore(MemoryStore):
    """A memory store that can be made to fail, like a store whose server went away."""

    def __init__(self) -> None:
        super().__init__(Limits(), time.time)
        self.down = False
        self.threads: set[int] = set()

    def _check(self) -> None:
        self.threads.add(threading.get_ident())
        if self.down:
            raise ConnectionError("Connection refused")

    def get(self, key: str) -> dict[str, Any] | None:
        self._check()
        return super().get(key)

    def put(self, key: str, value: dict[str, Any]) -> None:
        self._check()
        super().put(key, value)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, int]]:
    """A redis-server of this test's own (it gets stopped and killed)."""
    port = free_port()
    started = start_redis(tmp_path, port)
    assert started is not None
    proc, url = started
    yield proc, url, port
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
    proc.wait(timeout=10)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


async def outcome(call: Any) -> Any:
    try:
        return await call
    except StoreUnavailable as e:
        return e


# ---------------------------------------------------------------------- healthy


@pytest.mark.parametrize("url", ["memory", "sqlite", "redis"])
def test_a_healthy_store_round_trips_in_worker_threads(url, tmp_path, request):
    if url == "redis":
        url = request.getfixturevalue("redis_url")
        redis.Redis.from_url(url).flushdb()
    store = open_async_store(url, confdir=tmp_path, limits=Limits())

    async def main() -> tuple[Any, Any, Any]:
        await store.put("resp_1", {"input": ["é"]})
        return await store.get("resp_1"), await store.get("resp_none"), await store.stats()

    try:
        got, missing, stats = asyncio.run(main())
    finally:
        store.close()
    assert got == {"input": ["é"]} and missing is None and stats["entries"] == 1
    assert store.in_flight == 0 and not store.failing


def test_calls_run_off_the_loop_thread():
    inner = SwitchableStore()
    store = AsyncStore(inner)

    async def main() -> int:
        await store.put("k", {"v": 1})
        assert await store.get("k") == {"v": 1}
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    store.close()
    assert inner.threads and loop_thread not in inner.threads


# ---------------------------------------------------------------------- hung, dead, locked


def test_a_stopped_redis_costs_only_the_calls_that_wait(own_redis, tmp_path, caplog):
    proc, url, _ = own_redis
    clock = ManualClock()
    # A 1 s deadline (not the default 200 ms) and a generous one for the healthy store: the
    # ordering asserted below then holds however loaded the machine is.
    store = open_async_store(
        url, confdir=tmp_path, limits=Limits(), clock=clock.now, deadline_s=1.0
    )
    healthy = AsyncStore(MemoryStore(Limits(), time.time), deadline_s=10.0)
    order: list[str] = []

    async def hung_get(i: int) -> Any:
        result = await outcome(store.get("resp_1"))
        order.append("hung call answered")
        return result

    async def healthy_round_trips() -> None:
        for i in range(50):
            await healthy.put(f"k{i}", {"i": i})
            assert await healthy.get(f"k{i}") == {"i": i}
        order.append("healthy store done")

    async def main() -> list[Any]:
        await store.put("resp_1", {"v": 1})
        os.kill(proc.pid, signal.SIGSTOP)
        # 20 exchanges at once want the stopped store; another store goes on meanwhile.
        results = await asyncio.gather(*(hung_get(i) for i in range(20)), healthy_round_trips())
        return results[:20]

    caplog.set_level(logging.INFO, logger=LOGGER)
    try:
        results = asyncio.run(main())
        # The loop was never stalled: the healthy store finished its 100 calls before the first
        # call to the stopped Redis gave up (busy ones fail at once, the others at the deadline).
        first_hung = order.index("hung call answered")
        assert order.index("healthy store done") < order.index("hung call answered", 12)
        assert first_hung == 0  # the busy ones, failing at once
        assert all(isinstance(r, StoreUnavailable) for r in results)
        reasons = sorted(str(r) for r in results)
        # Each call cost at most the deadline: it was cut by it, not by the client's 5 s timeout.
        assert reasons.count("no answer within 1000 ms") == store.max_in_flight == 8
        assert reasons.count("busy (8 calls still waiting on it)") == 12
        assert len(warnings_of(caplog)) == 1  # one line for 20 failures, the clock not moving
        assert "state store redis://127.0.0.1" in warnings_of(caplog)[0]

        # SIGCONT: the store answers again by itself, and says so once.
        os.kill(proc.pid, signal.SIGCONT)

        def recovered() -> bool:
            return asyncio.run(outcome(store.get("resp_1"))) == {"v": 1}

        wait_until(recovered, "the resumed Redis to answer", 20.0)
        assert not store.failing
        # (how many calls had failed depends on how many polls met the still-busy threads)
        assert sum("answers again" in m for m in warnings_of(caplog)) == 1
        wait_until(lambda: store.in_flight == 0, "the abandoned calls to finish", 20.0)
    finally:
        store.close()
        healthy.close()


def test_a_killed_redis_fails_each_call_and_recovers_when_it_is_back(own_redis, tmp_path, caplog):
    proc, url, port = own_redis
    store = open_async_store(url, confdir=tmp_path, limits=Limits())
    caplog.set_level(logging.INFO, logger=LOGGER)
    try:
        asyncio.run(store.put("resp_1", {"v": 1}))
        proc.kill()
        proc.wait(timeout=10)
        failed = asyncio.run(outcome(store.get("resp_1")))
        assert isinstance(failed, StoreUnavailable) and "ConnectionError" in str(failed)
        put_failed = asyncio.run(outcome(store.put("resp_2", {"v": 2})))
        assert isinstance(put_failed, StoreUnavailable)
        assert store.failing

        (tmp_path / "again").mkdir()
        restarted = start_redis(tmp_path / "again", port)  # an empty server, same address
        assert restarted is not None
        try:
            asyncio.run(store.put("resp_2", {"v": 2}))  # the client reconnects by itself
            assert asyncio.run(store.get("resp_2")) == {"v": 2}
            assert not store.failing
            assert any("answers again (2 calls had failed)" in m for m in warnings_of(caplog))
        finally:
            restarted[0].kill()
            restarted[0].wait(timeout=10)
    finally:
        store.close()


def test_a_locked_sqlite_file_costs_only_the_call_that_waits(tmp_path, caplog):
    path = tmp_path / "state.sqlite3"
    store = open_async_store(f"sqlite:///{path}", confdir=tmp_path, limits=Limits(), deadline_s=1.0)
    asyncio.run(store.put("resp_1", {"v": 1}))
    # Another process takes the write lock and keeps it until its stdin closes.
    locker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys\n"
            f"db = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
            "db.execute('BEGIN EXCLUSIVE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n"
            "db.execute('COMMIT')\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    caplog.set_level(logging.INFO, logger=LOGGER)
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        healthy = AsyncStore(MemoryStore(Limits(), time.time), deadline_s=10.0)
        order: list[str] = []

        async def blocked_put() -> Any:
            result = await outcome(store.put("resp_2", {"v": 2}))
            order.append("put answered")
            return result

        async def others() -> None:
            for i in range(20):
                await healthy.put(f"k{i}", {})
            order.append("others done")

        async def both() -> list[Any]:
            return await asyncio.gather(blocked_put(), others())

        put_result, _ = asyncio.run(both())
        healthy.close()
        assert order == ["others done", "put answered"]
        assert str(put_result) == "no answer within 1000 ms"  # not SQLite's 10 s busy timeout
        assert any("put failed: no answer within 1000 ms" in m for m in warnings_of(caplog))
    finally:
        assert locker.stdin is not None
        locker.stdin.close()
        locker.wait(timeout=10)

    def written() -> bool:
        return asyncio.run(outcome(store.put("resp_3", {"v": 3}))) is None

    wait_until(written, "the unlocked file to take writes", 20.0)
    assert asyncio.run(store.get("resp_3")) == {"v": 3}
    assert not store.failing
    store.close()


# ---------------------------------------------------------------------- the failure log


def test_a_failing_store_is_logged_once_a_minute_and_its_recovery_once(caplog):
    inner = SwitchableStore()
    clock = ManualClock()
    store = AsyncStore(inner, name="memory", clock=clock.now)
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def call() -> Any:
        return await outcome(store.get("k"))

    inner.down = True
    for _ in range(10):
        assert isinstance(asyncio.run(call()), StoreUnavailable)
        clock.advance((LOG_EVERY_S - 1) / 10)  # ten failures inside one minute
    assert warnings_of(caplog) == [
        "mitmrelay: state store memory: get failed: ConnectionError: Connection refused; "
        "relaying without stored state"
    ]
    clock.advance(1)  # a minute after the first line
    asyncio.run(call())
    assert warnings_of(caplog)[-1].endswith("(10 failed calls since the last report)")
    assert len(warnings_of(caplog)) == 2

    inner.down = False
    assert asyncio.run(call()) is None
    assert (
        warnings_of(caplog)[-1]
        == "mitmrelay: state store memory answers again (11 calls had failed)"
    )
    asyncio.run(call())
    assert len(warnings_of(caplog)) == 3  # healthy calls log nothing

    inner.down = True  # a new outage is reported at once, whatever the clock says
    asyncio.run(call())
    assert len(warnings_of(caplog)) == 4
    store.close()


def test_no_error_but_store_unavailable_escapes():
    inner = SwitchableStore()
    store = AsyncStore(inner)
    inner.down = True
    for call in (store.get("k"), store.put("k", {}), store.stats()):
        result = asyncio.run(outcome(call))
        assert isinstance(result, StoreUnavailable | dict)
    store.close()
    closed = asyncio.run(outcome(store.get("k")))
    assert isinstance(closed, StoreUnavailable) and str(closed) == "closed"
    assert store.in_flight == 0


def test_the_default_deadline_is_200_ms():
    store = AsyncStore(SwitchableStore())
    assert store.deadline_s == 0.2 and store.max_in_flight == 8
    store.close()


def test_bad_settings_are_refused():
    for kwargs in ({"deadline_s": 0}, {"max_in_flight": 0}):
        with pytest.raises(ValueError):
            AsyncStore(SwitchableStore(), **kwargs)


# ---------------------------------------------------------------------- opening


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:hunter2@127.0.0.1:1/0", "cannot use Redis at redis://127.0.0.1:1/0: "),
        ("redis://user:hunter2@127.0.0.1:1/0", "cannot use Redis at redis://127.0.0.1:1/0: "),
        ("postgres://u:hunter2@db/x", "relay_state must be memory, sqlite"),
        ("sqlite:///", "cannot use sqlite:///: "),
    ],
)
def test_an_unusable_store_at_start_is_one_line_without_secrets(url, expected, tmp_path):
    with pytest.raises(ValueError) as raised:
        open_store(url, confdir=tmp_path, limits=Limits())
    message = str(raised.value)
    assert message.startswith(expected)
    assert "\n" not in message and "hunter2" not in message
    # No chain: whoever prints it with its traceback prints one exception, not three.
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


@pytest.mark.integration
def test_an_unreachable_store_at_start_is_one_line_through_mitmdump(tmp_path):
    relay = MitmRelay(
        tmp_path, "http://127.0.0.1:9/v1", options={"relay_state": "redis://:hunter2@127.0.0.1:1/0"}
    )
    proc = subprocess.run(
        relay.args, env=relay.env, capture_output=True, text=True, timeout=60, check=False
    )
    out = proc.stdout + proc.stderr
    assert "hunter2" not in out
    assert "Traceback" not in out, out
    lines = [line for line in out.splitlines() if "redis://127.0.0.1:1/0" in line]
    assert len(lines) == 1 and "Connection refused" in lines[0], out
