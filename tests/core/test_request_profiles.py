"""The provider rules of the request translator, one table per rule (core/request.py rules 6-9),
and every captured Codex request held to every family's strict checks."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import pytest
from support.captured import request_bodies
from support.strict_providers import FAMILIES, Memory, check

from mitmrelay.core.errors import ClientRequestError
from mitmrelay.core.profiles import CODEX_EFFORTS, GENERIC, PROFILES, Profile
from mitmrelay.core.reasoning import ReasoningPayload
from mitmrelay.core.request import IMAGE_OMITTED, parse_request, translate_request

PNG = "data:image/png;base64,iVBORw0KGgo="


def tr(items: list[dict[str, Any]], profile: Profile, **fields: Any) -> dict[str, Any]:
    # vision / thinks: the routed model's, as routing passes them (translate_request's
    # ``vision`` and ``reasoning``); ``reasoning=`` here is the Responses request field.
    kwargs = {k: fields.pop(k) for k in ("vision",) if k in fields}
    if "thinks" in fields:
        kwargs["reasoning"] = fields.pop("thinks")
    body = {"model": "client-model", "input": items, **fields}
    chat, _ = translate_request(
        parse_request(json.dumps(body).encode()), upstream_model="up", profile=profile, **kwargs
    )
    return chat


def user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": list(parts)}


def said(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text}],
    }


def dev(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "role": "developer",
        "content": [{"type": "input_text", "text": text}],
    }


TEXT = {"type": "input_text", "text": "look"}
IMAGE = {"type": "input_image", "image_url": PNG, "detail": "high"}


def call(cid: str, name: str = "exec_command") -> dict[str, Any]:
    return {"type": "function_call", "call_id": cid, "name": name, "arguments": '{"cmd":"ls"}'}


def out(cid: str, output: Any = "ok") -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": cid, "output": output}


def reasoning(text: str) -> dict[str, Any]:
    return {"type": "reasoning", "summary": [{"type": "summary_text", "text": text}]}


def roles(chat: dict[str, Any]) -> list[str]:
    return [m["role"] for m in chat["messages"]]


# ----------------------------------------------------------------------------- the table itself


def test_thirteen_families() -> None:
    assert set(PROFILES) == set(FAMILIES) and len(PROFILES) == 13
    assert all(name == p.name for name, p in PROFILES.items())


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_ladder_says_what_each_codex_effort_becomes(name: str) -> None:
    thinking = PROFILES[name].thinking
    assert thinking is not None
    assert set(thinking.levels) == set(CODEX_EFFORTS)


# ----------------------------------------------------------------------------- rule 9: thinking

MEDIUM = {"reasoning": {"effort": "medium", "summary": "auto"}}


@pytest.mark.parametrize(
    ("family", "effort", "expected"),
    [
        ("generic", "xhigh", {"reasoning_effort": "xhigh"}),
        ("generic", "none", {"reasoning_effort": "none"}),
        ("deepseek", "medium", {"thinking": {"type": "enabled"}, "reasoning_effort": "medium"}),
        ("deepseek", "none", {"thinking": {"type": "disabled"}}),
        ("kimi", "xhigh", {"thinking": {"type": "enabled"}, "reasoning_effort": "high"}),
        ("kimi", "minimal", {"thinking": {"type": "enabled"}, "reasoning_effort": "low"}),
        ("kimi", "none", {"thinking": {"type": "disabled"}}),
        ("glm", "high", {"thinking": {"type": "enabled", "clear_thinking": False}}),
        ("glm", "none", {"thinking": {"type": "disabled"}}),
        ("qwen", "low", {"enable_thinking": True, "preserve_thinking": True}),
        ("qwen", "none", {"enable_thinking": False, "preserve_thinking": True}),
        ("openrouter", "xhigh", {"reasoning": {"effort": "xhigh"}}),
        ("openrouter", "none", {"reasoning": {"effort": "none"}}),
        ("groq", "xhigh", {"reasoning_effort": "high"}),
        ("groq", "none", {}),
        ("mistral", "low", {"reasoning_effort": "high"}),
        ("mistral", "none", {"reasoning_effort": "none"}),
        ("gemini", "minimal", {"reasoning_effort": "low"}),
        ("gemini", "none", {"reasoning_effort": "none"}),
        ("ollama", "xhigh", {"reasoning_effort": "high"}),
        ("ollama", "none", {"reasoning_effort": "none"}),
        ("vllm", "minimal", {"reasoning_effort": "low"}),
        ("llamacpp", "medium", {"reasoning_effort": "medium"}),
        ("lmstudio", "none", {}),
    ],
)
def test_codex_effort_becomes_the_family_switch(
    family: str, effort: str, expected: dict[str, Any]
) -> None:
    chat = tr([user(TEXT)], PROFILES[family], reasoning={"effort": effort, "summary": "auto"})
    switches = ("reasoning_effort", "reasoning", "thinking", "enable_thinking", "preserve_thinking")
    assert {k: chat[k] for k in switches if k in chat} == expected


@pytest.mark.parametrize("family", sorted(PROFILES))
@pytest.mark.parametrize("effort", CODEX_EFFORTS)
def test_no_effort_off_a_family_ladder_is_ever_sent(family: str, effort: str) -> None:
    """Each family's strict fake holds its ladder (Ollama refuses anything else with a 400)."""
    chat = tr([user(TEXT)], PROFILES[family], reasoning={"effort": effort}, stream=True)
    rejection, violations = check(family, chat, Memory())
    assert rejection is None and not [v for v in violations if "ladder" in v]


