"""The routes file through a real ``mitmdump -s addon/relay.py``: two fake providers, each
requiring its own key, the openai SDK as the client. Routing by model, the model list, the
log line, hot reload, every class of bad file refused at start with one line, and keys that
appear nowhere (log at DEBUG, saved flows)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from mitmproxy import io as mitmproxy_io
from support.fake_upstream import FakeUpstream, Reply, error, text
from support.mitm import MITMDUMP, RELAY_SCRIPT, MitmRelay

pytestmark = pytest.mark.integration

ALPHA_KEY = "sk-alpha-provider-secret-1111"
BETA_KEY = "sk-beta-provider-secret-2222"
CLIENT_KEY = "sk-client-key-never-upstream-3333"
KEYS = {"ALPHA_KEY": ALPHA_KEY, "BETA_KEY": BETA_KEY}


def routes_text(alpha: FakeUpstream, beta: FakeUpstream, extra: str = "") -> str:
    return f"""
[providers.alpha]
base_url = "{alpha.url}"
api_key_env = "ALPHA_KEY"

[providers.beta]
base_url = "{beta.url}"
api_key_env = "BETA_KEY"
headers = {{ "X-Title" = "codex" }}

[models."deepseek-chat"]
provider = "alpha"

[models."kimi-k2"]
provider = "beta"
upstream_model = "kimi-k2-thinking"

[models."qwen/*"]
provider = "beta"

[providers.dead]
base_url = "http://127.0.0.1:1/v1"

[models."flaky"]
provider = "alpha"
upstream_model = "flaky-alpha"
fallbacks = ["kimi-k2"]

