"""Peers, side by side: the same workloads through plain mitmdump, mitmrelay, codex-relay and
(when installed) LiteLLM's proxy, and straight to the upstream, in one process tree and one run.

    .venv/bin/pip install -e '.[bench]'      # codex-relay 0.5.8 (its PyPI wheel) and matplotlib
    .venv/bin/python bench/peers.py [--repeat 3] [--plot docs/perf.png]

One fake Chat Completions upstream in this process serves every set-up. It answers each
request with a paced stream, one TCP write per event, ``GAP_S`` apart, picked by the request's
model name (``bench-<kind>-<events>``), so that every relay passes the same stream whatever it
does to the request. Set-ups, each its own process on loopback:

- ``direct``: the client calls the upstream itself (the floor for latency; no relay CPU);
- ``mitm pass-through``: ``mitmdump --mode reverse:`` with only a script that streams the
  answer through (``flow.response.stream = True``); the client sends the Chat request;
- ``mitmrelay``: ``mitmdump -s addon/relay.py`` in reverse mode; the client sends the
  Responses request, the relay translates both ways;
- ``codex-relay``: the Rust binary of the ``codex-relay`` wheel (0.5.8), bound to 127.0.0.1
  with its upstream set to the fake one (its default upstream is a public service: never
  used), no corpus recording, in-memory history; the client sends the Responses request;
- ``LiteLLM``: its proxy (``litellm --config``), only if a ``litellm`` command is on PATH
  (``pip install 'litellm[proxy]'``, in any environment), every model routed to the fake
  upstream as ``deepseek/…``: a provider whose Responses requests LiteLLM bridges to Chat
  Completions (``openai/`` or ``hosted_vllm/`` would call the upstream's own ``/responses``);
  the client sends the Responses request to its ``/v1/responses``.

Workloads (the same as the README's table): 2 000 text chunks; a tool call whose 200 KB of arguments
come in 2 000 chunks; 2 000 reasoning chunks; 20 concurrent streams of 500 chunks; one request with
a 2 MB, 200-turn history (ms of CPU per request); time to the first byte of the answer with 20
concurrent streams (ms of wall time). CPU is the relay process's own (utime + stime), marginal: a
long stream's CPU minus a ``SHORT``-event stream's, per 1 000 upstream events, so per-request costs
cancel. Each figure is the median of ``--repeat`` runs, the set-ups taking turns within each run.
The table is printed and, with matplotlib, drawn into ``--plot``.

Figures measured on a shared machine are provisional: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "addon"))
sys.path.insert(0, str(ROOT / "bench"))

from request_translate import synthetic_history  # noqa: E402
from support.mitm import MITMDUMP, MitmRelay  # noqa: E402

from mitmrelay.core.body import json_body  # noqa: E402
from mitmrelay.core.request import parse_request, translate_request  # noqa: E402

GAP_S = 0.001  # between two upstream events
SHORT = 20  # events of the short stream whose CPU is subtracted
CONCURRENT = 20
SETTLE_S = 0.15  # after the last byte: the relay finishes its per-request work
TOOL_ARGUMENTS_BYTES = 200_000
# The client's key for every set-up (LiteLLM's proxy refuses to start without a strong master
# key; the others ignore it or send their own upstream).
CLIENT_KEY = "sk-bench-" + "5f3a" * 16
PASS_SCRIPT = """
class Pass:
    def responseheaders(self, flow):
        flow.response.stream = True

