"""CPU of a real mitmdump per streamed upstream event: the relay vs a plain mitmdump passing the
same Chat stream through untouched, measured in the same run.

    .venv/bin/python bench/relay_cpu.py [--events 2000] [--repeat 5] [--no-profile] [--responses]
        [--field reasoning_content]

A paced streaming server in this process sends a Chat Completions SSE stream of ``--events``
text deltas (DeepSeek's chunk JSON), one TCP write per event, 1 ms apart, so that the proxy
reads each event on its own (checked: a counting run reports the stream reads mitmproxy made
per event). Two set-ups, each a real mitmdump subprocess on its own port:

- baseline: ``mitmdump --mode reverse:<server>`` with no addon, only the bench's inline script
  (``PROBE``) setting ``flow.response.stream = True``; the client POSTs a Chat request to it;
- relay: ``MitmRelay`` (tests/support/mitm.py) in reverse mode with the addon; the client POSTs
  a Responses request to ``/v1/responses``, the relay sends it through its upstream link
  (link/), which translates the stream and hands mitmproxy the Responses events to carry.
  The profile at the end splits the relay's time between the link's loop and the translator.

With ``--responses``, the same for the Responses wire (core/wires.py), in the same run: the
server answers ``/responses`` with a Responses stream of as many text deltas (DeepSeek's
dialect, ``bench/responses_wire.py``), passed through by the plain mitmdump as its own
baseline, and normalised by a relay whose routes file puts that provider on
``wire = "responses"``. Each relay's ratio is against the pass-through of its own stream; the
two relays can then be compared with each other too.

CPU is the mitmdump process's own (utime + stime, read with ns precision from its process CPU
clock; ``/proc/<pid>/stat`` gives the same in 10 ms ticks). Each figure is marginal: CPU of a
long stream minus CPU of a ``SHORT``-event stream through the same proxy, divided by the
difference in events, so per-request costs (connections, request translation, hooks, log
lines) cancel. Repeated ``--repeat`` times, interleaved; medians (min-max) are printed.
Finally (unless ``--no-profile``) one relay stream (the Responses wire's with
``--responses``) is run under cProfile (timing CPU, not wall
time) inside mitmdump and
its busy time (the event loop's idle ``epoll`` wait left out) is split by where it was spent;
cProfile inflates call-heavy code, so these are rough shares, and a coroutine counts one call
per resumption.

Budget (developer guide): mitmproxy spends ~130 µs of CPU per streamed read; the relay's
translation should add <= 10 % on top, about 13 µs per event.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import pstats
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from responses_wire import responses_stream  # noqa: E402
from support.mitm import MITMDUMP, RELAY_SCRIPT, MitmRelay  # noqa: E402

SHORT = 20  # events of the short stream whose CPU is subtracted
GAP_S = 0.001  # between two events
SETTLE_S = 0.15  # after the client has its last byte: mitmproxy finishes the flow's hooks

# Loaded after the relay (or alone, for the baseline). The request header x-bench picks, per
# request: "pass" (stream the upstream's bytes untouched: the baseline),
# "count" (log how many reads the .stream callable saw), "profile" (cProfile the flow).
PROBE = r"""
import cProfile, logging, time
PROFILE_OUT = {profile_out!r}

class Counter:
    def __init__(self, inner):
        self.inner, self.reads = inner, 0
    def __call__(self, data):
        if data:
            self.reads += 1
        return data if self.inner is True else self.inner(data)

class Probe:
    def __init__(self):
        self.counters, self.profiler = {{}}, None
    def requestheaders(self, flow):
        flow.metadata["bench"] = tags = flow.request.headers.get("x-bench", "")
        if "profile" in tags:
            # CPU time, not wall time: on a loaded machine a preempted system call would
            # otherwise look expensive.
            self.profiler = cProfile.Profile(time.process_time)
            self.profiler.enable()
    def responseheaders(self, flow):
        tags = flow.metadata.get("bench", "")
        if "pass" in tags or not flow.response.stream:
            flow.response.stream = True
        if "count" in tags:
            flow.response.stream = self.counters[flow.id] = Counter(flow.response.stream)
    def response(self, flow):
        counter = self.counters.pop(flow.id, None)
        if counter is not None:
            logging.warning("bench: %d stream reads", counter.reads)
        if self.profiler is not None and "profile" in flow.metadata.get("bench", ""):
            self.profiler.disable()
            self.profiler.dump_stats(PROFILE_OUT)
            self.profiler = None
            logging.warning("bench: profile written")

