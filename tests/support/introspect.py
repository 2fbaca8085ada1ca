"""A mitmdump script for leak tests, loaded before addon/relay.py: ``GET /__introspect`` is
answered with what the process holds (asyncio tasks, open file descriptors, and the relay's
exchanges and link jobs when it has such tables), never reaching the relay.

Read by name (``getattr``), so it keeps working when the relay or its link are rebuilt: a table
it cannot find is reported as null, and a test asserting on it then fails loudly."""

from __future__ import annotations

import asyncio
import json
import os

from mitmproxy import ctx, http

PATH = "/__introspect"


def _size(obj: object, *names: str) -> int | None:
    for name in names:
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return len(obj)  # type: ignore[arg-type]


def _first(*sizes: int | None) -> int | None:
    return next((s for s in sizes if s is not None), None)


class Introspect:
    def request(self, flow: http.HTTPFlow) -> None:
        if flow.request.path != PATH:
            return
        relay = ctx.master.addons.get("relay")
        state = {
            "tasks": len(asyncio.all_tasks()),
            "fds": len(os.listdir("/proc/self/fd")),
            # The relay's per-flow table: "flights" since the routing rebuild ("exchanges" before).
            "exchanges": _first(_size(relay, "flights"), _size(relay, "exchanges")),
            "link_jobs": _size(relay, "link", "_jobs"),
            # Conversation records handed to the state store and not yet written.
            "pending_writes": _size(relay, "state", "_pending"),
        }
        flow.response = http.Response.make(
            200, json.dumps(state), {"content-type": "application/json"}
        )


addons = [Introspect()]