addons = [Pass()]
"""


# ---------------------------------------------------------------------- the fake upstream


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1732800000,
        "model": "bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def _framed(obj: dict[str, Any] | str) -> bytes:
    data = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
    event = b"data: " + data.encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)  # one HTTP/1.1 chunk per event


def stream_events(kind: str, n: int) -> list[bytes]:
    """``n`` upstream events of one kind (DeepSeek's chunk shape), then the finish chunk, the
    usage chunk and ``[DONE]``."""
    if kind == "tool":
        content = "x" * (TOOL_ARGUMENTS_BYTES - 40)
        arguments = json.dumps({"path": "big.txt", "content": content})
        size = -(-len(arguments) // n)
        parts = [arguments[i : i + size] for i in range(0, len(arguments), size)]
        first = {"index": 0, "id": "call_bench", "type": "function"}
        deltas = [{"tool_calls": [{**first, "function": {"name": "write_file", "arguments": ""}}]}]
        deltas += [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in parts]
        finish = "tool_calls"
    else:
        field_name = "reasoning_content" if kind == "reasoning" else "content"
        deltas = [{"role": "assistant", field_name: ""}]
        deltas += [{field_name: f" word{i}"} for i in range(n - 1)]
        if kind == "reasoning":
            deltas.append({"content": "done"})
        finish = "stop"
    usage = {"prompt_tokens": 12, "completion_tokens": n, "total_tokens": 12 + n}
    events = [_framed(_chunk(d)) for d in deltas]
    events.append(_framed(_chunk({}, finish)))
    events.append(_framed({**_chunk({}), "choices": [], "usage": usage}))
    return [*events, _framed("[DONE]"), b"0\r\n\r\n"]


class PacedUpstream:
    """A threaded Chat Completions server: each request gets the stream its model names
    (``bench-<kind>-<n>``), one write per event, ``GAP_S`` apart; ``GET …/models`` lists one
    model (codex-relay asks at start)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._streams: dict[tuple[str, int], list[bytes]] = {}
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _accept(self) -> None:
        while True:
            conn, _ = self.sock.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _stream(self, model: str) -> list[bytes]:
        _, kind, n = model.rsplit("-", 2)
        with self._lock:
            return self._streams.setdefault((kind, int(n)), stream_events(kind, int(n)))

    def _serve(self, conn: socket.socket) -> None:
        f = conn.makefile("rb")
        try:
            while request_line := f.readline():
                length = 0
                while (header := f.readline()) not in (b"\r\n", b""):
                    name, _, value = header.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = f.read(length)
                if request_line.startswith(b"GET"):
                    listing = b'{"object":"list","data":[{"id":"bench","object":"model"}]}'
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                        b"content-length: %d\r\n\r\n%s" % (len(listing), listing)
                    )
                    continue
                model = json.loads(body)["model"]
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
                )
                for event in self._stream(model):
                    time.sleep(GAP_S)
                    conn.sendall(event)
        except (OSError, ValueError, KeyError):
            pass
        finally:
            conn.close()


# ---------------------------------------------------------------------- requests

TOOL = {
    "type": "function",
    "name": "write_file",
    "description": "Write a file.",
    "parameters": {
        "type": "object",
        "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
        "required": ["path", "content"],
    },
}


def responses_body(kind: str, n: int) -> dict[str, Any]:
    body: dict[str, Any] = {"model": f"bench-{kind}-{n}", "input": "go", "stream": True}
    if kind == "tool":
        body["tools"] = [TOOL]
    return body


def chat_body(responses: dict[str, Any]) -> bytes:
    """The Chat request mitmrelay makes of ``responses``: what the pass-through set-up and the
    direct client send, so every set-up moves the same request."""
    chat, _ = translate_request(
        parse_request(json.dumps(responses).encode()), upstream_model=responses["model"]
    )
    return json.dumps(chat).encode()


def big_history(n: int) -> dict[str, Any]:
    """The 2 MB, 200-turn Codex history of bench/request_translate.py, answered in ``n``
    events."""
    body = json.loads(synthetic_history(200))
    body.update(model=f"bench-text-{n}", stream=True)
    return body


# ---------------------------------------------------------------------- the set-ups


def cpu_s(pid: int) -> float:
    """A process's CPU time (utime + stime), from its process CPU clock (ns resolution)."""
    return time.clock_gettime(((~pid) << 3) | 2)  # CPUCLOCK_SCHED of the whole process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on {port}")


@dataclass
class Peer:
    """One set-up: where the client sends, what it sends (a Chat or a Responses request),
    and the process whose CPU is measured (None: nothing between client and upstream)."""

    name: str
    port: int
    responses: bool
    pid: int | None = None
    results: dict[str, list[float]] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return "/v1/responses" if self.responses else "/v1/chat/completions"

    def body(self, responses: dict[str, Any]) -> bytes:
        return json.dumps(responses).encode() if self.responses else chat_body(responses)

    def add(self, workload: str, value: float) -> None:
        self.results.setdefault(workload, []).append(value)

    def median(self, workload: str) -> float | None:
        values = self.results.get(workload)
        return statistics.median(values) if values else None


@contextlib.contextmanager
def direct(up: PacedUpstream) -> Iterator[Peer]:
    yield Peer("direct", up.port, responses=False)


