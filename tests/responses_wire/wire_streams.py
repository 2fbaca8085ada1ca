"""Scripted provider answers for the Responses-wire stream tests, rendered in each family's
dialect by the strict fake (tests/support/fake_responses.py)."""

from __future__ import annotations

from typing import Any

from support.fake_responses import Call, CustomCall, Reasoning, Text, Turn, stream_for
from wire_helpers import context

from mitmrelay.core.context import ToolOrigin, TranslationContext

PATCH = '*** Begin Patch\n*** Add File: a.txt\n+caf\u00e9 "quoted" \\ back\n*** End Patch\n'

# What the request cleanup records for Codex's tools (core/responses_wire/request.py).
CTX = context(
    tools={
        "apply_patch": ToolOrigin("apply_patch", freeform=True),
        "mcp__demo__echo_tool": ToolOrigin("echo_tool", namespace="mcp__demo"),
    }
)
COMPACTION_CTX = TranslationContext(
    client_model="gpt-5.5", upstream_model="model-x", response_echo={"tools": []}, compaction=True
)


def namespaced(family: str) -> Call:
    """How a provider calls the MCP tool: by the flat name the relay gave it, or (Kimi, which
    takes namespaces) by its own name with the namespace beside it."""
    if family == "kimi":
        return Call("echo_tool", {"text": "hi"}, call_id="call_ns", namespace="mcp__demo")
    return Call("mcp__demo__echo_tool", {"text": "hi"}, call_id="call_ns")


def scenarios(family: str) -> dict[str, Turn]:
    return {
        "text": Turn([Text("Hello wörld, a longer answer in pieces.")]),
        "reasoning_then_text": Turn([Reasoning("Think first. Then answer."), Text("Done.")]),
        "reasoning_then_call": Turn(
            [Reasoning("I should list the files."), Call("exec_command", {"cmd": "ls -la"})]
        ),
        "freeform_patch": Turn([Reasoning("Patch it."), Call("apply_patch", {"input": PATCH})]),
        "namespaced_call": Turn([namespaced(family)]),
        "parallel_calls": Turn(
            [
                Call("exec_command", {"cmd": "a"}, call_id="call_a"),
                Call("exec_command", {"cmd": "b"}, call_id="call_b"),
            ]
        ),
        "text_then_call": Turn([Text("Let me look."), Call("exec_command", {"cmd": "pwd"})]),
        "incomplete": Turn([Text("A partial answ")], status="incomplete"),
    }


SUCCESSFUL = ("text", "reasoning_then_text", "reasoning_then_call", "freeform_patch")


def stream(family: str, name: str, **changes: Any) -> bytes:
    turn = scenarios(family)[name]
    for key, value in changes.items():
        setattr(turn, key, value)
    return stream_for(turn, family)


def failed(error: dict[str, Any], **kw: Any) -> Turn:
    return Turn([Text("partial")], status="failed", error=error, **kw)


def native_custom() -> Turn:
    return Turn([CustomCall("apply_patch", PATCH, call_id="call_p")])
