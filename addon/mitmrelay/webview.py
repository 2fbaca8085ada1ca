"""mitmweb / mitmproxy content view for LLM streams (Responses or Chat Completions SSE)."""

from __future__ import annotations

from mitmproxy import contentviews

from .core.stream_summary import summarize_stream


class LLMStreamView(contentviews.Contentview):
    name = "LLM stream"
    syntax_highlight = "none"

    def prettify(self, data: bytes, metadata: contentviews.Metadata) -> str:
        return summarize_stream(data)

    def render_priority(self, data: bytes, metadata: contentviews.Metadata) -> float:
        ctype = metadata.content_type or ""
        return 2 if ctype.startswith("text/event-stream") else -1


def register() -> None:
    """Idempotent: a hot reload replaces the view by name."""
    contentviews.add(LLMStreamView)