@contextlib.contextmanager
def mitm_pass_through(up: PacedUpstream, tmp: Path) -> Iterator[Peer]:
    script = tmp / "pass.py"
    script.write_text(PASS_SCRIPT)
    proxy = MitmRelay(tmp / "plain-conf", up.url)  # its start, stop and port parsing
    proxy.args = [
        str(MITMDUMP),
        "--mode",
        f"reverse:http://127.0.0.1:{up.port}@127.0.0.1:0",
        "--set",
        f"confdir={tmp / 'plain-conf'}",
        "-s",
        str(script),
        "--set",
        "flow_detail=0",
    ]
    with proxy:
        assert proxy.proc is not None
        yield Peer("mitm pass-through", proxy.port, responses=False, pid=proxy.proc.pid)


@contextlib.contextmanager
def mitmrelay(up: PacedUpstream, tmp: Path) -> Iterator[Peer]:
    with MitmRelay(tmp / "relay-conf", up.url, options={"relay_state": "memory"}) as relay:
        assert relay.proc is not None
        yield Peer("mitmrelay", relay.port, responses=True, pid=relay.proc.pid)


@contextlib.contextmanager
def codex_relay(up: PacedUpstream, tmp: Path) -> Iterator[Peer]:
    """codex-relay 0.5.8 as its README documents it: CLI flags for port, bind, upstream and key;
    logs at warn. Its history stays in memory and it records no corpus (both defaults)."""
    binary = shutil.which("codex-relay") or str(Path(sys.executable).with_name("codex-relay"))
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "RUST_LOG": "codex_relay=warn",
        "CODEX_RELAY_HISTORY_STORE": "memory",
    }
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--upstream",
            up.url,
            "--api-key",
            "sk-bench",
        ],
        env=env,
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, proc, "codex-relay")
        yield Peer("codex-relay", port, responses=True, pid=proc.pid)
    finally:
        stop(proc)


