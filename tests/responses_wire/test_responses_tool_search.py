"""Codex's ``tool_search`` on the Responses wire (docs/tool-search.md §6): the search offered
as a function, replayed searches as that function's calls and answers, the tools found offered
within the row's bound, and the model's call of it back to Codex as a ``tool_search_call``.

The request side runs on the real Codex 0.169.0 and 0.171.0 captures of
``tests/fixtures/tool-search/`` and every family's strict fake; the response side on each
family's dialect, every event checked by the openai SDK.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import pydantic
import pytest
from openai.types.responses import ResponseStreamEvent
from support.fake_responses import Call, FakeResponses, Text, Turn, response_for, stream_for
from wire_helpers import FAMILIES, assert_lifecycle, clean, events, ids, normaliser

from mitmrelay.core.errors import ClientRequestError
from mitmrelay.core.responses_wire import RULES, normalise_response

CAPTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tool-search"
VERSIONS = ["codex-0.169", "codex-0.171"]
SEARCHES = [f"search-0{n}" for n in range(1, 6)]
EVENTS = pydantic.TypeAdapter(ResponseStreamEvent)
ECHO = "mcp__demo__echo_tool"
FOUND_LINE = f"- {ECHO}(text): Echo the given text back, prefixed with 'echo: '."


def captured(version: str, name: str) -> dict[str, Any]:
    return json.loads((CAPTURES / version / f"{name}.request.json").read_text())["body"]


def tools_by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in body.get("tools", ())}


def items(body: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [i for i in body["input"] if i.get("type") == kind]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", SEARCHES)
@pytest.mark.parametrize("family", FAMILIES)
def test_every_captured_search_passes_every_strict_fake(version, name, family):
    body, _ = clean(captured(version, name), family)
    assert FakeResponses(family).validate(body) is None
    assert not [t for t in body["tools"] if t["type"] == "tool_search"]
    assert not [i for i in body["input"] if i["type"].startswith("tool_search")]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_search_is_offered_as_a_function_in_codexs_own_words(version):
    request = captured(version, "search-01")
    (search,) = [t for t in request["tools"] if t["type"] == "tool_search"]
    body, ctx = clean(request)
    offered = tools_by_name(body)["tool_search"]
    assert offered == {
        "type": "function",
        "name": "tool_search",
        "description": search["description"],
        "parameters": search["parameters"],
    }
    assert ctx.tools["tool_search"].kind == "tool_search"


@pytest.mark.parametrize("version", VERSIONS)
def test_a_replayed_search_is_the_functions_call_and_its_answer_lists_what_was_found(version):
    body, ctx = clean(captured(version, "search-03"))
    (call,) = [i for i in items(body, "function_call") if i["name"] == "tool_search"]
    assert json.loads(call["arguments"]) == {"query": "echo text tool", "limit": 8}
    (answer,) = [i for i in items(body, "function_call_output") if i["call_id"] == call["call_id"]]
    assert answer["output"].splitlines() == [
        "Found 1 tool, callable as functions from now on:",
        FOUND_LINE,
    ]
    # The found MCP tool is offered (flattened, as the plain subset takes no namespaces),
    # without Codex's defer_loading flag; its call in the history has the same flat name.
    echo = tools_by_name(body)[ECHO]
    assert "defer_loading" not in echo and echo["parameters"]["required"] == ["text"]
    assert [i["name"] for i in items(body, "function_call")] == ["tool_search", ECHO]
    assert ctx.tools[ECHO].name == "echo_tool" and ctx.tools[ECHO].namespace == "mcp__demo"


def test_a_family_that_takes_namespaces_gets_the_found_tools_in_theirs():
    body, _ = clean(captured("codex-0.169", "search-03"), "kimi")
    namespace = tools_by_name(body)["mcp__demo"]
    assert namespace["type"] == "namespace"
    assert [t["name"] for t in namespace["tools"]] == ["echo_tool"]
    (answer,) = [i for i in items(body, "function_call_output") if i["call_id"] == "call_search_1"]
    assert "- mcp__demo.echo_tool(text):" in answer["output"]


def test_the_found_tools_stay_offered_after_the_conversation_moves_on():
    body, _ = clean(captured("codex-0.169", "search-05"))  # the resumed turn
    assert ECHO in tools_by_name(body)


def _found(n: int) -> dict[str, Any]:
    return {"type": "function", "name": f"found_{n}", "defer_loading": True, "parameters": {}}


def _search_turns(*found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"role": "user", "content": "find tools"}]
    for n, tools in enumerate(found):
        call_id = f"call_s{n}"
        out += [
            {
                "type": "tool_search_call",
                "call_id": call_id,
                "execution": "client",
                "arguments": {"query": f"q{n}"},
            },
            {
                "type": "tool_search_output",
                "call_id": call_id,
                "execution": "client",
                "tools": tools,
            },
        ]
    return out


SEARCH_TOOL = {"type": "tool_search", "execution": "client", "description": "d", "parameters": {}}


def test_found_tools_fill_what_the_bound_leaves_the_last_found_first():
    request = {
        "model": "m",
        "tools": [SEARCH_TOOL, {"type": "function", "name": "own", "parameters": {}}],
        "input": _search_turns([_found(1), _found(2)], [_found(3)]),
    }
    rules = dataclasses.replace(RULES["generic"], max_tools=4)  # own + tool_search + 2 found
    body, _ = clean(request, rules)
    assert list(tools_by_name(body)) == ["tool_search", "own", "found_2", "found_3"]
    first, second = items(body, "function_call_output")
    assert "- found_1: not offered (the upstream takes at most 2 found tools" in first["output"]
    assert "- found_3()" in second["output"]


def test_a_search_that_found_nothing_says_why_when_its_query_was_unusable():
    request = {"model": "m", "tools": [SEARCH_TOOL], "input": _search_turns([])}
    request["input"][1]["arguments"] = {"query": "  "}
    body, _ = clean(request)
    (answer,) = items(body, "function_call_output")
    assert answer["output"] == "No tools found. (the search had no query: pass keywords in `query`)"


def test_a_client_tool_named_tool_search_beside_the_search_is_a_client_error():
    request = {
        "model": "m",
        "tools": [SEARCH_TOOL, {"type": "function", "name": "tool_search", "parameters": {}}],
        "input": "hi",
    }
    with pytest.raises(ClientRequestError, match="tool_search") as caught:
        clean(request)
    assert caught.value.param == "tools"


def test_a_hosted_search_is_dropped_and_its_deferred_tools_are_offered(caplog):
    request = {
        "model": "m",
        "tools": [{"type": "tool_search"}, _found(1)],  # no execution: the server's own search
        "input": "hi",
    }
    with caplog.at_level(logging.DEBUG, logger="mitmrelay.core.responses_wire.request"):
        body, _ = clean(request)
    assert body["tools"] == [{"type": "function", "name": "found_1", "parameters": {}}]
    assert any("tool_search the server would run" in r.getMessage() for r in caplog.records)


def test_a_found_tool_whose_name_is_taken_is_not_offered_and_the_request_goes_on():
    taken = {"type": "function", "name": "echo_tool", "namespace": "x", "parameters": {}}
    namespace = {"type": "namespace", "name": "mcp__demo", "tools": [taken]}
    request = {
        "model": "m",
        "tools": [SEARCH_TOOL, {"type": "function", "name": ECHO, "parameters": {}}],
        "input": _search_turns([namespace]),
    }
    body, _ = clean(request)
    assert [t["name"] for t in body["tools"]] == ["tool_search", ECHO]


# ----------------------------------------------------------------------------- response side


def _search_stream_turn(arguments: str) -> Turn:
    return Turn([Call("tool_search", arguments, call_id="call_search_9")])


@pytest.mark.parametrize("family", FAMILIES)
def test_the_models_call_of_the_search_goes_back_as_the_tool_search_call_codex_runs(family):
    _, ctx = clean(captured("codex-0.169", "search-01"), family)
    n = normaliser(family, ctx=ctx)
    out = n.feed(stream_for(_search_stream_turn('{"query": "echo", "limit": 8.0}'), family))
    out += n.finish()
    evs = events(out)
    for event in evs:
        EVENTS.validate_python(event)
    assert_lifecycle(evs)
    kinds = [e["type"] for e in evs]
    assert not [k for k in kinds if "arguments" in k]  # no argument events for this item
    (done,) = [e["item"] for e in evs if e["type"] == "response.output_item.done"]
    assert done == {
        "id": done["id"],
        "type": "tool_search_call",
        "status": "completed",
        "call_id": "call_search_9",
        "execution": "client",
        "arguments": {"query": "echo", "limit": 8},  # Codex refuses 8.0
    }
    assert done["id"].startswith("tsc_")
    (added,) = [e["item"] for e in evs if e["type"] == "response.output_item.added"]
    assert added["arguments"] == {} and added["status"] == "in_progress"


def test_a_search_call_whose_arguments_do_not_parse_fails_the_response():
    _, ctx = clean(captured("codex-0.169", "search-01"))
    n = normaliser(ctx=ctx)
    out = n.feed(stream_for(_search_stream_turn('{"query": '), "generic")) + n.finish()
    failed = events(out)[-1]
    assert failed["type"] == "response.failed"
    assert "invalid_tool_call" in failed["response"]["error"]["message"]


def test_the_whole_answer_path_gives_the_same_item():
    _, ctx = clean(captured("codex-0.169", "search-01"), "deepseek")
    turn = Turn([Call("tool_search", '{"q": "echo"}', call_id="c9"), Text("searching")])
    response = normalise_response(
        json.dumps(response_for(turn, "deepseek")).encode(),
        ctx,
        RULES["deepseek"],
        response_id="resp_1",
        created_at=1,
        new_id=ids(),
    )
    assert response["status"] == "completed"
    search = response["output"][0]
    assert search["type"] == "tool_search_call"
    assert search["arguments"] == {"query": "echo"}  # a query under another name is moved
