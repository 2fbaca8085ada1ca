"""CPU per upstream chunk: StreamTranslator vs ``json.loads`` + ``json.dumps`` of the same
chunks, measured in the same run; then memory growth translating a 10 MB stream.

    .venv/bin/python bench/stream_translate.py

Streams: plain text deltas, one tool call with long streamed arguments, reasoning then text.
Targets (issue 4): <= 2x the baseline per chunk (stretch 1.5x); memory growth < 3x the
output size.
"""

from __future__ import annotations

import itertools
import json
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "addon"))

from mitmrelay.core.context import TranslationContext  # noqa: E402
from mitmrelay.core.stream import StreamTranslator  # noqa: E402

CTX = TranslationContext(client_model="gpt-5.5", upstream_model="deepseek-chat")
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


def stream(kind: str, n: int = N) -> list[bytes]:
    if kind == "text":
        body = [chunk({"content": f"word{i} "}) for i in range(n)]
    elif kind == "tool call":
        body = [
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "exec_command", "arguments": '{"cmd": "'},
                        }
                    ]
                }
            )
        ]
        body += [
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": "echo abc; "}}]})
            for _ in range(n)
        ]
        body += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"}'}}]})]
    else:
        body = [chunk({"reasoning_content": f"thought{i} "}) for i in range(n // 2)]
        body += [chunk({"content": f"word{i} "}) for i in range(n // 2)]
    return [*body, chunk({}, "stop"), b"data: [DONE]\n\n"]


def translator() -> StreamTranslator:
    ids = itertools.count()
    return StreamTranslator(
        CTX, response_id="resp_1", created_at=1, new_id=lambda p: f"{p}_{next(ids)}"
    )


def run_baseline(chunks: list[bytes]) -> None:
    for c in chunks:
        if c.startswith(b"data: {"):
            json.dumps(json.loads(c[6:]))


def run_relay(chunks: list[bytes]) -> None:
    t = translator()
    for c in chunks:
        t.feed(c)
    t.finish()


def per_chunk(fn, chunks: list[bytes], repeat: int = 15) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(chunks)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / len(chunks) * 1e6


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


def main() -> None:
    print(f"{'stream':<12}{'json µs/chunk':>15}{'relay µs/chunk':>16}{'ratio':>8}")
    for kind in ("text", "tool call", "reasoning"):
        chunks = stream(kind)
        base, ours = per_chunk(run_baseline, chunks), per_chunk(run_relay, chunks)
        print(f"{kind:<12}{base:>15.2f}{ours:>16.2f}{ours / base:>7.2f}x")
    peak, out = memory_growth()
    print(
        f"10 MB stream: output {out / 1e6:.1f} MB, peak traced memory {peak / 1e6:.1f} MB "
        f"({peak / out:.2f}x the output)"
    )


if __name__ == "__main__":
    main()
