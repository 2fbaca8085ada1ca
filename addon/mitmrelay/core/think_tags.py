"""Split ``<think>…</think>`` out of streamed content.

vLLM without a reasoning parser (and some llama.cpp/Ollama builds) leave the model's thinking
inside ``content`` between think tags (docs/providers.md §1.1). Peers leaked it into the visible
answer (docs/providers.md §3, item 12). The tags may be cut anywhere across chunks, so a possible
tag prefix at the end of a piece is held back until the next piece decides it.
"""

from __future__ import annotations

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class ThinkTagSplitter:
    """``feed(text)`` -> list of ("reasoning" | "text", piece); ``flush()`` at the end."""

    def __init__(self) -> None:
        self._inside = False
        self._pending = ""

    def feed(self, text: str) -> list[tuple[str, str]]:
        if "<" not in text and not self._pending:
            # No tag can start here (every tag begins with "<"): the usual chunk, in one piece.
            return [("reasoning" if self._inside else "text", text)] if text else []
        text = self._pending + text
        self._pending = ""
        out: list[tuple[str, str]] = []
        while text:
            tag = CLOSE_TAG if self._inside else OPEN_TAG
            kind = "reasoning" if self._inside else "text"
            at = text.find(tag)
            if at >= 0:
                if at:
                    out.append((kind, text[:at]))
                text = text[at + len(tag) :]
                self._inside = not self._inside
                continue
            keep = _partial_suffix(text, tag)
            if keep:
                self._pending = text[-keep:]
                text = text[:-keep]
            if text:
                out.append((kind, text))
            break
        return out

    def flush(self) -> list[tuple[str, str]]:
        """What was held back, as the kind it turned out to be (an unfinished tag is text)."""
        pending, self._pending = self._pending, ""
        if not pending:
            return []
        return [("reasoning" if self._inside else "text", pending)]
