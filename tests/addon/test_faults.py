"""Faults against a real mitmdump running the relay, table-driven and black-box.

The upstream misbehaves in every way the relay must survive (support/raw_upstream.py sends
exactly the scripted bytes); the client is a plain HTTP client reading the answer as Codex
would. For each fault: the outcome Codex understands (a JSON error with a status it retries or
reports, or a 200 stream ending in exactly one terminal event), nothing hangs (every call has
a deadline), no ``response.completed`` that did not happen, and no leak (tasks, descriptors
and the relay's tables counted inside mitmdump by support/introspect.py, loaded before the
relay). These tests know nothing of link.py or addon.py internals beyond tables read by name,
so they must hold for the current link and for the rebuilt one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from core.test_upstream_errors import CASES as ERROR_CASES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.local_servers import free_port
from support.mitm import MitmRelay, with_introspection
from support.raw_upstream import SSE_HEAD, RawUpstream, chunk, json_answer, recorded_stream
from support.waiting import wait_until

pytestmark = pytest.mark.integration

TERMINAL = ("response.completed", "response.failed", "response.incomplete")
CALL_TIMEOUT_S = 30.0  # nothing may hang: a call that takes longer fails the test
RELAY_TIMEOUT_S = 3  # relay_timeout for the silence cases
REQUEST = {"model": "gpt-5.5", "input": "hi", "stream": True}


class Scripted:
    """The upstream script the current test sets (one relay serves a module)."""

    def __init__(self) -> None:
        self.script: Callable[[dict[str, Any], Any], Any] | None = None

    async def __call__(self, request: dict[str, Any], send: Any) -> None:
        assert self.script is not None, "the test set no upstream script"
        await self.script(request, send)


def relay_with_introspection(confdir: Path, upstream: str, **options: str) -> MitmRelay:
    options = {"relay_timeout": str(RELAY_TIMEOUT_S), **options}
    return with_introspection(MitmRelay(confdir, upstream, options=options))


@pytest.fixture(scope="module")
def scripted() -> Scripted:
    return Scripted()


@pytest.fixture(scope="module")
def upstream(scripted: Scripted) -> Iterator[RawUpstream]:
    with RawUpstream(scripted) as up:
        yield up


BASELINES: dict[str, dict[str, Any]] = {}  # what the module's relay held before any fault


@pytest.fixture(scope="module")
def relay(
    upstream: RawUpstream, scripted: Scripted, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MitmRelay]:
    with relay_with_introspection(tmp_path_factory.mktemp("confdir"), upstream.url) as r:
        # One good exchange first: the link and its tasks exist from then on.
        scripted.script = cut_after(b"".join(EVENTS))
        assert_stream_ends_once(call(r), completed_allowed=True)
        BASELINES["relay"] = introspect(r)
        yield r


def sse_events(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")]


def call(relay: MitmRelay, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(
        f"{relay.url}/v1/responses",
        json=body or REQUEST,
        headers={"authorization": "Bearer sk-client"},
        timeout=CALL_TIMEOUT_S,
    )


def introspect(relay: MitmRelay) -> dict[str, Any]:
    return httpx.get(f"{relay.url}/__introspect", timeout=10).json()


def assert_no_traceback(relay: MitmRelay) -> None:
    assert "Traceback" not in relay.text(), relay.text()[-4000:]


def assert_stream_ends_once(response: httpx.Response, *, completed_allowed: bool) -> str:
    """A 200 SSE answer: exactly one terminal event, last; returns its type."""
    assert response.status_code == 200, response.text
    events = sse_events(response.content)
    kinds = [e["type"] for e in events]
    terminals = [k for k in kinds if k in TERMINAL]
    assert len(terminals) == 1 and kinds[-1] == terminals[0], kinds
    if not completed_allowed:
        assert terminals[0] == "response.failed", kinds
        error = events[-1]["response"]["error"]
        assert error["code"] and error["message"]
    return terminals[0]


def assert_json_error(response: httpx.Response, status: int | None = None) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    if status is None:
        assert 500 <= response.status_code < 600, response.text
    else:
        assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and error["code"]
    return error


# ---------------------------------------------------------------------- before the answer


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: connection refused


@contextlib.contextmanager
def not_tls_server() -> Iterator[str]:
    """An https:// upstream whose server answers the TLS handshake with plain text."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                conn, _ = server.accept()
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.getsockname()[1]}/v1"
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


