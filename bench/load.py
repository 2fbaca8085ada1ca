"""Load: many concurrent streams through one relay, against mitmproxy passing the same streams
through untouched, in the same run.

    .venv/bin/python bench/load.py [--streams 200] [--seconds 60] [--warmup 10]

Set-up, all on loopback:

- an upstream in its own process (``load.py upstream``): every POST gets a Chat Completions
  SSE stream of ``EVENTS`` text deltas, one write every ``GAP_S`` (a model producing ~5 tokens
  a second per stream), then the finish chunk, usage and ``[DONE]``;
- the relay: a real ``mitmdump -s addon/relay.py`` (tests/support/mitm.py) in reverse mode;
  clients POST a Responses request to ``/v1/responses``;
- the baseline: a plain ``mitmdump --mode reverse:<upstream>`` whose only script streams
  responses (``flow.response.stream = True``, else mitmproxy buffers whole bodies); clients POST
  the Chat request directly.

For each, ``--streams`` clients (asyncio, raw HTTP/1.1, one connection per stream) each run streams
back to back: ``--warmup`` seconds, then a snapshot of the proxy's RSS and open file descriptors,
then ``--seconds`` of measured streams, then the clients finish their current stream, the proxy is
given ``SETTLE_S`` and snapshotted again, and once more after ``--linger`` seconds (idle pooled
upstream connections are closed after 30 s: link/pool.py ``POOL_IDLE_S``). Recorded per stream: its
status, whether it ended with its terminal event (``response.completed``; ``[DONE]`` for the
baseline), and the gaps between consecutive *token* events as the client received them
(``response.output_text.delta``; a chunk with content for the baseline): the relay turns one
upstream chunk into several events at once (``response.created`` and ``in_progress``, an item's
``added`` events), whose zero gaps would flatter it.

``--state`` picks the relay's ``relay_state``: ``sqlite`` (its default), ``memory``, ``redis``
(a redis-server started here), or ``redis-stopped``: the same, stopped with SIGSTOP once the
warm-up ends, so the measured phase shows what a hung store costs the streams (state/offloop.py
exists so that it costs nothing but the call that waits).

Pass criteria (no leak under sustained load): 0 errors; RSS and open fds after the run within 10 %
of after warm-up. Reported: streams and events per second, event-gap percentiles (p50, p99, max) for
both, and the relay's p99 against the baseline's. Exit status 1 when a criterion fails. Absolute
figures move with the machine's load (2 shared cores); the ratio is what to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.local_servers import start_redis  # noqa: E402
from support.mitm import MITMDUMP, MitmRelay  # noqa: E402

EVENTS = 10  # text deltas per stream
GAP_S = 0.2  # between two upstream events
SETTLE_S = 3.0  # after the last stream, before the final snapshot
READ_SIZE = 65536

STREAM_SCRIPT = """
class Stream:
    def responseheaders(self, flow):
        flow.response.stream = True