addons = [Probe()]
"""


def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> bytes:
    obj = {
        "id": "e6a1c0d4-52b3-4b8c-9a51-3f1c2d7e9b10",
        "object": "chat.completion.chunk",
        "created": 1732800000,
        "model": "deepseek-chat",
        "system_fingerprint": "fp_8802369eaa_prod0623_fp8_kvcache",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if usage is not None:
        obj["choices"], obj["usage"] = [], usage
    data = b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)  # one HTTP/1.1 chunk per event, as DeepSeek


DELTA_FIELDS = ("content", "reasoning_content")
DELTA_FIELD = ["content"]  # --field: text deltas, or DeepSeek's reasoning deltas


def events(n: int) -> list[bytes]:
    body = [chunk({"role": "assistant", "content": ""})]
    body += [chunk({DELTA_FIELD[0]: f" word{i}"}) for i in range(n - 1)]
    usage = {"prompt_tokens": 12, "completion_tokens": n, "total_tokens": 12 + n}
    tail = [chunk({"content": ""}, "stop"), chunk({}, usage=usage)]
    return [*body, *tail, b"e\r\ndata: [DONE]\n\n\r\n", b"0\r\n\r\n"]


def responses_events(n: int) -> list[bytes]:
    """A provider's Responses stream with ``n`` text deltas, one HTTP/1.1 chunk per event."""
    return [b"%x\r\n%s\r\n" % (len(e), e) for e in responses_stream("text", n)] + [b"0\r\n\r\n"]


STREAMS = {"chat": events, "responses": responses_events}


class PacedUpstream:
    """A server that answers every request with a stream of ``n`` events (set before each
    request), one write each, GAP_S apart: a Responses stream for a path ending in
    ``/responses``, else a Chat Completions stream. Threaded and blocking: its pacing does not
    depend on anyone's event loop."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.n = 0  # events of the next stream
        self.gap_s = GAP_S
        self.streams: dict[tuple[str, int], list[bytes]] = {}
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _accept(self) -> None:
        while True:
            conn, _ = self.sock.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        f = conn.makefile("rb")
        try:
            while line := f.readline():
                wire = "responses" if line.split()[1].endswith(b"/responses") else "chat"
                length = 0
                while (header := f.readline()) not in (b"\r\n", b""):
                    name, _, value = header.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                f.read(length)
                key = (wire, self.n)
                if key not in self.streams:
                    self.streams[key] = STREAMS[wire](self.n)
                stream = self.streams[key]
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
                )
                for event in stream:
                    time.sleep(self.gap_s)
                    conn.sendall(event)
        except OSError:
            pass
        finally:
            conn.close()


def cpu_s(pid: int) -> float:
    """The process's CPU time (utime + stime), from its process CPU clock (ns resolution)."""
    return time.clock_gettime(((~pid) << 3) | 2)  # CPUCLOCK_SCHED of the whole process


def ticks_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # USER_HZ


