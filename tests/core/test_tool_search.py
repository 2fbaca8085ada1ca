"""Deferred tools (core/tool_search.py): Codex's ``tool_search`` offered to a Chat upstream.

The request side runs on the real Codex 0.169.0 and 0.171.0 captures of
``tests/fixtures/tool-search/`` (a search, the MCP tool it found called, a resume); the rules
each get a table; the response side's item is checked against the shape Codex parses and the
openai SDK's own model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.types.responses import ResponseOutputItem
from support.strict_providers import FAMILIES, Memory, check

from mitmrelay.core import tool_search
from mitmrelay.core.errors import ClientRequestError
from mitmrelay.core.history import conversation_record, history_items
from mitmrelay.core.profiles import PROFILES
from mitmrelay.core.request import parse_request, translate_request
from mitmrelay.core.tool_search import (
    DEFAULT_DESCRIPTION,
    DEFAULT_MAX_TOOLS,
    DEFAULT_PARAMETERS,
    Discoveries,
    FoundTool,
    found_tools,
    history_arguments,
    is_client_search,
    search_arguments,
    search_call_item,
    search_function,
)
from mitmrelay.models.responses import FunctionTool

CAPTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tool-search"
VERSIONS = ["codex-0.169", "codex-0.171"]
ECHO = "mcp__demo__echo_tool"


def captured(version: str, name: str) -> dict[str, Any]:
    return json.loads((CAPTURES / version / f"{name}.request.json").read_text())["body"]


def translate(body: dict[str, Any], **kw: Any) -> tuple[dict[str, Any], Any]:
    req = parse_request(json.dumps(body).encode())
    return translate_request(req, upstream_model="up", **kw)


def tool_names(chat: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in chat.get("tools", ())]


def function(name: str, description: str = "", **params: str) -> dict[str, Any]:
    return {
        "type": "function",
        "name": name,
        "description": description or f"The {name} tool.",
        "strict": False,
        "defer_loading": True,
        "parameters": {
            "type": "object",
            "properties": {p: {"type": t} for p, t in params.items()},
            "required": list(params)[:1],
        },
    }


def namespace(name: str, *tools: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "namespace",
        "name": name,
        "description": f"Tools in the {name} namespace.",
        "tools": list(tools),
    }


def search(call_id: str, query: Any = "q", *found: dict[str, Any]) -> list[dict[str, Any]]:
    """A search and its output, as Codex replays them."""
    arguments = {"query": query, "limit": 8} if isinstance(query, str) else query
    return [
        {
            "type": "tool_search_call",
            "id": f"tsc_{call_id}",
            "call_id": call_id,
            "status": "completed",
            "execution": "client",
            "arguments": arguments,
        },
        {
            "type": "tool_search_output",
            "id": f"tso_{call_id}",
            "call_id": call_id,
            "status": "completed",
            "execution": "client",
            "tools": list(found),
        },
    ]


USER = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go"}]}
SEARCH_TOOL = {
    "type": "tool_search",
    "execution": "client",
    "description": "Find tools.",
    "parameters": DEFAULT_PARAMETERS,
}
BASE = [{"type": "function", "name": "exec_command", "parameters": {"type": "object"}}]


def body(*items: dict[str, Any], tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"model": "gpt-5.5", "input": [USER, *items], "tools": tools or [*BASE, SEARCH_TOOL]}


def answer_of(chat: dict[str, Any], call_id: str) -> str:
    (message,) = [m for m in chat["messages"] if m.get("tool_call_id") == call_id]
    return message["content"]


# ----------------------------------------------------------------------------- captures


@pytest.mark.parametrize("version", VERSIONS)
def test_first_request_offers_codex_search_as_a_function_and_no_mcp_tool(version):
    sent = captured(version, "search-01")
    (codex_tool,) = [t for t in sent["tools"] if t["type"] == "tool_search"]
    chat, ctx = translate(sent)
    (offered,) = [t for t in chat["tools"] if t["function"]["name"] == "tool_search"]
    # Codex's own words and schema (query, limit), as an ordinary function.
    assert offered == {
        "type": "function",
        "function": {
            "name": "tool_search",
            "description": codex_tool["description"],
            "parameters": codex_tool["parameters"],
        },
    }
    assert codex_tool["description"].startswith("# Tool discovery")
    assert set(codex_tool["parameters"]["properties"]) == {"query", "limit"}
    assert not any(name.startswith("mcp__demo") for name in tool_names(chat))
    assert ctx.tools["tool_search"].name == "tool_search"


@pytest.mark.parametrize("version", VERSIONS)
def test_after_the_search_the_call_the_answer_and_the_found_tool_go_upstream(version):
    sent = captured(version, "search-02")
    found = sent["input"][-1]["tools"][0]["tools"][0]
    chat, ctx = translate(sent)
    call, answer = chat["messages"][-2:]
    assert call == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_search_1",
                "type": "function",
                "function": {
                    "name": "tool_search",
                    "arguments": '{"query": "echo text tool", "limit": 8}',
                },
            }
        ],
    }
    assert answer == {
        "role": "tool",
        "tool_call_id": "call_search_1",
        "content": "Found 1 tool, callable as functions from now on:\n"
        f"- {ECHO}(text): Echo the given text back, prefixed with 'echo: '.",
    }
    # Found in the history's output only (Codex's `tools` is unchanged): offered now.
    assert tool_names(chat)[-1] == ECHO
    assert chat["tools"][-1]["function"] == {
        "name": ECHO,
        "description": found["description"],
        "parameters": found["parameters"],
    }
    origin = ctx.tools[ECHO]
    assert (origin.name, origin.namespace, origin.freeform) == ("echo_tool", "mcp__demo", False)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", ["search-03", "search-04", "search-05"])
def test_the_found_tool_stays_offered_for_every_later_request(version, name):
    # 03: after the MCP call; 04, 05: the next turn, after `codex exec resume` in a new process.
    chat, _ = translate(captured(version, name))
    assert tool_names(chat).count(ECHO) == 1
    calls = [c["function"]["name"] for m in chat["messages"] for c in m.get("tool_calls") or ()]
    assert calls == ["tool_search", ECHO] + ([ECHO] if name == "search-05" else [])
    assert "echo: ping-42" in answer_of(chat, "call_echo_1")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("scenario", "says"),
    [
        ("empty-query", "No tools found. (the search had no query: pass keywords in `query`)"),
        ("bad-arguments", "No tools found. (the search had no query: pass keywords in `query`)"),
        ("string-arguments", "No tools found."),  # a JSON string with a query: nothing to add
        ("limit-float", "No tools found."),
    ],
)
def test_searches_codex_could_not_run_are_answered_with_why(version, scenario, says):
    chat, _ = translate(captured(version, f"{scenario}-02"))
    assert answer_of(chat, "call_search_1") == says
    assert not any(name.startswith("mcp__") for name in tool_names(chat))


# ----------------------------------------------------------------------------- rule 1


@pytest.mark.parametrize(
    ("tool", "client"),
    [
        ({"type": "tool_search", "execution": "client"}, True),
        ({"type": "tool_search", "execution": "server"}, False),
        ({"type": "tool_search"}, False),
        ({"type": "function", "name": "f", "execution": "client"}, False),
    ],
)
def test_only_the_client_executed_search_is_a_function(tool, client):
    assert is_client_search(tool) is client
    chat, _ = translate(body(tools=[*BASE, tool]))
    assert ("tool_search" in tool_names(chat)) is (client and tool["type"] == "tool_search")


def test_a_search_without_its_own_text_gets_ours():
    spec = search_function({"type": "tool_search", "execution": "client"})
    assert (spec.name, spec.description, spec.parameters) == (
        "tool_search",
        DEFAULT_DESCRIPTION,
        DEFAULT_PARAMETERS,
    )
    chat, _ = translate(body(tools=[{"type": "tool_search", "execution": "client"}]))
    assert chat["tools"][0]["function"]["parameters"] == DEFAULT_PARAMETERS


def test_deferred_functions_of_a_hosted_search_are_offered_outright():
    # With a hosted search, the deferred tools are in `tools` (defer_loading): the upstream
    # simply gets them.
    tools = [*BASE, {"type": "tool_search"}, function("lookup", q="string")]
    chat, _ = translate(body(tools=tools))
    assert tool_names(chat) == ["exec_command", "lookup"]


def test_a_client_tool_named_tool_search_collides_with_the_search():
    with pytest.raises(ClientRequestError, match="tool_search"):
        translate(body(tools=[function("tool_search", q="string"), SEARCH_TOOL]))


# ----------------------------------------------------------------------------- rules 2-3


@pytest.mark.parametrize(
    ("arguments", "sent"),
    [
        ({"query": "x", "limit": 3}, '{"query": "x", "limit": 3}'),
        ({"query": "ünïcode"}, '{"query": "ünïcode"}'),
        ('{"query": "already a string"}', '{"query": "already a string"}'),
        ("  ", "{}"),
        (None, "{}"),
    ],
)
def test_replayed_arguments_become_a_json_string(arguments, sent):
    assert history_arguments(arguments) == sent


def test_namespaces_functions_and_freeform_tools_are_found_hosted_ones_are_not(caplog):
    freeform = {"type": "custom", "name": "patch", "description": "Apply a patch."}
    tools = [
        namespace("mcp__a", function("one", x="string"), freeform, {"type": "web_search"}),
        function("top", y="string"),
        {"type": "web_search"},
        {"type": "function"},  # no name: not callable
        {"type": "namespace", "name": "mcp__b", "tools": 5},  # malformed (a view reads anything)
        {"type": "namespace", "tools": [function("nameless_namespace")]},
    ]
    with caplog.at_level(logging.DEBUG, logger="mitmrelay.core.tool_search"):
        found = found_tools(tools)
    assert [(f.namespace, f.name) for f in found] == [
        ("mcp__a", "one"),
        ("mcp__a", "patch"),
        (None, "top"),
    ]
    assert [r.getMessage() for r in caplog.records] == [
        "tool_search found a 'web_search' in mcp__a; not offered",
        "tool_search found a tool of type 'web_search'; not offered",
        "tool_search found a tool of type 'function'; not offered",
        "tool_search found a tool of type 'namespace'; not offered",
    ]
    # Through the request: a freeform tool found is offered as the usual one-string function.
    chat, ctx = translate(body(*search("s1", "q", *tools[:3])))
    assert tool_names(chat)[-3:] == ["mcp__a__one", "mcp__a__patch", "top"]
    assert ctx.tools["mcp__a__patch"].freeform
    assert answer_of(chat, "s1").splitlines()[1:] == [
        "- mcp__a__one(x): The one tool.",
        "- mcp__a__patch(input): Apply a patch.",
        "- top(y): The top tool.",
    ]


def test_a_search_and_a_call_in_one_turn_keep_the_chat_order():
    # The model searched and ran a command in parallel; Codex replays both calls, then both
    # outputs: one assistant message, each call answered right after it, in order.
    items = [
        search("s1", "q", function("found"))[0],
        {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": "{}"},
        search("s1", "q", function("found"))[1],
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
    ]
    chat, _ = translate(body(*items))
    messages = chat["messages"]
    assert [c["id"] for c in messages[-3]["tool_calls"]] == ["s1", "c1"]
    assert [m.get("tool_call_id") for m in messages[-2:]] == ["s1", "c1"]
    assert messages[-2]["content"].endswith("- found(): The found tool.")


@pytest.mark.parametrize("first", ["search", "function"])
def test_a_second_output_for_a_call_is_dropped_whatever_its_kind(first, caplog):
    call, search_output = search("s1", "q", function("found"))
    function_output = {"type": "function_call_output", "call_id": "s1", "output": "plain"}
    outputs = [search_output, function_output]
    if first == "function":
        outputs.reverse()
    with caplog.at_level(logging.INFO, logger="mitmrelay.core.request"):
        chat, _ = translate(body(call, *outputs))
    answer = answer_of(chat, "s1")
    if first == "function":
        assert answer == "plain"
    else:
        assert answer.startswith("Found 1 tool")
    assert ("found" in tool_names(chat)) is (first == "search")
    assert any("second output for call s1 dropped" in r.getMessage() for r in caplog.records)


def test_an_unanswered_search_is_answered_as_interrupted():
    chat, _ = translate(body(search("s1")[0]))
    assert chat["messages"][-1]["content"].startswith("(no output")


def test_a_search_the_provider_ran_offers_its_tools_without_messages():
    call, output = search("s1", "q", function("found"))
    del call["call_id"], output["call_id"]
    chat, _ = translate(body(call, output))
    assert tool_names(chat)[-1] == "found"
    assert [m["role"] for m in chat["messages"]] == ["user"]


def test_a_tool_found_again_or_declared_already_is_offered_once():
    echo = namespace("mcp__demo", function("echo_tool", text="string"))
    tools = [*BASE, SEARCH_TOOL, echo]  # declared up front too (a non-deferred MCP server)
    chat, _ = translate(body(*search("s1", "q", echo), *search("s2", "q", echo), tools=tools))
    assert tool_names(chat).count(ECHO) == 1
    # It is callable: the answers say so, not "not offered".
    assert "not offered" not in answer_of(chat, "s1") + answer_of(chat, "s2")


def test_a_found_tool_whose_flat_name_is_taken_is_not_offered(caplog):
    # `z` in namespace `x__y` and `y__z` in namespace `x` both flatten to `x__y__z`.
    declared = namespace("x__y", function("z"))
    clash = namespace("x", function("y__z"))
    with caplog.at_level(logging.INFO, logger="mitmrelay.core.request"):
        chat, ctx = translate(body(*search("s1", "q", clash), tools=[SEARCH_TOOL, declared]))
    assert tool_names(chat) == ["tool_search", "x__y__z"]
    assert ctx.tools["x__y__z"].namespace == "x__y"
    assert any("name is taken" in r.getMessage() for r in caplog.records)


# ----------------------------------------------------------------------------- rule 4


def many(prefix: str, n: int) -> dict[str, Any]:
    return namespace(f"mcp__{prefix}", *(function(f"t{i}") for i in range(n)))


def test_the_bound_keeps_the_last_found_first_in_found_order(caplog):
    items = [*search("s1", "q", many("old", 4)), *search("s2", "q", many("new", 3))]
    with caplog.at_level(logging.DEBUG, logger="mitmrelay.core.tool_search"):
        chat, _ = translate(body(*items), max_tools=2 + 5)  # 2 declared, 5 for found tools
    assert tool_names(chat) == [
        "exec_command",
        "tool_search",
        "mcp__old__t2",
        "mcp__old__t3",
        "mcp__new__t0",
        "mcp__new__t1",
        "mcp__new__t2",
    ]
    old = answer_of(chat, "s1").splitlines()
    assert old[1] == (
        "- mcp__old__t0: not offered (the upstream takes at most 5 found tools per request; "
        "search for it again to use it)"
    )
    assert old[3] == "- mcp__old__t2(): The t2 tool."
    assert "not offered" not in answer_of(chat, "s2")
    (logged,) = [r.getMessage() for r in caplog.records if "budget" in r.getMessage()]
    assert logged == (
        "tool_search: 2 found tools over the upstream's budget of 5 not offered: "
        "mcp__old.t1, mcp__old.t0"
    )


def test_searching_again_brings_a_dropped_tool_back():
    items = [
        *search("s1", "q", many("a", 3)),
        *search("s2", "q", many("b", 3)),
        *search("s3", "q", namespace("mcp__a", function("t0"))),
    ]
    chat, _ = translate(body(*items), max_tools=2 + 4)
    assert tool_names(chat)[2:] == ["mcp__a__t0", "mcp__b__t0", "mcp__b__t1", "mcp__b__t2"]


def test_no_room_left_offers_no_found_tool_but_keeps_the_clients_own():
    chat, _ = translate(body(*search("s1", "q", many("a", 2))), max_tools=1)
    assert tool_names(chat) == ["exec_command", "tool_search"]
    assert all("not offered" in line for line in answer_of(chat, "s1").splitlines()[1:])


def test_the_default_bound_is_openais_function_limit():
    assert DEFAULT_MAX_TOOLS == 128
    chat, _ = translate(body(*search("s1", "q", many("a", 200))))
    assert len(chat["tools"]) == 128


def test_offered_without_a_bound_call_answers_every_tool_as_callable():
    found = Discoveries()
    found.add_call("s1", {"query": "q"})
    found.add_output("s1", [function("f")])
    assert found.answered() == ["s1"]
    assert found.answer("s1", lambda name, ns: name) == (
        "Found 1 tool, callable as functions from now on:\n- f(): The f tool."
    )


# ----------------------------------------------------------------------------- the answer text


@pytest.mark.parametrize(
    ("tool", "line"),
    [
        (function("f", "Does f.\nMore detail.", a="string", b="number"), "- f(a, b?): Does f."),
        ({"type": "function", "name": "bare"}, "- bare()"),
        ({"type": "function", "name": "odd", "parameters": {"properties": []}}, "- odd()"),
        (
            {"type": "function", "name": "long", "description": "x" * 500},
            "- long(): " + "x" * (tool_search.MAX_LISTED_DESCRIPTION_CHARS - 1) + "…",
        ),
    ],
)
def test_each_found_tool_is_one_readable_line(tool, line):
    found = Discoveries()
    found.add_output("s1", [tool])
    assert found.answer("s1", lambda name, ns: name).splitlines()[1] == line


def test_a_found_tool_from_pydantic_models_reads_like_one_from_dicts():
    model = FunctionTool.model_validate(function("f", a="string"))
    assert found_tools([model]) == [FoundTool("f", None, model)]


@pytest.mark.parametrize(
    ("arguments", "why"),
    [
        ({"query": ""}, " (the search had no query: pass keywords in `query`)"),
        ({"limit": 3}, " (the search had no query: pass keywords in `query`)"),
        ('{"query": " "}', " (the search had no query: pass keywords in `query`)"),
        ("not json", " (the search's arguments were not JSON)"),
        ([1, 2], ' (the search\'s arguments must be an object like {"query": "..."})'),
        ({"query": "fine"}, ""),
    ],
)
def test_an_empty_answer_says_what_was_wrong_with_the_search(arguments, why):
    found = Discoveries()
    found.add_call("s1", arguments)
    found.add_output("s1", [])
    assert found.answer("s1", lambda name, ns: name) == "No tools found." + why


# ----------------------------------------------------------------------------- rule 5


@pytest.mark.parametrize(
    ("model_sent", "codex_gets"),
    [
        ('{"query": "echo", "limit": 8}', {"query": "echo", "limit": 8}),
        ('{"query": "echo"}', {"query": "echo"}),
        # Codex parses limit as usize: 2.0 would be refused (capture limit-float).
        ('{"query": "echo", "limit": 2.0}', {"query": "echo", "limit": 2}),
        ('{"query": "echo", "limit": "5"}', {"query": "echo", "limit": 5}),
        ('{"query": "echo", "limit": 2.5}', {"query": "echo"}),
        ('{"query": "echo", "limit": 0}', {"query": "echo"}),
        ('{"query": "echo", "limit": -3}', {"query": "echo"}),
        ('{"query": "echo", "limit": true}', {"query": "echo"}),
        ('{"query": "echo", "limit": "many"}', {"query": "echo"}),
        ('{"query": "echo", "limit": null}', {"query": "echo"}),
        ('{"query": "echo", "limit": 1e400}', {"query": "echo"}),
        # A query under another name is moved; other keys dropped.
        ('{"keywords": "echo", "limit": 4}', {"query": "echo", "limit": 4}),
        ('{"query": "echo", "why": "x"}', {"query": "echo"}),
        # Encoded twice: a JSON string holding the object (capture string-arguments).
        ('"{\\"query\\": \\"echo\\"}"', {"query": "echo"}),
        # Nothing that could be the query: sent as the model wrote it.
        ('{"a": "x", "b": "y"}', {"a": "x", "b": "y"}),
        ("{}", {}),
        ("", {}),
        ("[1]", [1]),
        ('"just words"', "just words"),
    ],
)
def test_the_models_arguments_become_what_codex_parses(model_sent, codex_gets):
    assert search_arguments(model_sent) == codex_gets


def test_arguments_that_are_not_json_raise():
    with pytest.raises(ValueError):
        search_arguments('{"query": ')


def test_the_call_item_is_what_codex_executes_and_the_sdk_validates():
    item = search_call_item(item_id="tsc_1", call_id="call_1", arguments={"query": "echo"})
    # Codex's own capture shape: search-01.served.sse (what it ran), minus nothing.
    served = (CAPTURES / "codex-0.169" / "search-01.served.sse").read_text()
    done = json.loads(served.split("data: ")[3].split("\n")[0])["item"]
    assert set(item) == set(done)
    assert (item["type"], item["execution"], item["status"]) == (
        "tool_search_call",
        "client",
        "completed",
    )
    parsed = pydantic.TypeAdapter(ResponseOutputItem).validate_python(item)
    assert parsed.type == "tool_search_call" and parsed.arguments == {"query": "echo"}
    opened = search_call_item(item_id="tsc_1", call_id="c", arguments={}, status="in_progress")
    assert pydantic.TypeAdapter(ResponseOutputItem).validate_python(opened).status == (
        "in_progress"
    )


# ----------------------------------------------------------------------------- properties

NAMES = st.sampled_from(["a", "b", "c", "d"])
FOUND = st.lists(
    st.one_of(
        st.builds(lambda n: function(n), NAMES),
        st.builds(
            lambda ns, ns_tools: namespace(f"mcp__{ns}", *(function(n) for n in ns_tools)),
            NAMES,
            st.lists(NAMES, max_size=3),
        ),
    ),
    max_size=4,
)


@given(
    searches=st.lists(st.tuples(FOUND, st.booleans()), max_size=4),
    max_tools=st.integers(0, 12),
)
def test_any_searches_keep_the_chat_order_and_the_bound(searches, max_tools):
    items = []
    for n, (found, answered) in enumerate(searches):
        call, output = search(f"s{n}", "q", *found)
        items += [call, output] if answered else [call]
    chat, _ = translate(body(*items), max_tools=max_tools)
    names = tool_names(chat)
    assert names[:2] == ["exec_command", "tool_search"]  # the client's own, always
    assert len(names) <= max(max_tools, 2) and len(set(names)) == len(names)
    messages = chat["messages"]
    for i, message in enumerate(messages):
        for k, call in enumerate(message.get("tool_calls") or ()):
            assert messages[i + 1 + k]["tool_call_id"] == call["id"]
            assert isinstance(messages[i + 1 + k]["content"], str)


def test_a_search_survives_a_previous_response_id_chain():
    # What the relay keeps for previous_response_id (core/history.py): the input and the
    # output items, the search call among them, validated again as history.
    call, output = search("s1", "q", namespace("mcp__demo", function("echo_tool", text="string")))
    record, _ = conversation_record([USER], [call])
    history = history_items(json.loads(json.dumps(record)))
    req = parse_request(
        json.dumps({"model": "gpt-5.5", "input": [output], "tools": [SEARCH_TOOL]}).encode()
    )
    chat, _ = translate_request(req, upstream_model="up", history=history)
    assert tool_names(chat) == ["tool_search", ECHO]
    assert answer_of(chat, "s1").endswith(f"- {ECHO}(text): The echo_tool tool.")


# ----------------------------------------------------------------------------- every provider

CAPTURED = {
    f"{version}/{path.stem}": json.loads(path.read_text())["body"]
    for version in VERSIONS
    for path in sorted((CAPTURES / version).glob("*.request.json"))
}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", sorted(CAPTURED))
def test_every_captured_search_request_passes_every_family(name, family):
    """What each family gets for every request of the captured searches (the search function,
    its calls and answers, the tools found) is neither refused by that family's strict fake
    nor a breach it would silently punish (support/strict_providers.py)."""
    req = parse_request(json.dumps(CAPTURED[name]).encode())
    chat, _ = translate_request(req, upstream_model="up", profile=PROFILES[family])
    rejection, violations = check(family, chat, Memory())
    assert rejection is None, rejection.body
    assert violations == []
