"""Request cleanup for Responses-native providers: one test per rule, against Codex's captured
requests, and every captured request through every family's strict fake validator."""

from __future__ import annotations

import copy
import json
import logging

import pytest
from support.fake_responses import MODES, FakeResponses
from wire_helpers import CODEX, FAMILIES, carrier, clean, codex_body

from mitmrelay.core.compaction import COMPACTION_PROMPT, SUMMARY_PREFIX
from mitmrelay.core.context import ToolOrigin
from mitmrelay.core.errors import ClientRequestError
from mitmrelay.core.reasoning import ReasoningPayload
from mitmrelay.core.request import MISSING_OUTPUT
from mitmrelay.core.responses_wire import RULES, ResponsesRules

REQUESTS = sorted(n for n in CODEX if n.endswith(".request.json") and "models" not in n)


def _items(body: dict) -> list[dict]:
    return body["input"] if isinstance(body["input"], list) else []


def _types(body: dict) -> list[str]:
    return [i.get("type", "message") for i in _items(body)]


def _request(*items: dict, **fields) -> dict:
    return {"model": "gpt-5.5", "stream": True, "input": list(items), **fields}


USER = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}


# ----------------------------------------------------------------------------- every request


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", REQUESTS)
def test_every_captured_request_passes_the_strict_fake_after_cleanup(name, family):
    body, _ = clean(name, family, carrier=carrier())
    fake = FakeResponses(family)  # validation only: no server started
    assert fake.validate(json.loads(json.dumps(body))) is None, body


@pytest.mark.parametrize(
    ("family", "name"),
    [
        ("generic", "10a-mcp-namespace-tool.request.json"),  # namespace tools
        ("deepseek", "04-gpt-5.5-first-turn.request.json"),  # custom apply_patch, tool_search
        ("openrouter", "01-first-turn.request.json"),  # web_search
        ("lmstudio", "10a-mcp-namespace-tool.request.json"),
        ("vllm", "02-after-tool-call.request.json"),  # namespace multi_agent_v1
        ("ollama", "05-custom_tool_call-and-output.request.json"),  # custom_tool_call item
        ("kimi", "04-gpt-5.5-first-turn.request.json"),  # web_search, custom
    ],
)
def test_the_fakes_reject_what_codex_sends_raw(family, name):
    """The fakes are as strict as the providers: without the cleanup these fail."""
    assert FakeResponses(family).validate(CODEX[name]) is not None


# ----------------------------------------------------------------------------- rule 1: tools


def test_namespace_tools_are_flattened_and_their_calls_renamed():
    body, ctx = clean("10b-mcp-call-output.request.json")
    names = [t["name"] for t in body["tools"]]
    assert "mcp__demo__echo_tool" in names and "multi_agent_v1__spawn_agent" in names
    assert all(t["type"] == "function" for t in body["tools"])
    call = next(i for i in _items(body) if i["type"] == "function_call")
    assert call["name"] == "mcp__demo__echo_tool" and "namespace" not in call
    assert ctx.tools["mcp__demo__echo_tool"] == ToolOrigin("echo_tool", "mcp__demo")


def test_a_family_with_namespaces_gets_them_as_they_are():
    raw = CODEX["10b-mcp-call-output.request.json"]
    body, _ = clean("10b-mcp-call-output.request.json", "kimi")
    namespaces = [t for t in body["tools"] if t["type"] == "namespace"]
    assert [t["name"] for t in namespaces] == ["multi_agent_v1", "mcp__demo"]
    assert namespaces[1] == next(t for t in raw["tools"] if t.get("name") == "mcp__demo")
    call = next(i for i in _items(body) if i["type"] == "function_call")
    assert (call["name"], call["namespace"]) == ("echo_tool", "mcp__demo")


def test_long_flattened_names_stay_within_64_characters_and_reversible():
    ns = "mcp__" + "a" * 70
    req = _request(
        USER,
        tools=[{"type": "namespace", "name": ns, "tools": [{"type": "function", "name": "t"}]}],
    )
    body, ctx = clean(req)
    (tool,) = body["tools"]
    assert len(tool["name"]) <= 64
    assert ctx.tools[tool["name"]] == ToolOrigin("t", ns)