@contextlib.contextmanager
def litellm(up: PacedUpstream, tmp: Path) -> Iterator[Peer]:
    """LiteLLM's proxy, every model sent to the fake upstream as DeepSeek, so that Responses
    requests go through its Chat Completions bridge; a master key, as it requires, no price
    list fetched at start."""
    binary = shutil.which("litellm") or str(Path(sys.executable).with_name("litellm"))
    port = free_port()
    config = tmp / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: '*'\n"
        "    litellm_params:\n"
        "      model: 'deepseek/*'\n"
        f"      api_base: '{up.url}'\n"
        "      api_key: 'sk-bench'\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "LITELLM_LOG": "ERROR",
        "LITELLM_MASTER_KEY": CLIENT_KEY,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    proc = subprocess.Popen(
        [binary, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, proc, "litellm")
        yield Peer("LiteLLM", port, responses=True, pid=proc.pid)
    finally:
        stop(proc)


def litellm_installed() -> bool:
    return bool(shutil.which("litellm") or Path(sys.executable).with_name("litellm").exists())


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------- one request


@dataclass
class Got:
    status: int
    body: bytes
    first_byte_s: float  # from sending the request to the answer's first body byte
    total_s: float


def request(peer: Peer, body: bytes) -> Got:
    conn = http.client.HTTPConnection("127.0.0.1", peer.port, timeout=120)
    try:
        t0 = time.perf_counter()
        conn.request(
            "POST",
            peer.path,
            body,
            {"content-type": "application/json", "authorization": f"Bearer {CLIENT_KEY}"},
        )
        response = conn.getresponse()
        first = response.read1(65536)
        first_byte = time.perf_counter() - t0
        rest = response.read()
        return Got(response.status, first + rest, first_byte, time.perf_counter() - t0)
    finally:
        conn.close()


def check(peer: Peer, got: Got, kind: str, n: int) -> None:
    """The answer is whole: the stream's last piece arrived, as this set-up words it."""
    assert got.status == 200, (peer.name, got.status, got.body[:300])
    end = b"response.completed" if peer.responses else b"[DONE]"
    assert end in got.body, (peer.name, kind, n, got.body[-300:])
    if kind == "text":
        assert f"word{n - 2}".encode() in got.body, (peer.name, got.body[-300:])


# ---------------------------------------------------------------------- the workloads


def settled_cpu(peer: Peer, before: float) -> float:
    time.sleep(SETTLE_S)
    assert peer.pid is not None
    return cpu_s(peer.pid) - before


def stream_cpu(peer: Peer, kind: str, n: int) -> None:
    """CPU of the relay per 1 000 upstream events of one ``kind`` of stream."""
    if peer.pid is None:
        return
    cost = []
    for events in (n, SHORT):
        body = peer.body(responses_body(kind, events))
        before = cpu_s(peer.pid)
        got = request(peer, body)
        cost.append(settled_cpu(peer, before))
        check(peer, got, kind, events)
    peer.add(kind, (cost[0] - cost[1]) / (n - SHORT) * 1e6)  # ms per 1 000 events


def concurrent_cpu(peer: Peer, n: int) -> None:
    """CPU per 1 000 upstream events with ``CONCURRENT`` streams at once."""
    if peer.pid is None:
        return
    cost = []
    with ThreadPoolExecutor(CONCURRENT) as pool:
        for events in (n, SHORT):
            body = peer.body(responses_body("text", events))
            before = cpu_s(peer.pid)
            answers = list(pool.map(request, [peer] * CONCURRENT, [body] * CONCURRENT))
            cost.append(settled_cpu(peer, before))
            for got in answers:
                check(peer, got, "text", events)
    peer.add("concurrent", (cost[0] - cost[1]) / (CONCURRENT * (n - SHORT)) * 1e6)


def big_request_cpu(peer: Peer, body: bytes) -> None:
    """CPU per request (ms) with the 2 MB history, its answer ``SHORT`` events; wall ms too."""
    before = cpu_s(peer.pid) if peer.pid else 0.0
    got = request(peer, body)
    if peer.pid is not None:
        peer.add("big", settled_cpu(peer, before) * 1e3)
    check(peer, got, "text", SHORT)
    peer.add("big wall", got.total_s * 1e3)


def first_byte(peer: Peer) -> None:
    """Median time to the first body byte over ``CONCURRENT`` streams started together."""
    body = peer.body(responses_body("text", 50))
    start = threading.Barrier(CONCURRENT)

    def one(_: int) -> Got:
        start.wait()
        return request(peer, body)

    with ThreadPoolExecutor(CONCURRENT) as pool:
        answers = list(pool.map(one, range(CONCURRENT)))
    for got in answers:
        check(peer, got, "text", 50)
    peer.add("ttfb", statistics.median(g.first_byte_s for g in answers) * 1e3)


# ---------------------------------------------------------------------- report

ROWS: list[tuple[str, str, str]] = [
    ("text", "2 000 text chunks", "ms CPU / 1 000 events"),
    ("tool", "tool call, 200 KB arguments in 2 000 chunks", "ms CPU / 1 000 events"),
    ("reasoning", "2 000 reasoning chunks", "ms CPU / 1 000 events"),
    ("concurrent", "20 concurrent × 500 chunks", "ms CPU / 1 000 events"),
    ("big", "one request, 2 MB 200-turn history", "ms CPU per request"),
    ("ttfb", "time to first byte, 20 concurrent", "ms wall"),
]


def table(peers: list[Peer]) -> str:
    names = [p.name for p in peers]
    by_name = {p.name: p for p in peers}
    head = f"{'workload':<46}" + "".join(f"{n:>19}" for n in names)
    head += f"{'mitmrelay / pass':>18}"
    lines = [head]
    for key, label, unit in ROWS:
        cells = []
        for p in peers:
            value = p.median(key)
            cells.append(f"{value:>19.1f}" if value is not None else f"{'—':>19}")
        relay = by_name["mitmrelay"].median(key) if "mitmrelay" in by_name else None
        base = by_name["mitm pass-through"].median(key) if "mitm pass-through" in by_name else None
        if relay is not None and base:
            ratio = f"{relay - base:+.1f} ms" if key == "ttfb" else f"{relay / base:.2f}x"
        else:
            ratio = "—"
        lines.append(f"{label:<46}" + "".join(cells) + f"{ratio:>18}" + f"  ({unit})")
    return "\n".join(lines)


def plot(peers: list[Peer], path: Path, subtitle: str) -> None:
    import matplotlib  # the bench extra

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [p for p in peers if p.pid is not None]
    colours = {
        "mitm pass-through": "#9e9e9e",
        "mitmrelay": "#1f77b4",
        "codex-relay": "#ff7f0e",
        "LiteLLM": "#2ca02c",
        "direct": "#444444",
    }
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.2), gridspec_kw={"width_ratios": [4, 1.2, 1.6]})
    streams = ROWS[:4]
    width = 0.8 / len(measured)
    for i, peer in enumerate(measured):
        values = [peer.median(key) or 0.0 for key, _, _ in streams]
        xs = [x + (i - (len(measured) - 1) / 2) * width for x in range(len(streams))]
        bars = axes[0].bar(xs, values, width, label=peer.name, color=colours.get(peer.name))
        axes[0].bar_label(bars, fmt="%.0f", fontsize=7, padding=2)
    axes[0].set_xticks(range(len(streams)))
    axes[0].set_xticklabels(
        [
            "2 000 text\nchunks",
            "tool call, 200 KB\nin 2 000 chunks",
            "2 000 reasoning\nchunks",
            "20 concurrent\n× 500 chunks",
        ],
        fontsize=8,
    )
    axes[0].set_ylabel("relay CPU, ms per 1 000 upstream events (lower is better)")
    axes[0].legend(fontsize=8)
    for ax, key, title in (
        (axes[1], "big", "2 MB, 200-turn request\nms CPU per request"),
        (axes[2], "ttfb", "first byte, 20 concurrent\nms wall"),
    ):
        shown = [p for p in peers if p.median(key) is not None]
        bars = ax.bar(
            [p.name for p in shown],
            [p.median(key) or 0.0 for p in shown],
            color=[colours.get(p.name) for p in shown],
        )
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelrotation=35, labelsize=7)
    fig.suptitle(
        "mitmrelay and its peers, one run, one fake upstream "
        f"(events {GAP_S * 1e3:g} ms apart)\n{subtitle}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--concurrent-events", type=int, default=500)
    parser.add_argument("--plot", type=Path, default=None, help="draw the table into this PNG")
    args = parser.parse_args()
    up = PacedUpstream()
    big = big_history(SHORT)
    with tempfile.TemporaryDirectory() as tmp_name, contextlib.ExitStack() as running:
        tmp = Path(tmp_name)
        makers: list[Callable[[], contextlib.AbstractContextManager[Peer]]] = [
            lambda: direct(up),
            lambda: mitm_pass_through(up, tmp),
            lambda: mitmrelay(up, tmp),
            lambda: codex_relay(up, tmp),
        ]
        if litellm_installed():
            makers.append(lambda: litellm(up, tmp))
        else:
            print("LiteLLM: not installed (`pip install 'litellm[proxy]'` adds it to the run)")
        peers = [running.enter_context(make()) for make in makers]
        for peer in peers:  # warm-up: imports, caches, connection pools
            request(peer, peer.body(responses_body("text", SHORT)))
            request(peer, peer.body(big))
        for run in range(args.repeat):
            for peer in peers:
                for kind in ("text", "tool", "reasoning"):
                    stream_cpu(peer, kind, args.events)
                concurrent_cpu(peer, args.concurrent_events)
                big_request_cpu(peer, peer.body(big))
                first_byte(peer)
            print(f"run {run + 1}/{args.repeat} done", file=sys.stderr)
    translate_ms = statistics.median(
        timed(
            lambda: json_body(
                translate_request(parse_request(json.dumps(big).encode()), upstream_model="m")[0]
            )
        )
        for _ in range(5)
    )
    print(
        f"CPU of the relay's process, median of {args.repeat} runs; events {GAP_S * 1e3:g} ms "
        f"apart, marginal over {SHORT}-event streams"
    )
    print(table(peers))
    relay = next(p for p in peers if p.name == "mitmrelay")
    big_ms = relay.median("big")
    if big_ms:
        print(
            f"the 2 MB request: mitmrelay's request translation alone (parse + translate + "
            f"serialise, in this process) {translate_ms:.1f} ms, {translate_ms / big_ms:.0%} of "
            f"its CPU per request"
        )
    if args.plot is not None:
        plot(peers, args.plot, f"{args.repeat} runs; CPU of each relay's process")


def timed(fn: Callable[[], object]) -> float:
    t0 = time.process_time()
    fn()
    return (time.process_time() - t0) * 1e3


if __name__ == "__main__":
    main()
