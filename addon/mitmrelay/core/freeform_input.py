"""Decode a freeform tool's raw input while its JSON-wrapped arguments are still streaming.

Upstream, a freeform (custom) tool such as apply_patch is a function with one string parameter
(``{"input": "*** Begin Patch\\n…"}``). Codex wants the raw text back in a ``custom_tool_call``
(docs/codex-contract.md §6), and the live view wants it as it is written. This decoder finds the
string value of the expected parameter in the arguments as they arrive and returns the newly
decoded characters; anything it cannot decode safely (a cut escape sequence, a lone high
surrogate) waits for the next piece. The final input is always taken from a full JSON parse;
the caller reconciles the two.

It keeps only what it has not decoded yet (a few characters once the string has begun), so a
long input costs time and memory in proportion to its length, whatever the piece sizes.
"""

from __future__ import annotations

import re
from json.decoder import scanstring  # type: ignore[attr-defined]

# The longest prefix of a JSON string body that ends on a whole character or escape. A raw
# control character is not one: JSON strings escape them (RFC 8259 §7).
_SAFE_BODY = re.compile(r'(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*')
# What may follow the safe body and still become an escape with more characters.
_ESCAPE_START = re.compile(r"\\(?:u[0-9a-fA-F]{0,3})?")
_HIGH_SURROGATE_TAIL = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}")


class FreeformInputDecoder:
    def __init__(self, param: str) -> None:
        self._opening = re.compile(rf'\s*\{{\s*"{re.escape(param)}"\s*:\s*"')
        # Before the opening matched: everything so far (bounded by the give-up rule below).
        # After: the part of the string body not decoded yet.
        self._pending = ""
        self._started = False
        self._closed = False
        self.failed = False  # the arguments do not have the expected shape

    def feed(self, piece: str) -> str:
        """``piece`` is the arguments' next characters; returns the new decoded characters."""
        if self.failed or self._closed:
            return ""
        pending = self._pending + piece
        if not self._started:
            m = self._opening.match(pending)
            if m is None:
                # Not (yet) the expected opening; give up once it cannot become one.
                probe = pending.lstrip()
                if len(probe) > 32 + len(self._opening.pattern) or (probe and probe[0] != "{"):
                    self.failed = True
                self._pending = pending
                return ""
            self._started = True
            pending = pending[m.end() :]
        end = _SAFE_BODY.match(pending).end()  # type: ignore[union-attr]  # matches "" at least
        body = pending[:end]
        if end < len(pending) and pending[end] == '"':
            self._closed = True
        elif end < len(pending) and not _ESCAPE_START.fullmatch(pending, end):
            # A raw control character or a bad escape: the arguments are not JSON, and the
            # final parse will say so. Nothing more is decoded.
            self.failed = True
            self._pending = ""
            return ""
        elif _ends_in_high_surrogate(body):
            body, end = body[:-6], end - 6
        self._pending = pending[end:]
        if not body:
            return ""
        return scanstring(body + '"', 0)[0]  # body is whole escapes and characters


def _ends_in_high_surrogate(body: str) -> bool:
    """Whether ``body`` ends in a ``\\uD800``-``\\uDBFF`` escape: the first half of a pair
    that must be decoded together. Its backslash must start an escape, not end an escaped
    backslash (``\\\\ud83d`` is a backslash and five letters)."""
    start = len(body) - 6
    if start < 0 or _HIGH_SURROGATE_TAIL.match(body, start) is None:
        return False
    backslashes = start - len(body[:start].rstrip("\\"))
    return backslashes % 2 == 0
