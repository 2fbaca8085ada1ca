"""The mitmproxy behaviours the relay is built on, shown by a real mitmdump.

``docs/mitmproxy-notes.md`` states each fact in words and names the test here that shows it; the
test names carry the section (``test_s4_…`` for §4). They run mitmproxy alone — a tiny
experiment addon (``ADDON`` below, written to a file for ``mitmdump -s``) in front of a loopback
origin server — not the relay, so an upgrade of mitmproxy that changes a fact fails here, next to
the fact, rather than somewhere deep in the relay's tests.

The addon picks its experiment by request path and writes what it saw as JSON lines to a log the
test reads. The origin records every request it gets and serves chunked bodies whose second
chunk waits for the test, so ordering is shown with events, not with clocks.
"""

from __future__ import annotations

import http.client
import http.server
import importlib.metadata
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from backports import zstd  # a mitmproxy dependency (§0)

pytestmark = pytest.mark.integration

MITMDUMP = Path(sys.executable).with_name("mitmdump")
LISTEN = re.compile(r"listening at \S+?:(\d+)")
DEADLINE_S = 30

ADDON = """
import json
from mitmproxy import connection, ctx, exceptions, http


class Facts:
    def load(self, loader):
        loader.add_option("facts_origin2", int, 0, "port of the second origin")
        loader.add_option("facts_log", str, "", "where to write observations")
        loader.add_option("facts_fail", str, "", "make startup fail: 'options' or 'log'")

    def configure(self, updated):
        if "facts_fail" in updated and ctx.options.facts_fail == "options":
            raise exceptions.OptionsError("facts_fail=options asked for it")

    def running(self):
        if ctx.options.facts_fail == "log":
            import logging
            logging.getLogger("facts").error("an error logged while starting")

    def note(self, **kw):
        with open(ctx.options.facts_log, "a") as f:
            f.write(json.dumps(kw) + "\\n")

    def request(self, flow):
        p = flow.request.path
        if p.startswith("/raise"):
            raise RuntimeError("experiment: hook failure")
        if p.startswith("/reroute"):
            flow.request.host = "127.0.0.1"
            flow.request.port = ctx.options.facts_origin2
        if p.startswith("/unreachable"):
            flow.request.port = 9  # discard: nothing listens there
        if p.startswith("/recode"):
            self.note(exp="recode", decoded=flow.request.json())
            if p.startswith("/recode-popped"):
                flow.request.headers.pop("content-encoding")
            flow.request.content = b'{"replaced": true}'
        if p.startswith("/direct"):
            flow.server_conn = connection.Server(address=None)
        if p.startswith("/local"):
            flow.response = http.Response.make(200, b"answered locally", {"x-local": "1"})

    def responseheaders(self, flow):
        p = flow.request.path
        self.note(exp="responseheaders", path=p)
        calls = []
        if p.startswith("/stream-final"):
            def cb(data):
                calls.append(data.decode())
                self.note(exp="stream-final", calls=calls)
                return data if data else b"data: added on the final call\\n\\n"
            flow.response.stream = cb
        elif p.startswith("/stream-empty"):
            flow.response.stream = lambda data: b"" if data.startswith(b"data: 1") else data
        elif p.startswith("/stream-list"):
            flow.response.stream = lambda data: [] if data.startswith(b"data: 1") else data
        elif p.startswith("/stream-raise"):
            def boom(data):
                if data.startswith(b"data: 1"):
                    raise RuntimeError("experiment: stream callable failure")
                return data
            flow.response.stream = boom
        elif p.startswith("/cut"):
            def record(data):
                calls.append(data.decode())
                self.note(exp="cut-calls", calls=calls)
                return data
            flow.response.stream = record
        elif p.startswith("/stream-pass") or p.startswith("/local"):
            flow.response.stream = True

    def response(self, flow):
        raw_is_none = flow.response.raw_content is None
        self.note(exp="response", path=flow.request.path, raw_is_none=raw_is_none)
        flow.response.headers["x-set-late"] = "1"

    def error(self, flow):
        self.note(exp="error", path=flow.request.path, msg=flow.error.msg)
        flow.response = http.Response.make(299, b"set in the error hook")


addons = [Facts()]
"""


