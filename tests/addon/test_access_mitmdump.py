"""Who may use the relay: client keys (``relay_client_keys_env``) and the warning for a
listener beyond loopback without them. Real mitmdump; every connection goes to 127.0.0.1,
even when the relay listens on every interface.

A refused request is OpenAI's 401 ``invalid_api_key`` (core/access.py), answered before any
upstream call; an accepted one reaches the upstream with the provider's key, never the
client's."""

from __future__ import annotations

import json

import httpx
import pytest
from support.fake_upstream import FakeUpstream, text
from support.mitm import MitmRelay

pytestmark = pytest.mark.integration

KEYS = "team-key-alpha-0123, team-key-beta-4567"
PROVIDER_KEY = "sk-provider-secret"
WARNING = "with no client keys: anyone who can reach this port can spend your upstream key"


def keyed_relay(tmp_path, upstream: FakeUpstream, **env: str) -> MitmRelay:
    return MitmRelay(
        tmp_path / "conf",
        upstream.url,
        key=PROVIDER_KEY,
        options={"relay_client_keys_env": "TEAM_KEYS"},
        env={"TEAM_KEYS": KEYS, **env},
    )


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer",
        "Bearer team-key-gamma",
        "Bearer team-key-alpha-012",  # a prefix of a key
        "Basic team-key-alpha-0123",
        "team-key-alpha-0123",
        "Bearer sk-the-clients-openai-key",
    ],
)
def test_a_request_without_a_client_key_is_401_before_any_upstream_call(tmp_path, authorization):
    with FakeUpstream(key=PROVIDER_KEY) as upstream, keyed_relay(tmp_path, upstream) as relay:
        headers = {} if authorization is None else {"authorization": authorization}
        for method, path, body in [
            ("POST", "/v1/responses", {"model": "m", "input": "hi", "stream": True}),
            ("POST", "/v1/responses", {"model": "m", "input": "hi"}),
            ("GET", "/v1/models?client_version=0.171.0", None),
        ]:
            answer = httpx.request(method, relay.url + path, json=body, headers=headers, timeout=30)
            assert answer.status_code == 401
            error = json.loads(answer.content)["error"]
            assert (error["code"], error["type"]) == ("invalid_api_key", "invalid_request_error")
            assert "Authorization: Bearer <key>" in error["message"]
        assert upstream.connections == 0
    assert "team-key" not in relay.text()
    assert "sk-the-clients" not in relay.text()


def test_a_client_key_opens_the_relay_and_stays_on_this_side(tmp_path):
    with FakeUpstream(key=PROVIDER_KEY) as upstream, keyed_relay(tmp_path, upstream) as relay:
        for key in ("team-key-alpha-0123", "team-key-beta-4567"):
            upstream.enqueue(text("hello"))
            answer = httpx.post(
                f"{relay.url}/v1/responses",
                json={"model": "m", "input": "hi"},
                headers={"authorization": f"bearer {key}"},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["output"][-1]["content"][0]["text"] == "hello"
        for request in upstream.requests:
            assert request["headers"]["authorization"] == f"Bearer {PROVIDER_KEY}"
            assert "team-key" not in request["raw"].decode()
            assert not any("team-key" in v for v in request["headers"].values())
    log = relay.text()
    assert "team-key" not in log
    assert "relayed requests need a client key from $TEAM_KEYS" in log
    assert WARNING not in log


def test_a_named_variable_that_is_unset_refuses_to_start(tmp_path):
    with FakeUpstream() as upstream:
        relay = MitmRelay(
            tmp_path / "conf", upstream.url, options={"relay_client_keys_env": "NO_SUCH_KEYS"}
        )
        with relay:
            assert relay.proc is not None
            assert relay.proc.wait(timeout=30) == 1
        assert upstream.connections == 0
    (line,) = [line for line in relay.log if "NO_SUCH_KEYS" in line]
    assert line.endswith("mitmrelay: relay_client_keys_env names $NO_SUCH_KEYS, which is not set")


def every_interface(relay: MitmRelay) -> MitmRelay:
    """Listen on 0.0.0.0 (port 0); the test still connects through 127.0.0.1 only."""
    at = relay.args.index("--mode") + 1
    relay.args[at] = relay.args[at].replace("@127.0.0.1:0", "@0.0.0.0:0")
    return relay


def test_listening_beyond_loopback_without_keys_warns_in_plain_words(tmp_path):
    """Not with client keys, not with mitmproxy's proxyauth, not on loopback."""
    with FakeUpstream() as upstream:
        with every_interface(MitmRelay(tmp_path / "a", upstream.url)) as relay:
            upstream.enqueue(text("still relays"))
            answer = httpx.post(
                f"{relay.url}/v1/responses", json={"model": "m", "input": "hi"}, timeout=30
            )
            assert answer.status_code == 200
        (line,) = [line for line in relay.log if WARNING in line]
        assert "listening on 0.0.0.0 with no client keys" in line
        assert "relay_client_keys_env" in line and "127.0.0.1" in line
        with every_interface(keyed_relay(tmp_path, upstream)) as keyed:
            pass
        assert WARNING not in keyed.text()
        guarded = MitmRelay(tmp_path / "c", upstream.url, options={"proxyauth": "alice:secret"})
        with every_interface(guarded):
            pass
        assert WARNING not in guarded.text()
        with MitmRelay(tmp_path / "b", upstream.url) as loopback:
            pass
        assert WARNING not in loopback.text()


def test_proxy_mode_is_guarded_by_mitmproxys_proxyauth(tmp_path):
    """README's advice for proxy mode, checked: without the proxy credentials mitmproxy
    answers 407 and nothing reaches the relay's upstream; with them the request is relayed."""
    with (
        FakeUpstream() as upstream,
        MitmRelay(
            tmp_path / "conf", upstream.url, mode="regular", options={"proxyauth": "alice:secret"}
        ) as relay,
    ):
        url = "http://api.openai.com/v1/responses"  # plain HTTP through the proxy: no CONNECT
        body = {"model": "m", "input": "hi"}
        with httpx.Client(proxy=relay.url, timeout=30) as client:
            assert client.post(url, json=body).status_code == 407
        assert upstream.connections == 0
        upstream.enqueue(text("through"))
        proxy = relay.url.replace("http://", "http://alice:secret@")
        with httpx.Client(proxy=proxy, timeout=30) as client:
            answer = client.post(url, json=body)
        assert answer.status_code == 200
        assert answer.json()["output"][-1]["content"][0]["text"] == "through"
