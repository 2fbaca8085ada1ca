"""CPU per upstream chunk: StreamTranslator vs ``json.loads`` + ``json.dumps`` of the same
chunks, measured in the same run; then memory growth translating a 10 MB stream.

    .venv/bin/python bench/stream_translate.py [--repeat 21] [--before REV] [--profile KIND]

Streams (DeepSeek's chunk JSON, 2 000 deltas each, one SSE event per feed() as the link
reads a paced upstream):

- text:        plain content deltas;
- tool call:   one call, short argument pieces;
- 200 KB args: one call whose arguments (200 KB) come in 2 000 pieces, the upstream link's
               "tool call, 200 KB arguments" workload;
- freeform:    apply_patch, its JSON-wrapped input decoded live (custom_tool_call_input.delta);
- reasoning:   1 000 reasoning deltas, then 1 000 text deltas;
- batched:     the text stream fed 50 events per feed() (a fast upstream read in big pieces).

Each repeat times the baseline and the translator back to back on the same chunks; the ratio
printed is the median of the per-repeat ratios (robust to other load on the machine), with
the median µs per chunk of each. Target: no regression on text, tool-argument and reasoning
streams against the figures in notes/stream.md; memory growth < 3x the output size.
``--before REV`` also times the translator as it was at git revision REV (its
``addon/mitmrelay`` imported under another package name), interleaved in the same runs, and
prints the after/before ratio: the figure for a speed claim. ``--profile KIND`` runs that
stream under cProfile instead (the ``__main__`` loop for profilers).
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import io
import itertools
import json
import pstats
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "addon"))

from mitmrelay.core.context import ToolOrigin, TranslationContext  # noqa: E402
from mitmrelay.core.stream import StreamTranslator  # noqa: E402

CTX = TranslationContext(
    client_model="gpt-5.5",
    upstream_model="deepseek-chat",
    tools={"apply_patch": ToolOrigin("apply_patch", freeform=True)},
)
N = 2000


def chunk(delta: dict, finish: str | None = None) -> bytes:
    return (
        b"data: "
        + json.dumps(
            {
                "id": "chatcmpl-9f2c",
                "object": "chat.completion.chunk",
                "created": 1732800000,
                "model": "deepseek-chat",
                "system_fingerprint": "fp_1",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
        ).encode()
        + b"\n\n"
    )


def _call(name: str, first: str, pieces: list[str], close: str) -> list[bytes]:
    opening = {"index": 0, "id": "call_1", "type": "function"}
    body = [chunk({"tool_calls": [{**opening, "function": {"name": name, "arguments": first}}]})]
    body += [
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}) for piece in pieces
    ]
    return [*body, chunk({"tool_calls": [{"index": 0, "function": {"arguments": close}}]})]


def stream(kind: str, n: int = N) -> list[bytes]:
    if kind == "text":
        body = [chunk({"content": f"word{i} "}) for i in range(n)]
    elif kind == "tool call":
        body = _call("exec_command", '{"cmd": "', ["echo abc; "] * n, '"}')
    elif kind == "200 KB args":
        body = _call("exec_command", '{"cmd": "', ["x" * 99 + ";"] * n, '"}')
    elif kind == "freeform":
        line = json.dumps("+ a line of the patch, é\n")[1:-1]
        body = _call("apply_patch", '{"input": "*** Begin Patch\\n', [line] * n, '"}')
    elif kind == "reasoning":
        body = [chunk({"reasoning_content": f"thought{i} "}) for i in range(n // 2)]
        body += [chunk({"content": f"word{i} "}) for i in range(n // 2)]
    else:
        raise ValueError(kind)
    return [*body, chunk({}, "stop"), b"data: [DONE]\n\n"]


def batched(chunks: list[bytes], size: int = 50) -> list[bytes]:
    return [b"".join(chunks[i : i + size]) for i in range(0, len(chunks), size)]


def translator(cls: Any = StreamTranslator) -> StreamTranslator:
    ids = itertools.count()
    return cls(CTX, response_id="resp_1", created_at=1, new_id=lambda p: f"{p}_{next(ids)}")


def run_baseline(chunks: list[bytes]) -> None:
    for c in chunks:
        for event in c.split(b"\n\n"):
            if event.startswith(b"data: {"):
                json.dumps(json.loads(event[6:]))


def relay(cls: Any) -> Callable[[list[bytes]], None]:
    def run(chunks: list[bytes]) -> None:
        t = translator(cls)
        for c in chunks:
            t.feed(c)
        t.finish()

    return run


run_relay = relay(StreamTranslator)


def translator_at(rev: str) -> Any:
    """StreamTranslator as it was at git revision ``rev``, imported as ``mitmrelay_before``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "addon/mitmrelay"],
        capture_output=True,
        check=True,
    ).stdout
    folder = Path(tempfile.mkdtemp(prefix="stream-before-"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    (folder / "addon" / "mitmrelay").rename(folder / "mitmrelay_before")
    sys.path.insert(0, str(folder))
    return importlib.import_module("mitmrelay_before.core.stream").StreamTranslator


def _seconds(fn: Callable[[list[bytes]], None], chunks: list[bytes]) -> float:
    t0 = time.perf_counter()
    fn(chunks)
    return time.perf_counter() - t0


def measure(
    runs: list[Callable[[list[bytes]], None]], chunks: list[bytes], events: int, repeat: int
) -> list[tuple[float, float]]:
    """Per run after the first (the baseline): (median µs per event, median ratio to the
    baseline); the runs are interleaved, the ratio taken within each repeat."""
    seconds: list[list[float]] = [[] for _ in runs]
    for _ in range(repeat):
        for times, run in zip(seconds, runs, strict=True):
            times.append(_seconds(run, chunks))
    base = seconds[0]
    return [
        (
            statistics.median(times) * 1e6 / events,
            statistics.median(t / b for t, b in zip(times, base, strict=True)),
        )
        for times in seconds
    ]


def memory_growth() -> tuple[int, int]:
    chunks = stream("text", 43_000)  # about 10 MB of output
    tracemalloc.start()
    t = translator()
    out = 0
    for c in chunks:
        out += len(t.feed(c))  # the host sends the bytes on; only the translator's state stays
    out += len(t.finish())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, out


WORKLOADS: dict[str, Callable[[], list[bytes]]] = {
    "text": lambda: stream("text"),
    "tool call": lambda: stream("tool call"),
    "200 KB args": lambda: stream("200 KB args"),
    "freeform": lambda: stream("freeform"),
    "reasoning": lambda: stream("reasoning"),
    "batched": lambda: batched(stream("text")),
}


def profile(kind: str) -> None:
    chunks = WORKLOADS[kind]()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(20):
        run_relay(chunks)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--before", metavar="REV", help="also time the translator at REV")
    parser.add_argument("--profile", choices=sorted(WORKLOADS))
    args = parser.parse_args()
    if args.profile:
        profile(args.profile)
        return
    runs = [run_baseline, run_relay]
    header = f"{'stream':<13}{'json µs/event':>15}{'relay µs/event':>16}{'ratio':>8}"
    if args.before:
        runs.append(relay(translator_at(args.before)))
        header += f"{'before µs':>11}{'ratio':>8}{'after/before':>14}"
    print(header)
    for kind, make in WORKLOADS.items():
        chunks = make()
        events = len(stream("text")) if kind == "batched" else len(chunks)
        (base, _), (us, ratio), *before = measure(runs, chunks, events, args.repeat)
        line = f"{kind:<13}{base:>15.2f}{us:>16.2f}{ratio:>7.2f}x"
        for before_us, before_ratio in before:
            line += f"{before_us:>11.2f}{before_ratio:>7.2f}x{ratio / before_ratio:>13.2f}x"
        print(line)
    peak, out = memory_growth()
    print(
        f"10 MB stream: output {out / 1e6:.1f} MB, peak traced memory {peak / 1e6:.1f} MB "
        f"({peak / out:.2f}x the output)"
    )


if __name__ == "__main__":
    main()
