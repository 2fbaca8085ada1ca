"""certs/README.md is executable: its Debian commands and its Codex-only recipe really work.

Strategy: the Debian install and removal blocks are read out of the guide itself (the fenced
block after ``<!-- certs-test: debian-install -->`` / ``debian-remove``), localised into a
throwaway directory tree (``sudo`` dropped, ``/usr/local/share/ca-certificates`` and
``~/.mitmproxy`` mapped into ``tmp_path``, and ``update-ca-certificates`` given its
``--certsconf/--certsdir/--localcertsdir/--etccertsdir/--hooksdir`` options for that tree), and
run. The machine's own trust store is never touched, so this is safe as root and on CI.

The effect is checked against a real ``mitmdump`` running the relay in regular (proxy) mode: a
TLS client that CONNECTs through it to ``api.openai.com`` and trusts only the tree's bundle (or
its hashed directory) completes the handshake after the install block and is refused after the
removal block. The Codex-only recipe with ``SSL_CERT_FILE`` is run with the real Codex CLI
(``CODEX_CA_CERTIFICATE`` is covered by test_codex_e2e.py case j).
"""

from __future__ import annotations

import re
import shlex
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.codex import CLIENT_KEY, CodexHarness
from support.fake_upstream import FakeUpstream, text
from support.mitm import MitmRelay

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "certs" / "README.md"
UPDATE_CA = shutil.which("update-ca-certificates") or "/usr/sbin/update-ca-certificates"
RELAY_KEY = "sk-relay-certs-test"


def guide_block(marker: str) -> list[str]:
    """The shell lines of the fenced block following ``<!-- certs-test: marker -->``."""
    m = re.search(
        rf"<!-- certs-test: {re.escape(marker)} -->\s*```sh\n(.*?)```", GUIDE.read_text(), re.S
    )
    assert m, f"certs/README.md lost its {marker!r} block"
    return [ln for ln in m.group(1).splitlines() if ln.strip() and not ln.startswith("#")]


class Tree:
    """A Debian-shaped CA tree under ``base``: conf, distro certs, local certs, /etc/ssl/certs."""

    def __init__(self, base: Path, confdir: Path) -> None:
        self.base, self.confdir = base, confdir
        self.conf = base / "etc" / "ca-certificates.conf"
        self.certs = base / "usr" / "share" / "ca-certificates"
        self.local = base / "usr" / "local" / "share" / "ca-certificates"
        self.etc = base / "etc" / "ssl" / "certs"
        self.hooks = base / "etc" / "ca-certificates" / "update.d"
        for d in (self.certs, self.local, self.etc, self.hooks):
            d.mkdir(parents=True, exist_ok=True)
        # One unrelated distro root, so the bundle is rebuilt on removal as on a real system.
        other = self.certs / "other" / "other-test-root.crt"
        other.parent.mkdir()
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
                *("-subj", "/CN=mitmrelay unrelated test root"),
                *("-keyout", str(base / "other.key"), "-out", str(other)),
            ],
            check=True,
            capture_output=True,
        )
        self.conf.write_text("other/other-test-root.crt\n")

    @property
    def bundle(self) -> Path:
        return self.etc / "ca-certificates.crt"

    def localise(self, line: str) -> list[str]:
        line = line.replace("~/.mitmproxy", str(self.confdir))
        line = line.replace("/usr/local/share/ca-certificates", str(self.local))
        argv = shlex.split(line)
        if argv[0] == "sudo":
            argv = argv[1:]
        if argv[0] == "update-ca-certificates":
            argv = [UPDATE_CA, *argv[1:]]
            argv += ["--certsconf", str(self.conf), "--certsdir", str(self.certs)]
            argv += ["--localcertsdir", str(self.local), "--etccertsdir", str(self.etc)]
            argv += ["--hooksdir", str(self.hooks)]
        else:
            # Every other command (cp/rm of the .crt) may only write inside the tree.
            assert argv[0] in ("cp", "rm"), argv
            written = argv[-1:] if argv[0] == "cp" else argv[1:]
            assert all(Path(a).is_relative_to(self.base) for a in written), argv
        return argv

    def run_block(self, marker: str) -> None:
        for line in guide_block(marker):
            argv = self.localise(line)
            proc = subprocess.run(argv, capture_output=True, text=True, check=False)
            assert proc.returncode == 0, f"{argv}\n{proc.stdout}\n{proc.stderr}"


