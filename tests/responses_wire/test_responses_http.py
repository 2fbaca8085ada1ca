"""Round trips at the HTTP level: Codex's captured requests, cleaned for a family, sent to that
family's strict fake over real loopback HTTP, its answer normalised as it streams in, every
event checked by the openai SDK, and Codex's next request built from what it received, the way
Codex builds it (history, the output items verbatim, tool outputs). The fakes refuse whatever
their provider refuses, so a loop that completes shows the cleanup and the normaliser fit
together (the link will run these two steps; here a small httpx client does)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pydantic
import pytest
from openai.types.responses import ResponseStreamEvent
from support.fake_responses import (
    Call,
    FakeResponses,
    Reasoning,
    Text,
    Turn,
    call,
    http_error,
    say,
)
from wire_helpers import CODEX, FAMILIES, assert_lifecycle, carrier, events, ids
from wire_streams import PATCH

from mitmrelay.core.responses_wire import (
    RULES,
    ResponsesNormaliser,
    clean_request,
    map_http_error,
    normalise_response,
)
from mitmrelay.core.upstream_errors import MappedError, map_transport_error

EVENTS = pydantic.TypeAdapter(ResponseStreamEvent)
KEY = carrier()
# Codes Codex acts on that the SDK's closed enum lacks: sent as they are (notes/decisions.md,
# "Failure codes in response.failed").
CODEX_ONLY_CODES = frozenset({"context_length_exceeded", "insufficient_quota"})


@dataclass
class Exchange:
    events: list[dict[str, Any]] = field(default_factory=list)
    response: dict[str, Any] | None = None
    error: MappedError | None = None

    @property
    def output(self) -> list[dict[str, Any]]:
        assert self.response is not None, self.error
        return self.response["output"]


@dataclass
class Relay:
    """The relay's two pure steps around one provider call."""

    fake: FakeResponses
    family: str
    origin: str = ""

    def send(self, codex: dict[str, Any]) -> Exchange:
        rules = RULES[self.family]
        origin = self.origin or self.family
        body, ctx = clean_request(
            json.dumps(codex).encode(), rules, upstream_model="model-x", origin=origin, carrier=KEY
        )
        kw = dict(
            response_id="resp_relay",
            created_at=1795530000,
            new_id=ids(),
            origin=origin,
            carrier=KEY,
            upstream=self.family,
        )
        with (
            httpx.Client(timeout=10) as http,
            http.stream("POST", self.fake.url + "/responses", json=body) as answer,
        ):
            if answer.status_code != 200:
                answer.read()
                return Exchange(
                    error=map_http_error(
                        answer.status_code, answer.headers, answer.content, upstream=self.family
                    )
                )
            if not body.get("stream"):
                answer.read()
                return Exchange(response=normalise_response(answer.content, ctx, rules, **kw))
            normaliser = ResponsesNormaliser(ctx, rules, **kw)
            out = b""
            try:
                for chunk in answer.iter_raw():
                    out += normaliser.feed(chunk)
                out += normaliser.finish()
            except httpx.RemoteProtocolError as e:  # the link's part: a cut becomes a failure
                cut = map_transport_error("cut", str(e), upstream=self.family)
                out += normaliser.fail("upstream_stream_incomplete", cut.message)
        evs = events(out)
        for event in evs:
            failed = event["type"] == "response.failed"
            if not failed or event["response"]["error"]["code"] not in CODEX_ONLY_CODES:
                EVENTS.validate_python(event)
        assert_lifecycle(evs)
        return Exchange(events=evs, response=evs[-1]["response"])


def next_request(
    previous: dict[str, Any], output: list[dict[str, Any]], *results: str
) -> dict[str, Any]:
    """Codex's next request: the same history, the items it recorded (output_item.done, as
    received), and one output per call (docs/codex-contract.md §5)."""
    calls = [i for i in output if i["type"] in ("function_call", "custom_tool_call")]
    outputs = [
        {
            "type": "custom_tool_call_output"
            if c["type"] == "custom_tool_call"
            else "function_call_output",
            "call_id": c["call_id"],
            "output": result,
        }
        for c, result in zip(calls, results, strict=True)
    ]
    return {**previous, "input": [*previous["input"], *output, *outputs]}


def first_turn(name: str = "01-first-turn.request.json") -> dict[str, Any]:
    return json.loads(json.dumps(CODEX[name]))


# ----------------------------------------------------------------------------- loops


