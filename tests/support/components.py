"""The real components tests depend on, each with a probe saying why it is missing.

The suite proves things only with the real thing (the Codex CLI, a redis-server, chromium, the
kernel's network namespaces...), so a missing one must never go unnoticed: ``tests/conftest.py``
turns a missing component into a skip on a developer's machine and into a failure naming it
under CI. This module only answers "is it here, and if not, why not"; it decides nothing.

``missing(name, *args)`` returns None when the component is usable, else one line saying what
is missing and how to get it. Probes are cheap and cached (creating a network namespace is the
dearest, ~10 ms, done once).
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
from collections.abc import Callable
from pathlib import Path

from .codex import codex_available, current_version

_SBIN = ("/usr/sbin", "/sbin")  # iptables and ip live here; root's PATH may lack them


def _which(tool: str) -> str | None:
    found = shutil.which(tool)
    if found:
        return found
    return shutil.which(tool, path=os.pathsep.join(_SBIN))


def _tool(tool: str, package: str | None = None) -> Callable[[], str | None]:
    def probe() -> str | None:
        if _which(tool):
            return None
        return f"{tool} is not installed (apt-get install {package or tool}; scripts/test does)"

    return probe


def _codex(version: str | None = None) -> str | None:
    version = version or current_version()
    if codex_available(version):
        return None
    return f"Codex CLI {version} is not installed (scripts/setup installs it; needs node and npm)"


def _chromium() -> str | None:
    if _which("chromium") or _which("chromium-browser"):
        return None
    return "chromium is not installed (apt-get install chromium; scripts/test does)"


@functools.cache
def _netns() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not _which("ip"):
        return "iproute2's ip is not installed (apt-get install iproute2; scripts/test does)"
    from .netredirect import NetNamespace

    try:
        NetNamespace().close()
    except OSError as e:
        return f"cannot create a network namespace here: {e}"
    return None


def _tun() -> str | None:
    if Path("/dev/net/tun").exists():
        return None
    return "/dev/net/tun is missing (a kernel with CONFIG_TUN, or a container given the device)"


def _local_mode() -> str | None:
    """mitmproxy's local mode: an eBPF redirector on cgroup2, Linux >= 6.8."""
    if "cgroup2" not in Path("/proc/filesystems").read_text():
        return "the kernel has no cgroup2 (mitmproxy's local mode needs it)"
    release = tuple(int(p) for p in platform.release().split(".")[:2] if p.isdigit())
    if release < (6, 8):
        return f"mitmproxy's local mode needs Linux >= 6.8 (this is {platform.release()})"
    return None


def _root() -> str | None:
    return None if os.geteuid() == 0 else "needs root"


PROBES: dict[str, Callable[..., str | None]] = {
    "codex": _codex,
    "redis-server": _tool("redis-server"),
    "chromium": _chromium,
    "openssl": _tool("openssl"),
    "update-ca-certificates": _tool("update-ca-certificates", "ca-certificates"),
    "netns": _netns,
    "iptables": _tool("iptables"),
    "wireguard-go": _tool("wireguard-go"),
    "sudo": _tool("sudo"),
    "/dev/net/tun": _tun,
    "local-mode": _local_mode,
    "root": _root,
}


def missing(name: str, *args: str) -> str | None:
    """None if ``name`` is usable, else why not. Raises KeyError for an unknown name (a typo in
    a test must not read as a missing component)."""
    return PROBES[name](*args)