def test_colliding_flat_names_are_a_client_error():
    tools = [
        {"type": "namespace", "name": "a", "tools": [{"type": "function", "name": "b"}]},
        {"type": "function", "name": "a__b"},
    ]
    with pytest.raises(ClientRequestError, match="both become"):
        clean(_request(USER, tools=tools))


def test_freeform_tools_become_a_function_with_one_string_parameter():
    body, ctx = clean("04-gpt-5.5-first-turn.request.json", "deepseek")
    patch = next(t for t in body["tools"] if t["name"] == "apply_patch")
    assert patch["type"] == "function"
    assert patch["parameters"]["properties"] == {"input": {"type": "string"}}
    assert "start: begin_patch" in patch["description"]  # the lark grammar rides along
    assert ctx.tools["apply_patch"] == ToolOrigin("apply_patch", freeform=True)


def test_a_family_with_custom_tools_gets_them_as_they_are():
    rules = ResponsesRules(
        name="x",
        tool_types=frozenset({"function", "custom"}),
        item_types=RULES["generic"].item_types | {"custom_tool_call", "custom_tool_call_output"},
    )
    body, ctx = clean("05-custom_tool_call-and-output.request.json", rules)
    raw = CODEX["05-custom_tool_call-and-output.request.json"]
    assert next(t for t in body["tools"] if t["name"] == "apply_patch") == raw["tools"][3]
    assert _types(body)[-2:] == ["custom_tool_call", "custom_tool_call_output"]
    assert "apply_patch" not in ctx.tools


def test_custom_tools_inside_a_kept_namespace_are_wrapped_in_place():
    """The lite models' `functions` namespace holds a freeform `exec`
    (docs/codex-contract.md §1.3)."""
    body, ctx = clean("06-responses-lite-gpt-6.1-sol.request.json", "kimi")
    extra = next(i for i in _items(body) if i["type"] == "additional_tools")
    functions = next(t for t in extra["tools"] if t["name"] == "functions")
    exec_tool = next(t for t in functions["tools"] if t["name"] == "exec")
    assert exec_tool["type"] == "function" and "input" in exec_tool["parameters"]["properties"]
    assert ctx.tools["functions__exec"] == ToolOrigin("exec", "functions", freeform=True)


def test_additional_tools_are_lifted_for_families_without_the_item():
    body, ctx = clean("06-responses-lite-gpt-6.1-sol.request.json")
    assert "additional_tools" not in _types(body)
    assert "functions__exec" in [t["name"] for t in body["tools"]]
    assert ctx.tools["functions__exec"].freeform


@pytest.mark.parametrize(
    "kind", ["web_search", "image_generation", "local_shell", "file_search", "mcp"]
)
def test_hosted_tools_are_dropped_with_one_debug_line_each(kind, caplog):
    tools = [{"type": "function", "name": "f"}, {"type": kind}, {"type": kind}]
    with caplog.at_level(logging.DEBUG, logger="mitmrelay.core.responses_wire.request"):
        body, _ = clean(_request(USER, tools=tools))
    assert body["tools"] == [{"type": "function", "name": "f"}]
    assert [r.getMessage() for r in caplog.records if kind in r.getMessage()] == [
        f"tool of type {kind!r} not sent to generic"
    ]


def test_a_request_whose_tools_all_go_keeps_no_empty_tools_field():
    body, _ = clean(
        _request(USER, tools=[{"type": "web_search"}], tool_choice="auto", parallel_tool_calls=True)
    )
    assert "tools" not in body and "tool_choice" not in body and "parallel_tool_calls" not in body


# ----------------------------------------------------------------------------- rule 3: items


def test_custom_calls_and_outputs_become_function_calls_and_outputs():
    body, _ = clean("05-custom_tool_call-and-output.request.json", "deepseek")
    raw = CODEX["05-custom_tool_call-and-output.request.json"]["input"]
    call, output = _items(body)[-2:]
    assert call == {
        "type": "function_call",
        "call_id": "call_fake_patch",
        "name": "apply_patch",
        "arguments": json.dumps({"input": raw[-2]["input"]}, ensure_ascii=False),
    }
    assert output == {
        "type": "function_call_output",
        "call_id": "call_fake_patch",
        "output": raw[-1]["output"],
    }


