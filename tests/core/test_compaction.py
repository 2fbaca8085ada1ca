"""Remote compaction end to end through the core: trigger -> one sealed compaction item ->
replayed item opened into Codex's own summary message (docs/codex-contract.md §9)."""

from __future__ import annotations

import itertools
import json

from chat_streams import DONE, chunk, events, translator, usage

from mitmrelay.core.carrier import SealedReasoningCarrier
from mitmrelay.core.compaction import SUMMARY_PREFIX
from mitmrelay.core.request import parse_request, translate_request

COUNTER = itertools.count()
CARRIER = SealedReasoningCarrier(bytes(32), lambda n: next(COUNTER).to_bytes(n, "big"))
HISTORY = [
    {"type": "message", "role": "user", "content": "build it"},
    {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "done half"}],
    },
]


def translate(items):
    body = json.dumps(
        {
            "model": "gpt-5.5",
            "input": items,
            "stream": True,
            "tools": [{"type": "function", "name": "f"}],
        }
    ).encode()
    return translate_request(parse_request(body), upstream_model="up", carrier=CARRIER)


def test_trigger_gives_exactly_one_sealed_compaction_item_then_it_expands():
    chat, ctx = translate([*HISTORY, {"type": "compaction_trigger"}])
    assert ctx.compaction and "tools" not in chat
    raw = (
        chunk({"reasoning_content": "hmm"})
        + chunk({"content": "Summary: "})
        + chunk({"content": "half built."})
        + chunk(finish="stop")
        + usage()
        + DONE
    )
    t = translator(ctx=ctx, carrier=CARRIER)
    out = events(t.feed(raw) + t.finish())
    done = [e["item"] for e in out if e["type"] == "response.output_item.done"]
    assert [i["type"] for i in done] == ["compaction"]  # exactly one, nothing else
    assert out[-1]["type"] == "response.completed"
    assert out[-1]["response"]["output"] == done
    blob = done[0]["encrypted_content"]
    assert "half built" not in blob

    chat, ctx = translate([done[0], {"type": "message", "role": "user", "content": "go on"}])
    assert chat["messages"][0] == {
        "role": "user",
        "content": SUMMARY_PREFIX + "Summary: half built.",
    }
    assert chat["messages"][-1] == {"role": "user", "content": "go on"}


def test_empty_summary_fails_instead_of_completing():
    _, ctx = translate([*HISTORY, {"type": "compaction_trigger"}])
    t = translator(ctx=ctx, carrier=CARRIER)
    out = events(t.feed(chunk(finish="stop") + DONE) + t.finish())
    assert out[-1]["type"] == "response.failed"


def test_sdk_accepts_the_compaction_events():
    import pydantic
    from openai.types.responses import ResponseStreamEvent

    _, ctx = translate([*HISTORY, {"type": "compaction_trigger"}])
    t = translator(ctx=ctx, carrier=CARRIER)
    adapter = pydantic.TypeAdapter(ResponseStreamEvent)
    for e in events(t.feed(chunk({"content": "s"}) + chunk(finish="stop") + DONE) + t.finish()):
        adapter.validate_python(e)
