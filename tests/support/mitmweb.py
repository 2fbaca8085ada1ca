"""Run a real headless ``mitmweb`` with the relay addon and talk to its REST API.

``MitmWeb(tmp_path, upstream_url)`` is ``MitmRelay`` (support/mitm.py: same confdir, relay
options, environment and ``CODEX_RELAY_API_KEY``) with ``mitmweb`` instead of ``mitmdump``, on
a random ``web_password`` and a free loopback ``web_port`` (mitmweb logs ``web_port=0``
literally, so the port is picked here). Ready once the proxy listener and the web server have
logged their lines and ``GET /state`` answers with the listener running.

The REST client (docs/mitmproxy-notes.md §8; routes in mitmproxy/tools/web/app.py) sends
``Authorization: Bearer <password>`` on every call, and on POST/PUT the ``_mitmproxy_xsrf``
cookie with the same value in ``X-XSRFToken`` (tornado's double-submit check):

- ``flows()``: ``GET /flows``, every flow the view shows (no bodies, no metadata);
- ``content(id, "request"|"response")``: ``GET /flows/<id>/<part>/content.data``, decoded body;
- ``view(id, part, name)``: ``GET /flows/<id>/<part>/content/<name>.json`` (a contentview);
- ``command(name, *args)``: ``POST /commands/<name>``, returns the ``value`` (raises on ``error``);
- ``options()`` / ``state()``: ``GET /options``, ``GET /state``;
- ``matching(spec)``: ids of the flows a filter expression (or ``@all``, ``@marked``, ``@<id>``)
  selects, through the ``cut`` command; ``metadata_of(spec)`` / ``metadata(id)``:
  ``flow.metadata``, which no REST route shows;
- ``dump(expr)``: ``GET /flows/dump?filter=<expr>``, the matching flows as mitmproxy objects.

For tests: take ``ids()`` before a call, then ``exchange_since(ids)`` waits until the call's two
flows (``Exchange``: client leg and upstream leg, paired by their metadata) are finished;
``bodies(id)`` fetches both bodies of a flow, ``by_comment(regex)`` finds flows by the relay's
annotation, ``wait_for(predicate)`` polls ``/flows``, ``rest_dump()`` is every byte the REST API
shows of the flows (for "no key anywhere").
"""

from __future__ import annotations

import ast
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, Literal

import httpx
from mitmproxy import io as mitmproxy_io
from support.local_servers import free_port
from support.mitm import MITMDUMP, MitmRelay

MITMWEB = MITMDUMP.with_name("mitmweb")
WEB_READY = re.compile(r"Web server listening at (http://\S+?)/")
WEB_FAILED = "Web server failed to listen"
PROXY_READY = re.compile(r"proxy.* listening at \S+?:(\d+)")
META = "mitmrelay"  # flow.metadata key the relay writes (addon.py); ~meta mitmrelay
Part = Literal["request", "response"]


class RestError(RuntimeError):
    pass


def is_finished(flow: dict[str, Any]) -> bool:
    """Annotated by the relay and answered (or failed): nothing more will change."""
    return bool(flow.get("comment")) and ("response" in flow or "error" in flow)


@dataclass
class Exchange:
    """One relayed call as mitmweb shows it (inspection.py): the **client leg**, the Responses
    request as the client sent it and the translated answer it got, and the **upstream leg**,
    the Chat request the relay sent and the upstream's raw answer. ``client``/``upstream`` are
    ``GET /flows`` entries; ``*_meta`` their ``metadata["mitmrelay"]``."""

    client: dict[str, Any]
    upstream: dict[str, Any]
    client_meta: dict[str, Any]
    upstream_meta: dict[str, Any]