@pytest.mark.parametrize(
    "item",
    [
        {
            "type": "web_search_call",
            "id": "ws_1",
            "status": "completed",
            "action": {"type": "search", "query": "x"},
        },
        {"type": "image_generation_call", "id": "ig_1", "status": "completed", "result": "AAAA"},
        {
            "type": "local_shell_call",
            "id": "ls_1",
            "call_id": "c",
            "status": "completed",
            "action": {},
        },
        {"type": "tool_search_call", "execution": "server", "arguments": {}},  # no call id
        {"type": "brand_new_item", "id": "x"},
    ],
)
def test_items_outside_the_subset_are_dropped(item, caplog):
    with caplog.at_level(logging.DEBUG, logger="mitmrelay.core.responses_wire.request"):
        body, _ = clean(_request(USER, item))
    assert _items(body) == [USER]
    assert any(item["type"] in r.getMessage() for r in caplog.records)


def test_items_the_cleanup_does_not_touch_pass_through_as_the_same_objects():
    from mitmrelay.core.responses_wire import request as request_module
    from mitmrelay.core.toolnames import NameTable

    raw = copy.deepcopy(CODEX["02-after-tool-call.request.json"])
    c = request_module._Cleanup(RULES["kimi"], "kimi", None, NameTable())
    cleaned = request_module._paired(c, request_module._clean_items(c, raw["input"], 0))
    untouched = [i for i in raw["input"] if i["type"] != "reasoning"]  # its blob is OpenAI's
    assert all(any(i is o for o in cleaned) for i in untouched)
    assert raw == CODEX["02-after-tool-call.request.json"]  # and the input was not mutated


def test_codex_bookkeeping_on_items_never_goes_upstream():
    body, _ = clean("13b-after-remote-compaction.request.json")
    assert all("internal_chat_message_metadata_passthrough" not in i for i in _items(body))


def test_an_item_without_a_field_a_rule_reads_is_a_client_error_naming_it():
    with pytest.raises(ClientRequestError) as e:
        clean(
            _request(
                USER, {"type": "function_call", "call_id": "c", "arguments": "{}", "namespace": "n"}
            )
        )
    assert e.value.param == "input[1].name"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[]", None),
        (b'{"input": []}', "model"),
        (b'{"model": "m", "input": 3}', "input"),
        (b'{"model": "m", "input": [], "tools": {}}', "tools"),
        (b'{"model": "m", "input": [3]}', "input"),
        (b'{"model": "m", "input": []}', "input"),
    ],
)
def test_unusable_requests_are_client_errors(body, param):
    with pytest.raises(ClientRequestError) as e:
        clean(body)
    assert e.value.param == param


# ----------------------------------------------------------------------------- rule 4: reasoning

CALL = {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": "{}"}
OUTPUT = {"type": "function_call_output", "call_id": "c1", "output": "ok"}


def _reasoning(**fields) -> dict:
    return {"type": "reasoning", "id": "rs_1", "summary": [], **fields}


def _sealed(c, text: str, origin: str, item: dict) -> dict:
    return _reasoning(
        summary=[{"type": "summary_text", "text": text}],
        encrypted_content=c.seal(ReasoningPayload(text=text, origin=origin, item=item)),
    )


@pytest.mark.parametrize(
    ("family", "expected"),
    [
        ("generic", {"type": "reasoning", "summary": [{"type": "summary_text", "text": "plan"}]}),
        (
            "deepseek",
            {
                "type": "reasoning",
                "summary": [],
                "content": [{"type": "reasoning_text", "text": "plan"}],
            },
        ),
        (
            "vllm",
            {
                "type": "reasoning",
                "summary": [],
                "content": [{"type": "reasoning_text", "text": "plan"}],
            },
        ),
        (
            "ollama",
            {
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "plan"}],
                "encrypted_content": "plan",
            },
        ),
    ],
)
def test_openai_sealed_reasoning_goes_on_as_its_text_only(family, expected):
    foreign = _reasoning(
        summary=[{"type": "summary_text", "text": "plan"}], encrypted_content="gAAAAA-FAKE"
    )
    body, _ = clean(_request(USER, foreign, CALL, OUTPUT), family, carrier=carrier())
    assert _items(body)[1] == expected
    assert "gAAAA" not in json.dumps(body)