@pytest.mark.parametrize("family", sorted(PROFILES))
def test_a_model_that_does_not_think_gets_no_switch_and_no_placeholder(family: str) -> None:
    chat = tr([user(TEXT), call("c1"), out("c1")], PROFILES[family], thinks=False, **MEDIUM)
    assert not {"reasoning_effort", "thinking", "enable_thinking", "reasoning"} & set(chat)
    assistant = chat["messages"][1]
    assert "reasoning_content" not in assistant and "reasoning" not in assistant


def test_no_effort_sends_nothing_and_an_unknown_one_is_left_to_the_provider() -> None:
    for family, profile in PROFILES.items():
        chat = tr([user(TEXT)], profile)
        assert not {"reasoning_effort", "thinking", "enable_thinking"} & set(chat), family
    row = replace(PROFILES["kimi"].thinking, levels={"medium": "medium"})  # type: ignore[type-var]
    chat = tr([user(TEXT)], replace(PROFILES["kimi"], thinking=row), reasoning={"effort": "high"})
    assert chat["thinking"] == {"type": "enabled"} and "reasoning_effort" not in chat


def test_placeholders_follow_whether_the_model_thinks() -> None:
    items = [user(TEXT), call("c1"), out("c1")]
    assert tr(items, PROFILES["deepseek"])["messages"][1]["reasoning_content"] == " "
    assert "reasoning_content" not in tr(items, PROFILES["deepseek"], thinks=False)["messages"][1]


# ----------------------------------------------------------------------------- rule 8: vision


@pytest.mark.parametrize("family", sorted(p for p in PROFILES if not PROFILES[p].vision))
def test_text_only_families_get_a_note_where_each_image_was(family: str) -> None:
    chat = tr(
        [user(TEXT, IMAGE, {"type": "input_text", "text": "and this"}, IMAGE)],
        PROFILES[family],
    )
    assert chat["messages"][0]["content"] == "\n\n".join(
        ["look", IMAGE_OMITTED, "and this", IMAGE_OMITTED]
    )
    assert "image_url" not in json.dumps(chat)


def test_images_in_tool_output_become_notes_in_the_tool_message() -> None:
    output = [{"type": "input_text", "text": "screenshot:"}, IMAGE]
    chat = tr([user(TEXT), call("c1", "view_image"), out("c1", output)], PROFILES["deepseek"])
    assert roles(chat) == ["user", "assistant", "tool"]  # no image message after the tools
    assert chat["messages"][2]["content"] == f"screenshot:\n\n{IMAGE_OMITTED}"
    assert "image_url" not in json.dumps(chat)


@pytest.mark.parametrize(
    ("profile", "vision", "images"),
    [
        (PROFILES["deepseek"], None, 0),  # the family default
        (PROFILES["deepseek"], True, 2),  # a route that says the model sees
        (GENERIC, None, 2),
        (GENERIC, False, 0),  # a route that says it does not
    ],
)
def test_the_route_overrides_the_family_default(
    profile: Profile, vision: bool | None, images: int
) -> None:
    output = [{"type": "input_text", "text": "shot"}, IMAGE]
    chat = tr([user(TEXT, IMAGE), call("c1"), out("c1", output)], profile, vision=vision)
    assert json.dumps(chat).count('"type": "image_url"') == images
    assert (IMAGE_OMITTED in json.dumps(chat)) == (images == 0)


# ----------------------------------------------------------------------------- rule 7: call ids


def _ids(chat: dict[str, Any]) -> tuple[list[str], list[str]]:
    calls = [c["id"] for m in chat["messages"] for c in m.get("tool_calls") or ()]
    tools = [m["tool_call_id"] for m in chat["messages"] if m["role"] == "tool"]
    return calls, tools


