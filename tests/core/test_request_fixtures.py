"""Every captured Codex 0.169 request translates; each is checked for what it captures."""

from __future__ import annotations

import json

import pytest
from support.captured import request_bodies

from mitmrelay.core.errors import ClientRequestError
from mitmrelay.core.request import MISSING_OUTPUT, parse_request, translate_request

BODIES = request_bodies()


def translate(name: str, **kw):
    body = BODIES[name]
    return translate_request(parse_request(json.dumps(body).encode()), upstream_model="up", **kw)


def developer_texts(body: dict) -> list[str]:
    texts = []
    for item in body["input"]:
        if item.get("type") == "message" and item.get("role") in ("developer", "system"):
            texts.append("\n\n".join(p["text"] for p in item["content"]))
    return texts


@pytest.mark.parametrize("name", sorted(set(BODIES) - {"14d-websocket-incremental.frame.json"}))
def test_every_fixture_translates_and_keeps_order(name):
    chat, ctx = translate(name)
    messages = chat["messages"]
    assert chat["model"] == "up" and ctx.client_model == BODIES[name]["model"]
    # rule 1: every developer message, whole and in order, first
    systems = [m["content"] for m in messages if m["role"] == "system"]
    assert systems == developer_texts(BODIES[name])
    assert all(m["role"] == "system" for m in messages[: len(systems)])
    # rule 3: every tool call answered right after, in order
    for i, m in enumerate(messages):
        for k, call in enumerate(m.get("tool_calls") or ()):
            assert messages[i + 1 + k] == {
                **messages[i + 1 + k],
                "role": "tool",
                "tool_call_id": call["id"],
            }
    # hosted tools never go upstream; every name is valid
    for tool in chat.get("tools", ()):
        assert tool["type"] == "function"
    for key in ("store", "include", "prompt_cache_key", "client_metadata", "input"):
        assert key not in chat


def test_first_turn_keeps_the_17kb_base_prompt_first():
    chat, _ = translate("01-first-turn.request.json")
    assert len(chat["messages"][0]["content"]) > 15_000
    assert chat["messages"][0]["content"].startswith("You are a coding agent running in the Codex")
    assert chat["messages"][-1] == {"role": "user", "content": "Say hello."}
    names = [t["function"]["name"] for t in chat["tools"]]
    assert "multi_agent_v1__spawn_agent" in names and "exec_command" in names
    assert chat["stream_options"] == {"include_usage": True}


def test_call_and_output_are_paired_and_reasoning_restored():
    chat, _ = translate("02-after-tool-call.request.json")
    assistant = next(m for m in chat["messages"] if m.get("tool_calls"))
    assert assistant["tool_calls"][0]["function"] == {
        "name": "exec_command",
        "arguments": '{"cmd": "echo hello-from-tool"}',
    }
    assert assistant["reasoning_content"].startswith("**Planning**")
    tool = chat["messages"][chat["messages"].index(assistant) + 1]
    assert tool["tool_call_id"] == "call_fake_1" and "hello-from-tool" in tool["content"]


def test_raw_reasoning_text_is_the_source_and_never_visible_text():
    chat, _ = translate("07-raw-reasoning_text-replay.request.json")
    texts = [
        p["text"]
        for i in BODIES["07-raw-reasoning_text-replay.request.json"]["input"]
        if i.get("type") == "reasoning"
        for p in i["content"] or ()
    ]
    assistants = [m for m in chat["messages"] if m["role"] == "assistant"]
    carried = " ".join(m.get("reasoning_content", "") for m in assistants)
    visible = " ".join(
        m.get("content") or "" for m in chat["messages"] if isinstance(m.get("content"), str)
    )
    assert texts and all(t in carried for t in texts)
    assert not any(t in visible for t in texts)


def test_custom_tool_becomes_a_one_string_function_with_the_grammar():
    chat, ctx = translate("05-custom_tool_call-and-output.request.json")
    tool = next(t["function"] for t in chat["tools"] if t["function"]["name"] == "apply_patch")
    assert tool["parameters"]["required"] == ["input"]
    assert "start: begin_patch" in tool["description"]
    assert ctx.tools["apply_patch"].freeform
    call = next(m for m in chat["messages"] if m.get("tool_calls"))["tool_calls"][0]
    assert json.loads(call["function"]["arguments"])["input"].startswith("*** Begin Patch")


def test_images_in_user_input_and_in_tool_output():
    chat, _ = translate("08-image-input.request.json")
    parts = chat["messages"][-1]["content"]
    image = next(p for p in parts if p["type"] == "image_url")
    assert image["image_url"]["url"].startswith("data:image/png;base64,")
    assert image["image_url"]["detail"] == "high"
    chat, _ = translate("09-function_call_output-with-image.request.json")
    roles = [m["role"] for m in chat["messages"]]
    tool_at = roles.index("tool")
    assert isinstance(chat["messages"][tool_at]["content"], str)  # no image in a tool message
    follow = chat["messages"][tool_at + 1]
    assert follow["role"] == "user"
    assert any(p["type"] == "image_url" for p in follow["content"])