# ----------------------------------------------------------------------------- origin


class Origin(http.server.ThreadingHTTPServer):
    """Records requests; ``/…sse…`` paths and ``/cut`` answer a chunked body whose second chunk
    waits for ``release`` (``/cut`` then closes without the last chunk)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _OriginHandler)
        self.seen: list[dict[str, Any]] = []
        self.release = threading.Event()

    @property
    def port(self) -> int:
        return self.server_address[1]


class _OriginHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Origin

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.server.seen.append({"path": self.path, "headers": dict(self.headers), "raw": raw})
        if not (self.path.startswith(("/stream", "/cut", "/buffered"))):
            body = json.dumps({"origin": self.server.port}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        self._chunk(b"data: 1\n\n")
        self.server.release.wait(DEADLINE_S)
        self._chunk(b"data: 2\n\n")
        if self.path.startswith("/cut"):
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


# ----------------------------------------------------------------------------- mitmdump


class Mitmdump:
    """A real mitmdump with the experiment addon, on a free loopback port."""

    def __init__(self, tmp: Path, mode: str, *, addon: str = ADDON, **options: str | int) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.addon = tmp / "facts_addon.py"
        self.addon.write_text(addon)
        self.log_path = tmp / "observations.jsonl"
        self.log_path.touch()
        args = [str(MITMDUMP), "--mode", f"{mode}@127.0.0.1:0", "--set", f"confdir={tmp}"]
        args += ["-s", str(self.addon), "--set", f"facts_log={self.log_path}"]
        for name, value in options.items():
            args += ["--set", f"{name}={value}"]
        self.args = args
        self.output: list[str] = []
        self.port = 0
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self._ready = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            self.output.append(line.rstrip("\n"))
            m = LISTEN.search(line)
            if m and not self.port:
                self.port = int(m.group(1))
                self._ready.set()
        self._ready.set()

    def wait_ready(self) -> Mitmdump:
        self._ready.wait(DEADLINE_S)
        if not self.port:
            raise RuntimeError("mitmdump did not start:\n" + self.text())
        return self

    def exit_code(self) -> int:
        """Wait for a mitmdump that is expected to stop on its own."""
        return self.proc.wait(DEADLINE_S)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def text(self) -> str:
        return "\n".join(self.output)

    def wait_for_text(self, needle: str) -> str:
        """The output once it holds ``needle``: mitmdump's log reaches the reader thread some
        time after the client has seen the body."""
        deadline = time.monotonic() + DEADLINE_S
        while needle not in self.text() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.text()

    def observations(self, exp: str) -> list[dict[str, Any]]:
        lines = self.log_path.read_text().splitlines()
        return [o for o in map(json.loads, lines) if o["exp"] == exp]

    def wait_for(self, exp: str, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            for o in self.observations(exp):
                if all(o.get(k) == v for k, v in match.items()):
                    return o
            time.sleep(0.05)
        raise AssertionError(f"no {exp} {match} in {self.observations(exp)}\n{self.text()}")


@pytest.fixture(scope="module")
def origins() -> Iterator[tuple[Origin, Origin]]:
    servers = (Origin(), Origin())
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield servers
    for s in servers:
        s.shutdown()


@pytest.fixture(scope="module")
def reverse(origins, tmp_path_factory) -> Iterator[Mitmdump]:
    """mitmdump in reverse mode in front of the first origin."""
    origin, second = origins
    m = Mitmdump(
        tmp_path_factory.mktemp("reverse"),
        f"reverse:http://127.0.0.1:{origin.port}",
        facts_origin2=second.port,
        connection_strategy="lazy",
    )
    yield m.wait_ready()
    m.stop()


@pytest.fixture
def origin(origins) -> Iterator[Origin]:
    origins[0].seen.clear()
    origins[0].release.clear()
    yield origins[0]
    origins[0].release.set()


def connect(m: Mitmdump) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", m.port, timeout=DEADLINE_S)


def read_all(resp: http.client.HTTPResponse) -> tuple[bytes, bool]:
    """The body and whether it ended cleanly."""
    try:
        return resp.read(), True
    except http.client.IncompleteRead as e:
        return e.partial, False


# ----------------------------------------------------------------------------- §0


def test_s0_mitmproxy_12_needs_python_312_and_ships_no_http_client():
    meta = importlib.metadata.metadata("mitmproxy")
    assert meta["Version"].startswith("12.")
    assert meta["Requires-Python"] == ">=3.12"
    requires = " ".join(importlib.metadata.requires("mitmproxy") or []).lower()
    assert "httpx" not in requires and "requests" not in requires
    assert "h11" in requires and "brotli" in requires and "backports.zstd" in requires


# ----------------------------------------------------------------------------- §2


def test_s2_host_and_port_setters_reroute_and_rewrite_host(reverse, origins):
    second = origins[1]
    second.seen.clear()
    conn = connect(reverse)
    conn.request("GET", "/reroute", headers={"Host": "api.openai.com"})
    assert json.loads(conn.getresponse().read()) == {"origin": second.port}
    assert second.seen[-1]["headers"]["Host"] == f"127.0.0.1:{second.port}"


def test_s2_reverse_mode_rewrites_host_to_the_target_before_hooks(reverse, origin):
    conn = connect(reverse)
    conn.request("GET", "/plain", headers={"Host": "api.openai.com"})
    conn.getresponse().read()
    assert origin.seen[-1]["headers"]["Host"] == f"127.0.0.1:{origin.port}"


def test_s2_eager_connect_dials_the_target_first_and_lazy_does_not(tmp_path):
    answers, logs = {}, []
    for strategy in ("eager", "lazy"):
        # facts_origni2 is misspelled on purpose: mitmdump runs and never mentions it (§7).
        m = Mitmdump(tmp_path / strategy, "regular", connection_strategy=strategy, facts_origni2=1)
        try:
            with socket.create_connection(("127.0.0.1", m.wait_ready().port), DEADLINE_S) as s:
                s.sendall(b"CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n")
                answers[strategy] = s.recv(4096).split(b"\r\n", 1)[0]
        finally:
            m.stop()
            logs.append(m.text())
    assert answers == {
        "eager": b"HTTP/1.1 502 Bad Gateway",
        "lazy": b"HTTP/1.1 200 Connection established",
    }
    assert not any("facts_origni2" in log for log in logs)


def test_s2_upstream_mode_sends_flows_via_the_proxy_unless_server_conn_is_replaced(
    origins, tmp_path
):
    origin = origins[0]
    # The upstream proxy is a port nothing listens on: a flow that goes "via" it fails.
    m = Mitmdump(tmp_path, "upstream:http://127.0.0.1:9", connection_strategy="lazy").wait_ready()
    try:
        answers = {}
        for path in ("/direct", "/via"):
            conn = connect(m)
            conn.request("GET", f"http://127.0.0.1:{origin.port}{path}")
            answers[path] = conn.getresponse().status
    finally:
        m.stop()
    assert answers == {"/direct": 200, "/via": 502}


# ----------------------------------------------------------------------------- §3


def test_s3_content_is_decoded_on_read_and_reencoded_on_write(reverse, origin):
    body = zstd.compress(b'{"client": "sent zstd"}')
    for path in ("/recode", "/recode-popped"):
        conn = connect(reverse)
        conn.request("POST", path, body=body, headers={"content-encoding": "zstd"})
        conn.getresponse().read()
    kept, popped = origin.seen[-2:]
    assert reverse.wait_for("recode")["decoded"] == {"client": "sent zstd"}
    assert kept["raw"].startswith(b"\x28\xb5\x2f\xfd")  # zstd frame magic: re-encoded
    assert zstd.decompress(kept["raw"]) == b'{"replaced": true}'
    assert popped["raw"] == b'{"replaced": true}'


# ----------------------------------------------------------------------------- §4


def test_s4_an_exception_in_request_forwards_the_flow_unmodified(reverse, origin):
    conn = connect(reverse)
    conn.request("POST", "/raise", body=b"{}", headers={"authorization": "Bearer sk-client"})
    assert conn.getresponse().status == 200  # the origin answered: the flow went on
    assert origin.seen[-1]["path"] == "/raise"
    assert origin.seen[-1]["headers"]["authorization"] == "Bearer sk-client"
    deadline = time.monotonic() + DEADLINE_S
    while "Addon error: experiment: hook failure" not in reverse.text():
        assert time.monotonic() < deadline, reverse.text()
        time.sleep(0.05)


# ----------------------------------------------------------------------------- §5


def test_s5_a_stream_callable_sees_every_chunk_then_one_final_empty_call(reverse, origin):
    conn = connect(reverse)
    conn.request("GET", "/stream-final")
    resp = conn.getresponse()
    origin.release.set()
    assert read_all(resp) == (b"data: 1\n\ndata: 2\n\ndata: added on the final call\n\n", True)
    calls = reverse.observations("stream-final")[-1]["calls"]  # noted before the last return
    assert "".join(calls) == "data: 1\n\ndata: 2\n\n"  # however the chunks fell
    assert calls[-1] == "" and "" not in calls[:-1]


def test_s5_headers_go_out_before_the_body_when_streaming_and_not_when_buffered(reverse, origin):
    streamed = connect(reverse)
    streamed.request("GET", "/stream-pass")
    resp = streamed.getresponse()  # returns once the headers arrived: the origin is still held
    assert resp.status == 200 and not origin.release.is_set()
    # The origin holds its body back: a buffering proxy has nothing to send meanwhile.
    buffered = http.client.HTTPConnection("127.0.0.1", reverse.port, timeout=1)
    buffered.request("GET", "/buffered")
    with pytest.raises(TimeoutError):
        buffered.getresponse()
    origin.release.set()
    assert read_all(resp) == (b"data: 1\n\ndata: 2\n\n", True)


def test_s5_returning_empty_bytes_mid_stream_ends_an_http1_body(reverse, origin):
    bodies = {}
    for path in ("/stream-empty", "/stream-list"):
        origin.release.clear()
        conn = connect(reverse)
        conn.request("GET", path)
        resp = conn.getresponse()
        origin.release.set()  # "data: 2" comes in a later read than "data: 1"
        bodies[path] = read_all(resp)[0]
    # b"" for "data: 1" is an empty HTTP/1 chunk: the end of the body; [] sends nothing
    assert bodies == {"/stream-empty": b"", "/stream-list": b"data: 2\n\n"}


def test_s5_an_exception_in_the_stream_callable_loses_what_mitmproxy_was_handling(reverse, origin):
    conn = connect(reverse)
    conn.request("GET", "/stream-raise")
    resp = conn.getresponse()  # the headers went out; the first chunk makes the callable raise
    # Released only once the crash is logged: "data: 2" and the body's end then come in a later
    # read (released earlier, a loaded machine can hand all three to the failing call at once).
    assert "mitmproxy has crashed!" in reverse.wait_for_text("mitmproxy has crashed!")
    origin.release.set()  # the rest comes in a later read: it still flows
    assert read_all(resp) == (b"data: 2\n\n", True)
    assert "experiment: stream callable failure" in reverse.text()


def test_s5_after_streaming_the_response_hook_runs_without_the_body(reverse, origin):
    origin.release.set()
    conn = connect(reverse)
    conn.request("GET", "/stream-pass-late")
    resp = conn.getresponse()
    assert read_all(resp) == (b"data: 1\n\ndata: 2\n\n", True)
    assert resp.getheader("x-set-late") is None  # set in `response`: too late to reach us
    assert reverse.wait_for("response", path="/stream-pass-late")["raw_is_none"] is True


def test_s5_a_response_made_in_request_is_sent_whole_and_responseheaders_still_runs(reverse):
    conn = connect(reverse)
    conn.request("GET", "/local")
    resp = conn.getresponse()
    assert (resp.status, resp.getheader("x-local"), resp.read()) == (200, "1", b"answered locally")
    reverse.wait_for("responseheaders", path="/local")


# ----------------------------------------------------------------------------- §6


def test_s6_an_unreachable_upstream_is_a_502_that_the_error_hook_cannot_replace(reverse):
    conn = connect(reverse)
    conn.request("GET", "/unreachable")
    resp = conn.getresponse()
    assert resp.status == 502 and resp.getheader("content-type", "").startswith("text/html")
    resp.read()
    assert reverse.wait_for("error", path="/unreachable")["msg"]


def test_s6_an_upstream_cut_mid_stream_truncates_the_body_and_calls_error(reverse, origin):
    origin.release.set()
    conn = connect(reverse)
    conn.request("GET", "/cut")
    body, clean = read_all(conn.getresponse())
    assert not clean and body == b"data: 1\n\ndata: 2\n\n"
    assert "peer closed connection" in reverse.wait_for("error", path="/cut")["msg"]
    assert not [o for o in reverse.observations("response") if o["path"] == "/cut"]
    calls = reverse.observations("cut-calls")[-1]["calls"]
    assert "" not in calls  # no final call when the upstream breaks off


# ----------------------------------------------------------------------------- §7


@pytest.mark.parametrize("fail", ["options", "log"])
def test_s7_a_bad_option_or_an_error_log_at_startup_stops_mitmdump(fail, tmp_path):
    m = Mitmdump(tmp_path, "regular", facts_fail=fail)
    assert m.exit_code() == 1, m.text()


# The §7.1–§7.3 experiments: an addon with one option of each kind the relay might declare. It
# notes to a file named in its own text (not an option: a failed --set may leave every option
# unset), and at runtime changes its options itself, as mitmweb's PUT /options does
# (``options.update``) and as ``:set`` does (``options.set``).
OPTIONS_ADDON = """
import asyncio, json
from dataclasses import dataclass
from mitmproxy import ctx, exceptions, hooks

