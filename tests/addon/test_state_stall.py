"""A hung state store must cost only the exchange that waits for it, never the others: 20
concurrent streams through a real mitmdump whose Redis is stopped with SIGSTOP keep the event
gaps they have with a healthy Redis, measured in the same test.

The comparison is relative (like bench/ ratios) with a wide margin: a store call on the event
loop stalls every stream for the Redis client's socket timeout (5 s), far beyond the margin; a
store off the loop (state/offloop.py) costs at most its deadline, and only to the exchange
that waits.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.fake_upstream import FakeUpstream, text
from support.local_servers import start_redis
from support.mitm import MitmRelay
from support.raw_upstream import SSE_HEAD, RawUpstream, chunk, usage_chunk

pytestmark = [pytest.mark.integration, pytest.mark.requires("redis-server")]

STREAMS = 20
DELTAS = 12


async def paced(request: dict[str, Any], send: Any) -> None:
    """A model producing a token every 50 ms."""
    await send(SSE_HEAD + chunk({"role": "assistant", "content": ""}))
    for i in range(DELTAS):
        await asyncio.sleep(0.05)
        await send(chunk({"content": f"t{i} "}))
    await send(chunk({}, finish="stop") + usage_chunk() + b"data: [DONE]\n\n")


STALL_S = 2.5  # a read waiting this long counts as a stall (its gap is infinite)


def max_gaps(relay: MitmRelay) -> list[float]:
    """The largest gap between two text deltas of each of STREAMS concurrent streams; a read
    that waited ``STALL_S`` ends its stream with an infinite gap (so a stall costs the test
    seconds, not the 5 s of every stalled store call in turn)."""
    gaps: list[float] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        time.sleep(0.03 * i)  # staggered: streams finish (and store) while others stream
        last, worst = None, 0.0
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(60, read=STALL_S)) as client,
                client.stream(
                    "POST",
                    f"{relay.url}/v1/responses",
                    json={"model": "m", "input": f"stream {i}", "stream": True},
                ) as response,
            ):
                for line in response.iter_lines():
                    if '"response.output_text.delta"' in line:
                        now = time.monotonic()
                        if last is not None:
                            worst = max(worst, now - last)
                        last = now
        except httpx.ReadTimeout:
            worst = float("inf")
        with lock:
            gaps.append(worst)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(STREAMS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(gaps) == STREAMS
    return gaps


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[tuple[int, str]]:
    started = start_redis(tmp_path)
    assert started is not None
    proc, url = started
    yield proc.pid, url
    os.kill(proc.pid, signal.SIGCONT)
    proc.kill()
    proc.wait(timeout=10)


def test_a_stopped_redis_does_not_stall_other_streams(redis_proc, tmp_path):
    pid, url = redis_proc
    options = {"relay_state": url}
    with (
        RawUpstream(paced) as upstream,
        MitmRelay(tmp_path / "c", upstream.url, options=options) as relay,
    ):
        healthy = max(max_gaps(relay))
        os.kill(pid, signal.SIGSTOP)
        try:
            stopped = max(max_gaps(relay))
        finally:
            os.kill(pid, signal.SIGCONT)  # calls still blocked finish now: a quick shutdown
    print(f"worst token gap: healthy Redis {healthy:.2f} s, stopped Redis {stopped:.2f} s")
    assert stopped <= max(2 * healthy, 1.0)


def test_an_unreadable_conversation_is_a_retryable_503_and_the_store_recovers(redis_proc, tmp_path):
    """With the store stopped: a new exchange goes on without state; one whose
    ``previous_response_id`` cannot be read is a 503 (Codex retries a 5xx:
    docs/codex-contract.md §8) that reaches no upstream, never a turn without its history.
    Failures are one warning; after SIGCONT the same request is answered with the history."""
    pid, url = redis_proc
    with (
        FakeUpstream() as upstream,
        MitmRelay(tmp_path / "c", upstream.url, options={"relay_state": url}) as relay,
    ):

        def ask(**body: Any) -> httpx.Response:
            return httpx.post(f"{relay.url}/v1/responses", json={"model": "m", **body}, timeout=30)

        upstream.enqueue(text("first answer"))
        first = ask(input="remember the word kumquat")
        assert first.status_code == 200
        upstream.enqueue(text("second answer"))
        second = ask(input="and then?", previous_response_id=first.json()["id"])
        assert second.status_code == 200  # the conversation is in Redis
        before = len(upstream.requests)
        os.kill(pid, signal.SIGSTOP)
        try:
            failed = [ask(input="again?", previous_response_id=second.json()["id"]) for _ in "ab"]
            upstream.enqueue(text("stateless"))
            fresh = ask(input="a new conversation")
        finally:
            os.kill(pid, signal.SIGCONT)
        for answer in failed:
            assert answer.status_code == 503
            assert answer.json()["error"]["code"] == "server_error"
        assert fresh.status_code == 200
        assert len(upstream.requests) == before + 1  # only the fresh exchange went out
        upstream.enqueue(text("third answer"))
        again = ask(input="again?", previous_response_id=second.json()["id"])
        assert again.status_code == 200
        sent = upstream.chat_requests()[-1]["messages"]
        assert sent[0]["content"] == "remember the word kumquat"
        assert [m["role"] for m in sent] == ["user", "assistant", "user", "assistant", "user"]
    log = relay.text()
    assert "Traceback" not in log
    # The failing store: one warning for all its failed calls (the next one within the
    # minute is counted, not logged), then one line when it answers again.
    assert len([line for line in log.splitlines() if "relaying without stored state" in line]) == 1
    assert "answers again" in log