def test_mcp_namespace_is_flattened_and_reversible():
    chat, ctx = translate("10b-mcp-call-output.request.json")
    call = next(m for m in chat["messages"] if m.get("tool_calls"))["tool_calls"][0]
    assert call["function"]["name"] == "mcp__demo__echo_tool"
    origin = ctx.tools["mcp__demo__echo_tool"]
    assert (origin.name, origin.namespace) == ("echo_tool", "mcp__demo")


def test_lite_additional_tools_become_tools():
    chat, ctx = translate("06-responses-lite-gpt-6.1-sol.request.json")
    assert chat["tools"] and ctx.tools
    assert chat["parallel_tool_calls"] is False


def test_local_compaction_sends_no_empty_tools():
    chat, _ = translate("11-local-compaction.request.json")
    assert "tools" not in chat and "tool_choice" not in chat
    assert "CONTEXT CHECKPOINT COMPACTION" in chat["messages"][-1]["content"]


def test_remote_compaction_items_are_not_sent_as_text():
    for name in (
        "13a-remote-compaction-v2.request.json",
        "13b-after-remote-compaction.request.json",
    ):
        chat, _ = translate(name)
        assert "encrypted_content" not in json.dumps(chat["messages"])


def test_output_schema_becomes_response_format():
    chat, _ = translate("17-output-schema.request.json")
    assert chat["response_format"]["type"] == "json_schema"
    assert chat["response_format"]["json_schema"]["name"] == "codex_output_schema"


def test_missing_output_placeholder_is_documented_text():
    assert "interrupted" in MISSING_OUTPUT


@pytest.mark.parametrize("name", sorted(BODIES))
def test_translated_request_is_a_valid_chat_request(name):
    from mitmrelay.models.chat import ChatCompletionRequest

    if name == "14d-websocket-incremental.frame.json":
        # only an output for a call made in a previous response: nothing to send on its own
        with pytest.raises(ClientRequestError, match="no input the upstream can read"):
            translate(name)
        return
    chat, _ = translate(name)
    ChatCompletionRequest.model_validate(chat)


def test_local_compaction_request_keeps_the_whole_history_before_the_prompt():
    # 11: the compaction request replays the turn (reasoning, call, output) then the prompt.
    chat, _ = translate("11-local-compaction.request.json")
    roles = [m["role"] for m in chat["messages"]]
    assert roles == ["system", "system", "user", "user", "assistant", "tool", "user"]
    assert chat["messages"][4]["tool_calls"][0]["id"] == "call_fake_1"
    assert chat["messages"][4]["reasoning_content"].startswith("**Planning**")
    assert chat["messages"][5]["tool_call_id"] == "call_fake_1"


def test_after_local_compaction_the_summary_is_a_user_message():
    # 12: the handoff summary comes back as the last user item; tools are offered again.
    chat, _ = translate("12-after-local-compaction.request.json")
    assert [m["role"] for m in chat["messages"]] == ["system", "system", "user", "user", "user"]
    assert chat["messages"][-1]["content"].startswith("Another language model started")
    assert chat["tools"] and chat["parallel_tool_calls"] is True


def test_remote_compaction_trigger_asks_the_upstream_for_a_summary():
    # 13a: the input ends with compaction_trigger (docs/codex-contract.md §9): the replayed history
    # goes up, then Codex's own compaction prompt, and no tools.
    chat, ctx = translate("13a-remote-compaction-v2.request.json")
    assert ctx.compaction
    assert chat["messages"][-2]["content"].startswith("Hello from the fake Responses")
    assert chat["messages"][-1]["content"].startswith("You are performing a CONTEXT CHECKPOINT")
    assert "tools" not in chat and "tool_choice" not in chat
    # 13b: OpenAI's own opaque compaction blob cannot be opened: skipped; the turn is sent.
    chat, ctx = translate("13b-after-remote-compaction.request.json")
    assert not ctx.compaction
    assert chat["messages"][-1]["role"] == "user"


def test_provider_options_map_and_codex_only_fields_stay_behind():
    # 16: reasoning effort and summary set in config.toml; service_tier is Codex/OpenAI-only.
    chat, ctx = translate("16-provider-options.request.json")
    assert chat["reasoning_effort"] == "high"
    assert "service_tier" not in chat and "reasoning" not in chat
    assert ctx.response_echo["service_tier"] == "flex"
    assert ctx.response_echo["reasoning"] == {"effort": "high", "summary": "detailed"}


def test_gpt55_tools_hosted_dropped_freeform_kept():
    # 04: apply_patch is freeform with a lark grammar; web_search is hosted; tool_search runs
    # in Codex, so it is offered as a function (core/tool_search.py).
    body = BODIES["04-gpt-5.5-first-turn.request.json"]
    chat, ctx = translate("04-gpt-5.5-first-turn.request.json")
    sent = {t["function"]["name"] for t in chat["tools"]}
    assert "web_search" in {t["type"] for t in body["tools"]} and "web_search" not in sent
    assert "tool_search" in sent
    assert "apply_patch" in sent and ctx.tools["apply_patch"].freeform
    assert chat["reasoning_effort"] == "medium"
    assert ctx.response_echo["tools"] == body["tools"]
