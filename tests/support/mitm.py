"""Run a real ``mitmdump`` with the relay addon, as users do: its own confdir, port 0.

``MitmRelay(tmp_path, upstream_url, mode="reverse")`` starts it and parses the listening port
from its log; the mitmproxy CA for proxy-mode clients is ``confdir / "mitmproxy-ca-cert.pem"``.
Stopped with SIGINT (so ``done`` runs); the log is kept for assertions.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MITMDUMP = Path(sys.executable).with_name("mitmdump")
RELAY_SCRIPT = ROOT / "addon" / "relay.py"
INTROSPECT = Path(__file__).resolve().parent / "introspect.py"
LISTEN = re.compile(r"listening at \S+?:(\d+)")


class MitmRelay:
    def __init__(
        self,
        confdir: Path,
        upstream: str,
        *,
        mode: str = "reverse",
        key: str = "sk-relay",
        options: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.confdir = confdir
        # "reverse" (dummy target, never contacted), "regular", or any other mode spec such
        # as "upstream:http://127.0.0.1:3128", listening on a free loopback port.
        spec = (
            "reverse:http://127.0.0.1:1@127.0.0.1:0" if mode == "reverse" else f"{mode}@127.0.0.1:0"
        )
        args = [
            str(MITMDUMP),
            "--mode",
            spec,
            "--set",
            f"confdir={confdir}",
            "-s",
            str(RELAY_SCRIPT),
            "--set",
            f"relay_upstream={upstream}",
        ]
        for name, value in {
            "termlog_verbosity": "info",
            "flow_detail": "0",
            **(options or {}),
        }.items():
            args += ["--set", f"{name}={value}"]
        full_env = {
            k: v
            for k, v in os.environ.items()
            if not k.lower().endswith("_proxy") and k not in ("SSL_CERT_FILE",)
        }
        full_env["CODEX_RELAY_API_KEY"] = key
        full_env.update(env or {})
        self.args, self.env = args, full_env
        self.log: list[str] = []
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> MitmRelay:
        self.proc = subprocess.Popen(
            self.args, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        ready = threading.Event()

        def pump() -> None:
            assert self.proc and self.proc.stdout
            for line in self.proc.stdout:
                self.log.append(line.rstrip("\n"))
                m = LISTEN.search(line)
                if m and not self.port:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + 60
        while not ready.wait(0.1):
            if time.monotonic() > deadline:
                break
        if not self.port:
            self.stop()
            raise RuntimeError("mitmdump did not start:\n" + "\n".join(self.log))
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ca(self) -> Path:
        return self.confdir / "mitmproxy-ca-cert.pem"

    def text(self) -> str:
        return "\n".join(self.log)

    def wait_for_text(self, needle: str, timeout_s: float = 15.0) -> bool:
        """Whether the log comes to hold ``needle``: mitmdump's lines reach the reader thread
        some time after the client has its answer, later still on a loaded machine."""
        deadline = time.monotonic() + timeout_s
        while needle not in self.text():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True


def with_introspection(relay: MitmRelay) -> MitmRelay:
    """``relay`` (not started yet) with support/introspect.py loaded before the relay:
    ``GET /__introspect`` then tells what the process holds."""
    at = relay.args.index("-s")
    relay.args[at:at] = ["-s", str(INTROSPECT)]
    return relay