def test_this_providers_own_reasoning_comes_back_as_it_gave_it():
    c = carrier()
    record = {"id": "rs_or_9", "form": "summary", "encrypted_content": "gAAAAB-or-blob"}
    item = _sealed(c, "plan", "openrouter-main", record)
    body, _ = clean(
        _request(USER, item, CALL, OUTPUT), "openrouter", carrier=c, origin="openrouter-main"
    )
    assert _items(body)[1] == {
        "type": "reasoning",
        "id": "rs_or_9",
        "summary": [{"type": "summary_text", "text": "plan"}],
        "encrypted_content": "gAAAAB-or-blob",
    }


def test_another_providers_sealed_reasoning_never_carries_its_blob():
    c = carrier()
    item = _sealed(
        c,
        "plan",
        "openrouter-other-key",
        {"id": "rs_9", "form": "summary", "encrypted_content": "gAAAAB-or-blob"},
    )
    body, _ = clean(
        _request(USER, item, CALL, OUTPUT), "openrouter", carrier=c, origin="openrouter-main"
    )
    assert _items(body)[1] == {
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "plan"}],
    }


def test_reasoning_sealed_under_another_key_falls_back_to_its_readable_text():
    item = _sealed(carrier(bytes(32)), "secret plan", "deepseek", {"form": "content"})
    item["summary"] = [{"type": "summary_text", "text": "shown plan"}]
    body, _ = clean(_request(USER, item, CALL, OUTPUT), "deepseek", carrier=carrier())
    assert _items(body)[1]["content"] == [{"type": "reasoning_text", "text": "shown plan"}]