@pytest.mark.parametrize("family", FAMILIES)
def test_a_tool_loop_with_reasoning_completes_on_every_family(family):
    with FakeResponses(family) as fake:
        relay = Relay(fake, family)
        fake.enqueue(
            call("exec_command", {"cmd": "ls"}, reasoning="List the files first."),
            say("Two files.", reasoning="Now answer."),
        )
        codex = first_turn()
        first = relay.send(codex)
        assert [i["type"] for i in first.output] == ["reasoning", "function_call"]
        second = relay.send(next_request(codex, first.output, "a.txt\nb.txt"))
        assert second.output[-1]["content"][0]["text"] == "Two files."
        assert fake.rejections == []
        replayed = [i for i in fake.requests[1]["json"]["input"] if i.get("type") == "reasoning"]
        assert len(replayed) == 1
        assert "mr1." not in json.dumps(fake.requests[1]["json"])  # the relay's blob stays home


def test_deepseek_gets_its_reasoning_back_as_its_own_item():
    with FakeResponses("deepseek") as fake:
        fake.enqueue(
            call("exec_command", {"cmd": "ls"}, reasoning="List the files first."), say("ok")
        )
        codex = first_turn()
        first = Relay(fake, "deepseek").send(codex)
        Relay(fake, "deepseek").send(next_request(codex, first.output, "x"))
        # Codex's {"summary": "auto"} carries no effort: nothing of it is sent.
        assert "reasoning" not in fake.requests[0]["json"]
        (replayed,) = [i for i in fake.requests[1]["json"]["input"] if i.get("type") == "reasoning"]
        assert replayed["content"] == [{"type": "reasoning_text", "text": "List the files first."}]
        assert replayed["id"].count("-") == 4  # DeepSeek's own item id, not the relay's


def test_openrouter_gets_its_blob_back_and_a_second_key_does_not():
    with FakeResponses("openrouter") as fake, FakeResponses("openrouter") as other_key:
        fake.enqueue(call("exec_command", {"cmd": "ls"}, reasoning="Plan."))
        codex = first_turn()
        first = Relay(fake, "openrouter", origin="or-main").send(codex)
        follow = next_request(codex, first.output, "x")
        Relay(fake, "openrouter", origin="or-main").send(follow)
        (replayed,) = [i for i in fake.requests[1]["json"]["input"] if i.get("type") == "reasoning"]
        assert replayed["encrypted_content"] in fake.blobs
        second = Relay(other_key, "openrouter", origin="or-other").send(follow)
        assert second.error is None and other_key.rejections == []
        (moved,) = [
            i for i in other_key.requests[0]["json"]["input"] if i.get("type") == "reasoning"
        ]
        assert "encrypted_content" not in moved and moved["summary"][0]["text"] == "Plan."


@pytest.mark.parametrize(
    ("first_family", "second_family"),
    [("openrouter", "deepseek"), ("deepseek", "vllm"), ("kimi", "ollama")],
)
def test_a_thread_moves_between_providers_with_its_reasoning_as_text(first_family, second_family):
    with FakeResponses(first_family) as one, FakeResponses(second_family) as two:
        one.enqueue(call("exec_command", {"cmd": "ls"}, reasoning="Because."))
        codex = first_turn()
        first = Relay(one, first_family).send(codex)
        second = Relay(two, second_family).send(next_request(codex, first.output, "x"))
        assert second.error is None and two.rejections == []


@pytest.mark.parametrize("family", FAMILIES)
def test_apply_patch_round_trips_as_a_custom_tool_call(family):
    with FakeResponses(family) as fake:
        fake.enqueue(
            Turn([Reasoning("Patch."), Call("apply_patch", {"input": PATCH}, call_id="call_p")]),
            say("Patched."),
        )
        codex = first_turn("04-gpt-5.5-first-turn.request.json")
        first = Relay(fake, family).send(codex)
        patch = first.output[-1]
        assert (patch["type"], patch["name"], patch["input"]) == (
            "custom_tool_call",
            "apply_patch",
            PATCH,
        )
        second = Relay(fake, family).send(next_request(codex, first.output, "Success."))
        assert second.output[-1]["content"][0]["text"] == "Patched."
        sent = fake.requests[1]["json"]["input"]
        assert {
            "type": "function_call",
            "call_id": "call_p",
            "name": "apply_patch",
            "arguments": json.dumps({"input": PATCH}, ensure_ascii=False),
        } in sent


