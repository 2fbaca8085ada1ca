"""Output items on their own (core/output_items.py, core/events.py) and the tables that pick
them: what another source of Responses items (a Responses-native upstream) may rely on, and
how a new kind of tool call is added without touching the translator."""

from __future__ import annotations

import itertools
import json
import typing
from typing import Any

import pydantic
import pytest
from chat_streams import CTX, DONE, call, chunk, events, run, terminal
from openai.types.responses import ResponseOutputItem, ResponseStreamEvent
from test_stream_golden import GOLDEN

from mitmrelay.config import REASONING_MODES
from mitmrelay.core import output_items
from mitmrelay.core.context import ToolKind, ToolOrigin, TranslationContext
from mitmrelay.core.events import ALL_EVENTS, EventWriter
from mitmrelay.core.output_items import (
    CALL_ITEMS,
    REASONING_ITEMS,
    CallItem,
    CustomToolCallItem,
    FunctionCallItem,
    MessageItem,
    SignatureItem,
    StreamFailure,
)

EVENTS = pydantic.TypeAdapter(ResponseStreamEvent)
ITEMS = pydantic.TypeAdapter(ResponseOutputItem)


def _sdk_literals(union: Any) -> set[str]:
    members = typing.get_args(typing.get_args(union)[0])
    return {lit for m in members for lit in typing.get_args(m.model_fields["type"].annotation)}


def test_every_event_name_is_one_the_sdk_knows():
    assert set(ALL_EVENTS) <= _sdk_literals(ResponseStreamEvent)
    assert len(set(ALL_EVENTS)) == len(ALL_EVENTS)


def test_every_recorded_event_name_is_a_constant():
    """No event name is spelled outside core/events.py."""
    seen = {
        json.loads(line[6:])["type"]
        for path in GOLDEN.glob("*/*.sse")
        if path.name != "chat.sse"
        for line in path.read_text().splitlines()
        if line.startswith("data: ")
    }
    assert seen == set(ALL_EVENTS)


def test_every_tool_kind_has_one_item_kind():
    assert set(CALL_ITEMS) == set(ToolKind)
    assert all(issubclass(cls, CallItem) for cls in CALL_ITEMS.values())
    prefixes = [cls.ID_PREFIX for cls in CALL_ITEMS.values()]
    assert len(set(prefixes)) == len(prefixes)


def test_the_reasoning_modes_are_the_relays_options():
    assert tuple(REASONING_ITEMS) == REASONING_MODES


def test_tool_origin_kind_and_freeform_read_the_same():
    assert ToolOrigin("apply_patch", freeform=True).kind is ToolKind.CUSTOM
    assert ToolOrigin("apply_patch", kind=ToolKind.CUSTOM).freeform
    assert ToolOrigin("apply_patch", kind="custom") == ToolOrigin("apply_patch", freeform=True)
    assert ToolOrigin("echo", "mcp__demo").kind is ToolKind.FUNCTION
    assert not ToolOrigin("echo", "mcp__demo").freeform
    assert json.dumps(ToolOrigin("a", freeform=True).kind) == '"custom"'
    with pytest.raises(ValueError):
        ToolOrigin("x", kind="web_search")  # type: ignore[arg-type]


def _sse_events(writer: EventWriter) -> list[dict[str, Any]]:
    return events(writer.drain())


def test_an_item_can_be_driven_on_its_own():
    """A custom tool call fed JSON-wrapped pieces: the events validate strictly and the
    finished item is the raw input, ready for output_item.done."""
    writer = EventWriter()
    writer.seq = 7  # a stream already under way
    item = CustomToolCallItem(
        writer,
        "ctc_1",
        3,
        call_id="call_p",
        upstream_name="apply_patch",
        origin=ToolOrigin("apply_patch", freeform=True),
        upstream="vllm",
    )
    item.open()
    for piece in ('{"input": "*** Be', "gin Patch\\n", '*** End Patch"}'):
        item.add(piece)
    arguments = '{"input": "*** Begin Patch\\n*** End Patch"}'
    finished = item.close(arguments, json.loads(arguments))
    assert finished == {
        "id": "ctc_1",
        "type": "custom_tool_call",
        "status": "completed",
        "call_id": "call_p",
        "name": "apply_patch",
        "input": "*** Begin Patch\n*** End Patch",
    }
    evs = _sse_events(writer)
    assert [e["sequence_number"] for e in evs] == list(range(7, 7 + len(evs)))
    for event in evs:
        EVENTS.validate_python(event)
    ITEMS.validate_python(finished)
    assert "".join(e["delta"] for e in evs if "delta" in e) == finished["input"]


