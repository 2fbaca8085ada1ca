"""Loopback helpers shared by tests, benchmarks and scripts: a free port, a real redis-server.

Importable as ``support.local_servers`` once ``tests/`` is on ``sys.path`` (tests/conftest.py,
bench/, scripts/ put it there).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """An ephemeral loopback port from the OS, for programs that cannot report the port they
    bound when given 0 (mitmweb logs ``web_port=0`` literally; redis-server needs a number)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(
    directory: Path | str, port: int | None = None
) -> tuple[subprocess.Popen[bytes], str] | None:
    """A redis-server on ``port`` (default: a free loopback port), without persistence,
    answering PING; returns the process and its ``redis://`` URL, or None when redis-server is
    not installed. Raises RuntimeError when it does not come up within 20 s."""
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    port = port or free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis  # a test extra: only who starts a server needs it

    client = redis.Redis(port=port)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            return proc, f"redis://127.0.0.1:{port}/0"
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)