@pytest.mark.parametrize("family", FAMILIES)
def test_an_mcp_tool_round_trips_with_its_namespace(family):
    native = family == "kimi"
    with FakeResponses(family) as fake:
        name, namespace = ("echo_tool", "mcp__demo") if native else ("mcp__demo__echo_tool", None)
        fake.enqueue(
            Turn([Call(name, {"text": "hi"}, call_id="call_mcp", namespace=namespace)]),
            say("echoed"),
        )
        codex = first_turn("10a-mcp-namespace-tool.request.json")
        first = Relay(fake, family).send(codex)
        (mcp,) = first.output
        assert (mcp["name"], mcp["namespace"]) == ("echo_tool", "mcp__demo")
        second = Relay(fake, family).send(next_request(codex, first.output, "echo: hi"))
        assert second.error is None and fake.rejections == []


@pytest.mark.parametrize("family", ["deepseek", "kimi", "generic"])
def test_the_non_streaming_path(family):
    with FakeResponses(family) as fake:
        fake.enqueue(Turn([Reasoning("r"), Text("whole answer")]))
        codex = {**first_turn(), "stream": False}
        exchange = Relay(fake, family).send(codex)
        assert exchange.response["status"] == "completed"
        assert exchange.output[-1]["content"][0]["text"] == "whole answer"
        assert exchange.response["usage"]["total_tokens"] == 120


def test_instructions_reach_a_provider_that_ignores_the_field():
    with FakeResponses("qwen") as fake:
        codex = {**first_turn(), "instructions": "You are terse."}
        Relay(fake, "qwen").send(codex)
        assert "You are terse." in fake.instructions_seen
        assert any(text.startswith("You are a coding agent") for text in fake.instructions_seen)


def test_remote_compaction_round_trip():
    with FakeResponses("deepseek") as fake:
        fake.enqueue(say("Handoff: the user said hello.", reasoning="summarise"), say("ok"))
        codex = first_turn("13a-remote-compaction-v2.request.json")
        exchange = Relay(fake, "deepseek").send(codex)
        (item,) = exchange.output
        assert item["type"] == "compaction"
        after = first_turn("13b-after-remote-compaction.request.json")
        after["input"] = [i if i.get("type") != "compaction" else item for i in after["input"]]
        Relay(fake, "deepseek").send(after)
        texts = json.dumps(fake.requests[1]["json"]["input"])
        assert "Handoff: the user said hello." in texts


# ----------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("turn", "code", "status"),
    [
        (
            http_error(
                429,
                {"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}},
                {"retry-after": "3"},
            ),
            "rate_limit_exceeded",
            429,
        ),
        (
            http_error(
                400,
                {
                    "error": {"code": "invalid_prompt", "message": "Invalid Responses API request"},
                    "error_type": "context_length_exceeded",
                },
            ),
            "context_length_exceeded",
            400,
        ),
        (http_error(500, "upstream exploded"), "server_error", 500),
    ],
)
def test_http_errors_before_the_stream_keep_what_codex_acts_on(turn, code, status):
    with FakeResponses("openrouter") as fake:
        fake.enqueue(turn)
        exchange = Relay(fake, "openrouter").send(first_turn())
        assert (exchange.error.code, exchange.error.status) == (code, status)


def test_a_stream_cut_midway_fails_the_response():
    with FakeResponses("kimi") as fake:
        fake.enqueue(Turn([Reasoning("long thought"), Text("half an answer")], cut_after=8))
        exchange = Relay(fake, "kimi").send(first_turn())
        assert exchange.response["status"] == "failed"
        assert exchange.events[-1]["type"] == "response.failed"


def test_a_failed_response_maps_its_code():
    with FakeResponses("glm") as fake:
        fake.enqueue(
            Turn(
                [],
                status="failed",
                error={"code": "insufficient_quota", "message": "plan exhausted"},
            )
        )
        exchange = Relay(fake, "glm").send(first_turn())
        assert exchange.response["error"]["code"] == "insufficient_quota"


@pytest.mark.parametrize(
    ("family", "status", "wording"),
    [
        ("lmstudio", 400, '"param": "tools.4.type"'),
        ("deepseek", 422, "Failed to deserialize the JSON body"),
        ("openrouter", 400, "Invalid Responses API request"),
        ("vllm", 400, "tool type namespace not supported"),
    ],
)
def test_a_raw_codex_request_is_refused_with_the_providers_wording(family, status, wording):
    """What a relay without the cleanup would get: the fakes answer as the providers do."""
    with FakeResponses(family) as fake:
        answer = httpx.post(
            fake.url + "/responses", json=CODEX["02-after-tool-call.request.json"], timeout=10
        )
    assert answer.status_code == status
    assert wording in json.dumps(answer.json())