def test_reasoning_with_nothing_readable_is_dropped_and_deepseek_gets_its_placeholder():
    opaque = _reasoning(encrypted_content="gAAAAA-FAKE")
    body, _ = clean(_request(USER, opaque, CALL, OUTPUT), "deepseek", carrier=carrier())
    assert _items(body)[1:] == [
        {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": " "}]},
        CALL,
        OUTPUT,
    ]
    body, _ = clean(_request(USER, opaque, CALL, OUTPUT), "generic", carrier=carrier())
    assert _items(body)[1:] == [CALL, OUTPUT]


def test_the_placeholder_goes_only_where_a_turns_calls_lack_reasoning():
    plain = _reasoning(content=[{"type": "reasoning_text", "text": "why"}])
    call2 = {**CALL, "call_id": "c2"}
    out2 = {**OUTPUT, "call_id": "c2"}
    body, _ = clean(_request(USER, plain, CALL, OUTPUT, call2, out2), "deepseek")
    assert _types(body) == [
        "message",
        "reasoning",
        "function_call",
        "function_call_output",
        "reasoning",
        "function_call",
        "function_call_output",
    ]
    assert _items(body)[4]["content"][0]["text"] == " "


# ----------------------------------------------------------------------------- rule 5: pairing


def test_an_output_without_its_call_is_dropped_and_a_call_without_one_is_answered():
    orphan = {"type": "function_call_output", "call_id": "nobody", "output": "x"}
    later = {"type": "message", "role": "user", "content": "next"}
    body, _ = clean(_request(USER, orphan, CALL, later))
    assert _items(body) == [
        USER,
        CALL,
        {"type": "function_call_output", "call_id": "c1", "output": MISSING_OUTPUT},
        later,
    ]


def test_a_second_output_for_one_call_is_dropped():
    body, _ = clean(_request(USER, CALL, OUTPUT, {**OUTPUT, "output": "again"}))
    assert _items(body) == [USER, CALL, OUTPUT]


def test_an_unanswered_custom_call_gets_a_custom_output_where_custom_items_go_through():
    rules = ResponsesRules(
        name="x",
        tool_types=frozenset({"function", "custom"}),
        item_types=RULES["generic"].item_types | {"custom_tool_call", "custom_tool_call_output"},
    )
    custom = {
        "type": "custom_tool_call",
        "call_id": "p",
        "name": "apply_patch",
        "input": "*** Begin Patch",
    }
    body, _ = clean(_request(USER, custom), rules)
    assert _items(body)[-1] == {
        "type": "custom_tool_call_output",
        "call_id": "p",
        "output": MISSING_OUTPUT,
    }


def test_images_in_tool_outputs_follow_the_turn_for_string_only_families():
    body, _ = clean("09-function_call_output-with-image.request.json", "deepseek")
    raw = CODEX["09-function_call_output-with-image.request.json"]["input"][-1]
    output, images = _items(body)[-2:]
    assert isinstance(output["output"], str)
    assert images["role"] == "user"
    assert images["content"][1:] == [p for p in raw["output"] if p["type"] == "input_image"]


def test_images_in_tool_outputs_stay_for_families_that_take_parts():
    raw = CODEX["09-function_call_output-with-image.request.json"]["input"][-1]
    body, _ = clean("09-function_call_output-with-image.request.json", "kimi")
    assert _items(body)[-1] is not raw and _items(body)[-1] == raw


# ----------------------------------------------------------------------------- rule 6: fields


def test_openai_bookkeeping_fields_are_removed():
    body, _ = clean("04-gpt-5.5-first-turn.request.json")
    assert set(body) == {
        "model",
        "input",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning",
        "stream",
    }
    assert body["model"] == "model-x"


@pytest.mark.parametrize(
    ("family", "kept"),
    [("kimi", {"prompt_cache_key"}), ("openrouter", {"include"}), ("deepseek", set())],
)
def test_a_row_keeps_the_fields_its_provider_documents(family, kept):
    body, _ = clean("04-gpt-5.5-first-turn.request.json", family)
    assert set(body) & {"prompt_cache_key", "include", "store", "client_metadata", "text"} == kept


@pytest.mark.parametrize(
    ("family", "effort", "sent"),
    [
        ("deepseek", "medium", "high"),
        ("deepseek", "xhigh", "max"),
        ("kimi", "minimal", "low"),
        ("ollama", "xhigh", "max"),
        ("ollama", "medium", "medium"),
        ("generic", "medium", "medium"),
    ],
)
def test_reasoning_efforts_are_mapped_per_family(family, effort, sent):
    body, _ = clean(
        codex_body(
            "04-gpt-5.5-first-turn.request.json",
            reasoning={"effort": effort, "summary": "auto", "context": "all_turns"},
        ),
        family,
    )
    assert body["reasoning"] == {"effort": sent}


def test_text_keeps_a_format_the_family_takes_and_never_verbosity():
    schema = {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}
    body, _ = clean(
        codex_body("17-output-schema.request.json", text={"format": schema, "verbosity": "low"}),
        "kimi",
    )
    assert body["text"] == {"format": schema}
    body, _ = clean(
        codex_body("17-output-schema.request.json", text={"format": {"type": "json_object"}}),
        "kimi",
    )
    assert "text" not in body


@pytest.mark.parametrize(
    ("choice", "family", "sent"),
    [
        ("required", "generic", "required"),
        ("required", "kimi", None),
        (
            {"type": "function", "name": "echo_tool", "namespace": "mcp__demo"},
            "generic",
            {"type": "function", "name": "mcp__demo__echo_tool"},
        ),
        (
            {"type": "custom", "name": "apply_patch"},
            "generic",
            {"type": "function", "name": "apply_patch"},
        ),
        (
            {"type": "function", "name": "exec_command"},
            "generic",
            {"type": "function", "name": "exec_command"},
        ),
        ({"type": "allowed_tools", "tools": []}, "generic", None),
        ({"type": "function", "name": "exec_command"}, "kimi", None),
    ],
)
def test_tool_choice_names_the_tool_as_the_provider_knows_it(choice, family, sent):
    body, _ = clean(codex_body("10a-mcp-namespace-tool.request.json", tool_choice=choice), family)
    assert body.get("tool_choice") == sent


def test_instructions_go_into_the_input_for_a_provider_that_ignores_the_field():
    req = _request(USER, instructions="Be brief.")
    body, _ = clean(req, "qwen")
    assert "instructions" not in body
    assert _items(body)[0] == {"type": "message", "role": "system", "content": "Be brief."}
    body, _ = clean(req, "generic")
    assert body["instructions"] == "Be brief." and _items(body) == [USER]


def test_a_plain_string_input_stays_a_string():
    body, _ = clean({"model": "m", "input": "hello"})
    assert body["input"] == "hello"


# ----------------------------------------------------------------------------- rule 7: history


def test_previous_response_id_is_expanded_from_the_callers_history():
    history = [
        USER,
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "hey"}],
        },
    ]
    req = _request(
        {"type": "message", "role": "user", "content": "and?"},
        previous_response_id="resp_1",
        store=True,
    )
    body, ctx = clean(req, "openrouter", history=history)
    assert "previous_response_id" not in body and "store" not in body
    assert _items(body) == [*history, req["input"][0]]
    assert ctx.response_echo["previous_response_id"] == "resp_1"
    assert FakeResponses("openrouter").validate(body) is None


