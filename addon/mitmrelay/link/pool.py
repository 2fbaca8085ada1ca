"""Connections to upstreams: opened as mitmproxy would open them, kept alive and reused.

- TLS is verified with the context the relay builds from mitmproxy's upstream trust options
  (``ssl_verify_upstream_trusted_ca``/``_confdir``, ``ssl_insecure``); SNI is the upstream's
  host (docs/mitmproxy-notes.md §2).
- Through ``--mode upstream:http://proxy`` an https upstream is reached by ``CONNECT`` (framed
  by h11) and TLS inside the tunnel; a plain http upstream by absolute-form requests to the
  proxy, as mitmproxy itself does (docs/mitmproxy-notes.md §2, "Corporate proxy").
- A connection whose answer ended cleanly goes back to the pool of its origin (scheme, host,
  port, proxy); one closed by the upstream is not reused. At most ``MAX_IDLE_PER_ORIGIN`` idle
  connections are kept per origin, the oldest closed first.
- An idle connection is closed ``POOL_IDLE_S`` after its answer ended, by a timer on the link's
  clock: a relay that was busy and then went quiet holds no upstream sockets (file descriptors,
  and the upstream's own connection slots) for the rest of its life. 30 s sits below the idle
  timeouts upstreams and their load balancers commonly close keep-alive connections after (60 s
  and more), so the relay closes first and rarely reuses a connection the other end is closing;
  a connection taken for a new request before then is not closed, and gets a new deadline when
  its answer ends.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
from collections.abc import Callable
from typing import Any

from .clock import Clock, Timer
from .connection import LinkFailure, UpstreamConnection

POOL_IDLE_S = 30.0  # an upstream connection idle this long is closed
MAX_IDLE_PER_ORIGIN = 16  # idle connections kept per origin
DRAIN_S = 5.0  # the rest of an answer nobody needs is awaited this long for reuse, then cut


class ConnectionPool:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._idle: dict[tuple[Any, ...], list[UpstreamConnection]] = {}
        self._expiry: dict[UpstreamConnection, Timer] = {}  # an idle connection's closing

    async def connect(
        self,
        url: urllib.parse.SplitResult,
        *,
        tls: Callable[[], ssl.SSLContext],
        proxy: tuple[str, int] | None,
        fresh: bool = False,
    ) -> tuple[UpstreamConnection, bool]:
        """A connection to ``url``'s origin: an idle pooled one unless ``fresh`` (second value
        True), else a new one. Raises ``LinkFailure`` (``connect``, ``tls``)."""
        key = (url.scheme, url.hostname, url.port, proxy)
        if not fresh:
            idle = self._idle.get(key, [])
            now = self.clock.now()
            while idle:
                conn = idle.pop()
                self._unexpire(conn)
                if conn.reusable and now - conn.idle_since < POOL_IDLE_S:
                    return conn, True
                conn.close()
        return await self._open(url, key, tls() if url.scheme == "https" else None, proxy), False

    async def _open(
        self,
        url: urllib.parse.SplitResult,
        key: tuple[Any, ...],
        tls: ssl.SSLContext | None,
        proxy: tuple[str, int] | None,
    ) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        host = url.hostname or ""
        port = url.port or (443 if url.scheme == "https" else 80)
        conn = UpstreamConnection(key)
        conn.on_idle, conn.on_closed = self._release, self._forget
        try:
            if proxy is None:
                await loop.create_connection(
                    lambda: conn, host, port, ssl=tls, server_hostname=host if tls else None
                )
            else:
                await loop.create_connection(lambda: conn, *proxy)
                if tls is None:
                    conn.absolute_form = True
                else:
                    await _tunnel(conn, host, port)
                    assert conn.transport is not None
                    conn.tunnelled(
                        await loop.start_tls(conn.transport, conn, tls, server_hostname=host)
                    )
        except ssl.SSLError as e:
            conn.abort()
            raise LinkFailure("tls", str(e)) from e
        except OSError as e:
            conn.abort()
            raise LinkFailure("connect", str(e) or type(e).__name__) from e
        except BaseException:  # a timeout's cancellation, a refused CONNECT
            conn.abort()
            raise
        return conn

    def drain(self, conn: UpstreamConnection) -> None:
        """Read the rest of an answer nobody needs, then reuse the connection; give up on it
        after ``DRAIN_S``."""
        request = conn.requests
        if conn.discard_body() and conn not in self._idle.get(conn.key, ()):
            self.clock.call_at(self.clock.now() + DRAIN_S, lambda: self._drained(conn, request))

    def _drained(self, conn: UpstreamConnection, request: int) -> None:
        if conn.requests == request and conn not in self._idle.get(conn.key, ()):
            conn.abort()  # still the same answer, still not at its end

    def _release(self, conn: UpstreamConnection) -> None:
        conn.idle_since = now = self.clock.now()
        idle = self._idle.setdefault(conn.key, [])
        idle.append(conn)
        self._expiry[conn] = self.clock.call_at(now + POOL_IDLE_S, lambda: self._expire(conn))
        while len(idle) > MAX_IDLE_PER_ORIGIN:
            oldest = idle.pop(0)
            self._unexpire(oldest)
            oldest.close()

    def _expire(self, conn: UpstreamConnection) -> None:
        """Its idle time is up: still in the pool (its timer is cancelled when it is taken),
        so nobody uses it."""
        self._expiry.pop(conn, None)
        self._forget(conn)
        conn.close()

    def _unexpire(self, conn: UpstreamConnection) -> None:
        timer = self._expiry.pop(conn, None)
        if timer is not None:
            timer.cancel()

    def _forget(self, conn: UpstreamConnection) -> None:
        self._unexpire(conn)
        idle = self._idle.get(conn.key)
        if idle is not None and conn in idle:
            idle.remove(conn)
            if not idle:
                del self._idle[conn.key]

    @property
    def idle(self) -> int:
        """Connections in the pool."""
        return sum(len(idle) for idle in self._idle.values())

    def close(self) -> None:
        for timer in self._expiry.values():
            timer.cancel()
        self._expiry.clear()
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


async def _tunnel(conn: UpstreamConnection, host: str, port: int) -> None:
    """``CONNECT host:port`` through the proxy ``conn`` is connected to; returns once the tunnel
    is open. Raises ``LinkFailure("connect")`` when the proxy refuses."""
    authority = f"{host}:{port}".encode()
    status, _ = await conn.send("CONNECT", authority.decode(), [(b"host", authority)], b"")
    if not 200 <= status < 300:
        raise LinkFailure("connect", f"the upstream proxy refused CONNECT with {status}")