def test_a_message_item_writes_its_lifecycle():
    writer = EventWriter()
    item = MessageItem(writer, "msg_1", 0)
    item.open()
    item.add("Hel")
    item.add('lo "ü"')
    finished = item.close()
    types = [e["type"] for e in _sse_events(writer)]
    assert types == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
    ]
    assert finished["content"][0]["text"] == 'Hello "ü"'


def test_a_call_item_checks_what_only_its_kind_can():
    writer = EventWriter()
    item = CustomToolCallItem(
        writer,
        "ctc_1",
        0,
        call_id="c",
        upstream_name="apply_patch",
        origin=ToolOrigin("apply_patch", freeform=True),
        upstream="vllm",
    )
    with pytest.raises(StreamFailure) as failure:
        item.close('{"input": 1}', {"input": 1})
    assert failure.value.code == "invalid_tool_call"
    assert "vllm called freeform tool 'apply_patch'" in failure.value.message


class _ToolSearchLikeCall(CallItem):
    """What a new kind looks like: a call whose item carries its arguments as a JSON object
    and is sent whole (no deltas), as Codex's tool_search_call is."""

    ID_PREFIX = "ts"

    def _item(self, status: str, arguments: object) -> dict[str, Any]:
        return {
            "id": self.item_id,
            "type": "tool_search_call",
            "call_id": self.call_id,
            "status": status,
            "execution": "client",
            "arguments": arguments,
        }

    def open(self) -> None:
        self._added(self._item("in_progress", {}))

    def add(self, piece: str) -> None:
        pass  # no delta event exists for this item

    def close(self, arguments: str, parsed: object) -> dict[str, Any]:
        if not isinstance(parsed, dict):
            raise StreamFailure("invalid_tool_call", f"{self.upstream} sent a non-object search")
        return self._item("completed", parsed)


def test_a_new_item_kind_is_one_row_in_the_table(monkeypatch):
    """The translator reads CALL_ITEMS only: swapping the row for function tools is enough to
    make their calls another item, deltas, sealing and ordering unchanged."""
    monkeypatch.setitem(output_items.CALL_ITEMS, ToolKind.FUNCTION, _ToolSearchLikeCall)
    ctx = TranslationContext(
        "gpt-5.5", "up", tools={"tool_search": ToolOrigin("tool_search", kind=ToolKind.FUNCTION)}
    )
    raw = (
        chunk({"reasoning_content": "search first"})
        + chunk({"tool_calls": [call(0, "search-1", "tool_search", '{"query": "demo ')]})
        + chunk({"tool_calls": [call(0, args='echo", "limit": 8}')]})
        + chunk(finish="tool_calls")
        + DONE
    )
    out = run(raw, ctx=ctx)
    done = terminal(out)["response"]["output"]
    assert done[1] == {
        "id": "ts_2",
        "type": "tool_search_call",
        "call_id": "search-1",
        "status": "completed",
        "execution": "client",
        "arguments": {"query": "demo echo", "limit": 8},
    }
    assert not [e for e in events(out) if e["type"].endswith(".delta") and "ts_2" in str(e)]
    ITEMS.validate_python(done[1])


def test_every_reasoning_mode_opens_and_closes_an_item_the_sdk_accepts():
    for mode, cls in REASONING_ITEMS.items():
        writer = EventWriter()
        item = cls(writer, "rs_1", 0)
        item.open()
        item.add("think")
        finished = item.close()
        for event in _sse_events(writer):
            EVENTS.validate_python(event)
        ITEMS.validate_python(finished)
        assert item.text == "think", mode


def test_a_signature_item_shows_nothing_and_the_sdk_accepts_it():
    """The reasoning item that only carries a sealed blob (Gemini's signatures): its added
    event and finished item have an empty summary and nothing else to show."""
    writer = EventWriter()
    item = SignatureItem(writer, "rs_1", 0)
    item.open()
    finished = item.close()
    sent = _sse_events(writer)
    assert [e["type"] for e in sent] == ["response.output_item.added"]
    assert sent[0]["item"] == finished == {"id": "rs_1", "type": "reasoning", "summary": []}
    EVENTS.validate_python(sent[0])
    ITEMS.validate_python({**finished, "encrypted_content": "mr1.blob"})
    assert (item.text, item.details) == ("", [])


def test_ids_come_from_the_injected_source_call_id_first():
    ids = itertools.count(1)
    raw = chunk({"tool_calls": [call(0, None, "exec_command", "{}")]}) + chunk(finish="stop")
    item = terminal(run(raw + DONE, new_id=lambda p: f"{p}-{next(ids)}"))["response"]["output"][0]
    assert (item["call_id"], item["id"]) == ("call-1", "fc-2")
    assert CTX.tools["apply_patch"].kind is ToolKind.CUSTOM
    assert CALL_ITEMS[CTX.tools["apply_patch"].kind] is CustomToolCallItem
    assert CALL_ITEMS[ToolKind.FUNCTION] is FunctionCallItem