class MitmWeb(MitmRelay):
    def __init__(
        self,
        confdir: Path,
        upstream: str,
        *,
        options: dict[str, str] | None = None,
        **relay: Any,  # MitmRelay's: mode, key, env
    ) -> None:
        self.password = secrets.token_hex(16)
        self.xsrf = secrets.token_hex(16)
        self.web_port = free_port()
        web = {
            "web_host": "127.0.0.1",
            "web_port": str(self.web_port),
            "web_password": self.password,
        }
        super().__init__(confdir, upstream, options={**web, **(options or {})}, **relay)
        self.args[0:1] = [str(MITMWEB), "--no-web-open-browser"]
        self.web_url = ""
        self._client: httpx.Client | None = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> MitmWeb:
        attempts = 3
        while True:
            attempts -= 1
            try:
                self._start()
                return self
            except BaseException:
                self.stop()
                if attempts == 0 or not self._web_failed():
                    raise
            # The free web port was taken between picking and binding it: pick another.
            old = f"web_port={self.web_port}"
            self.web_port = free_port()
            self.args[self.args.index(old)] = f"web_port={self.web_port}"
            self.log, self.port, self.web_url = [], 0, ""

    def _start(self) -> None:
        self.proc = subprocess.Popen(
            self.args, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        proc = self.proc

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                self.log.append(line.rstrip("\n"))
                if web := WEB_READY.search(line):
                    self.web_url = web.group(1)
                elif (listen := PROXY_READY.search(line)) and not self.port:
                    self.port = int(listen.group(1))

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + 60
        while not (self.port and self.web_url):
            if proc.poll() is not None or time.monotonic() > deadline or self._web_failed():
                raise RuntimeError("mitmweb did not start:\n" + self.text())
            time.sleep(0.05)
        self._client = httpx.Client(
            base_url=self.web_url,
            headers={"Authorization": f"Bearer {self.password}"},
            cookies={"_mitmproxy_xsrf": self.xsrf},
            timeout=15,
            trust_env=False,  # loopback only, whatever proxy the environment names
        )
        # The log lines come before the servers answer for sure: poll REST until the
        # listener mitmweb reports is running.
        while not self._listener_running():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mitmweb REST API not ready:\n" + self.text())
            time.sleep(0.05)

    def _web_failed(self) -> bool:
        return any(WEB_FAILED in line for line in self.log)

    def _listener_running(self) -> bool:
        try:
            servers = self.state()["servers"].values()
        except (httpx.HTTPError, RestError):
            return False
        return any(
            s["is_running"] and any(a[1] == self.port for a in s["listen_addrs"]) for s in servers
        )

    def stop(self) -> int | None:
        if self._client is not None:
            self._client.close()
            self._client = None
        return super().stop()

    # ------------------------------------------------------------------ REST

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        assert self._client is not None, "mitmweb is not running"
        if method not in ("GET", "HEAD"):
            kwargs.setdefault("headers", {})["X-XSRFToken"] = self.xsrf
        r = self._client.request(method, path, **kwargs)
        if r.status_code != 200:
            raise RestError(f"{method} {path}: {r.status_code} {r.text[:500]}")
        return r

    def get_json(self, path: str) -> Any:
        return self._request("GET", path).json()

    def flows(self) -> list[dict[str, Any]]:
        return self.get_json("/flows")

    def flow(self, flow_id: str) -> dict[str, Any]:
        for f in self.flows():
            if f["id"] == flow_id:
                return f
        raise KeyError(flow_id)

    def content(self, flow_id: str, part: Part) -> bytes:
        """The body as mitmweb stores it, content-encoding removed."""
        return self._request("GET", f"/flows/{flow_id}/{part}/content.data").content

    def view(self, flow_id: str, part: Part, view_name: str = "auto") -> dict[str, Any]:
        """``{"text", "view_name", "syntax_highlight", "description"}`` of a contentview.
        ``view_name`` is as ``view_names()`` lists it: the view's name lowercased, spaces
        kept (sent as ``%20``); ``auto`` picks the view with the highest render priority."""
        return self.get_json(f"/flows/{flow_id}/{part}/content/{view_name}.json")

    def view_names(self) -> list[str]:
        """REST names of the registered contentviews (``GET /state``, ``contentViews``)."""
        return self.state()["contentViews"]

    def command(self, name: str, *args: str) -> Any:
        r = self._request("POST", f"/commands/{name}", json={"arguments": list(args)})
        answer = r.json()
        if "error" in answer:
            raise RestError(f"command {name} {args}: {answer['error']}")
        return answer["value"]

    def options(self) -> dict[str, dict[str, Any]]:
        return self.get_json("/options")

    def state(self) -> dict[str, Any]:
        return self.get_json("/state")

    # ------------------------------------------------------------------ queries

    def matching(self, flow_spec: str) -> list[str]:
        """Ids of the flows a spec selects (a filter such as ``~meta mitmrelay``, ``@all``,
        ``@marked``), evaluated by mitmproxy itself over every stored flow (whatever the
        view filter hides), through the ``cut`` command."""
        return [row[0] for row in self.command("cut", flow_spec, "id")]

    def metadata_of(self, flow_spec: str) -> dict[str, dict[str, Any]]:
        """``flow.metadata`` of every flow a spec selects, by id (no REST route shows
        metadata; ``cut`` renders it with ``str``, and ``{}`` as ``""``)."""
        rows = self.command("cut", flow_spec, "id,metadata")
        return {fid: ast.literal_eval(meta) if meta else {} for fid, meta in rows}

    def metadata(self, flow_id: str) -> dict[str, Any]:
        return self.metadata_of(f"@{flow_id}")[flow_id]

    def ids(self) -> set[str]:
        """Ids of every stored flow: take them before a call, to find its flows after."""
        return set(self.matching("@all"))

    def relayed(self) -> list[dict[str, Any]]:
        """The flows carrying the relay's metadata (``~meta mitmrelay``), in view order."""
        ids = set(self.matching(f"~meta {META}"))
        return [f for f in self.flows() if f["id"] in ids]

    def by_comment(self, pattern: str) -> list[dict[str, Any]]:
        """The flows whose comment (the relay's annotation) matches a regex."""
        rx = re.compile(pattern)
        return [f for f in self.flows() if rx.search(f.get("comment") or "")]

    def wait_for(
        self,
        predicate: Callable[[list[dict[str, Any]]], Any],
        *,
        timeout: float = 15,
    ) -> Any:
        """Poll ``GET /flows`` until ``predicate(flows)`` is truthy; return that value."""
        deadline = time.monotonic() + timeout
        while True:
            flows = self.flows()
            if result := predicate(flows):
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"no flows matched in {timeout} s:\n{flows}\n{self.text()}")
            time.sleep(0.05)

    def exchanges_since(
        self, before: set[str], *, count: int = 1, timeout: float = 15
    ) -> list[Exchange]:
        """The relayed calls whose flows are not in ``before`` (``ids()`` taken before the
        calls), once ``count`` of them have both legs finished, in the order mitmweb got them
        (the view filter must be off: the legs are looked up in ``GET /flows``)."""

        def ready(flows: list[dict[str, Any]]) -> list[Exchange] | None:
            new = {f["id"]: f for f in flows if f["id"] not in before}
            meta = {
                fid: m.get(META, {})
                for fid, m in self.metadata_of(f"~meta {META}").items()
                if fid in new
            }
            found = []
            for fid, m in meta.items():
                up_id = m.get("upstream_flow")
                if m.get("leg") != "client" or up_id not in new:
                    continue
                client, upstream = new[fid], new[up_id]
                if is_finished(client) and is_finished(upstream):
                    found.append(Exchange(client, upstream, m, meta[up_id]))
            return found if len(found) >= count else None

        return self.wait_for(ready, timeout=timeout)

    def exchange_since(self, before: set[str], *, timeout: float = 15) -> Exchange:
        """The one relayed call made since ``before`` was taken."""
        (exchange,) = self.exchanges_since(before, timeout=timeout)
        return exchange

    def dump(self, filter_expr: str | None = None) -> list[Any]:
        """``GET /flows/dump[?filter=…]``: the matching flows as mitmproxy flow objects,
        metadata and bodies included (mitmproxy's own filter, evaluated by mitmweb)."""
        params = {"filter": filter_expr} if filter_expr is not None else None
        data = self._request("GET", "/flows/dump", params=params).content
        return list(mitmproxy_io.FlowReader(BytesIO(data)).stream())

    def bodies(self, flow_id: str) -> dict[Part, bytes | None]:
        """Both bodies of a flow; ``None`` where mitmweb holds none (no response, or a
        streamed body that was not stored: its ``content.data`` is a 500)."""
        flow = self.flow(flow_id)
        return {
            part: self.content(flow_id, part)
            if (flow.get(part) or {}).get("contentLength") is not None
            else None
            for part in ("request", "response")
        }

    def rest_dump(self) -> bytes:
        """Everything the REST API hands out about the flows: the ``/flows`` JSON, every
        body, every flow's metadata, the event log and the options, for 'this secret never
        appears' assertions."""
        out = [self._request("GET", path).content for path in ("/flows", "/events", "/options")]
        for f in self.flows():
            out += (body for body in self.bodies(f["id"]).values() if body is not None)
        out.append(repr(self.metadata_of("@all")).encode())
        return b"\n".join(out)
