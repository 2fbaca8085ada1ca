"""Shared pieces of the Responses-wire tests: the relay's injected parts (fixed ids, a fixed
key and nonces), Codex's captured requests, and a checker of the event lifecycle every
client stream must follow."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from typing import Any

from support.captured import request_bodies

from mitmrelay.core.carrier import SealedReasoningCarrier
from mitmrelay.core.context import TranslationContext
from mitmrelay.core.responses_wire import RULES, ResponsesNormaliser, clean_request

CODEX = request_bodies()
FAMILIES = sorted(RULES)


def carrier(key: bytes = bytes(range(32))) -> SealedReasoningCarrier:
    counter = itertools.count()
    return SealedReasoningCarrier(key, lambda n: next(counter).to_bytes(n, "big"))


def ids() -> Any:
    counter = itertools.count(1)
    return lambda prefix: f"{prefix}_{next(counter)}"


def codex_body(name: str, **changes: Any) -> bytes:
    """A captured Codex request body, with top-level fields changed (None removes one)."""
    body = {**CODEX[name], **changes}
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


def clean(name_or_body: str | bytes | dict[str, Any], family: str = "generic", **kw: Any) -> Any:
    if isinstance(name_or_body, str):
        body = codex_body(name_or_body)
    elif isinstance(name_or_body, dict):
        body = json.dumps(name_or_body).encode()
    else:
        body = name_or_body
    kw.setdefault("upstream_model", "model-x")
    kw.setdefault("origin", family)
    return clean_request(body, RULES[family] if isinstance(family, str) else family, **kw)


def context(**kw: Any) -> TranslationContext:
    kw.setdefault("client_model", "gpt-5.5")
    kw.setdefault("upstream_model", "model-x")
    kw.setdefault(
        "response_echo", {"tool_choice": "auto", "parallel_tool_calls": True, "tools": []}
    )
    return TranslationContext(**kw)


def normaliser(
    family: str = "generic", ctx: TranslationContext | None = None, **kw: Any
) -> ResponsesNormaliser:
    kw.setdefault("new_id", ids())
    kw.setdefault("origin", family)
    return ResponsesNormaliser(
        ctx or context(), RULES[family], response_id="resp_relay", created_at=1795530000, **kw
    )


def run(raw: bytes, family: str = "generic", *, step: int | None = None, **kw: Any) -> bytes:
    n = normaliser(family, **kw)
    if step is None:
        return n.feed(raw) + n.finish()
    out = b"".join(n.feed(raw[i : i + step]) for i in range(0, len(raw), step))
    return out + n.finish()


def events(out: bytes) -> list[dict[str, Any]]:
    result = []
    for block in out.decode().split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: "):
                result.append(json.loads(line[6:]))
    return result


def types(out: bytes) -> list[str]:
    return [e["type"] for e in events(out)]


TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


def assert_lifecycle(evs: list[Mapping[str, Any]]) -> None:
    """The order OpenAI's API emits and the openai SDK's accumulator relies on: created and
    in_progress first; contiguous sequence numbers; per item added, then its events, then one
    done; nothing after the single terminal event; every announced item done unless the
    response did not complete."""
    assert [e["type"] for e in evs[:2]] == ["response.created", "response.in_progress"]
    assert [e["sequence_number"] for e in evs] == list(
        range(evs[0]["sequence_number"], evs[0]["sequence_number"] + len(evs))
    )
    terminals = [n for n, e in enumerate(evs) if e["type"] in TERMINAL]
    assert terminals == [len(evs) - 1], [e["type"] for e in evs]
    open_items: dict[int, str] = {}
    done: set[int] = set()
    for e in evs[2:-1]:
        index = e.get("output_index")
        if e["type"] == "response.output_item.added":
            assert index not in open_items and index not in done
            assert index == len(open_items) + len(done)  # indexes are contiguous
            open_items[index] = e["item"]["id"]
        elif e["type"] == "response.output_item.done":
            assert open_items.pop(index) == e["item"]["id"]
            done.add(index)
        elif index is not None:
            assert index in open_items, e  # an item's events come between its added and done
            assert e.get("item_id", open_items[index]) == open_items[index]
    if evs[-1]["type"] == "response.completed":
        assert not open_items, open_items
        output = evs[-1]["response"]["output"]
        assert [i["id"] for i in output] == [
            e["item"]["id"] for e in evs if e["type"] == "response.output_item.done"
        ]