NOTES = {notes!r}


def note(**kw):
    with open(NOTES, "a") as f:
        f.write(json.dumps(kw) + "\\n")


@dataclass
class PingHook(hooks.Hook):
    name = "facts_ping"
    payload: str


class Options:
    def load(self, loader):
        loader.add_option("s7_mode", str, "", "what configure does: opterr or valerr")
        loader.add_option("s7_n", int, 0, "an int option")
        loader.add_option("s7_f", float, 0.0, "a float option")
        loader.add_option("s7_later", str, "", "the s7_mode value set once running")

    def configure(self, updated):
        note(exp="configure", mode=ctx.options.s7_mode)
        if "s7_mode" in updated and ctx.options.s7_mode == "opterr":
            raise exceptions.OptionsError("s7_mode=opterr refused")
        if "s7_mode" in updated and ctx.options.s7_mode == "valerr":
            raise ValueError("s7_mode=valerr broke configure")

    def running(self):
        note(exp="running")
        ctx.master.addons.trigger(PingHook("sync"))
        if ctx.options.s7_later:
            asyncio.get_running_loop().call_soon(self.later)

    def later(self):
        try:
            ctx.options.update(s7_mode=ctx.options.s7_later)
            raised = None
        except Exception as e:
            raised = type(e).__name__
        note(exp="update", raised=raised, mode=ctx.options.s7_mode)
        for spec in ("s7_n=abc", "s7_f=1.5"):
            try:
                ctx.options.set(spec)
                note(exp="set", spec=spec, raised=None)
            except Exception as e:
                note(exp="set", spec=spec, raised=type(e).__name__, msg=str(e))
        asyncio.ensure_future(ctx.master.addons.trigger_event(PingHook("async")))

    def request(self, flow):
        note(exp="request")


