"""Network plumbing for testing mitmproxy's transparent, wireguard and local modes for real.

Everything happens in throwaway **anonymous network namespaces**: ``NetNamespace()`` is held
by a file descriptor only (no ``/run/netns`` name), so its interfaces, addresses and netfilter
rules vanish with it when the test ends, even if the test process dies; the host's own network
is never touched. ``with ns.inside():`` moves the *calling thread* into it (``setns``); threads
and subprocesses started there inherit it, sockets created there belong to it, so a
``FakeUpstream`` or ``MitmRelay`` started inside lives in that namespace. Needs root.

- ``redirect_tcp(ns, source, port)``: the transparent-mode recipe of docs/mitmproxy-notes.md §10,
  ``iptables -t nat -A OUTPUT … -j REDIRECT --to-ports <mitmdump>``, matching only the
  client's source address so that mitmproxy's own connections are never redirected.
- ``WireGuardDevice``: a real WireGuard client (Debian's ``wireguard-go``, userspace, configured
  over its UAPI socket) whose UDP socket stays next to mitmdump while its interface is moved
  into the client's namespace, as a phone or VM behind ``--mode wireguard`` would be.
- ``LocalModeRelay``: ``MitmRelay`` with ``--mode local:<name>``, run in a private mount
  namespace where cgroup2 is mounted at ``/sys/fs/cgroup`` (mitmproxy's redirector attaches its
  eBPF program there; on hybrid cgroup v1 machines that path is a tmpfs).
  ``named_thread(name)`` runs client code in a thread whose name (``comm``) that spec matches.
- ``Origin``: "the real server" at the address the client pinned, over TLS with its own
  certificate, recording what passed through the proxy untouched.
- ``PinnedTransport``: httpx's equivalent of ``curl --resolve``: connect to a fixed address
  while ``Host``, SNI and certificate checks use the name.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.x509.oid import NameOID
from support.mitm import MitmRelay

UAPI_DIR = Path("/var/run/wireguard")  # wireguard-go's control sockets (a fixed system path)
WG_CLIENT_ADDRESS = "10.0.0.1/32"  # what mitmproxy's generated client config says


SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", os.defpath), "/usr/sbin", "/sbin"])


def tool(name: str) -> str | None:
    """Where a program is, looking in the sbin directories too (iptables, ip)."""
    return shutil.which(name, path=SEARCH_PATH)


def missing_tools(*names: str) -> list[str]:
    return [n for n in names if tool(n) is None]


def run(*cmd: str) -> str:
    r = subprocess.run(
        [tool(cmd[0]) or cmd[0], *cmd[1:]], capture_output=True, text=True, timeout=30
    )
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


# ---------------------------------------------------------------------- network namespaces


class NetNamespace:
    """An anonymous network namespace with its loopback up, alive while this object is open."""

    def __init__(self) -> None:
        result: dict[str, Any] = {}

        def create() -> None:  # in a thread of its own: the caller's namespace never changes
            try:
                os.unshare(os.CLONE_NEWNET)
                result["fd"] = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            except OSError as e:
                result["error"] = e

        t = threading.Thread(target=create)
        t.start()
        t.join()
        if "error" in result:
            raise result["error"]
        self.fd: int | None = result["fd"]
        try:
            self.run("ip", "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> NetNamespace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    @property
    def path(self) -> str:
        """A path naming this namespace for other programs (``ip link set X netns <path>``)."""
        assert self.fd is not None
        return f"/proc/{os.getpid()}/fd/{self.fd}"

    @contextlib.contextmanager
    def inside(self) -> Iterator[NetNamespace]:
        """Run the calling thread in this namespace; back where it was afterwards (nestable)."""
        assert self.fd is not None
        before = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            os.setns(self.fd, os.CLONE_NEWNET)
            try:
                yield self
            finally:
                os.setns(before, os.CLONE_NEWNET)
        finally:
            os.close(before)

    def run(self, *cmd: str) -> str:
        with self.inside():
            return run(*cmd)

    def add_address(self, cidr: str, dev: str = "lo") -> None:
        self.run("ip", "addr", "add", cidr, "dev", dev)


# ---------------------------------------------------------------------- transparent mode


@contextlib.contextmanager
def redirect_tcp(ns: NetNamespace, source: str, port: int) -> Iterator[None]:
    """Send every TCP connection from ``source`` to ``127.0.0.1:port`` (mitmdump in transparent
    mode reads the original destination back with ``SO_ORIGINAL_DST``). mitmproxy's own
    connections leave from 127.0.0.1 and are never redirected, so passing through works."""
    rule = ["OUTPUT", "-s", source, "-p", "tcp", "-j", "REDIRECT", "--to-ports", str(port)]
    ns.run("iptables", "-t", "nat", "-A", *rule)
    try:
        yield
    finally:
        ns.run("iptables", "-t", "nat", "-D", *rule)  # the namespace goes anyway; be tidy


# ---------------------------------------------------------------------- wireguard mode


def _hex_key(b64: str) -> str:
    return base64.b64decode(b64).hex()


def _public_hex(private_b64: str) -> str:
    private = x25519.X25519PrivateKey.from_private_bytes(base64.b64decode(private_b64))
    return private.public_key().public_bytes_raw().hex()


class WireGuardDevice:
    """A WireGuard client for ``mitmdump --mode wireguard``, with the keys mitmproxy generated in
    its confdir (``wireguard.conf``: ``server_key``, ``client_key``).

    ``wireguard-go`` runs in ``endpoint_ns`` (where mitmdump's UDP port is reachable on
    127.0.0.1); once configured, its interface moves to ``device_ns`` with mitmproxy's client
    address (10.0.0.1/32) and the default route: every connection made in ``device_ns`` goes
    through the tunnel, as on a phone using mitmproxy's client config."""

    def __init__(
        self, confdir: Path, port: int, endpoint_ns: NetNamespace, device_ns: NetNamespace
    ) -> None:
        self.keys = json.loads((confdir / "wireguard.conf").read_text())
        self.port = port
        self.endpoint_ns, self.device_ns = endpoint_ns, device_ns
        self.name = f"mrwg{secrets.token_hex(4)}"  # unique: the UAPI socket path is global
        self.proc: subprocess.Popen[bytes] | None = None
        self.output = tempfile.TemporaryFile()  # noqa: SIM115 (closed in __exit__): its log

    @property
    def uapi(self) -> Path:
        return UAPI_DIR / f"{self.name}.sock"

    def __enter__(self) -> WireGuardDevice:
        with self.endpoint_ns.inside():
            self.proc = subprocess.Popen(
                [tool("wireguard-go") or "wireguard-go", "-f", self.name],
                stdout=self.output,
                stderr=subprocess.STDOUT,
            )
        try:
            self._configure()
            self.endpoint_ns.run("ip", "link", "set", self.name, "netns", self.device_ns.path)
            ns = self.device_ns
            ns.add_address(WG_CLIENT_ADDRESS, self.name)
            ns.run("ip", "link", "set", self.name, "up")
            ns.run("ip", "route", "add", "default", "dev", self.name)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _configure(self) -> None:
        config = (
            "set=1\n"
            f"private_key={_hex_key(self.keys['client_key'])}\n"
            "replace_peers=true\n"
            f"public_key={_public_hex(self.keys['server_key'])}\n"
            f"endpoint=127.0.0.1:{self.port}\n"
            "replace_allowed_ips=true\n"
            "allowed_ip=0.0.0.0/0\n"
            "\n"
        )
        deadline = time.monotonic() + 20
        while True:  # ready once its UAPI socket accepts connections
            assert self.proc is not None
            if self.proc.poll() is not None:
                self.output.seek(0)
                out = self.output.read().decode(errors="replace")
                raise RuntimeError(f"wireguard-go exited ({self.proc.returncode}):\n{out}")
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(self.uapi))
                    s.sendall(config.encode())
                    answer = b""
                    while not answer.endswith(b"\n\n"):
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        answer += chunk
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise RuntimeError("wireguard-go did not open its UAPI socket") from None
                time.sleep(0.05)
        if answer.strip() != b"errno=0":
            raise RuntimeError(f"wireguard-go refused the configuration: {answer!r}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # it removes its interface and socket
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.output.close()


# ---------------------------------------------------------------------- local mode


class LocalModeRelay(MitmRelay):
    """``MitmRelay`` with ``--mode local:<process>`` (intercepts the sockets of threads named
    ``process``; mitmdump adds ``!<its pid>``).

    mitmproxy's Linux redirector (started through ``sudo``) attaches an eBPF program to
    ``/sys/fs/cgroup/``, which must be the cgroup2 root. mitmdump runs under
    ``unshare --mount`` with cgroup2 mounted there, so this works on hybrid cgroup v1 machines
    too without changing the host's mounts. A regular listener on a free loopback port is kept
    only because ``MitmRelay`` waits for a "listening at" line (local mode has no listener);
    the redirector's own readiness is ``wait_until_intercepted`` in the client thread."""

    def __init__(self, confdir: Path, upstream: str, *, process: str, **kwargs: Any) -> None:
        super().__init__(confdir, upstream, mode="regular", **kwargs)
        mount = 'mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$@"'
        self.args = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            mount,
            "sh",
            *self.args,
            "--mode",
            f"local:{process}",
        ]

    def stop(self) -> int | None:
        """Stop mitmdump, then wait for its redirector (``sudo`` and the redirector itself),
        which outlives it briefly with the eBPF program still attached to the cgroup root."""
        helpers = _descendants(self.proc.pid) if self.proc and self.proc.poll() is None else set()
        returncode = super().stop()
        deadline = time.monotonic() + 10  # it notices mitmdump is gone after ~3 s
        while alive := {pid for pid in helpers if _running(pid)}:
            if time.monotonic() > deadline:
                for pid in alive:  # ours, by id: the redirector exits cleanly on SIGTERM
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGTERM)
                raise RuntimeError(f"mitmproxy's local redirector outlived mitmdump: pids {alive}")
            time.sleep(0.05)
        return returncode


