"""The addon's seam to the state store (``addon._State`` over state/offloop.py's
``AsyncStore``): what each kind of call does when the store fails or hangs, with an injected
clock pacing the failure log. The same behaviour through a real mitmdump and a stopped
redis-server is in test_state_stall.py."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest
from mitmproxy.test import taddons
from support.manual_clock import ManualClock

from mitmrelay.addon import Relay, _State
from mitmrelay.core.bounds import Limits
from mitmrelay.state.memory import MemoryStore
from mitmrelay.state.offloop import LOG_EVERY_S, AsyncStore, StoreUnavailable


class HungStore(MemoryStore):
    """A memory store whose calls block while ``hung`` is set, like a stopped Redis."""

    def __init__(self) -> None:
        super().__init__(Limits(), time.time)
        self.hung = False
        self.release = threading.Event()

    def _wait(self) -> None:
        if self.hung:
            self.release.wait(10)

    def get(self, key: str) -> dict[str, Any] | None:
        self._wait()
        return super().get(key)

    def put(self, key: str, value: dict[str, Any]) -> None:
        self._wait()
        super().put(key, value)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_reads_fail_fast_restores_are_skipped_and_writes_never_wait(caplog):
    caplog.set_level(logging.INFO, logger="mitmrelay.state")
    inner, clock = HungStore(), ManualClock()
    state = _State(AsyncStore(inner, name="redis://r", deadline_s=0.05, clock=clock.now))

    async def scenario() -> None:
        state.put_many([("resp_1", {"v": 1})])
        await asyncio.sleep(0)
        await asyncio.wait_for(asyncio.gather(*state._writes), 5)
        assert await state.get("resp_1") == {"v": 1}
        inner.hung = True
        with pytest.raises(StoreUnavailable, match="no answer within 50 ms"):
            await state.get("resp_1")
        assert await state.get_many(["call_1", "resp_1"]) == {}  # the restore is skipped
        # A write returns at once; until it is done, what it writes is answered from memory.
        state.put_many([("resp_2", {"v": 2})])
        assert await state.get("resp_2") == {"v": 2}
        assert await state.get_many(["resp_2"]) == {"resp_2": {"v": 2}}
        await asyncio.wait_for(asyncio.gather(*state._writes), 5)  # cut at its deadline
        with pytest.raises(StoreUnavailable):
            await state.get("resp_2")
        assert len(warnings(caplog)) == 1  # four failures within the minute: one line
        clock.advance(LOG_EVERY_S)
        with pytest.raises(StoreUnavailable):
            await state.get("resp_1")
        assert len(warnings(caplog)) == 2
        inner.hung = False
        inner.release.set()
        for _ in range(100):  # the abandoned calls hold their threads until they end
            if state.store.in_flight == 0:
                break
            await asyncio.sleep(0.05)
        assert await state.get("resp_1") == {"v": 1}  # recovered by itself

    asyncio.run(scenario())
    assert "answers again" in caplog.text
    state.close()


def test_the_deadline_option_and_the_clock_reach_the_store(tmp_path):
    clock = ManualClock()
    relay = Relay(state_clock=clock.now)
    with taddons.context(relay) as tctx:
        tctx.configure(
            relay,
            confdir=str(tmp_path),
            relay_upstream="https://llm.example/v1",
            relay_state="memory",
            relay_state_deadline_ms="75",
        )
        assert relay.state.store.deadline_s == 0.075
        assert relay.state.store._log.clock == clock.now
        tctx.configure(relay, relay_state_deadline_ms="250")  # a change reopens the store
        assert relay.state.store.deadline_s == 0.25
    relay.done()
