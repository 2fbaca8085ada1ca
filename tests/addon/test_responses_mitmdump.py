"""Providers on the Responses wire through a real ``mitmdump -s addon/relay.py``: one routes file
with a provider per family row (``wire = "responses"``), each the strict fake of that family
(support/fake_responses.py: it refuses what the provider refuses, answers in its dialect), and
a Chat provider beside them for fallbacks across wires. The clients are httpx and the official
openai SDK; every streamed event is validated by the SDK's own types.

What each family must show: Codex's captured request cleaned so the provider refuses nothing,
its key and no other, the stream normalised (one lifecycle, contiguous numbers, one terminal
event) and the whole answer too; then errors and cuts (``response.failed``, never a fake
``completed``; 429 with ``Retry-After``; context overflow; quota), fallbacks both ways between
the wires, and ``previous_response_id`` on stateless providers.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pydantic
import pytest
from openai.types.responses import ResponseStreamEvent
from support.captured import request_bodies
from support.fake_responses import (
    Call,
    CustomCall,
    FakeResponses,
    Reasoning,
    Text,
    Turn,
    http_error,
    say,
)
from support.fake_upstream import FakeUpstream, error, text
from support.mitm import MitmRelay

from mitmrelay.core.responses_wire import RULES

pytestmark = pytest.mark.integration

FAMILIES = sorted(RULES)
CLIENT_KEY = "sk-client-key-never-upstream-4444"
CHAT_KEY = "sk-chat-provider-5555"
EVENTS = pydantic.TypeAdapter(ResponseStreamEvent)
CODEX = request_bodies()
# Codex's request after a tool call: developer prompt, tools (a freeform apply_patch among
# them), reasoning sealed by OpenAI, the call and its output.
AFTER_CALL = CODEX["02-after-tool-call.request.json"]
TERMINAL = ("response.completed", "response.failed", "response.incomplete")


def key_of(family: str) -> str:
    return f"sk-{family}-provider-secret"


def routes_text(fakes: dict[str, FakeResponses], chat: FakeUpstream) -> str:
    lines = []
    for family, fake in fakes.items():
        lines += [
            f"[providers.{family}]",
            f'base_url = "{fake.url}"',
            f'api_key_env = "{family.upper()}_KEY"',
            f'profile = "{family}"',
            'wire = "responses"',
            "",
            f'[models."{family}-model"]',
            f'provider = "{family}"',
            f'upstream_model = "{family}-upstream"',
            "",
        ]
    return (
        "\n".join(lines)
        + f"""
[providers.chatty]
base_url = "{chat.url}"
api_key_env = "CHAT_KEY"

[models."chat-model"]
provider = "chatty"
upstream_model = "chat-upstream"

[models."responses-first"]
provider = "deepseek"
upstream_model = "deepseek-first"
fallbacks = ["chat-model"]

