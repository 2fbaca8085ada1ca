"""mitmweb / mitmproxy content views for LLM traffic (core/stream_summary.py renders).

- "LLM stream": any SSE body, Responses or Chat Completions: one line per item.
- "LLM request": the JSON request of a relayed flow (either leg: the Responses request the
  client sent, the Chat request the upstream got): the conversation one line per item, the
  tools offered, a deferred-tools search's results as the tools found. It takes over the JSON
  view only on relayed flows (``~meta mitmrelay``); elsewhere it is there to pick by hand.
"""

from __future__ import annotations

from mitmproxy import contentviews, http

from .core.stream_summary import summarize_request, summarize_stream
from .inspection import META


class LLMStreamView(contentviews.Contentview):
    name = "LLM stream"
    syntax_highlight = "none"

    def prettify(self, data: bytes, metadata: contentviews.Metadata) -> str:
        return summarize_stream(data)

    def render_priority(self, data: bytes, metadata: contentviews.Metadata) -> float:
        ctype = metadata.content_type or ""
        return 2 if ctype.startswith("text/event-stream") else -1


class LLMRequestView(contentviews.Contentview):
    name = "LLM request"
    syntax_highlight = "none"

    def prettify(self, data: bytes, metadata: contentviews.Metadata) -> str:
        return summarize_request(data)

    def render_priority(self, data: bytes, metadata: contentviews.Metadata) -> float:
        # Above mitmproxy's JSON view (1) for relayed requests only.
        flow = metadata.flow
        relayed = flow is not None and META in flow.metadata
        is_request = isinstance(metadata.http_message, http.Request)
        json_body = (metadata.content_type or "").startswith("application/json")
        return 2 if data and relayed and is_request and json_body else -1


def register() -> None:
    """Idempotent: a hot reload replaces the views by name."""
    contentviews.add(LLMStreamView)
    contentviews.add(LLMRequestView)