class Setup:
    def __init__(
        self,
        name: str,
        proxy: MitmRelay,
        path: str,
        body: bytes,
        tag: str,
        *,
        wire: str = "chat",
        baseline: str = "baseline",
    ) -> None:
        self.name, self.proxy, self.path, self.body, self.tag = name, proxy, path, body, tag
        self.wire = wire  # the stream the upstream sends
        self.baseline = baseline  # the set-up whose CPU this one's ratio is against
        self.per_event: list[float] = []  # µs of CPU per event, one per run
        self.fixed: list[float] = []  # ms of CPU per request beyond its events
        self.gap: list[float] = []  # ms of wall time per event of the long stream

    @property
    def pid(self) -> int:
        assert self.proxy.proc is not None
        return self.proxy.proc.pid

    def call(self, up: PacedUpstream, n: int, extra: str = "") -> tuple[float, float]:
        """One streamed request of ``n`` events: (CPU s, wall s)."""
        up.n = n
        conn = http.client.HTTPConnection("127.0.0.1", self.proxy.port, timeout=60)
        headers = {"content-type": "application/json", "x-bench": f"{self.tag},{extra}"}
        before, t0 = cpu_s(self.pid), time.perf_counter()
        try:
            conn.request("POST", self.path, self.body, headers)
            response = conn.getresponse()
            body = response.read()
        except OSError:
            print(f"{self.name}: mitmdump log:\n" + self.proxy.text(), file=sys.stderr)
            raise
        finally:
            conn.close()
        wall = time.perf_counter() - t0
        time.sleep(SETTLE_S)
        cpu = cpu_s(self.pid) - before
        assert response.status == 200, (self.name, response.status, body[:500])
        if self.wire == "responses":  # n deltas, through or normalised
            marker, expected = b'"type":"response.output_text.delta"', n
        elif self.tag == "relay":  # a text or reasoning delta event per upstream delta
            marker, expected = b'"delta":" word', n - 1
        else:
            marker, expected = b'content":" word', n - 1
        assert body.count(marker) == expected, (self.name, n, body[-500:])
        return cpu, wall

    def measure(self, up: PacedUpstream, n: int) -> None:
        long_cpu, long_wall = self.call(up, n)
        short_cpu, _ = self.call(up, SHORT)
        per_event = (long_cpu - short_cpu) / (n - SHORT)
        self.per_event.append(per_event * 1e6)
        self.fixed.append((short_cpu - SHORT * per_event) * 1e3)
        self.gap.append(long_wall / n * 1e3)

    def reads_per_event(self, up: PacedUpstream, n: int) -> float:
        """Reads the flow's ``.stream`` callable saw (mitmproxy's reads of the response body)
        per event sent; 1.00 when every event was read on its own."""
        mark = len(self.proxy.log)
        self.call(up, n, "count")
        for line in self.proxy.log[mark:]:
            if "bench: " in line and " stream reads" in line:
                return int(line.split("bench: ")[1].split()[0]) / len(STREAMS[self.wire](n))
        raise RuntimeError(f"{self.name}: no read count in the log:\n{self.proxy.text()}")


def other_relay(tmp: Path, up: PacedUpstream, checkout: Path) -> MitmRelay:
    """The relay of another checkout (its addon/relay.py puts its own package first)."""
    relay = MitmRelay(
        tmp / f"{checkout.name}-conf", up.url, options={"relay_model": "deepseek-chat"}
    )
    relay.args = [
        str(checkout / "addon" / "relay.py") if a == str(RELAY_SCRIPT) else a for a in relay.args
    ]
    relay.args += ["-s", str(tmp / "probe.py")]
    return relay


def responses_relay(tmp: Path, up: PacedUpstream) -> MitmRelay:
    """A relay whose routes file puts the server on the Responses wire (DeepSeek's row)."""
    routes = tmp / "responses-routes.toml"
    routes.write_text(
        f'[providers.deepseek]\nbase_url = "{up.url}"\nprofile = "deepseek"\n'
        'wire = "responses"\n\n[models.m]\nprovider = "deepseek"\n'
    )
    relay = MitmRelay(tmp / "responses-conf", "", options={"relay_routes": str(routes)})
    relay.args += ["-s", str(tmp / "probe.py")]
    return relay


def proxies(tmp: Path, up: PacedUpstream) -> tuple[MitmRelay, MitmRelay]:
    """A plain mitmdump (reverse proxy to the server) and the relay, both with the probe."""
    probe = tmp / "probe.py"
    probe.write_text(PROBE.format(profile_out=str(tmp / "relay.prof")))
    relay = MitmRelay(tmp / "relay-conf", up.url, options={"relay_model": "deepseek-chat"})
    relay.args += ["-s", str(probe)]
    plain = MitmRelay(tmp / "plain-conf", up.url)  # its start and stop; its own arguments
    plain.args = [
        str(MITMDUMP),
        "--mode",
        f"reverse:http://127.0.0.1:{up.port}@127.0.0.1:0",
        "--set",
        f"confdir={tmp / 'plain-conf'}",
        "-s",
        str(probe),
        "--set",
        "termlog_verbosity=info",
        "--set",
        "flow_detail=0",
    ]
    return plain, relay


def where(filename: str) -> str:
    if "/mitmrelay/" in filename:
        return "mitmrelay"
    for part in ("mitmproxy", "asyncio", "h11"):
        if f"/{part}/" in filename:
            return part
    return "builtins" if filename == "~" else "other stdlib"