UNREACHABLE = {
    "refused": contextlib.nullcontext,
    "dns-fails": contextlib.nullcontext,
    "tls-fails": not_tls_server,
}


@pytest.mark.parametrize("fault", list(UNREACHABLE))
def test_an_unreachable_upstream_is_a_json_error_codex_retries(fault, tmp_path):
    with UNREACHABLE[fault]() as tls_url:
        url = {
            "refused": closed_port_url(),
            "dns-fails": "http://no-such-host.invalid/v1",
            "tls-fails": tls_url,
        }[fault]
        with relay_with_introspection(tmp_path, url) as relay:
            response = call(relay)
            error = assert_json_error(response)  # 5xx: Codex retries (docs/codex-contract.md §8)
            assert "completed" not in response.text
            assert_no_traceback(relay)
    assert error["type"] in ("server_error", "api_error")


ERRORS = {f"{c[0]}-{c[1]}-{i}": c for i, c in enumerate(ERROR_CASES)}


@pytest.mark.parametrize("case", ERRORS, ids=list(ERRORS))
def test_upstream_errors_in_each_providers_wording_reach_codex_mapped(
    case, upstream, scripted, relay
):
    _, status, headers, body, http_status, code, retry_after = ERRORS[case]
    raw = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body))
    raw = raw.encode() if isinstance(raw, str) else raw

    async def answer(request: dict[str, Any], send: Any) -> None:
        await send(json_answer(status, raw, headers))

    scripted.script = answer
    response = call(relay)
    error = assert_json_error(response, http_status)
    assert error["code"] == code
    if retry_after is not None:
        assert response.headers["retry-after"] == retry_after
    assert_no_traceback(relay)


# ---------------------------------------------------------------------- during the stream

EVENTS = recorded_stream()
FINISH_AT = next(i for i, e in enumerate(EVENTS) if b'"finish_reason": "tool_calls"' in e)


def cut_after(payload: bytes) -> Callable[[dict[str, Any], Any], Any]:
    async def script(request: dict[str, Any], send: Any) -> None:
        await send(SSE_HEAD + payload)  # then the connection closes: a cut

    return script


@pytest.mark.parametrize("boundary", range(len(EVENTS) + 1))
def test_a_stream_cut_at_every_event_boundary_ends_once_never_falsely_completed(
    boundary, scripted, relay
):
    scripted.script = cut_after(b"".join(EVENTS[:boundary]))
    response = call(relay)
    # Before the finish chunk nothing has completed; after it the answer is whole.
    terminal = assert_stream_ends_once(response, completed_allowed=boundary > FINISH_AT)
    if boundary == len(EVENTS):
        assert terminal == "response.completed"
    assert_no_traceback(relay)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(cut=st.integers(1, len(b"".join(EVENTS[:FINISH_AT])) - 1))
def test_a_stream_cut_inside_an_event_is_response_failed(cut, scripted, relay):
    scripted.script = cut_after(b"".join(EVENTS)[:cut])
    assert_stream_ends_once(call(relay), completed_allowed=False)


def test_an_invalid_chunk_ends_the_stream_with_response_failed(scripted, relay):
    async def script(request: dict[str, Any], send: Any) -> None:
        await send(SSE_HEAD + EVENTS[0] + EVENTS[3] + b"data: {not json\n\n" + EVENTS[4])

    scripted.script = script
    response = call(relay)
    assert_stream_ends_once(response, completed_allowed=False)
    assert sse_events(response.content)[-1]["response"]["error"]["code"]
    assert_no_traceback(relay)


MID_STREAM_ERRORS = {
    # OpenRouter reports a provider failure inside the stream (docs/providers.md §1).
    "openrouter-provider-died": (
        {"error": {"code": 502, "message": "provider died"}},
        "server_error",
    ),
    "context-overflow": (
        {"error": {"message": "This model's maximum context length is 8192 tokens."}},
        "context_length_exceeded",
    ),
}