def test_previous_response_id_without_history_is_not_found():
    with pytest.raises(ClientRequestError) as e:
        clean(_request(USER, previous_response_id="resp_gone"))
    assert (e.value.code, e.value.status, e.value.param) == (
        "previous_response_not_found",
        400,
        "previous_response_id",
    )


def test_a_history_item_that_is_not_an_object_is_named_as_history():
    with pytest.raises(ClientRequestError, match="history"):
        clean(_request(USER, previous_response_id="r"), history=["oops"])


# ----------------------------------------------------------------------------- rule 8: compaction


def test_remote_compaction_asks_for_codexs_handoff_summary_without_tools():
    body, ctx = clean("13a-remote-compaction-v2.request.json", "deepseek")
    assert ctx.compaction
    assert "tools" not in body and "tool_choice" not in body
    assert _items(body)[-1] == {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": COMPACTION_PROMPT}],
    }
    assert "compaction_trigger" not in _types(body)


def test_a_replayed_compaction_item_opens_into_the_summary_message():
    c = carrier()
    req = CODEX["13b-after-remote-compaction.request.json"]
    req = {
        **req,
        "input": [
            i
            if i.get("type") != "compaction"
            else {**i, "encrypted_content": c.seal_compaction("did X")}
            for i in req["input"]
        ],
    }
    body, ctx = clean(req, carrier=c)
    summary = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": SUMMARY_PREFIX + "did X"}],
    }
    assert summary in _items(body) and not ctx.compaction


def test_a_compaction_item_the_relay_did_not_make_is_dropped():
    body, _ = clean("13b-after-remote-compaction.request.json", carrier=carrier())
    assert "compaction" not in _types(body) and "ENC-COMPACTION" not in json.dumps(body)


def test_every_family_row_has_a_fake_mode():
    assert set(MODES) == set(RULES)


# ----------------------------------------------------------------------------- edges


@pytest.mark.parametrize(
    "tool",
    [
        {"type": "function"},
        {"type": "custom", "name": ""},
        {"type": "namespace", "name": "n"},
        {"type": "namespace", "tools": []},
        {
            "type": "namespace",
            "name": "outer",
            "tools": [{"type": "namespace", "name": "inner", "tools": []}],
        },
        "not a tool",
    ],
)
def test_tools_that_cannot_be_declared_are_dropped(tool):
    body, ctx = clean(_request(USER, tools=[tool, {"type": "function", "name": "f"}]), "kimi")
    assert body["tools"] == [{"type": "function", "name": "f"}] and not ctx.tools


def test_a_custom_tool_in_a_flattened_namespace_keeps_its_way_back():
    rules = ResponsesRules(name="x", tool_types=frozenset({"function", "custom"}))
    tools = [{"type": "namespace", "name": "ns", "tools": [{"type": "custom", "name": "run"}]}]
    body, ctx = clean(_request(USER, tools=tools), rules)
    assert body["tools"] == [{"type": "custom", "name": "ns__run"}]
    assert ctx.tools["ns__run"] == ToolOrigin("run", "ns")


def test_a_freeform_tool_without_a_grammar_still_says_its_input_is_raw():
    body, _ = clean(_request(USER, tools=[{"type": "custom", "name": "exec"}]))
    assert body["tools"][0]["description"].startswith("The exec tool.\n\nPass the tool's raw input")
    assert "grammar" not in body["tools"][0]["description"]


def test_a_row_that_takes_a_hosted_tool_gets_it_but_never_inside_a_namespace():
    rules = ResponsesRules(name="x", tool_types=frozenset({"function", "web_search"}))
    tools = [
        {"type": "web_search"},
        {"type": "namespace", "name": "n", "tools": [{"type": "web_search"}]},
    ]
    body, _ = clean(_request(USER, tools=tools), rules)
    assert body["tools"] == [{"type": "web_search"}]


def test_a_row_that_takes_an_item_type_gets_it_unchanged():
    rules = ResponsesRules(name="x", item_types=RULES["generic"].item_types | {"web_search_call"})
    item = {"type": "web_search_call", "id": "ws", "action": {"type": "search", "queries": ["q"]}}
    body, _ = clean(_request(USER, item), rules)
    assert _items(body)[1] is not None and _items(body)[1] == item