[models."chat-first"]
provider = "chatty"
upstream_model = "chat-first"
fallbacks = ["kimi-model"]
"""
    )


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeResponses]]:
    with contextlib.ExitStack() as stack:
        yield {f: stack.enter_context(FakeResponses(f, key=key_of(f))) for f in FAMILIES}


@pytest.fixture(scope="module")
def chat() -> Iterator[FakeUpstream]:
    with FakeUpstream(key=CHAT_KEY) as up:
        yield up


@pytest.fixture(scope="module")
def relay(fakes, chat, tmp_path_factory) -> Iterator[MitmRelay]:
    path = tmp_path_factory.mktemp("routes") / "routes.toml"
    path.write_text(routes_text(fakes, chat))
    env = {f"{f.upper()}_KEY": key_of(f) for f in FAMILIES} | {"CHAT_KEY": CHAT_KEY}
    with MitmRelay(
        tmp_path_factory.mktemp("confdir"),
        "",
        env=env,
        options={"relay_routes": str(path), "relay_retry_wait": "0"},
    ) as r:
        yield r


@pytest.fixture
def client(relay) -> openai.OpenAI:
    return openai.OpenAI(api_key=CLIENT_KEY, base_url=f"{relay.url}/v1", max_retries=0)


@pytest.fixture(autouse=True)
def fresh(fakes, chat) -> None:
    for fake in fakes.values():
        fake.requests.clear()
        fake.rejections.clear()
        fake.turns.clear()
        fake.brain = None
    chat.requests.clear()
    chat.replies.clear()


def post_stream(relay: MitmRelay, body: dict[str, Any]) -> tuple[int, bytes]:
    """A streamed call as Codex makes it; a stream cut short yields what came before."""
    received = b""
    with (
        httpx.stream(
            "POST",
            f"{relay.url}/v1/responses",
            json=body,
            headers={"authorization": f"Bearer {CLIENT_KEY}"},
            timeout=30,
        ) as r,
        contextlib.suppress(httpx.RemoteProtocolError),
    ):
        for piece in r.iter_raw():
            received += piece
    return r.status_code, received


def events_of(body: bytes) -> list[dict[str, Any]]:
    return [
        json.loads(line[6:]) for line in body.decode().splitlines() if line.startswith("data: ")
    ]


def one_stream(body: bytes) -> list[dict[str, Any]]:
    """The client's stream as the SDK and Codex need it: every event valid for the SDK, one
    response.created, contiguous numbers, exactly one terminal event, last."""
    evs = events_of(body)
    for event in evs:
        failed = event["type"] == "response.failed"
        # Codex's own failure codes, which the SDK's closed enum lacks (notes/responses.md).
        if not failed or event["response"]["error"]["code"] not in (
            "context_length_exceeded",
            "insufficient_quota",
        ):
            EVENTS.validate_python(event)
    assert [e["type"] for e in evs].count("response.created") == 1
    assert [e["sequence_number"] for e in evs] == list(range(len(evs)))
    assert [e["type"] in TERMINAL for e in evs].count(True) == 1
    assert evs[-1]["type"] in TERMINAL
    return evs


def codex_request(family: str, **changes: Any) -> dict[str, Any]:
    return {**AFTER_CALL, "model": f"{family}-model", "stream": True, **changes}


def exchange_line(relay: MitmRelay, *needles: str) -> str:
    """The relay's INFO line for an exchange (logged as mitmproxy ends the flow: polled)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in reversed(relay.log):
            if "relay " in line and all(n in line for n in needles):
                return line
        time.sleep(0.05)
    raise AssertionError(f"no exchange line with {needles}:\n" + relay.text()[-3000:])


TOOL_TURN = Turn(
    [
        Reasoning("The user wants a file; I will write it."),
        Text("Writing it now."),
        Call("exec_command", {"cmd": "ls"}, call_id="call_ls"),
        CustomCall("apply_patch", "*** Begin Patch\n*** End Patch\n", call_id="call_patch"),
    ]
)


# ----------------------------------------------------------------------------- every family


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_takes_codexs_request_and_streams_back_what_the_sdk_validates(
    relay, fakes, family
):
    fake = fakes[family]
    fake.enqueue(TOOL_TURN)
    status, body = post_stream(relay, codex_request(family))
    assert status == 200
    evs = one_stream(body)
    assert fake.rejections == [], [r.body for r in fake.rejections]
    (sent,) = fake.requests
    assert sent["path"] == "/v1/responses"
    assert sent["headers"]["authorization"] == f"Bearer {key_of(family)}"
    assert CLIENT_KEY not in json.dumps(sent)
    assert sent["json"]["model"] == f"{family}-upstream"
    assert "previous_response_id" not in sent["json"] and "store" not in sent["json"]
    final = evs[-1]["response"]
    assert final["status"] == "completed" and final["model"] == f"{family}-model"
    kinds = [(i["type"], i.get("name")) for i in final["output"]]
    assert kinds == [
        ("reasoning", None),
        ("message", None),
        ("function_call", "exec_command"),
        ("custom_tool_call", "apply_patch"),  # Codex's freeform tool, as Codex needs it back
    ]
    assert final["output"][3]["input"] == "*** Begin Patch\n*** End Patch\n"
    assert final["output"][0]["encrypted_content"]  # sealed for the next request
    assert final["usage"]["input_tokens"] == 100
    exchange_line(relay, f"{family}-model -> {family}-upstream", "completed", f"via {family}")


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_answers_a_whole_response_the_sdk_parses(client, fakes, family):
    fakes[family].enqueue(say(f"whole from {family}", reasoning="brief thought"))
    response = client.responses.create(model=f"{family}-model", input="hello", store=False)
    assert response.status == "completed" and response.output_text == f"whole from {family}"
    assert [i.type for i in response.output] == ["reasoning", "message"]
    assert response.usage is not None and response.usage.input_tokens == 100
    (sent,) = fakes[family].requests
    assert not sent["json"].get("stream")  # the SDK sends none: a whole answer
    assert fakes[family].rejections == []