def test_mistral_ids_are_nine_letters_and_digits_derived_deterministically() -> None:
    items = [
        user(TEXT),
        call("call_AbC_123"),
        call("abcDEF123"),
        out("call_AbC_123"),
        out("abcDEF123"),
    ]
    chat = tr(items, PROFILES["mistral"])
    calls, tools = _ids(chat)
    assert calls == tools
    assert all(re.fullmatch(r"[a-zA-Z0-9]{9}", i) for i in calls)
    assert calls[1] == "abcDEF123"  # an id Mistral invented goes back as it is
    assert calls[0] != calls[1]
    assert _ids(tr(items, PROFILES["mistral"])) == (calls, tools)  # same ids every turn


def _thinking(text: str) -> dict[str, Any]:
    return {"type": "thinking", "thinking": [{"type": "text", "text": text}]}


def test_mistral_gets_its_thinking_back_as_the_chunk_it_streamed() -> None:
    """Mistral has no reasoning field (reasoning_content is a 422) and wants its thinking back
    as a thinking chunk at the head of the assistant's content (docs/providers.md §2 Mistral)."""
    items = [
        user(TEXT),
        reasoning("plan it"),
        said("On it."),
        call("abcDEF123"),
        out("abcDEF123"),
        reasoning("then check"),
        call("ghiJKL456"),
        out("ghiJKL456"),
    ]
    chat = tr(items, PROFILES["mistral"])
    first, second = (m for m in chat["messages"] if m["role"] == "assistant")
    assert first["content"] == [_thinking("plan it"), {"type": "text", "text": "On it."}]
    assert second["content"] == [_thinking("then check")]
    assert all("reasoning_content" not in m and "reasoning" not in m for m in chat["messages"])
    memory = Memory(reasoning={"abcDEF123": "plan it", "ghiJKL456": "then check"})
    assert check("mistral", chat, memory) == (None, [])


def test_a_mistral_model_that_does_not_think_gets_no_thinking_chunk() -> None:
    items = [user(TEXT), reasoning("plan it"), said("On it."), call("abcDEF123"), out("abcDEF123")]
    chat = tr(items, PROFILES["mistral"], thinks=False)
    assert [m["content"] for m in chat["messages"] if m["role"] == "assistant"] == ["On it."]


@pytest.mark.parametrize("family", sorted(f for f in PROFILES if not PROFILES[f].thinking_chunks))
def test_other_families_never_get_thinking_chunks(family: str) -> None:
    items = [user(TEXT), reasoning("plan it"), said("On it."), call("abcDEF123"), out("abcDEF123")]
    chat = tr(items, PROFILES[family])
    assert [m["content"] for m in chat["messages"] if m["role"] == "assistant"] == ["On it."]


def test_kimi_gets_back_the_ids_it_invented() -> None:
    # core/stream.py gave Codex "call_functions_exec_command_0" for "functions.exec_command:0"
    long_name = "a_tool_name_long_enough_that_the_stream_shortened_its_id_x"
    items = [
        user(TEXT),
        call("call_functions_exec_command_0"),
        call("call_functions_ns__do_it_12", "ns__do_it"),
        call("call_from_another_model"),
        # shortened by the stream translator (over 64 characters): not restorable, kept
        call("call_functions_" + long_name[:44], long_name),
        out("call_functions_exec_command_0"),
        out("call_functions_ns__do_it_12"),
        out("call_from_another_model"),
        out("call_functions_" + long_name[:44]),
    ]
    calls, tools = _ids(tr(items, PROFILES["kimi"]))
    assert calls == tools
    assert calls == [
        "functions.exec_command:0",
        "functions.ns__do_it:12",
        "call_from_another_model",
        "call_functions_" + long_name[:44],
    ]


def test_two_ids_that_would_collide_are_a_client_error() -> None:
    items = [
        user(TEXT),
        call("call_functions_f_0", "f"),
        call("functions.f:0", "f"),
        out("call_functions_f_0"),
        out("functions.f:0"),
    ]
    with pytest.raises(ClientRequestError, match=r"both become 'functions\.f:0'"):
        tr(items, PROFILES["kimi"])


@pytest.mark.parametrize("family", [f for f in PROFILES if PROFILES[f].tool_call_ids == "keep"])
def test_other_families_keep_the_ids(family: str) -> None:
    calls, tools = _ids(tr([user(TEXT), call("call_x-1"), out("call_x-1")], PROFILES[family]))
    assert calls == tools == ["call_x-1"]


# ----------------------------------------------------------------------------- message order


def test_mistral_never_sees_user_after_tool_or_system_after_assistant() -> None:
    output = [{"type": "input_text", "text": "shot"}, IMAGE]
    items = [
        dev("base prompt"),
        user(TEXT),
        call("c1", "view_image"),
        out("c1", output),  # rule 2: an image message follows the tool message
        dev("environment changed"),
        user({"type": "input_text", "text": "go on"}),
        said("done"),
    ]
    chat = tr(items, PROFILES["mistral"])
    assert roles(chat) == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
        "user",
        "assistant",
    ]
    assert chat["messages"][0]["content"] == "base prompt\n\nenvironment changed"
    assert chat["messages"][4] == {"role": "assistant", "content": "Done."}
    assert check("mistral", chat, Memory())[0] is None