def test_a_namespaced_custom_call_keeps_its_namespace_where_namespaces_go_through():
    item = {
        "type": "custom_tool_call",
        "call_id": "x",
        "name": "exec",
        "namespace": "functions",
        "input": "1+1",
    }
    body, _ = clean(
        _request(USER, item, {"type": "custom_tool_call_output", "call_id": "x", "output": "2"}),
        "kimi",
    )
    assert _items(body)[1] == {
        "type": "function_call",
        "call_id": "x",
        "name": "exec",
        "arguments": '{"input": "1+1"}',
        "namespace": "functions",
    }


@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({"type": "function_call", "name": "f", "arguments": "{}"}, "input[1].call_id"),
        (
            {"type": "function_call", "call_id": "c", "name": "f", "namespace": 3},
            "input[1].namespace",
        ),
        ({"type": "custom_tool_call", "call_id": "c", "name": "apply_patch"}, "input[1].input"),
        ({"type": "function_call_output", "output": "x"}, "input[1].call_id"),
    ],
)
def test_items_missing_what_a_rule_reads_are_named(item, param):
    with pytest.raises(ClientRequestError) as e:
        clean(_request(USER, item))
    assert e.value.param == param


def test_a_reasoning_field_that_is_not_an_object_is_left_out():
    body, _ = clean(_request(USER, reasoning="high"))
    assert "reasoning" not in body


def test_a_family_without_a_row_gets_the_plain_subset():
    from mitmrelay.core.responses_wire import rules_for

    assert rules_for("mistral") is RULES["generic"] and rules_for("kimi") is RULES["kimi"]


def test_a_string_input_joined_by_history_becomes_items():
    body, _ = clean({"model": "m", "input": "and?", "previous_response_id": "r"}, history=[USER])
    assert body["input"] == [
        USER,
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "and?"}]},
    ]


# ----------------------------------------------------------------------------- vision


@pytest.mark.parametrize("family", ["deepseek", "kimi"])
def test_a_model_without_vision_gets_a_note_where_each_image_was(family):
    from mitmrelay.core.request import IMAGE_OMITTED

    body, _ = clean("08-image-input.request.json", family, vision=False)
    sent = json.dumps(body)
    assert "input_image" not in sent and "data:image" not in sent
    assert IMAGE_OMITTED in sent
    body, _ = clean("09-function_call_output-with-image.request.json", family, vision=False)
    assert "data:image" not in json.dumps(body)
    assert IMAGE_OMITTED in json.dumps(_items(body)[-1])  # the tool output itself


def test_a_model_with_vision_gets_the_images():
    body, _ = clean("08-image-input.request.json", "kimi")
    assert "data:image" in json.dumps(body)


LINKED = {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "auto"}
FILED = {"type": "input_image", "file_id": "file-abc", "detail": "auto"}


@pytest.mark.parametrize(("family", "linked_goes"), [("kimi", False), ("generic", True)])
def test_an_image_the_provider_cannot_fetch_becomes_a_note(family, linked_goes):
    from mitmrelay.core.responses_wire.request import IMAGE_UNREACHABLE

    message = {"type": "message", "role": "user", "content": [LINKED, FILED]}
    output = {"type": "function_call_output", "call_id": "c", "output": [LINKED]}
    call = {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}
    body, _ = clean(_request(message, call, output), family)
    parts = _items(body)[0]["content"]
    assert parts[1] == {"type": "input_text", "text": IMAGE_UNREACHABLE}  # no provider has it
    assert (parts[0] == LINKED) is linked_goes
    assert ("example.com" in json.dumps(_items(body)[2:])) is linked_goes
    assert FakeResponses(family).validate(body) is None


def test_text_between_a_turns_reasoning_and_its_calls_needs_no_placeholder():
    plain = _reasoning(content=[{"type": "reasoning_text", "text": "why"}])
    said = {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "Let me look."}],
    }
    body, _ = clean(_request(USER, plain, said, CALL, OUTPUT), "deepseek")
    assert _types(body) == [
        "message",
        "reasoning",
        "message",
        "function_call",
        "function_call_output",
    ]
    assert FakeResponses("deepseek").validate(body) is None