def tls_through_proxy(port: int, ctx: ssl.SSLContext, host: str = "api.openai.com") -> None:
    """CONNECT through the relay and complete a TLS handshake for ``host`` (raises if refused)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, "proxy closed the CONNECT"
            head += chunk
        assert head.startswith(b"HTTP/1.1 200"), head
        with ctx.wrap_socket(sock, server_hostname=host) as tls:
            assert tls.version() is not None


@pytest.fixture(scope="module")
def proxy_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MitmRelay]:
    with (
        FakeUpstream(key=RELAY_KEY) as up,
        MitmRelay(
            tmp_path_factory.mktemp("confdir"),
            up.url,
            mode="regular",
            key=RELAY_KEY,
            options={"relay_model": "deepseek-chat"},
        ) as relay,
    ):
        relay.upstream = up  # type: ignore[attr-defined]
        yield relay


@pytest.mark.requires("update-ca-certificates")
def test_debian_install_then_remove_as_the_guide_says(
    proxy_relay: MitmRelay, tmp_path: Path
) -> None:
    tree = Tree(tmp_path / "root", proxy_relay.confdir)
    tree.run_block("debian-install")

    ca_pem = proxy_relay.ca.read_text().strip()
    assert ca_pem in tree.bundle.read_text()
    assert (tree.etc / "mitmproxy.pem").resolve() == (tree.local / "mitmproxy.crt").resolve()
    # Trusting only the tree's store (bundle file, then hashed dir): the relay is accepted.
    tls_through_proxy(proxy_relay.port, ssl.create_default_context(cafile=tree.bundle))
    tls_through_proxy(proxy_relay.port, ssl.create_default_context(capath=tree.etc))

    tree.run_block("debian-remove")
    assert ca_pem not in tree.bundle.read_text()
    assert "BEGIN CERTIFICATE" in tree.bundle.read_text()  # the unrelated root stays
    assert not (tree.etc / "mitmproxy.pem").exists()
    for ctx in (
        ssl.create_default_context(cafile=tree.bundle),
        ssl.create_default_context(capath=tree.etc),
    ):
        with pytest.raises(ssl.SSLCertVerificationError):
            tls_through_proxy(proxy_relay.port, ctx)


def test_guide_names_only_the_public_certificate_for_clients() -> None:
    # The private key file must never be what a client is told to trust.
    guide = GUIDE.read_text()
    for var in ("CODEX_CA_CERTIFICATE=", "SSL_CERT_FILE="):
        for m in re.finditer(rf"{var}(\S+)", guide):
            assert "mitmproxy-ca.pem" not in m.group(1), m.group(0)
    for block in ("debian-install",):
        assert all("mitmproxy-ca-cert.pem" in ln for ln in guide_block(block) if "cp " in ln)


@pytest.mark.e2e
def test_codex_only_trust_with_ssl_cert_file(proxy_relay: MitmRelay) -> None:
    up: FakeUpstream = proxy_relay.upstream  # type: ignore[attr-defined]
    up.requests.clear()
    up.enqueue(text("Trusted via SSL_CERT_FILE."))
    codex = CodexHarness(proxy=proxy_relay.url, ca=proxy_relay.ca, ca_var="SSL_CERT_FILE")
    try:
        run = codex.exec("Say hello.")
    finally:
        codex.cleanup()
    assert run.returncode == 0, run.describe()
    assert run.last_message.strip() == "Trusted via SSL_CERT_FILE."
    (chat,) = up.chat_requests()
    assert chat["model"] == "deepseek-chat"
    assert all(CLIENT_KEY.encode() not in r["raw"] for r in up.requests)