[models."dead-first"]
provider = "dead"
fallbacks = ["deepseek-chat"]
{extra}"""


@pytest.fixture(scope="module")
def alpha() -> Iterator[FakeUpstream]:
    with FakeUpstream(key=ALPHA_KEY) as up:
        yield up


@pytest.fixture(scope="module")
def beta() -> Iterator[FakeUpstream]:
    with FakeUpstream(key=BETA_KEY) as up:
        yield up


@pytest.fixture(scope="module")
def routes(alpha, beta, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("routes") / "routes.toml"
    path.write_text(routes_text(alpha, beta))
    return path


@pytest.fixture(scope="module")
def relay(routes, tmp_path_factory) -> Iterator[MitmRelay]:
    confdir = tmp_path_factory.mktemp("confdir")
    with MitmRelay(
        confdir,
        "",
        key="sk-unused",
        env=KEYS,
        options={
            "relay_routes": str(routes),
            "termlog_verbosity": "debug",
            "save_stream_file": str(confdir / "flows.mitm"),
        },
    ) as r:
        yield r


@pytest.fixture
def client(relay) -> openai.OpenAI:
    return openai.OpenAI(api_key=CLIENT_KEY, base_url=f"{relay.url}/v1", max_retries=0)


def reset(*upstreams: FakeUpstream) -> None:
    for up in upstreams:
        up.requests.clear()
        up.replies.clear()


def exchange_lines(relay: MitmRelay) -> list[str]:
    return [line for line in relay.log if "relay " in line and " -> " in line]


def exchange_line(relay: MitmRelay, *needles: str) -> str:
    """The exchange line holding every needle; polled, since a streamed exchange is logged
    when mitmproxy ends the flow, just after the client read the last event."""
    deadline = time.monotonic() + 10
    while True:
        found = [x for x in exchange_lines(relay) if all(n in x for n in needles)]
        if found or time.monotonic() > deadline:
            assert found, f"no exchange line with {needles}:\n" + "\n".join(relay.log[-20:])
            return found[-1]
        time.sleep(0.05)


def test_each_model_goes_to_its_provider_with_its_key_and_name(alpha, beta, client, relay):
    reset(alpha, beta)
    alpha.enqueue(text("from alpha"))
    with client.responses.stream(model="deepseek-chat", input="hi") as stream:
        assert stream.get_final_response().output_text == "from alpha"
    assert beta.requests == []  # the other provider got nothing
    (sent,) = alpha.requests
    assert sent["headers"]["authorization"] == f"Bearer {ALPHA_KEY}"
    assert sent["json"]["model"] == "deepseek-chat"

    beta.enqueue(text("from beta"))
    answer = client.responses.create(model="kimi-k2", input="hi")
    assert answer.output_text == "from beta"
    assert answer.model == "kimi-k2"  # the client sees the name it asked for
    assert len(alpha.requests) == 1
    (sent,) = beta.requests
    assert sent["headers"]["authorization"] == f"Bearer {BETA_KEY}"
    assert sent["headers"]["x-title"] == "codex"
    assert sent["json"]["model"] == "kimi-k2-thinking"

    beta.enqueue(text("glob"))
    with client.responses.stream(model="qwen/qwen3-coder", input="hi") as stream:
        assert stream.get_final_response().output_text == "glob"
    assert beta.requests[-1]["json"]["model"] == "qwen/qwen3-coder"
    # One INFO line per exchange, naming the provider that served.
    exchange_line(relay, "deepseek-chat -> deepseek-chat completed", "via alpha")
    exchange_line(relay, "kimi-k2 -> kimi-k2-thinking completed", "via beta")


def test_an_unrouted_model_is_a_400_naming_it_and_the_routes(alpha, beta, client):
    reset(alpha, beta)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="gpt-5.5", input="hi")
    error_body = caught.value.body
    assert error_body["code"] == "model_not_found"
    assert "'gpt-5.5'" in error_body["message"]
    assert "deepseek-chat, kimi-k2, flaky, dead-first, qwen/*" in error_body["message"]
    assert alpha.requests == beta.requests == []


def test_the_model_list_is_the_routed_names(client):
    assert [m.id for m in client.models.list()] == [
        "deepseek-chat",
        "kimi-k2",
        "flaky",
        "dead-first",
    ]


def test_an_upstream_error_names_its_provider(alpha, beta, relay):
    reset(alpha, beta)
    beta.enqueue(error(503, {"error": {"message": "overloaded"}}))
    r = httpx.post(
        f"{relay.url}/v1/responses",
        json={"model": "kimi-k2", "input": "x", "stream": True},
        timeout=30,
    )
    assert r.status_code == 503 and beta.url.removesuffix("/v1") in r.json()["error"]["message"]
    line = exchange_line(relay, "kimi-k2 -> kimi-k2-thinking http 503")
    assert "via beta" in line and "server_error" in line


def test_keys_appear_nowhere(alpha, beta, client, relay):
    reset(alpha, beta)
    beta.enqueue(error(401, {"error": {"message": "Incorrect API key provided."}}))
    with pytest.raises(openai.AuthenticationError):
        client.responses.create(model="kimi-k2", input="hi")
    with pytest.raises(openai.BadRequestError):  # answered by the relay itself
        client.responses.create(model="no-such-model", input="hi")
    alpha.enqueue(text("ok"))
    client.responses.create(model="deepseek-chat", input="hi")
    log = relay.text()
    saved = relay.confdir / "flows.mitm"
    deadline = time.monotonic() + 10
    flows: list = []
    while time.monotonic() < deadline and len(flows) < 3:
        with saved.open("rb") as f:
            flows = list(mitmproxy_io.FlowReader(f).stream())
    dumped = json.dumps([f.get_state() for f in flows], default=repr)
    for key in (ALPHA_KEY, BETA_KEY, CLIENT_KEY):
        assert key not in log
        assert key not in dumped
    assert "ALPHA_KEY" in log  # the start line names the variable, never its value


def test_a_changed_routes_file_applies_without_a_restart(alpha, beta, routes, client, relay):
    reset(alpha, beta)
    original = routes.read_text()
    try:
        routes.write_text(original.replace('upstream_model = "kimi-k2-thinking"', ""))
        os.utime(routes, ns=(2, 2))
        beta.enqueue(text("reloaded"))
        assert client.responses.create(model="kimi-k2", input="hi").output_text == "reloaded"
        assert beta.requests[-1]["json"]["model"] == "kimi-k2"
        assert relay.wait_for_text("changed; routes in force")
        # A broken edit: the relay says why once and keeps the last good routes.
        routes.write_text(original + '\n[models."x"]\nprovider = "gamma"\n')
        os.utime(routes, ns=(3, 3))
        for _ in range(2):
            beta.enqueue(text("still"))
            assert client.responses.create(model="kimi-k2", input="hi").output_text == "still"
        warnings = [x for x in relay.log if 'unknown provider "gamma"' in x]
        assert len(warnings) == 1 and "previous routes stay in force" in warnings[0]
    finally:
        routes.write_text(original)
        os.utime(routes, ns=(4, 4))
        beta.enqueue(text("restored"))
        client.responses.create(model="kimi-k2", input="hi")
    assert beta.requests[-1]["json"]["model"] == "kimi-k2-thinking"


# ---------------------------------------------------------------------- retry and fall back


def sse_events(body: bytes) -> list[dict]:
    return [json.loads(x[6:]) for x in body.decode().splitlines() if x.startswith("data: ")]


def post(relay: MitmRelay, model: str) -> httpx.Response:
    return httpx.post(
        f"{relay.url}/v1/responses",
        json={"model": model, "input": "hi", "stream": True},
        timeout=30,
    )


def test_a_503_falls_back_within_one_stream(alpha, beta, relay):
    reset(alpha, beta)
    alpha.enqueue(error(503, {"error": {"message": "overloaded"}}))
    beta.enqueue(text("fallback answer"))
    r = post(relay, "flaky")
    events = sse_events(r.content)
    assert r.status_code == 200 and events[-1]["type"] == "response.completed"
    assert [e["type"] for e in events].count("response.created") == 1
    assert events[-1]["response"]["model"] == "flaky"  # the name the client asked for
    assert [x["json"]["model"] for x in alpha.requests] == ["flaky-alpha"]
    assert [x["json"]["model"] for x in beta.requests] == ["kimi-k2-thinking"]
    exchange_line(relay, "flaky -> kimi-k2-thinking completed", "via beta after alpha (http 503")


def test_a_whole_answer_falls_back_too(alpha, beta, client):
    reset(alpha, beta)
    alpha.enqueue(error(502, "bad gateway"))
    beta.enqueue(text("whole fallback"))
    answer = client.responses.create(model="flaky", input="hi")  # not streamed
    assert answer.output_text == "whole fallback" and answer.model == "flaky"
    assert len(alpha.requests) == len(beta.requests) == 1
    assert beta.requests[0]["json"].get("stream") is None


def test_an_unreachable_provider_falls_back(alpha, beta, relay):
    reset(alpha, beta)
    alpha.enqueue(text("alpha served"))
    r = post(relay, "dead-first")
    assert sse_events(r.content)[-1]["response"]["output"][0]["content"][0]["text"] == (
        "alpha served"
    )
    exchange_line(relay, "dead-first -> deepseek-chat completed", "via alpha after dead (no answer")


def test_a_short_retry_after_is_waited_for_on_the_same_provider(alpha, beta, relay):
    reset(alpha, beta)
    alpha.enqueue(
        error(429, {"error": {"message": "Rate limit reached"}}, {"retry-after": "1"}),
        text("after the wait"),
    )
    r = post(relay, "flaky")
    assert sse_events(r.content)[-1]["type"] == "response.completed"
    assert len(alpha.requests) == 2 and beta.requests == []


def test_no_fallback_once_an_output_item_went_out(alpha, beta, relay):
    reset(alpha, beta)
    alpha.enqueue(Reply(chunks=[{"content": "half an answ"}], cut=True))
    r = post(relay, "flaky")
    events = sse_events(r.content)
    assert events[-1]["type"] == "response.failed"
    assert [e["type"] for e in events].count("response.output_item.added") == 1
    assert beta.requests == []  # nothing sent twice to the client


# ---------------------------------------------------------------------- bad files at start

GOOD = """
[providers.p]
base_url = "http://127.0.0.1:1/v1"
api_key_env = "ALPHA_KEY"
[models.m]
provider = "p"
"""
BAD_FILES = {
    "unreadable": (None, "routes.toml: cannot be read"),
    "invalid-toml": ("[providers\n", "routes.toml: not valid TOML: "),
    "unknown-key": (GOOD + "colour = 1\n", 'routes.toml: [models."m"] colour: unknown key'),
    "unknown-provider": (
        GOOD + '[models.n]\nprovider = "q"\n',
        'routes.toml: [models."n"] provider: unknown provider "q"',
    ),
    "unknown-fallback": (
        GOOD + 'fallbacks = ["zz"]\n',
        'routes.toml: [models."m"] fallbacks: unknown model "zz"',
    ),
    "fallback-cycle": (
        GOOD + 'fallbacks = ["n"]\n[models.n]\nprovider = "p"\nfallbacks = ["m"]\n',
        'routes.toml: [models."m"] fallbacks: a cycle: m -> n -> m',
    ),
    "missing-key-variable": (
        GOOD.replace("ALPHA_KEY", "NOT_EXPORTED_KEY"),
        "routes.toml: [providers.p] api_key_env: $NOT_EXPORTED_KEY is not set",
    ),
    "unknown-wire": (
        GOOD.replace('api_key_env = "ALPHA_KEY"', 'api_key_env = "ALPHA_KEY"\nwire = "grpc"'),
        'routes.toml: [providers.p] wire: "grpc" is not one of chat, responses',
    ),
}


@pytest.fixture(scope="module")
def bad_starts(tmp_path_factory) -> dict[str, subprocess.CompletedProcess[str]]:
    """mitmdump started on each bad file, all at once (each takes a second or two)."""
    # Folders made here, before the threads: pytest's mktemp is not thread-safe.
    dirs = {case: tmp_path_factory.mktemp(case) for case in BAD_FILES}

    def start(case: str) -> subprocess.CompletedProcess[str]:
        d = dirs[case]
        content, _ = BAD_FILES[case]
        path = d / "routes.toml"
        if content is not None:
            path.write_text(content)
        return subprocess.run(
            [
                str(MITMDUMP),
                "--mode",
                "reverse:http://127.0.0.1:1@127.0.0.1:0",
                "--set",
                f"confdir={d}",
                "-s",
                str(RELAY_SCRIPT),
                "--set",
                f"relay_routes={path}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", "HOME": str(d), "ALPHA_KEY": ALPHA_KEY},
        )

    with ThreadPoolExecutor(len(BAD_FILES)) as pool:
        return dict(zip(BAD_FILES, pool.map(start, BAD_FILES), strict=True))


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_routes_file_refuses_to_start_with_one_line(case, bad_starts):
    proc = bad_starts[case]
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "Traceback" not in output
    (line,) = [x for x in output.splitlines() if "mitmrelay:" in x]
    assert BAD_FILES[case][1] in line
    assert ALPHA_KEY not in output
