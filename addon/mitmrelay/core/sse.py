"""Server-sent events: an incremental, bounded decoder and the Responses event encoder.

Strategy (after openai-python's ``_SSELineDecoder`` and the WHATWG event-stream rules,
https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):

- bytes are split into lines *before* they are decoded, so a UTF-8 character cut across two
  chunks survives, and so does a U+2028 inside JSON (``str.splitlines`` would break it);
- a line ends at CR, LF or CRLF; a CRLF pair cut between two chunks counts once;
- ``data`` lines of one event are joined with ``\\n``; an empty line dispatches the event;
  lines starting with ``:`` are comments (``: keepalive``) and are skipped;
- the input is untrusted: one event may not exceed ``MAX_SSE_EVENT_BYTES``.

Invariant: the events returned do not depend on how the input was chunked.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from .errors import UpstreamProtocolError

# A single upstream event above this is a broken or hostile stream, not a big answer: tool
# arguments and reasoning arrive as many small deltas. Failing beats buffering without bound.
MAX_SSE_EVENT_BYTES = 16 * 1024 * 1024


class ServerSentEvent(NamedTuple):
    event: str | None
    data: str


_new_tuple = tuple.__new__  # builds a ServerSentEvent without its Python-level __new__


class SSEDecoder:
    """Feed bytes, get complete events. ``close()`` flushes an event left without a blank line.

    Raises ``UpstreamProtocolError`` when one event grows beyond ``max_event_bytes``.
    """

    def __init__(self, max_event_bytes: int = MAX_SSE_EVENT_BYTES) -> None:
        self._max = max_event_bytes
        self._buf = bytearray()  # the current, unfinished line
        self._skip_lf = False  # the previous chunk ended with CR: a leading LF belongs to it
        self._event: str | None = None
        self._data: list[str] = []
        self._event_bytes = 0

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        out: list[ServerSentEvent] = []
        if not chunk:
            return out
        if self._buf or self._skip_lf or b"\r" in chunk:
            self._lines(chunk, out)
            return out
        # The usual read: LF line ends and no line left open by the last one. Each block that
        # ends in a blank line is an event; one made of a single data line (what every Chat
        # upstream sends) is built at once, any other goes line by line.
        blocks = chunk.split(b"\n\n")
        rest = blocks.pop()
        for block in blocks:
            if self._event_bytes == 0 and block[:6] == b"data: " and b"\n" not in block:
                if len(block) > self._max:
                    self._too_large()
                data = block[6:].decode("utf-8", errors="replace")
                out.append(_new_tuple(ServerSentEvent, (None, data)))
            else:
                for line in block.split(b"\n"):
                    self._line(line, out)
                self._line(b"", out)
        if rest:
            self._lines(rest, out)
        return out

    def _lines(self, chunk: bytes, out: list[ServerSentEvent]) -> None:
        """Any chunk, line by line: CR, LF and CRLF ends, a CRLF cut between two chunks, a
        line continued from the last chunk."""
        start = 0
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                start = 1
        n = len(chunk)
        # Found once per chunk and again only when passed: most streams have no CR at all, and
        # searching the rest of a big read for one at every line would be quadratic.
        cr = chunk.find(b"\r", start)
        while start < n:
            if -1 < cr < start:
                cr = chunk.find(b"\r", start)
            lf = chunk.find(b"\n", start)
            if cr == -1 and lf == -1:
                self._buf += chunk[start:]
                self._check_size()
                break
            if cr == -1 or (lf != -1 and lf < cr):
                end, nxt = lf, lf + 1
            elif cr + 1 < n:
                end, nxt = cr, cr + 2 if chunk[cr + 1 : cr + 2] == b"\n" else cr + 1
            else:  # CR is the chunk's last byte: an LF may follow in the next chunk
                end, nxt = cr, cr + 1
                self._skip_lf = True
            if self._buf:
                self._buf += chunk[start:end]
                line = bytes(self._buf)
                self._buf.clear()
            else:
                line = chunk[start:end]
            self._line(line, out)
            start = nxt

    def close(self) -> list[ServerSentEvent]:
        """End of input: a last event without its blank line (synthetic.new's final
        ``data: [DONE]``, MetaFARS/codex-relay#31) is still delivered."""
        out: list[ServerSentEvent] = []
        if self._buf:
            line = bytes(self._buf)
            self._buf.clear()
            self._line(line, out)
        self._line(b"", out)
        return out

    def _check_size(self) -> None:
        if self._event_bytes + len(self._buf) > self._max:
            self._too_large()

    def _too_large(self) -> None:
        raise UpstreamProtocolError(
            f"upstream SSE event exceeds {self._max} bytes", code="upstream_event_too_large"
        )

    def _line(self, raw: bytes, out: list[ServerSentEvent]) -> None:
        if not raw:
            if self._data:
                out.append(_new_tuple(ServerSentEvent, (self._event, "\n".join(self._data))))
            self._event, self._data, self._event_bytes = None, [], 0
            return
        if raw[:1] == b":":
            return
        self._event_bytes += len(raw)
        if self._event_bytes > self._max:  # the line buffer is empty here
            self._check_size()
        if raw[:6] == b"data: ":  # the usual line, read without the general field split
            self._data.append(raw[6:].decode("utf-8", errors="replace"))
            return
        line = raw.decode("utf-8", errors="replace")
        field, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        # "id" and "retry" carry nothing for us; unknown fields are ignored per the spec.


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def encode_event(event: dict[str, Any]) -> bytes:
    """One Responses event as SSE. Codex dispatches on the JSON ``type``; the ``event:`` line
    repeats it for other clients (docs/codex-contract.md §7.1). Never raises for text the
    upstream sent: a lone surrogate becomes U+FFFD (``utf8``)."""
    return b"event: %s\ndata: %s\n\n" % (event["type"].encode(), utf8(_dumps(event)))


def utf8(text: str) -> bytes:
    """``text`` as UTF-8, each lone surrogate replaced by U+FFFD. JSON may carry one
    (``"\\ud83d"`` without its pair, RFC 8259 §8.2 calls such strings unpredictable) but UTF-8
    cannot; the replacement is what the decoder does with invalid UTF-8 bytes. Two surrogates
    that form a pair become the one character they encode."""
    try:
        return text.encode()
    except UnicodeEncodeError:  # rare: paid only when a surrogate is there
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode()


def encode_comment(text: str = "keepalive") -> bytes:
    """An SSE comment: ignored by every client, but it keeps idle timers from firing."""
    return b": %s\n\n" % text.encode()
