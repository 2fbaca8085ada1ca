"""Input items as the plain dicts validation makes of them (models/responses.py): the
translator reads them without changing them, a ``previous_response_id`` record of them is
plain JSON (also for the items that carry tools, which validate into models) and continues
exactly as the request it came from, and a history given as dicts reads like one validated.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging

import pytest
from support.captured import request_bodies

from mitmrelay.core.errors import ClientRequestError
from mitmrelay.core.history import conversation, conversation_record, history_items
from mitmrelay.core.profiles import PROFILES
from mitmrelay.core.request import parse_request, translate_request

BODIES = request_bodies()
LITE = "06-responses-lite-gpt-6.1-sol.request.json"  # tools inside an additional_tools item


@pytest.mark.parametrize("name", sorted(BODIES))
def test_translating_leaves_the_items_as_they_were(name):
    req = parse_request(json.dumps(BODIES[name]).encode())
    before = copy.deepcopy(req.input)
    with contextlib.suppress(ClientRequestError):  # 14d holds nothing readable
        translate_request(req, upstream_model="up", profile=PROFILES["mistral"])
    assert req.input == before


def test_a_record_with_tool_carrying_items_is_json_and_continues_the_same_conversation():
    search_output = {
        "type": "tool_search_output",
        "call_id": "s1",
        "execution": "client",
        "tools": [{"type": "function", "name": "found_tool", "parameters": {}}],
    }
    body = {**BODIES[LITE], "input": [*BODIES[LITE]["input"], search_output]}
    req = parse_request(json.dumps(body).encode())
    record = conversation(req.input, [])
    stored = json.loads(json.dumps(record))  # what every store does with it
    assert stored["input"][0]["tools"][0]["type"] in ("function", "namespace")
    assert stored["input"][-1]["tools"] == [search_output["tools"][0]]
    assert record["input"][1] is req.input[1]  # items without models are kept as they are
    empty = parse_request(json.dumps({"model": body["model"], "input": []}).encode())
    continued = translate_request(empty, upstream_model="up", history=history_items(stored))
    assert continued[0]["messages"] == translate_request(req, upstream_model="up")[0]["messages"]
    size = len(json.dumps(record, separators=(",", ":")))
    assert conversation_record(req.input, []) == (record, size)


def test_reasoning_with_nothing_after_it_sends_nothing(caplog):
    for profile in ("generic", "mistral"):
        req = parse_request(
            json.dumps(
                {
                    "model": "m",
                    "input": [
                        {"role": "user", "content": "go"},
                        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "t"}]},
                    ],
                }
            ).encode()
        )
        with caplog.at_level(logging.INFO):
            chat, _ = translate_request(req, upstream_model="up", profile=PROFILES[profile])
        assert chat["messages"] == [{"role": "user", "content": "go"}]


def test_a_history_of_plain_dicts_reads_like_a_validated_one():
    history = [
        {"role": "user", "content": "earlier"},  # typeless: a message
        {"type": "function_call", "call_id": "c0", "name": "f"},  # no arguments: "{}"
        {"type": "function_call_output", "call_id": "c0", "output": "x"},
    ]
    req = parse_request(json.dumps({"model": "m", "input": "now"}).encode())
    validated = history_items({"input": history, "output": []})
    assert validated == history
    chat, _ = translate_request(req, upstream_model="up", history=history)
    assert chat == translate_request(req, upstream_model="up", history=validated)[0]
    assert chat["messages"][1]["tool_calls"][0]["function"]["arguments"] == "{}"