@pytest.mark.parametrize("case", MID_STREAM_ERRORS)
def test_an_error_payload_inside_the_stream_is_response_failed_with_its_code(case, scripted, relay):
    payload, code = MID_STREAM_ERRORS[case]
    error_event = b"data: " + json.dumps(payload).encode() + b"\n\n"
    scripted.script = cut_after(EVENTS[0] + EVENTS[3] + error_event)
    response = call(relay)
    assert_stream_ends_once(response, completed_allowed=False)
    assert sse_events(response.content)[-1]["response"]["error"]["code"] == code


def silent_after(payload: bytes | None) -> Callable[[dict[str, Any], Any], Any]:
    async def script(request: dict[str, Any], send: Any) -> None:
        if payload is not None:
            await send(SSE_HEAD + payload)
        await request["gone"].wait()  # silent until the relay gives up on us

    return script


@pytest.mark.parametrize("when", ["before-headers", "mid-stream"])
def test_a_silent_upstream_is_given_up_after_relay_timeout(when, scripted, upstream, relay):
    scripted.script = silent_after(None if when == "before-headers" else EVENTS[0] + EVENTS[3])
    closed = upstream.peer_closed
    response = call(relay)
    if response.headers["content-type"].startswith("application/json"):
        assert response.status_code == 504  # gave up before committing to a stream
    else:
        assert_stream_ends_once(response, completed_allowed=False)
    wait_until(lambda: upstream.peer_closed > closed, "the relay to close the silent upstream")
    assert_no_traceback(relay)


# ---------------------------------------------------------------------- the client's side


def trickle(interval_s: float = 0.05) -> Callable[[dict[str, Any], Any], Any]:
    """A stream that never ends by itself: one text delta per ``interval_s``."""

    async def script(request: dict[str, Any], send: Any) -> None:
        await send(SSE_HEAD + EVENTS[0])
        for i in range(100_000):
            if request["gone"].is_set():
                return
            await send(chunk({"content": f"{i} "}))
            await asyncio.sleep(interval_s)

    return script


def settled(relay: MitmRelay, baseline: dict[str, Any]) -> dict[str, Any] | None:
    now = introspect(relay)
    ok = (
        now["tasks"] <= baseline["tasks"]
        and now["fds"] <= baseline["fds"]
        and now["exchanges"] == 0
        and now["link_jobs"] == 0
    )
    return now if ok else None


def read_some_events_then_close(relay: MitmRelay, count: int) -> None:
    with (
        httpx.Client(timeout=CALL_TIMEOUT_S) as client,
        client.stream("POST", f"{relay.url}/v1/responses", json=REQUEST) as response,
    ):
        seen = 0
        for line in response.iter_lines():
            seen += line.startswith("data: ")
            if seen >= count:
                break  # leaving the block closes the connection mid-stream


def test_a_client_gone_mid_stream_closes_the_upstream_call_and_leaves_nothing_behind(
    scripted, upstream, relay
):
    scripted.script = trickle()
    baseline = introspect(relay)
    for _ in range(3):
        closed = upstream.peer_closed
        read_some_events_then_close(relay, count=5)
        # Within 1 s the relay has hung up on the upstream (a poll, not a timed assert).
        wait_until(lambda c=closed: upstream.peer_closed > c, "the upstream call to be closed", 1.0)
    now = wait_until(lambda: settled(relay, baseline), "tasks, descriptors and jobs to settle")
    assert now["exchanges"] == 0 and now["link_jobs"] == 0
    assert_no_traceback(relay)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


STREAM_MB = 64