addons = [Stream()]
"""


# ---------------------------------------------------------------------- the upstream process


def _chunk(delta: dict, finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-load",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "deepseek-chat",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    data = b"data: " + json.dumps(body).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


USAGE = {
    "id": "chatcmpl-load",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "deepseek-chat",
    "choices": [],
    "usage": {"prompt_tokens": 10, "completion_tokens": EVENTS, "total_tokens": 10 + EVENTS},
}


async def _serve_upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n" + _chunk({"role": "assistant", "content": ""})
            )
            for i in range(EVENTS):
                await asyncio.sleep(GAP_S)
                writer.write(_chunk({"content": f"token{i} "}))
                await writer.drain()
            usage = b"data: " + json.dumps(USAGE).encode() + b"\n\n"
            done = b"data: [DONE]\n\n"
            writer.write(
                _chunk({}, "stop")
                + b"%x\r\n%s\r\n" % (len(usage), usage)
                + b"%x\r\n%s\r\n" % (len(done), done)
                + b"0\r\n\r\n"
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _upstream_main() -> None:
    server = await asyncio.start_server(_serve_upstream, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


# ---------------------------------------------------------------------- clients


@dataclass
class Totals:
    streams: int = 0
    events: int = 0
    errors: list[str] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)


async def one_stream(
    port: int, request: bytes, token: bytes, terminal: bytes, totals: Totals
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        if status != b"200":
            totals.errors.append(f"status {status.decode()}")
            return
        buffer, last, ended, events = b"", None, False, 0
        while not ended:
            data = await reader.read(READ_SIZE)
            if not data:
                break
            now = time.monotonic()
            buffer += data
            # Chunk framing lines never contain "data: ", and events end with a blank line.
            while (end := buffer.find(b"\n\n")) >= 0:
                event, buffer = buffer[:end], buffer[end + 2 :]
                if b"data: " not in event:
                    continue
                events += 1
                if token in event:
                    if last is not None:
                        totals.gaps.append(now - last)
                    last = now
                if terminal in event:
                    ended = True
        if not ended:
            totals.errors.append("stream ended without its terminal event")
            return
        totals.streams += 1
        totals.events += events
    except (OSError, asyncio.IncompleteReadError) as e:
        totals.errors.append(f"{type(e).__name__}: {e}")
    finally:
        writer.close()


async def run_clients(
    port: int,
    request: bytes,
    marks: tuple[bytes, bytes],
    streams: int,
    warmup_s: float,
    seconds: float,
) -> tuple[Totals, float]:
    """Warm-up, then the measured phase; returns the measured totals and when the clients
    began the measured phase (the snapshot is taken by the caller in between)."""
    phase = {"totals": Totals()}
    stop_at = time.monotonic() + warmup_s + seconds
    measure_from = time.monotonic() + warmup_s

    async def client() -> None:
        while time.monotonic() < stop_at:
            await one_stream(port, request, *marks, phase["totals"])

    async def switch() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
        phase["totals"] = Totals()  # what the warm-up recorded is dropped

    await asyncio.gather(switch(), *(client() for _ in range(streams)))
    return phase["totals"], measure_from


# ---------------------------------------------------------------------- measuring a proxy


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Result:
    name: str
    totals: Totals
    seconds: float
    rss_warm: float = 0.0
    rss_after: float = 0.0
    fds_warm: int = 0
    fds_after: int = 0
    rss_linger: float = 0.0
    fds_linger: int = 0

    def percentile(self, p: float) -> float:
        gaps = sorted(self.totals.gaps)
        return gaps[min(len(gaps) - 1, int(p * len(gaps)))] * 1000 if gaps else float("nan")


def measure(
    name: str,
    proxy: MitmRelay,
    request: bytes,
    marks: tuple[bytes, bytes],
    args: argparse.Namespace,
    after_warmup: Callable[[], None] = lambda: None,
) -> Result:
    assert proxy.proc is not None
    pid = proxy.proc.pid
    result = Result(name, Totals(), args.seconds)

    async def main() -> None:
        task = asyncio.ensure_future(
            run_clients(proxy.port, request, marks, args.streams, args.warmup, args.seconds)
        )
        await asyncio.sleep(args.warmup)
        result.rss_warm, result.fds_warm = rss_mb(pid), fds(pid)
        after_warmup()
        result.totals, _ = await task

    asyncio.run(main())
    time.sleep(SETTLE_S)
    result.rss_after, result.fds_after = rss_mb(pid), fds(pid)
    time.sleep(args.linger)
    result.rss_linger, result.fds_linger = rss_mb(pid), fds(pid)
    return result


def http_post(path: str, body: dict) -> bytes:
    raw = json.dumps(body).encode()
    return (
        f"POST {path} HTTP/1.1\r\nhost: load\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer sk-client\r\ncontent-length: {len(raw)}\r\n\r\n"
    ).encode() + raw


def report(results: list[Result]) -> bool:
    ok = True
    print(
        f"\n{'':12}{'streams/s':>10}{'events/s':>10}{'errors':>8}{'gap p50':>9}{'p99':>8}"
        f"{'max':>8}   RSS warm -> after (MB)   fds warm -> after"
    )
    for r in results:
        t = r.totals
        print(
            f"{r.name:12}{t.streams / r.seconds:10.1f}{t.events / r.seconds:10.0f}"
            f"{len(t.errors):8d}{r.percentile(0.5):8.0f}ms{r.percentile(0.99):6.0f}ms"
            f"{max(t.gaps, default=0) * 1000:6.0f}ms   {r.rss_warm:7.1f} -> {r.rss_after:7.1f}"
            f"         {r.fds_warm:4d} -> {r.fds_after:4d}"
        )
        print(
            f"{'':12}after {r.seconds:g} s + {SETTLE_S:g} s + linger: RSS {r.rss_linger:.1f} MB,"
            f" {r.fds_linger} fds"
        )
        if t.errors:
            ok = False
            print(f"  {r.name} errors (first 5): {t.errors[:5]}")
        for what, warm, after in (
            ("RSS", r.rss_warm, r.rss_after),
            ("fds", r.fds_warm, r.fds_after),
        ):
            if after > warm * 1.10:
                ok = False
                print(f"  {r.name}: {what} after the run is over 110 % of after warm-up")
    relay, plain = results
    ratio = relay.percentile(0.99) / plain.percentile(0.99)
    print(
        f"\nrelay p99 token gap {relay.percentile(0.99):.0f} ms vs pass-through "
        f"{plain.percentile(0.99):.0f} ms: {ratio:.2f}x (the upstream paces events "
        f"{GAP_S * 1000:.0f} ms apart)"
    )
    print("PASS" if ok else "FAIL")
    return ok


def main() -> None:
    if sys.argv[1:2] == ["upstream"]:
        asyncio.run(_upstream_main())
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--linger", type=float, default=35.0)
    parser.add_argument(
        "--state", choices=["sqlite", "memory", "redis", "redis-stopped"], default="sqlite"
    )
    args = parser.parse_args()

    upstream = subprocess.Popen(
        [sys.executable, __file__, "upstream"], stdout=subprocess.PIPE, text=True
    )
    assert upstream.stdout is not None
    port = int(upstream.stdout.readline())
    url = f"http://127.0.0.1:{port}/v1"
    results = []
    redis: subprocess.Popen[bytes] | None = None
    try:
        with tempfile.TemporaryDirectory() as tmp_dir:
            tmp = Path(tmp_dir)
            state = args.state
            if state.startswith("redis"):
                started = start_redis(tmp)
                if started is None:
                    sys.exit("redis-server is not installed")
                redis, state = started

            def stop_redis() -> None:
                if redis is not None and args.state == "redis-stopped":
                    os.kill(redis.pid, signal.SIGSTOP)

            options = {"relay_model": "deepseek-chat", "relay_state": state}
            with MitmRelay(tmp / "relay", url, options=options) as relay:
                request = http_post("/v1/responses", {"model": "m", "input": "hi", "stream": True})
                marks = (b'"response.output_text.delta"', b'"response.completed"')
                results.append(measure("relay", relay, request, marks, args, stop_redis))
                if redis is not None:
                    os.kill(redis.pid, signal.SIGCONT)
            script = tmp / "stream.py"
            script.write_text(STREAM_SCRIPT)
            plain = MitmRelay(tmp / "plain", url)
            plain.args = [
                str(MITMDUMP),
                "--mode",
                f"reverse:{url.removesuffix('/v1')}@127.0.0.1:0",
                "--set",
                f"confdir={tmp / 'plain'}",
                "-s",
                str(script),
                "--set",
                "termlog_verbosity=info",
                "--set",
                "flow_detail=0",
            ]
            with plain:
                chat = {"model": "deepseek-chat", "messages": [], "stream": True}
                request = http_post("/v1/chat/completions", chat)
                results.append(measure("passthrough", plain, request, (b"token", b"[DONE]"), args))
    finally:
        upstream.send_signal(signal.SIGTERM)
        upstream.wait(timeout=10)
        if redis is not None:
            os.kill(redis.pid, signal.SIGCONT)
            redis.kill()
            redis.wait(timeout=10)
    print(
        f"{args.streams} concurrent streams, {args.seconds:g} s measured after {args.warmup:g} s "
        f"warm-up; each stream {EVENTS} events {GAP_S * 1000:.0f} ms apart; relay_state "
        f"{args.state}"
    )
    sys.exit(0 if report(results) else 1)


if __name__ == "__main__":
    main()