def test_other_families_keep_the_order_and_every_system_message_in_place() -> None:
    items = [dev("a"), user(TEXT), call("c1"), out("c1"), dev("b"), user(TEXT)]
    assert roles(tr(items, GENERIC)) == ["system", "user", "assistant", "tool", "system", "user"]


# ----------------------------------------------------------------------------- parameters


FN = {"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}


@pytest.mark.parametrize(
    ("family", "present", "absent"),
    [
        ("generic", {"stream_options": {"include_usage": True}, "max_tokens": 9}, ()),
        ("groq", {"max_completion_tokens": 9}, ("max_tokens",)),
        ("mistral", {"max_tokens": 9}, ("stream_options", "max_completion_tokens")),
        ("glm", {"tool_stream": True, "max_tokens": 9}, ("stream_options", "tool_choice")),
        ("qwen", {"stream_options": {"include_usage": True}}, ("tool_stream",)),
    ],
)
def test_parameters_follow_the_family(
    family: str, present: dict[str, Any], absent: tuple[str, ...]
) -> None:
    chat = tr(
        [user(TEXT)],
        PROFILES[family],
        tools=[FN],
        tool_choice="auto",
        stream=True,
        max_output_tokens=9,
    )
    assert {k: chat.get(k) for k in present} == present
    assert not set(absent) & set(chat)


def test_strict_is_dropped_where_refused_and_tool_stream_only_streams_with_tools() -> None:
    glm = PROFILES["glm"]
    assert "strict" not in tr([user(TEXT)], glm, tools=[FN])["tools"][0]["function"]
    assert tr([user(TEXT)], GENERIC, tools=[FN])["tools"][0]["function"]["strict"] is True
    assert "tool_stream" not in tr([user(TEXT)], glm, tools=[FN], stream=False)
    assert "tool_stream" not in tr([user(TEXT)], glm, stream=True)


class Carrier:
    """A real (if trivial) ReasoningCarrier: blobs it sealed open, anything else does not."""

    def __init__(self) -> None:
        self.sealed: dict[str, ReasoningPayload] = {}

    def seal(self, payload: ReasoningPayload) -> str:
        self.sealed[f"blob{len(self.sealed)}"] = payload
        return f"blob{len(self.sealed) - 1}"

    def open(self, blob: str) -> ReasoningPayload | None:
        return self.sealed.get(blob)


@pytest.mark.parametrize("family", sorted(PROFILES))
def test_thought_signatures_go_only_where_they_are_read(family: str) -> None:
    carrier = Carrier()
    blob = carrier.seal(ReasoningPayload(text="", signatures={"c1": "sig-1"}, call_ids=("c1",)))
    item = {"type": "reasoning", "summary": [], "encrypted_content": blob}
    req = parse_request(
        json.dumps({"model": "m", "input": [user(TEXT), item, call("c1"), out("c1")]}).encode()
    )
    chat, _ = translate_request(req, upstream_model="up", profile=PROFILES[family], carrier=carrier)
    sent = chat["messages"][1]["tool_calls"][0].get("extra_content")
    wanted = PROFILES[family].thought_signatures
    assert sent == ({"google": {"thought_signature": "sig-1"}} if wanted else None)
    assert check(family, chat, Memory())[0] is None


# ----------------------------------------------------------------------------- whole requests


def _readable(body: dict[str, Any]) -> bool:
    """Requests an upstream gets at all: a websocket frame holding only the output of an
    earlier turn's call is answered by the relay itself (a client error)."""
    try:
        translate_request(parse_request(json.dumps(body).encode()), upstream_model="up")
    except ClientRequestError:
        return False
    return True


CAPTURED = {name: body for name, body in request_bodies().items() if _readable(body)}


def test_the_captured_requests_are_all_here() -> None:
    assert len(CAPTURED) >= 20 and "09-function_call_output-with-image.request.json" in CAPTURED


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", sorted(CAPTURED))
def test_every_captured_codex_request_passes_every_family(name: str, family: str) -> None:
    """What the relay sends each family, for every request Codex 0.169 was seen to send, is
    neither refused by that family's strict fake nor a breach it would silently punish."""
    req = parse_request(json.dumps(CAPTURED[name]).encode())
    chat, _ = translate_request(req, upstream_model="up", profile=PROFILES[family])
    rejection, violations = check(family, chat, Memory())
    assert rejection is None, rejection.body
    assert violations == []