def test_a_slow_client_gets_backpressure_up_to_the_upstream_and_bounded_memory(
    scripted, upstream, relay
):
    piece = chunk({"content": "x" * 16_000})
    pieces = STREAM_MB * 1024 * 1024 // len(piece)

    async def flood(request: dict[str, Any], send: Any) -> None:
        await send(SSE_HEAD + EVENTS[0])
        for _ in range(pieces):
            await send(piece)
        await send(EVENTS[FINISH_AT] + EVENTS[-1])

    scripted.script = flood
    assert relay.proc is not None
    before = rss_kib(relay.proc.pid)
    sent_before = upstream.sent
    body = json.dumps(REQUEST).encode()
    with socket.create_connection(("127.0.0.1", relay.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(
            b"POST /v1/responses HTTP/1.1\r\nhost: relay\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        # A client reading 1 KB/s, until the upstream's progress stops for two seconds: the
        # client's slowness has reached the upstream's writes (no timed assert: a loaded
        # machine only takes more rounds).
        received, sent = 0, [-1]
        for _ in range(30):
            received += len(sock.recv(1024))
            time.sleep(1.0)
            sent.append(upstream.sent - sent_before)
            if len(sent) > 3 and sent[-1] == sent[-3]:
                break
        grown_mb = (rss_kib(relay.proc.pid) - before) / 1024
    print(
        f"slow client: upstream stopped at {sent[-1] / 2**20:.1f} of {STREAM_MB} MB, "
        f"relay RSS +{grown_mb:.1f} MB, client read {received} bytes"
    )
    assert sent[-1] == sent[-3], "the upstream kept sending to a client that does not read"
    # What is in flight is socket buffers (three loopback hops) and bounded relay buffers.
    assert sent[-1] < STREAM_MB * 1024 * 1024 / 2
    assert grown_mb < 48


def test_after_every_fault_above_nothing_stayed_behind(relay):
    # Runs last in this module (pytest keeps file order): all the faults above went through
    # this one relay; its tasks, descriptors and tables are back where they started.
    seen: list[dict[str, Any]] = []

    def check() -> dict[str, Any] | None:
        seen.append(introspect(relay))
        return settled(relay, BASELINES["relay"])

    # A generous deadline: the slow client's 64 MB flood drains on a loaded machine first.
    try:
        now = wait_until(check, "the relay to settle", 30.0)
    except AssertionError as e:
        raise AssertionError(f"{e}; baseline {BASELINES['relay']}, last {seen[-1]}") from None
    assert now["exchanges"] == 0 and now["link_jobs"] == 0


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["crash", "shutdown"])
def test_a_relay_restart_mid_stream_never_reports_completion(stop, tmp_path):
    scripted = Scripted()
    scripted.script = trickle()
    with RawUpstream(scripted) as upstream:
        first = relay_with_introspection(tmp_path / "conf", upstream.url)
        with first:
            events: list[str] = []
            with (
                httpx.Client(timeout=CALL_TIMEOUT_S) as client,
                client.stream("POST", f"{first.url}/v1/responses", json=REQUEST) as response,
            ):
                lines = response.iter_lines()
                for line in lines:
                    if line.startswith("data: "):
                        events.append(json.loads(line[6:])["type"])
                    if len(events) == 5:
                        assert first.proc is not None
                        os.kill(first.proc.pid, stop)  # a crash or a shutdown, mid-stream
                        break
                with contextlib.suppress(httpx.HTTPError):
                    for line in lines:  # what is left: the connection ends, nothing completes
                        if line.startswith("data: "):
                            events.append(json.loads(line[6:])["type"])
            # A disconnect (or a response.failed, should a shutdown send one): Codex retries.
            assert "response.completed" not in events and "response.incomplete" not in events
            wait_until(lambda: upstream.peer_closed == 1, "the upstream call to be closed")

        scripted.script = cut_after(b"".join(EVENTS))
        with relay_with_introspection(tmp_path / "conf", upstream.url) as second:
            terminal = assert_stream_ends_once(call(second), completed_allowed=True)
            assert terminal == "response.completed"
            assert_no_traceback(second)


FORGED = "INJECTED-LINE relay 00000000: gpt-5.5 -> x completed"


@pytest.mark.parametrize("where", ["error-status", "error-in-stream"])
def test_an_upstream_error_message_cannot_forge_a_log_line(where, scripted, relay):
    payload = {"error": {"message": f"bad request\r\n{FORGED}\n{FORGED}", "type": "x"}}
    if where == "error-status":

        async def script(request: dict[str, Any], send: Any) -> None:
            await send(json_answer(400, json.dumps(payload).encode()))

        scripted.script = script
    else:
        scripted.script = cut_after(EVENTS[0] + b"data: " + json.dumps(payload).encode() + b"\n\n")
    before = len(relay.log)
    call(relay)
    # The exchange's INFO line ("relay <flow>: <model> -> <model> <status> ...") ends it.
    wait_until(
        lambda: any(" -> " in line for line in relay.log[before:] if " relay " in line),
        "the exchange's log line",
    )
    forged = [line for line in relay.log[before:] if line.lstrip().startswith("INJECTED-LINE")]
    assert forged == [], relay.log[before:]
