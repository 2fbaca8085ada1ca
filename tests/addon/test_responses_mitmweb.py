"""What mitmweb shows of a call to a provider on the Responses wire (inspection.py's two legs),
read through a real headless mitmweb's REST API: the client leg holds Codex's request and the
normalised stream it got; the upstream leg the Responses request as the relay sent it (cleaned
for the family, at ``/responses``, no key) and the provider's raw answer in its own dialect.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support.fake_responses import Call, FakeResponses, Reasoning, Text, Turn
from support.mitmweb import MitmWeb

from mitmrelay.webview import LLMRequestView, LLMStreamView

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

CLIENT_KEY = "sk-client-key-for-the-responses-mitmweb-test"
PROVIDER_KEY = "sk-deepseek-key-for-the-responses-mitmweb-test"
TOOLS = [
    {
        "type": "function",
        "name": "exec_command",
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
    }
]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeResponses]:
    with FakeResponses("deepseek", key=PROVIDER_KEY) as f:
        yield f


@pytest.fixture(scope="module")
def web(fake, tmp_path_factory) -> Iterator[MitmWeb]:
    routes = tmp_path_factory.mktemp("routes") / "routes.toml"
    routes.write_text(
        f"""
[providers.deepseek]
base_url = "{fake.url}"
api_key_env = "DEEPSEEK_KEY"
wire = "responses"

[models."deepseek-v4"]
provider = "deepseek"
upstream_model = "deepseek-v4-pro"
"""
    )
    with MitmWeb(
        tmp_path_factory.mktemp("confdir"),
        "",
        env={"DEEPSEEK_KEY": PROVIDER_KEY},
        options={"relay_routes": str(routes)},
    ) as w:
        yield w


def post_stream(web: MitmWeb, body: dict[str, Any]) -> bytes:
    with httpx.stream(
        "POST",
        f"{web.url}/v1/responses",
        json=body,
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
        timeout=30,
    ) as r:
        return r.read()


def test_both_legs_show_what_went_each_way(web, fake):
    fake.enqueue(
        Turn(
            [
                Reasoning("The user wants the files."),
                Text("Listing."),
                Call("exec_command", {"cmd": "ls"}, call_id="call_ls"),
            ]
        )
    )
    before = web.ids()
    sent = {
        "model": "deepseek-v4",
        "input": "list the files",
        "tools": TOOLS,
        "stream": True,
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "thread-1",
    }
    received = post_stream(web, sent)
    ex = web.exchange_since(before)
    client, up = ex.client, ex.upstream
    assert client["comment"].startswith(
        "mitmrelay: deepseek-v4 -> deepseek-v4-pro | completed | 100 in / 20 out"
    )
    assert up["comment"].startswith(f"mitmrelay upstream leg of {client['id'][:8]}: 200")

    # The client leg: Codex's own request, and the normalised stream it got.
    assert json.loads(web.content(client["id"], "request")) == sent
    assert web.content(client["id"], "response") == received
    assert b'"type":"response.output_item.done"' in received.replace(b" ", b"")

    # The upstream leg: the Responses request as sent, cleaned for DeepSeek, at /responses.
    assert up["request"]["path"] == "/v1/responses"
    upstream_request = json.loads(web.content(up["id"], "request"))
    assert upstream_request == fake.requests[-1]["json"]
    assert upstream_request["model"] == "deepseek-v4-pro"
    assert not {"store", "include", "prompt_cache_key"} & set(upstream_request)
    headers = dict(up["request"]["headers"])
    assert headers.get("authorization") == "[hidden by mitmrelay]"
    # ...and the provider's raw answer, in its dialect: its UUID item ids and reasoning_text
    # deltas, which the client never saw.
    raw = web.content(up["id"], "response")
    assert b"response.reasoning_text.delta" in raw
    assert b"response.reasoning_text.delta" not in received
    uuid_ids = [e["item"]["id"] for e in _events(raw) if e["type"] == "response.output_item.added"]
    assert all(len(i) == 36 and i.count("-") == 4 for i in uuid_ids)

    # Both are readable in the LLM views.
    shown = web.view(up["id"], "request", LLMRequestView.name)
    assert "list the files" in json.dumps(shown)
    stream_view = web.view(up["id"], "response", LLMStreamView.name)
    assert "exec_command" in json.dumps(stream_view)
    dump = web.rest_dump()
    assert PROVIDER_KEY.encode() not in dump and CLIENT_KEY.encode() not in dump


def _events(body: bytes) -> list[dict[str, Any]]:
    return [
        json.loads(line[6:]) for line in body.decode().splitlines() if line.startswith("data: ")
    ]
