from __future__ import annotations

import json

from mitmrelay.core.bounds import BoundedLRU, Limits
from mitmrelay.core.history import conversation_record, history_items
from mitmrelay.core.request import parse_request, translate_request


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lru_bounds_count_bytes_and_age():
    clock = Clock()
    lru: BoundedLRU[str] = BoundedLRU(Limits(max_entries=3, max_bytes=100, ttl_s=10), clock)
    for k in "abc":
        lru.put(k, k, 10)
    assert lru.get("a") == "a"  # a becomes most recent
    lru.put("d", "d", 10)  # evicts b, the least recently used
    assert lru.get("b") is None and len(lru) == 3
    lru.put("big", "x", 90)  # bytes bound: evicts until 100 holds
    assert lru.bytes <= 100 and lru.get("big") == "x"
    lru.put("huge", "x", 101)  # larger than the bound on its own: not kept
    assert lru.get("huge") is None
    clock.now = 11
    assert lru.get("big") is None  # expired


def test_ten_thousand_sessions_stay_within_bounds():
    lru: BoundedLRU[int] = BoundedLRU(Limits(max_entries=500, max_bytes=40_000), Clock())
    for i in range(10_000):
        lru.put(f"resp_{i}", i, 100)
    assert len(lru) <= 400 and lru.bytes <= 40_000
    assert lru.get("resp_9999") == 9999 and lru.get("resp_0") is None


def test_history_is_previous_input_plus_output_plus_new_input():
    first = parse_request(json.dumps({"model": "m", "input": "list files"}).encode())
    output = [
        {
            "type": "function_call",
            "call_id": "c1",
            "name": "exec_command",
            "arguments": "{}",
            "id": "fc_1",
            "status": "completed",
        }
    ]
    record, size = conversation_record(
        first.input
        if isinstance(first.input, list)
        else [{"type": "message", "role": "user", "content": first.input}],
        output,
    )
    assert size > 0
    second = parse_request(
        json.dumps(
            {
                "model": "m",
                "previous_response_id": "resp_1",
                "input": [{"type": "function_call_output", "call_id": "c1", "output": "a.txt"}],
            }
        ).encode()
    )
    chat, _ = translate_request(second, upstream_model="up", history=history_items(record))
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant", "tool"]
    assert chat["messages"][2]["content"] == "a.txt"