@pytest.mark.parametrize("family", ["openrouter", "deepseek", "ollama"])
def test_the_next_request_gives_the_provider_its_own_reasoning_back(relay, fakes, family):
    """A tool loop's second round: the reasoning item Codex replays (the relay's sealed blob)
    goes back to the provider that made it as it reads it: OpenRouter its own opaque blob
    (which it verifies), DeepSeek a reasoning_text part, Ollama the plain text in
    encrypted_content."""
    fake = fakes[family]
    fake.enqueue(TOOL_TURN, say("done"))
    _, first = post_stream(relay, codex_request(family, input=[AFTER_CALL["input"][0]]))
    output = events_of(first)[-1]["response"]["output"]
    calls = [i for i in output if "call_id" in i]
    outputs = [
        {"type": f"{c['type']}_output", "call_id": c["call_id"], "output": "ok"} for c in calls
    ]
    _, second = post_stream(
        relay, codex_request(family, input=[AFTER_CALL["input"][0], *output, *outputs])
    )
    assert one_stream(second)[-1]["response"]["status"] == "completed"
    assert fake.rejections == [], [r.body for r in fake.rejections]
    (replayed,) = [i for i in fake.requests[-1]["json"]["input"] if i["type"] == "reasoning"]
    said = "The user wants a file; I will write it."
    if family == "openrouter":
        assert replayed["encrypted_content"] in fake.blobs
    elif family == "deepseek":
        assert replayed["content"] == [{"type": "reasoning_text", "text": said}]
    else:
        assert replayed["encrypted_content"] == said


# ----------------------------------------------------------------------------- failures


def test_a_provider_failure_mid_stream_is_response_failed_never_completed(relay, fakes):
    fakes["groq"].enqueue(
        Turn([Text("partial answer")], status="failed", error={"code": "server_error"})
    )
    _, body = post_stream(relay, codex_request("groq"))
    evs = one_stream(body)
    assert evs[-1]["type"] == "response.failed"
    assert "response.completed" not in [e["type"] for e in evs]
    assert evs[-1]["response"]["error"]["code"] == "server_error"


def test_a_stream_cut_before_its_end_is_response_failed(relay, fakes):
    fakes["vllm"].enqueue(Turn([Text("a long answer that never ends")], cut_after=6))
    _, body = post_stream(relay, codex_request("vllm"))
    evs = one_stream(body)
    assert evs[-1]["type"] == "response.failed"
    assert evs[-1]["response"]["error"]["code"] == "server_error"
    exchange_line(relay, "vllm-model", "failed")


def test_a_429_reaches_the_client_with_its_retry_after(client, fakes):
    fakes["openrouter"].enqueue(
        http_error(
            429, {"error": {"message": "Rate limit exceeded", "code": 429}}, {"retry-after": "7"}
        )
    )
    with pytest.raises(openai.RateLimitError) as caught:
        client.responses.create(model="openrouter-model", input="hi")
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.body["code"] == "rate_limit_exceeded"


@pytest.mark.parametrize("stream", [False, True])
def test_a_context_overflow_is_the_code_codex_compacts_on(relay, client, fakes, stream):
    overflow = {
        "error": {"code": "invalid_prompt", "message": "Invalid Responses API request"},
        "error_type": "context_length_exceeded",  # OpenRouter's precise kind
    }
    fakes["openrouter"].enqueue(http_error(400, overflow))
    if stream:
        status, body = post_stream(relay, codex_request("openrouter"))
        assert status == 400
        assert json.loads(body)["error"]["code"] == "context_length_exceeded"
    else:
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(model="openrouter-model", input="hi")
        assert caught.value.body["code"] == "context_length_exceeded"


def test_a_context_overflow_inside_the_stream_fails_with_codexs_code(relay, fakes):
    fakes["deepseek"].enqueue(
        Turn(
            status="failed",
            error={"code": "context_length_exceeded", "message": "The context is too long."},
        )
    )
    _, body = post_stream(relay, codex_request("deepseek"))
    failed = one_stream(body)[-1]
    assert failed["type"] == "response.failed"
    assert failed["response"]["error"]["code"] == "context_length_exceeded"


