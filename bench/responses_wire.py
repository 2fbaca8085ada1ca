"""CPU per upstream event on the Responses wire, measured in one run against two baselines:

- ``parse+dump``: ``json.loads`` + ``json.dumps`` of every event of the provider's Responses
  stream (what any code that reads and rewrites each event pays at least), and ``+sse``: the
  same behind core/sse.py's decoder (what any such code pays once it must split the bytes
  into events itself, as the normaliser does);
- ``chat``: core/stream.py's ``StreamTranslator`` on the Chat Completions stream of the same
  answer (the Chat wire's cost per upstream chunk);
- ``normaliser``: ``ResponsesNormaliser`` on the provider's Responses stream (DeepSeek's
  dialect: every event as its API sends it, vercel/ai deepseek-tool-call fixture).

    .venv/bin/python bench/responses_wire.py            # the table
    .venv/bin/python -m cProfile -s cumtime bench/responses_wire.py --loop text   # profile

Streams: text deltas, one tool call with long streamed arguments, reasoning then text, and a
wrapped freeform (apply_patch) call decoded live. Each figure is the median of 15 runs per
upstream event (a Chat chunk, or a Responses event), all kinds measured in turns so machine
load hits each alike. Provisional on a shared machine: compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "addon"))

from mitmrelay.core.context import ToolOrigin, TranslationContext  # noqa: E402
from mitmrelay.core.responses_wire import RULES, ResponsesNormaliser  # noqa: E402
from mitmrelay.core.sse import SSEDecoder  # noqa: E402
from mitmrelay.core.stream import StreamTranslator  # noqa: E402

CTX = TranslationContext(
    client_model="gpt-5.5",
    upstream_model="deepseek-v4-flash",
    tools={"apply_patch": ToolOrigin("apply_patch", freeform=True)},
)
N = 2000
KINDS = ("text", "tool call", "reasoning", "freeform")


# ----------------------------------------------------------------------------- Responses


def _event(kind: str, seq: int, **fields: Any) -> bytes:
    data = json.dumps({"type": kind, **fields, "sequence_number": seq}, separators=(",", ":"))
    return b"event: %s\ndata: %s\n\n" % (kind.encode(), data.encode())


class _Responses:
    """A DeepSeek-shaped Responses stream, one event per list entry."""

    def __init__(self) -> None:
        self.events: list[bytes] = []
        self.output: list[dict[str, Any]] = []
        response = {
            "id": "7624faf2-e4f7-4ea5-ab42-772fe1814320",
            "object": "response",
            "created_at": 1786786827,
            "status": "in_progress",
            "model": "deepseek-v4-flash",
            "output": [],
            "tools": [],
            "usage": None,
        }
        self.response = response
        self.add("response.created", response=response)
        self.add("response.in_progress", response=response)

    def add(self, kind: str, **fields: Any) -> None:
        self.events.append(_event(kind, len(self.events), **fields))

    def item(self, item: dict[str, Any], deltas: list[str], delta_kind: str, **extra: Any) -> None:
        index = len(self.output)
        base = {"item_id": item["id"], "output_index": index, **extra}
        self.add("response.output_item.added", output_index=index, item=item)
        for delta in deltas:
            self.add(delta_kind, **base, delta=delta)
        self.output.append(item)
        self.add("response.output_item.done", output_index=index, item=item)

    def finish(self) -> list[bytes]:
        usage = {
            "input_tokens": 296,
            "input_tokens_details": {"cached_tokens": 256},
            "output_tokens": 64,
            "output_tokens_details": {"reasoning_tokens": 20},
            "total_tokens": 360,
        }
        done = {**self.response, "status": "completed", "output": self.output, "usage": usage}
        self.add("response.completed", response=done)
        return self.events


def responses_stream(kind: str, n: int = N) -> list[bytes]:
    s = _Responses()
    if kind == "text":
        words = [f"word{i} " for i in range(n)]
        msg = {
            "type": "message",
            "id": "m1",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "".join(words)}],
        }
        s.item(msg, words, "response.output_text.delta", content_index=0)
    elif kind in ("tool call", "freeform"):
        name = "exec_command" if kind == "tool call" else "apply_patch"
        head = '{"cmd": "' if kind == "tool call" else '{"input": "'
        pieces = [head, *("echo abc; " for _ in range(n)), '"}']
        call = {
            "type": "function_call",
            "id": "f1",
            "call_id": "call_00_N9",
            "name": name,
            "arguments": "".join(pieces),
            "status": "completed",
        }
        s.item(call, pieces, "response.function_call_arguments.delta")
    else:
        thoughts = [f"thought{i} " for i in range(n // 2)]
        reasoning = {
            "type": "reasoning",
            "id": "r1",
            "summary": [],
            "content": [{"type": "reasoning_text", "text": "".join(thoughts)}],
        }
        s.item(reasoning, thoughts, "response.reasoning_text.delta", content_index=0)
        words = [f"word{i} " for i in range(n // 2)]
        msg = {
            "type": "message",
            "id": "m1",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "".join(words)}],
        }
        s.item(msg, words, "response.output_text.delta", content_index=0)
    return s.finish()


# ----------------------------------------------------------------------------- Chat


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-9f2c",
        "object": "chat.completion.chunk",
        "created": 1732800000,
        "model": "deepseek-chat",
        "system_fingerprint": "fp_1",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def chat_stream(kind: str, n: int = N) -> list[bytes]:
    if kind == "text":
        body = [_chunk({"content": f"word{i} "}) for i in range(n)]
    elif kind in ("tool call", "freeform"):
        name = "exec_command" if kind == "tool call" else "apply_patch"
        head = '{"cmd": "' if kind == "tool call" else '{"input": "'
        first = {
            "index": 0,
            "id": "call_1",
            "type": "function",
            "function": {"name": name, "arguments": head},
        }
        body = [_chunk({"tool_calls": [first]})]
        more = {"tool_calls": [{"index": 0, "function": {"arguments": "echo abc; "}}]}
        body += [_chunk(more) for _ in range(n)]
        body += [_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"}'}}]})]
    else:
        body = [_chunk({"reasoning_content": f"thought{i} "}) for i in range(n // 2)]
        body += [_chunk({"content": f"word{i} "}) for i in range(n // 2)]
    return [*body, _chunk({}, "stop"), b"data: [DONE]\n\n"]


# ----------------------------------------------------------------------------- runners


def _ids() -> Callable[[str], str]:
    counter = itertools.count()
    return lambda prefix: f"{prefix}_{next(counter)}"


def run_parse_dump(events: list[bytes]) -> None:
    for e in events:
        data = e[e.index(b"data: ") + 6 :]
        json.dumps(json.loads(data))


def run_sse_parse_dump(events: list[bytes]) -> None:
    decoder = SSEDecoder()
    for e in events:
        for event in decoder.feed(e):
            json.dumps(json.loads(event.data))


def run_chat(chunks: list[bytes]) -> None:
    t = StreamTranslator(CTX, response_id="resp_1", created_at=1, new_id=_ids())
    for c in chunks:
        t.feed(c)
    t.finish()


def run_normaliser(events: list[bytes]) -> None:
    n = ResponsesNormaliser(
        CTX, RULES["deepseek"], response_id="resp_1", created_at=1, new_id=_ids()
    )
    for e in events:
        n.feed(e)
    n.finish()


def per_event(fn: Callable[[list[bytes]], None], events: list[bytes]) -> float:
    t0 = time.perf_counter()
    fn(events)
    return (time.perf_counter() - t0) / len(events) * 1e6


RUNNERS = {"base": run_parse_dump, "sse": run_sse_parse_dump, "ours": run_normaliser}


def measure(kind: str, repeat: int = 15) -> dict[str, float]:
    responses, chat = responses_stream(kind), chat_stream(kind)
    runs: dict[str, list[float]] = {"base": [], "sse": [], "chat": [], "ours": []}
    for _ in range(repeat):  # in turns: load hits every runner alike
        for name, runner in RUNNERS.items():
            runs[name].append(per_event(runner, responses))
        runs["chat"].append(per_event(run_chat, chat))
    return {name: statistics.median(times) for name, times in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loop", choices=KINDS, help="only run the normaliser, for a profiler")
    args = parser.parse_args()
    if args.loop:
        events = responses_stream(args.loop)
        for _ in range(50):
            run_normaliser(events)
        return
    print(
        f"{'stream':<11}{'parse+dump':>11}{'+sse':>7}{'chat':>7}{'normaliser':>11}"
        f"{'/parse+dump':>12}{'/+sse':>7}{'/chat':>7}   (µs per upstream event)"
    )
    for kind in KINDS:
        m = measure(kind)
        print(
            f"{kind:<11}{m['base']:>11.2f}{m['sse']:>7.2f}{m['chat']:>7.2f}{m['ours']:>11.2f}"
            f"{m['ours'] / m['base']:>11.2f}x{m['ours'] / m['sse']:>6.2f}x"
            f"{m['ours'] / m['chat']:>6.2f}x"
        )


if __name__ == "__main__":
    main()
