"""The relay in mitmproxy's transparent, wireguard and local modes, for real.

Each test runs a real ``mitmdump -s addon/relay.py`` in a throwaway network namespace
(support/netredirect.py) and a client that knows nothing of the proxy: the official openai SDK
calling ``https://api.openai.com/v1/responses`` with only mitmproxy's CA trusted, its address
pinned (like ``curl --resolve``) since there is no DNS here. The proxy sees an IP as the flow's
host; the relay must match on path plus SNI / Host (``pretty_host``).

Behind that address sits ``Origin``, standing in for the real api.openai.com (and for another
site on the same address): whatever the relay does not take must reach it untouched.

- transparent: ``iptables -t nat -A OUTPUT -s 127.0.0.5 -p tcp -j REDIRECT`` to mitmdump; the
  client connects from 127.0.0.5 to api.openai.com = 127.0.0.2:443.
- wireguard: ``wireguard-go`` with the keys mitmdump wrote to its confdir, its interface in a
  second namespace (the "device"); api.openai.com = 198.18.0.7:443.
- local: ``--mode local:<name>`` intercepts the client thread named ``<name>`` through
  mitmproxy's eBPF redirector (needs root, ``sudo``, Linux >= 6.8 and cgroup2);
  api.openai.com = 198.18.0.7:443.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from support.fake_upstream import FakeUpstream, text
from support.mitm import MitmRelay
from support.netredirect import (
    LocalModeRelay,
    NetNamespace,
    Origin,
    WireGuardDevice,
    named_thread,
    pinned_client,
    redirect_tcp,
    wait_until_intercepted,
)

CLIENT_KEY = "sk-client-openai-key-must-never-leave"
RELAY_KEY = "sk-relay"
NAMES = ["api.openai.com", "other.example"]  # both served by the origin at the pinned address


pytestmark = [pytest.mark.integration, pytest.mark.requires("netns")]


def relay_options(origin: Origin) -> dict[str, str]:
    return {"relay_model": "deepseek-chat", "ssl_verify_upstream_trusted_ca": str(origin.cert)}


@contextlib.contextmanager
def log_on_failure(relay: MitmRelay) -> Iterator[None]:
    try:
        yield
    except BaseException:
        print("---- mitmdump log ----\n" + relay.text())
        raise


def exercise(http: httpx.Client, upstream: FakeUpstream, origin: Origin, *, http2: bool) -> None:
    """The checks every mode must pass, run by the client through the intercepted network."""
    version = "HTTP/2" if http2 else "HTTP/1.1"
    sent_before, seen_before = len(upstream.requests), len(origin.seen)

    # 1. A Responses call is relayed, translated and answered as Responses SSE.
    upstream.enqueue(text("relayed", f" over {version}"))
    client = openai.OpenAI(
        api_key=CLIENT_KEY, base_url="https://api.openai.com/v1", http_client=http, max_retries=0
    )
    with client.responses.stream(model="gpt-5.5", input="hi") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert final.output_text == f"relayed over {version}"
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    [sent] = upstream.requests[sent_before:]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["json"]["model"] == "deepseek-chat"
    assert sent["json"]["messages"] == [{"role": "user", "content": "hi"}]
    assert sent["headers"]["authorization"] == f"Bearer {RELAY_KEY}"
    assert CLIENT_KEY not in repr(sent)

    # 2. Codex's websocket attempt (an HTTP/1.1 Upgrade) is refused, so it falls back to HTTPS.
    if not http2:
        ws = http.get(
            "https://api.openai.com/v1/responses",
            headers={"upgrade": "websocket", "connection": "upgrade"},
        )
        assert ws.status_code == 426

    # 3. Everything else passes through to the real server at that address, untouched:
    # another path on api.openai.com, and the same path on another host name.
    auth = {"authorization": f"Bearer {CLIENT_KEY}"}
    models = http.get("https://api.openai.com/v1/models", headers=auth)
    assert models.status_code == 200 and models.json()["served_by"] == "origin"
    assert models.http_version == version
    other = http.post("https://other.example/v1/responses", headers=auth, json={"input": "x"})
    assert other.status_code == 200 and other.json()["served_by"] == "origin"
    assert origin.seen[seen_before:] == [
        ("GET", "api.openai.com", "/v1/models", f"Bearer {CLIENT_KEY}"),
        ("POST", "other.example", "/v1/responses", f"Bearer {CLIENT_KEY}"),
    ]
    assert len(upstream.requests) == sent_before + 1  # nothing else reached the Chat upstream


def exercise_both(
    relay: MitmRelay,
    upstream: FakeUpstream,
    origin: Origin,
    openai_address: str,
    **client_options: Any,
) -> None:
    """``exercise`` over HTTP/1.1, then over HTTP/2."""
    for http2 in (False, True):
        with pinned_client(
            relay.ca, dict.fromkeys(NAMES, openai_address), http2=http2, **client_options
        ) as http:
            exercise(http, upstream, origin, http2=http2)


def relay_in(mode: str, tmp_path: Path, upstream: FakeUpstream, origin: Origin) -> MitmRelay:
    return MitmRelay(
        tmp_path / "confdir", upstream.url, mode=mode, key=RELAY_KEY, options=relay_options(origin)
    )


def client_connected_from(relay: MitmRelay, address: str) -> bool:
    return re.search(rf"\[{re.escape(address)}:\d+\] client connect", relay.text()) is not None


# ---------------------------------------------------------------------- transparent


@pytest.mark.requires("iptables")
def test_transparent_mode(tmp_path):
    client_address, openai_address = "127.0.0.5", "127.0.0.2"
    with NetNamespace() as ns, ns.inside():
        with (
            FakeUpstream(key=RELAY_KEY) as upstream,
            Origin(openai_address, 443, NAMES, tmp_path / "origin") as origin,
            relay_in("transparent", tmp_path, upstream, origin) as relay,
            log_on_failure(relay),
            redirect_tcp(ns, client_address, relay.port),
        ):
            exercise_both(relay, upstream, origin, openai_address, local_address=client_address)
        assert client_connected_from(relay, client_address)


# ---------------------------------------------------------------------- wireguard


@pytest.mark.requires("wireguard-go", "/dev/net/tun")
def test_wireguard_mode(tmp_path):
    openai_address = "198.18.0.7"  # benchmarking range: never a real host
    with NetNamespace() as proxy_ns, NetNamespace() as device_ns, proxy_ns.inside():
        proxy_ns.add_address(f"{openai_address}/32")
        with (
            FakeUpstream(key=RELAY_KEY) as upstream,
            Origin(openai_address, 443, NAMES, tmp_path / "origin") as origin,
            relay_in("wireguard", tmp_path, upstream, origin) as relay,
            log_on_failure(relay),
            WireGuardDevice(relay.confdir, relay.port, proxy_ns, device_ns),
            device_ns.inside(),
        ):
            exercise_both(relay, upstream, origin, openai_address)
        assert client_connected_from(relay, "10.0.0.1")  # mitmproxy's WireGuard client address


# ---------------------------------------------------------------------- local


# sudo: mitmproxy starts its redirector through it.
@pytest.mark.requires("sudo", "local-mode")
def test_local_mode(tmp_path):
    openai_address = "198.18.0.7"
    process = f"mrl{secrets.token_hex(4)}"  # a name no other process on the machine has
    with NetNamespace() as ns, ns.inside():
        ns.add_address(f"{openai_address}/32")
        with (
            FakeUpstream(key=RELAY_KEY) as upstream,
            Origin(openai_address, 443, NAMES, tmp_path / "origin") as origin,
            LocalModeRelay(
                tmp_path / "confdir",
                upstream.url,
                process=process,
                key=RELAY_KEY,
                options=relay_options(origin),
            ) as relay,
            log_on_failure(relay),
            named_thread(process) as call,
        ):
            device = call(wait_until_intercepted)
            assert device.startswith("tun")
            call(exercise_both, relay, upstream, origin, openai_address)
