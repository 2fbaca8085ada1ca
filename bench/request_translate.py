"""Request translation time vs ``json.loads`` + ``json.dumps`` of the same body, same run.

    .venv/bin/python bench/request_translate.py

Cases: the largest captured Codex request, and a synthetic 200-turn history of about 2 MB
(each turn: user prompt, reasoning, a shell call, its output, an assistant answer). The
translation measured is what the addon does per request: validate the body
(``parse_request``), translate it, serialise the Chat request. Target: <= 3x the baseline.
A third case, 2000 short turns, shows the per-item worst case (little text, many items).

The baseline and the relay run in turns, so a load that comes and goes on the machine weighs
on both alike; each figure is a median. The last column repeats the measure with Python's
cyclic garbage collector paused: the ~50 000 objects a long history validates into get
traversed by it (and find nothing to free), which is most of what remains above the CPU cost.
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "addon"))

from mitmrelay.core.request import parse_request, translate_request  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "codex-0.169"


def largest_fixture() -> bytes:
    bodies = [json.loads(p.read_text()).get("body") for p in FIXTURES.glob("*.request.json")]
    return json.dumps(max((b for b in bodies if b), key=lambda b: len(json.dumps(b)))).encode()


def synthetic_history(turns: int = 200) -> bytes:
    base = json.loads((FIXTURES / "02-after-tool-call.request.json").read_text())["body"]
    prefix = base["input"][:3]
    items = list(prefix)
    output = "drwxr-xr-x  5 user user 4096 Nov 28 file.txt\n" * 180
    for t in range(turns):
        items += [
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": f"Step {t}: inspect the tree."}],
            },
            {
                "type": "reasoning",
                "id": f"rs_{t}",
                "summary": [{"type": "summary_text", "text": "I will list the files first. " * 8}],
                "content": None,
                "encrypted_content": None,
            },
            {
                "type": "function_call",
                "id": f"fc_{t}",
                "status": "completed",
                "name": "exec_command",
                "arguments": json.dumps({"cmd": f"ls -la dir{t}"}),
                "call_id": f"call_{t}",
            },
            {"type": "function_call_output", "call_id": f"call_{t}", "output": output},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Listed. " * 20, "annotations": []}],
            },
        ]
    base["input"] = items
    return json.dumps(base).encode()


def many_small_items(turns: int = 2000) -> bytes:
    """The per-item worst case: short turns (the same shape as above, tiny payloads)."""
    body = json.loads(synthetic_history(turns))
    for item in body["input"]:
        if item.get("type") == "function_call_output":
            item["output"] = "ok"
        elif item.get("type") == "reasoning":
            item["summary"] = [{"type": "summary_text", "text": "ls"}]
    return json.dumps(body).encode()


def medians(fns: tuple[Callable[[bytes], None], ...], body: bytes, repeat: int) -> list[float]:
    """The median time of each function, run in turns (a, b, a, b, ...)."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, out in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn(body)
            out.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def without_gc(body: bytes, repeat: int) -> list[float]:
    gc.disable()
    try:
        return medians((baseline, relay), body, repeat)
    finally:
        gc.enable()


def baseline(body: bytes) -> None:
    json.dumps(json.loads(body))


def relay(body: bytes) -> None:
    chat, _ = translate_request(parse_request(body), upstream_model="up")
    json.dumps(chat)


def main() -> None:
    print(
        f"{'case':<28}{'size':>10}{'json (ms)':>12}{'relay (ms)':>12}{'ratio':>8}"
        f"{'ratio w/o GC':>14}"
    )
    for name, body, repeat in (
        ("largest fixture", largest_fixture(), 200),
        ("200-turn history", synthetic_history(), 15),
        ("2000 short turns", many_small_items(), 15),
    ):
        base, ours = medians((baseline, relay), body, repeat)
        base_cpu, ours_cpu = without_gc(body, repeat)
        print(
            f"{name:<28}{len(body) / 1e6:>8.2f}MB{base * 1e3:>12.2f}{ours * 1e3:>12.2f}"
            f"{ours / base:>7.2f}x{ours_cpu / base_cpu:>13.2f}x"
        )


if __name__ == "__main__":
    main()