class Listener:
    def facts_ping(self, payload):
        note(exp="ping", payload=payload)


addons = [Options(), Listener()]
"""


def options_mitmdump(tmp: Path, **options: str) -> tuple[Mitmdump, Path]:
    notes = tmp / "notes.jsonl"
    notes.touch()
    return Mitmdump(tmp, "regular", addon=OPTIONS_ADDON.format(notes=str(notes)), **options), notes


def noted(notes: Path, exp: str) -> list[dict[str, Any]]:
    return [o for o in map(json.loads, notes.read_text().splitlines()) if o["exp"] == exp]


def wait_noted(m: Mitmdump, notes: Path, exp: str, count: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + DEADLINE_S
    while len(found := noted(notes, exp)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(found) >= count, f"no {exp} in {notes.read_text()}\n{m.text()}"
    return found


@pytest.mark.parametrize(
    ("mode", "shown"),
    [
        ("opterr", "mitmproxy.exceptions.OptionsError: s7_mode=opterr refused"),
        ("valerr", "ValueError: s7_mode=valerr broke configure"),
    ],
)
def test_s7_1_any_exception_in_configure_at_startup_is_a_traceback_and_exit_1(
    mode, shown, tmp_path
):
    m, _ = options_mitmdump(tmp_path, s7_mode=mode)
    assert m.exit_code() == 1, m.text()
    assert "error in script" in m.text() and shown in m.text()
    assert "Error logged during startup, exiting..." in m.text()


def test_s7_1_at_runtime_an_options_error_keeps_the_old_value(tmp_path):
    m, notes = options_mitmdump(tmp_path, s7_later="opterr")
    try:
        (update,) = wait_noted(m, notes, "update")
        assert update == {"exp": "update", "raised": "OptionsError", "mode": ""}
        # configure saw the new value, then ran again with the old one (the rollback)
        assert [c["mode"] for c in noted(notes, "configure")][-2:] == ["opterr", ""]
    finally:
        m.stop()


def test_s7_1_at_runtime_another_exception_is_logged_and_the_new_value_stays(tmp_path):
    m, notes = options_mitmdump(tmp_path, s7_later="valerr")
    try:
        (update,) = wait_noted(m, notes, "update")
        assert update == {"exp": "update", "raised": None, "mode": "valerr"}
        assert "Addon error: s7_mode=valerr broke configure" in m.wait_for_text("Addon error")
    finally:
        m.stop()


def test_s7_2_a_custom_hook_reaches_addons_by_trigger_and_trigger_event(tmp_path):
    m, notes = options_mitmdump(tmp_path, s7_later="fine")
    try:
        pings = wait_noted(m, notes, "ping", count=2)
        assert [p["payload"] for p in pings] == ["sync", "async"]
    finally:
        m.stop()


def test_s7_3_at_runtime_set_refuses_a_malformed_int_and_cannot_parse_a_float(tmp_path):
    m, notes = options_mitmdump(tmp_path, s7_later="fine")
    try:
        sets = {s["spec"]: s for s in wait_noted(m, notes, "set", count=2)}
        assert sets["s7_n=abc"]["raised"] == "OptionsError"
        assert "not an integer: abc" in sets["s7_n=abc"]["msg"]
        assert sets["s7_f=1.5"]["raised"] == "NotImplementedError"
        assert "unsupported option type" in sets["s7_f=1.5"]["msg"]
    finally:
        m.stop()


def test_s7_3_a_float_option_given_with_set_at_startup_is_a_traceback_and_exit_1(tmp_path):
    m, _ = options_mitmdump(tmp_path, s7_f="1.5")
    assert m.exit_code() == 1, m.text()
    assert "NotImplementedError: Failed to parse option s7_f" in m.text()


def test_s7_3_a_malformed_int_at_startup_leaves_the_script_unloaded_and_says_nothing(
    tmp_path, origins
):
    m, notes = options_mitmdump(tmp_path, s7_n="abc")
    try:
        m.wait_ready()
        # The proxy forwards a request as if the script were not there: the request hook never
        # ran (it would have noted before the request left), nor configure or running.
        conn = http.client.HTTPConnection("127.0.0.1", m.port, timeout=DEADLINE_S)
        conn.request("GET", f"http://127.0.0.1:{origins[0].port}/plain")
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read()) == {"origin": origins[0].port}
        assert notes.read_text() == ""
        assert m.proc.poll() is None  # still running
        assert "not an integer" not in m.text() and "Error" not in m.text()
    finally:
        m.stop()


# ----------------------------------------------------------------------------- §14


def _h11_client_reading(answer: bytes, *, method: bytes = b"GET") -> Any:
    import h11

    c = h11.Connection(h11.CLIENT)
    c.send(h11.Request(method=method, target="/", headers=[("host", "x")]))
    c.send(h11.EndOfMessage())
    c.receive_data(answer)
    return c


def _events(c: Any) -> list[Any]:
    import h11

    out = []
    while (e := c.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
        out.append(e)
        if type(e) is h11.ConnectionClosed:  # it would be returned again on every call
            break
    return out


def test_s14_h11_is_the_version_mitmproxy_pins():
    requires = importlib.metadata.requires("mitmproxy") or []
    assert "h11<=0.16.0,>=0.16.0" in requires
    assert importlib.metadata.version("h11") == "0.16.0"


def test_s14_h11_ends_a_close_framed_body_at_eof_and_calls_a_short_body_a_protocol_error():
    import h11

    c = _h11_client_reading(b"HTTP/1.1 200 OK\r\n\r\nabc")
    assert [type(e) for e in _events(c)] == [h11.Response, h11.Data]
    c.receive_data(b"")
    assert [type(e) for e in _events(c)] == [h11.EndOfMessage, h11.ConnectionClosed]
    c = _h11_client_reading(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nabc")
    _events(c)
    c.receive_data(b"")
    with pytest.raises(h11.RemoteProtocolError, match="peer closed connection without sending"):
        c.next_event()


def test_s14_h11_keeps_unread_bytes_and_reports_1xx_apart():
    import h11

    c = _h11_client_reading(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc"
    )
    assert type(c.next_event()) is h11.InformationalResponse
    assert type(c.next_event()) is h11.Response
    # nothing read yet: the body waits in h11's buffer until next_event is called
    assert bytes(c.next_event().data) == b"abc"
    assert type(c.next_event()) is h11.EndOfMessage


def test_s14_h11_reuses_a_connection_only_after_both_sides_are_done_without_close():
    import h11

    c = _h11_client_reading(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
    _events(c)
    assert (c.our_state, c.their_state) == (h11.DONE, h11.DONE)
    c.start_next_cycle()
    assert (c.our_state, c.their_state) == (h11.IDLE, h11.IDLE)
    c = _h11_client_reading(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
    _events(c)
    assert c.their_state is h11.MUST_CLOSE
    with pytest.raises(h11.LocalProtocolError):
        c.start_next_cycle()


def test_s14_h11_refuses_a_bad_header_when_the_event_is_built_before_anything_is_sent():
    import h11

    c = h11.Connection(h11.CLIENT)
    with pytest.raises(h11.LocalProtocolError):
        c.send(h11.Request(method="GET", target="/", headers=[("host", "x"), ("x-a", "1\r\n2")]))
    assert c.our_state is h11.IDLE  # the Request was never made: the connection is untouched


def test_s14_h11_pauses_after_a_successful_connect():
    import h11

    c = h11.Connection(h11.CLIENT)
    c.send(h11.Request(method="CONNECT", target="example.com:443", headers=[("host", "x")]))
    c.send(h11.EndOfMessage())
    c.receive_data(b"HTTP/1.1 200 OK\r\n\r\n\x16\x03")
    assert type(c.next_event()) is h11.Response
    assert c.next_event() is h11.PAUSED
    assert c.their_state is h11.SWITCHED_PROTOCOL
    assert c.trailing_data == (b"\x16\x03", False)  # the tunnel's first bytes, not HTTP


def test_s14_asyncio_loop_time_is_monotonic_and_eof_received_none_closes(tmp_path):
    import asyncio

    async def main() -> tuple[float, float, bool]:
        loop = asyncio.get_running_loop()
        before = time.monotonic()
        t = loop.time()
        closed = loop.create_future()

        class Reader(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport

            def eof_received(self):
                return None  # a false value: the transport closes itself

            def connection_lost(self, exc):
                closed.set_result(True)

        server = await loop.create_server(Reader, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write_eof()
        done = await asyncio.wait_for(closed, DEADLINE_S)
        writer.close()
        server.close()
        return before, t, done

    before, t, closed = asyncio.run(main())
    assert before <= t <= time.monotonic()
    assert closed