def profile_report(profile: pstats.Stats, n: int) -> None:
    """Profiled time by package, then the relay's own functions (own and inclusive time)."""
    stats = profile.stats  # type: ignore[attr-defined]
    by_package: dict[str, float] = defaultdict(float)
    ours: list[tuple[float, float, int, str]] = []
    for (filename, line, func), (_, calls, own, inclusive, _) in stats.items():
        if "poll' of 'select." in func:
            continue  # the event loop waiting for the next read: idle, not CPU
        by_package[where(filename)] += own
        if "/mitmrelay/" in filename:
            name = f"{filename.split('/mitmrelay/', 1)[1]}:{line} {func}"
            ours.append((own, inclusive, calls, name))
    total = sum(by_package.values())
    print(
        f"\none relay stream of {n} events under cProfile in mitmdump: shares of the profiled "
        "(busy) time"
    )
    print(
        "  "
        + ", ".join(
            f"{k} {v / total:.0%}" for k, v in sorted(by_package.items(), key=lambda kv: -kv[1])
        )
    )
    print(f"  {'own':>6}{'incl.':>7}{'calls/event':>13}  mitmrelay function")
    for own, inclusive, calls, name in sorted(ours, reverse=True)[:15]:
        print(f"  {own / total:>6.1%}{inclusive / total:>7.1%}{calls / n:>13.1f}  {name}")
    entry = {name: inclusive for _, inclusive, _, name in ours}

    def inclusive(module: str, func: str) -> float:
        return next((v for k, v in entry.items() if module in k and k.endswith(f" {func}")), 0.0)

    read = inclusive("link/connection.py", "data_received")
    hot = inclusive("link/call.py", "on_body")
    feed = inclusive("core/stream.py", "feed") or inclusive("responses_wire/stream.py", "feed")
    print(
        f"  inclusive: the link's upstream reads (link/connection.py data_received) "
        f"{read / total:.0%}, of which the hot path (link/call.py on_body) {hot / total:.0%}, "
        f"of which the translator's feed {feed / total:.0%}"
    )
    print(f"  {'own':>6}{'calls/event':>20}  top functions of any package")
    top = sorted(stats.items(), key=lambda kv: -kv[1][2])
    top = [kv for kv in top if "poll' of 'select." not in kv[0][2]][:8]
    for (filename, line, func), (_, calls, own, _, _) in top:
        short = filename.rsplit("/site-packages/", 1)[-1].rsplit("/python3.12/", 1)[-1]
        print(f"  {own / total:>6.1%}{calls / n:>20.1f}  {short}:{line} {func}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument(
        "--field",
        choices=DELTA_FIELDS,
        default="content",
        help="the delta each event carries: text, or reasoning (a thinking model's stream)",
    )
    parser.add_argument(
        "--responses",
        action="store_true",
        help="also the Responses wire: its stream passed through, and normalised by a relay",
    )
    parser.add_argument(
        "--gap-ms",
        type=float,
        default=GAP_S * 1e3,
        help="between two upstream events; the link batches events closer than 5 ms apart",
    )
    parser.add_argument(
        "--also",
        type=Path,
        action="append",
        default=[],
        metavar="CHECKOUT",
        help="another checkout whose addon/relay.py is measured in the same run (a before/after "
        "comparison, e.g. `git archive main | tar -x -C /tmp/main`)",
    )
    args = parser.parse_args()
    DELTA_FIELD[0] = args.field
    n = args.events
    chat = json.dumps(
        {"model": "deepseek-chat", "messages": [{"role": "user", "content": "x"}], "stream": True}
    ).encode()
    responses = b'{"model":"m","input":"x","stream":true}'
    up = PacedUpstream()
    up.gap_s = args.gap_ms / 1e3
    stats: pstats.Stats | None = None
    with tempfile.TemporaryDirectory() as tmp:
        plain, relay = proxies(Path(tmp), up)
        others = [other_relay(Path(tmp), up, checkout) for checkout in args.also]
        wired = [responses_relay(Path(tmp), up)] if args.responses else []
        with contextlib.ExitStack() as running:
            for proxy in (plain, relay, *others, *wired):
                running.enter_context(proxy)
            setups = [
                Setup("baseline", plain, "/v1/chat/completions", chat, "pass"),
                Setup("relay", relay, "/v1/responses", responses, "relay"),
            ]
            setups += [
                Setup(f"relay@{c.name}", o, "/v1/responses", responses, "relay")
                for c, o in zip(args.also, others, strict=True)
            ]
            if wired:
                pass_r = "pass-resp"
                setups += [
                    Setup(pass_r, plain, "/v1/responses", responses, "pass", wire="responses"),
                    Setup(
                        "relay-resp",
                        wired[0],
                        "/v1/responses",
                        b'{"model":"m","input":"x","stream":true}',
                        "relay",
                        wire="responses",
                        baseline=pass_r,
                    ),
                ]
            for s in setups:  # imports, caches, the link's upstream pool
                s.call(up, 200)
                s.call(up, SHORT)
            reads = {s.name: s.reads_per_event(up, 500) for s in setups}
            pids = {s.name: s.pid for s in setups}
            idle = {k: cpu_s(pid) for k, pid in pids.items()}
            time.sleep(1.0)
            idle = {k: (cpu_s(pid) - idle[k]) * 1e3 for k, pid in pids.items()}  # ms per s
            clock = {k: (cpu_s(pid), ticks_s(pid)) for k, pid in pids.items()}
            for _ in range(args.repeat):
                for s in setups:
                    s.measure(up, n)
            clock = {
                k: (cpu_s(pid) - clock[k][0], ticks_s(pid) - clock[k][1]) for k, pid in pids.items()
            }
            if not args.no_profile:
                profiled = setups[-1] if wired else setups[1]  # the Responses relay, if any
                profiled.call(up, n, "profile")
                profile = Path(tmp) / "relay.prof"
                stats = pstats.Stats(str(profile)) if profile.exists() else None

    by_name = {s.name: s for s in setups}
    base = statistics.median(setups[0].per_event)
    print(
        f"{n} text deltas, one write each, {up.gap_s * 1e3:g} ms apart; mitmdump's CPU per event, "
        f"marginal over a {SHORT}-event stream; median (min-max) of {args.repeat} runs; "
        "ratio: median of the per-run ratios"
    )
    print(
        f"{'set-up':<11}{'reads/event':>12}{'µs/event':>10}{'(min-max)':>12}"
        f"{'ratio':>8}{'+µs/event':>11}{'per request':>13}   (ratio and +µs: against the "
        "pass-through of the same stream)"
    )
    for s in setups:
        med = statistics.median(s.per_event)
        spread = f"({min(s.per_event):.0f}-{max(s.per_event):.0f})"
        # Each run measures both set-ups back to back: the median of the per-run ratios is
        # steadier than the ratio of medians while other processes load the machine.
        own = by_name[s.baseline]
        paired = statistics.median(r / b for r, b in zip(s.per_event, own.per_event, strict=True))
        print(
            f"{s.name:<11}{reads[s.name]:>12.2f}{med:>10.1f}{spread:>12}{paired:>7.2f}x"
            f"{med - statistics.median(own.per_event):>+11.1f}"
            f"{statistics.median(s.fixed):>10.1f} ms"
        )
    if wired:
        # The two wires' relays, each run paired with the other in the same round.
        chat_relay, wire_relay = by_name["relay"].per_event, by_name["relay-resp"].per_event
        versus = statistics.median(r / c for r, c in zip(wire_relay, chat_relay, strict=True))
        print(f"relay-resp / relay (the Responses wire against the Chat wire): {versus:.2f}x")
    full = statistics.median(setups[1].per_event)
    print(
        f"relay - baseline = {full - base:+.1f} µs/event (link hop and translation); "
        f"budget for translation +{0.1 * base:.1f} (10 % of the baseline)"
    )
    gap = statistics.median(g for s in setups for g in s.gap)
    print(
        f"pacing {gap:.2f} ms/event; idle mitmdump "
        + ", ".join(f"{k} {v:.1f}" for k, v in idle.items())
        + " ms CPU per s; CPU clock vs /proc/<pid>/stat over the "
        + ", ".join(f"{k} runs {c:.2f} vs {t:.2f} s" for k, (c, t) in clock.items())
    )
    if stats is not None:
        profile_report(stats, n)


if __name__ == "__main__":
    main()
