"""mitmweb's content views (addon/mitmrelay/webview.py), picked and rendered by mitmproxy's own
``prettify_message`` on real flows: which view "auto" chooses, and what it shows. Through a
real mitmweb: tests/e2e/test_tool_search_e2e.py and tests/e2e/test_mitmweb_rest.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mitmproxy import contentviews, http
from mitmproxy.test import taddons, tflow, tutils

from mitmrelay import webview
from mitmrelay.inspection import META

SEARCH = (
    Path(__file__).resolve().parents[1]
    / "fixtures"
    / "tool-search"
    / "codex-0.169"
    / "search-02.request.json"
)


@pytest.fixture(autouse=True)
def registered():
    webview.register()
    webview.register()  # idempotent: a hot reload registers again
    with taddons.context():  # prettify_message reads mitmproxy's options
        yield


def flow_with(body: bytes, *, relayed: bool, ctype: str = "application/json") -> http.HTTPFlow:
    request = tutils.treq(
        method=b"POST",
        path=b"/v1/responses",
        headers=http.Headers(content_type=ctype),
        content=body,
    )
    f = tflow.tflow(req=request, resp=True)
    f.response = http.Response.make(
        200,
        b'data: {"type":"response.completed","response":{"status":"completed"}}\n\n',
        {"content-type": "text/event-stream"},
    )
    if relayed:
        f.metadata[META] = {"leg": "client"}
    return f


def test_a_relayed_request_shows_the_search_and_what_it_found():
    body = json.dumps(json.loads(SEARCH.read_text())["body"]).encode()
    f = flow_with(body, relayed=True)
    shown = contentviews.prettify_message(f.request, f)
    assert shown.view_name == "LLM request"
    assert shown.text.splitlines()[-3:] == [
        'search call_search_1: {"query": "echo text tool", "limit": 8}',
        "search results call_search_1: 1 tool",
        "  mcp__demo.echo_tool(text): Echo the given text back, prefixed with 'echo: '.",
    ]
    # The answer stream of the same flow keeps the stream view.
    assert contentviews.prettify_message(f.response, f).view_name == "LLM stream"


@pytest.mark.parametrize(
    ("relayed", "ctype", "body"),
    [
        (False, "application/json", b'{"model": "m", "input": "hi"}'),  # not ours
        (True, "text/plain", b'{"model": "m", "input": "hi"}'),
        (True, "application/json", b""),
    ],
    ids=["other-flow", "not-json", "empty"],
)
def test_other_requests_keep_mitmproxys_choice(relayed, ctype, body):
    f = flow_with(body, relayed=relayed, ctype=ctype)
    assert contentviews.prettify_message(f.request, f).view_name != "LLM request"


def test_the_view_can_be_picked_by_hand_for_any_json():
    f = flow_with(b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}', relayed=False)
    shown = contentviews.prettify_message(f.request, f, view_name="LLM request")
    assert shown.text == "model: m\nuser: hi"