def _parents() -> dict[int, int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def _descendants(pid: int) -> set[int]:
    parents, found, frontier = _parents(), set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has exited


@contextlib.contextmanager
def named_thread(name: str) -> Iterator[Callable[..., Any]]:
    """``call(fn, *args)`` runs ``fn`` in one worker thread whose ``comm`` is ``name`` (what a
    ``local:<name>`` spec matches, like a process of that name). The thread is created, and so
    joins the caller's network namespace, at the first call."""

    def rename() -> None:
        Path("/proc/thread-self/comm").write_text(name)

    with ThreadPoolExecutor(1, initializer=rename) as pool:
        yield lambda fn, *args: pool.submit(fn, *args).result(timeout=120)


def wait_until_intercepted(timeout: float = 20) -> str:
    """In an intercepted thread: wait until the redirector's eBPF program binds new sockets to
    its TUN device (mitmproxy logs nothing when that starts); return the device's name."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as s:
            device = s.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16).rstrip(b"\0")
        if device:
            return device.decode()
        if time.monotonic() > deadline:
            raise RuntimeError("the local redirector never intercepted this thread's sockets")
        time.sleep(0.05)


# ---------------------------------------------------------------------- clients and servers


class PinnedTransport(httpx.BaseTransport):
    """``curl --resolve`` for httpx: requests to these host names connect to the given address,
    while the Host header, TLS SNI and the certificate check keep the name. Each name has its
    own connections (httpx would otherwise share one per address, whatever the name)."""

    def __init__(self, addresses: dict[str, str], **kwargs: Any) -> None:
        self.addresses = addresses
        self.kwargs = kwargs
        self.transports: dict[str, httpx.HTTPTransport] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        name = request.url.host
        address = self.addresses.get(name)
        if address is not None:
            request.extensions = {**request.extensions, "sni_hostname": name}
            request.url = request.url.copy_with(host=address)
        if name not in self.transports:
            self.transports[name] = httpx.HTTPTransport(**self.kwargs)
        return self.transports[name].handle_request(request)

    def close(self) -> None:
        for transport in self.transports.values():
            transport.close()


class _H2FirstContext(ssl.SSLContext):
    """httpcore always offers ALPN ``http/1.1, h2`` in that order, and mitmproxy follows the
    client's preference; curl, browsers and reqwest offer ``h2`` first."""

    def set_alpn_protocols(self, protocols: Iterable[str]) -> None:
        super().set_alpn_protocols(sorted(protocols, key=lambda p: p != "h2"))


def pinned_client(
    ca: Path,
    addresses: dict[str, str],
    *,
    local_address: str | None = None,
    http2: bool = False,
) -> httpx.Client:
    """An httpx client trusting only ``ca`` (mitmproxy's CA), with pinned host addresses;
    ``http2`` offers h2 first (ALPN ``h2, http/1.1``) as curl or reqwest do."""
    verify = (_H2FirstContext if http2 else ssl.SSLContext)(ssl.PROTOCOL_TLS_CLIENT)
    verify.load_verify_locations(cafile=str(ca))
    transport = PinnedTransport(addresses, verify=verify, local_address=local_address, http2=http2)
    return httpx.Client(transport=transport, timeout=30, trust_env=False)


def self_signed(directory: Path, names: list[str]) -> tuple[Path, Path]:
    """A certificate for ``names`` (its own CA), and its key: (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "origin-cert.pem", directory / "origin-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Origin:
    """The real servers behind an address (HTTPS, one certificate for ``names``): answers every
    request with JSON naming itself and records ``(method, host, path, authorization)``.
    Create it inside the namespace it should listen in; trust ``cert`` in mitmdump
    (``ssl_verify_upstream_trusted_ca``)."""

    def __init__(self, address: str, port: int, names: list[str], directory: Path) -> None:
        self.cert, key = self_signed(directory, names)
        self.seen: list[tuple[str, str, str, str]] = []
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, key)
        context.set_alpn_protocols(["http/1.1"])
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                seen.append(
                    (
                        self.command,
                        self.headers.get("host", ""),
                        self.path,
                        self.headers.get("authorization", ""),
                    )
                )
                body = json.dumps({"served_by": "origin", "path": self.path}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((address, port), Handler, bind_and_activate=True)
        self.server.daemon_threads = True
        # The handshake happens in the handler's thread (first read), not in accept().
        self.server.socket = context.wrap_socket(
            self.server.socket, server_side=True, do_handshake_on_connect=False
        )
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Origin:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)