def test_an_exhausted_quota_is_insufficient_quota_not_a_rate_limit(client, fakes):
    fakes["kimi"].enqueue(
        http_error(
            429,
            {
                "error": {
                    "type": "exceeded_current_quota_error",
                    "message": "Your account is out of credit",
                }
            },
        )
    )
    with pytest.raises(openai.RateLimitError) as caught:
        client.responses.create(model="kimi-model", input="hi")
    assert caught.value.body["code"] == "insufficient_quota"


def test_a_request_the_provider_refuses_is_its_own_refusal_to_the_client(client, fakes):
    # An effort DeepSeek's ladder lacks, passed on (a future Codex effort is the provider's to
    # judge): DeepSeek's 422 and its wording reach the client, nothing is retried.
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.responses.create(model="deepseek-model", input="hi", reasoning={"effort": "ultra"})
    assert len(fakes["deepseek"].rejections) == len(fakes["deepseek"].requests) == 1
    assert "unknown variant `ultra`" in caught.value.message


# ----------------------------------------------------------------------------- across wires


def test_a_responses_provider_falls_back_to_a_chat_provider_unseen(relay, fakes, chat):
    fakes["deepseek"].enqueue(http_error(503, {"error": {"message": "overloaded"}}))
    chat.enqueue(text("served over chat"))
    _, body = post_stream(relay, codex_request("responses-first", model="responses-first"))
    evs = one_stream(body)
    assert evs[-1]["response"]["status"] == "completed"
    assert "".join(e.get("delta", "") for e in evs if e["type"].endswith("text.delta")) == (
        "served over chat"
    )
    (sent,) = chat.chat_requests()
    assert sent["model"] == "chat-upstream"
    assert chat.requests[0]["headers"]["authorization"] == f"Bearer {CHAT_KEY}"
    line = exchange_line(relay, "responses-first -> chat-upstream")
    assert "via chatty after deepseek (http 503 server_error)" in line


def test_a_chat_provider_falls_back_to_a_responses_provider_unseen(relay, fakes, chat):
    chat.enqueue(error(503, {"error": {"message": "overloaded"}}))
    fakes["kimi"].enqueue(say("served over responses"))
    _, body = post_stream(relay, codex_request("chat-first", model="chat-first"))
    evs = one_stream(body)
    assert evs[-1]["response"]["model"] == "chat-first"
    assert "".join(e.get("delta", "") for e in evs if e["type"].endswith("text.delta")) == (
        "served over responses"
    )
    assert fakes["kimi"].requests[0]["json"]["model"] == "kimi-upstream"
    line = exchange_line(relay, "chat-first -> kimi-upstream")
    assert "via kimi after chatty (http 503 server_error)" in line


# ----------------------------------------------------------------------------- state


@pytest.mark.parametrize("family", ["deepseek", "groq"])  # stateless: they 400 the id itself
def test_previous_response_id_is_expanded_for_a_stateless_provider(client, fakes, family):
    fake = fakes[family]
    fake.enqueue(say("The number is 42."), say("You asked about 42."))
    first = client.responses.create(model=f"{family}-model", input="Remember 42.")
    second = client.responses.create(
        model=f"{family}-model", input="What was it?", previous_response_id=first.id
    )
    assert second.output_text == "You asked about 42."
    assert fake.rejections == []
    sent = fake.requests[-1]["json"]
    assert "previous_response_id" not in sent
    said = json.dumps(sent["input"])
    assert "Remember 42." in said and "The number is 42." in said and "What was it?" in said


def test_an_unknown_previous_response_id_is_answered_like_openai(client, fakes):
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="groq-model", input="hi", previous_response_id="resp_gone")
    assert caught.value.body["code"] == "previous_response_not_found"
    assert fakes["groq"].requests == []


def test_no_key_appears_in_the_relays_log(relay):
    """Every exchange of this module was logged (INFO lines); none shows the client's key or
    any provider's (each request's own headers are checked where it is made)."""
    log = relay.text()
    assert "relay " in log
    assert CLIENT_KEY not in log
    assert not [f for f in FAMILIES if key_of(f) in log] and CHAT_KEY not in log
