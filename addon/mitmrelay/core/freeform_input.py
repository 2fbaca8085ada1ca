"""Decode a freeform tool's raw input while its JSON-wrapped arguments are still streaming.

Upstream, a freeform (custom) tool such as apply_patch is a function with one string parameter
(``{"input": "*** Begin Patch\\n…"}``). Codex wants the raw text back in a ``custom_tool_call``
(codex-contract.md §6), and the live view wants it as it is written. This decoder finds the
string value of the expected parameter in the argument prefix received so far and returns the
newly decoded characters; anything it cannot decode safely (a cut escape sequence, a lone high
surrogate) waits for the next piece. The final input is always taken from a full JSON parse;
the caller reconciles the two.
"""

from __future__ import annotations

import json
import re

# The longest prefix of a JSON string body that ends on a whole character or escape.
_SAFE_BODY = re.compile(r'(?:[^"\\]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*')
_HIGH_SURROGATE_TAIL = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}$")


class FreeformInputDecoder:
    def __init__(self, param: str) -> None:
        self._opening = re.compile(rf'\s*\{{\s*"{re.escape(param)}"\s*:\s*"')
        self._start = -1  # index in the arguments where the string body starts
        self._pos = 0  # how far the body has been decoded
        self._closed = False
        self.failed = False  # the arguments do not have the expected shape

    def feed(self, arguments: str) -> str:
        """``arguments`` is everything received so far; returns the new decoded characters."""
        if self.failed or self._closed:
            return ""
        if self._start < 0:
            m = self._opening.match(arguments)
            if m is None:
                # Not (yet) the expected opening; give up once it cannot become one.
                probe = arguments.lstrip()
                if len(probe) > 32 + len(self._opening.pattern) or (probe and probe[0] != "{"):
                    self.failed = True
                return ""
            self._start = self._pos = m.end()
        m = _SAFE_BODY.match(arguments, self._pos)
        end = m.end() if m else self._pos
        body = arguments[self._pos : end]
        if end < len(arguments) and arguments[end] == '"':
            self._closed = True
        elif _HIGH_SURROGATE_TAIL.search(body):
            body, end = body[:-6], end - 6
        if not body:
            return ""
        self._pos = end
        return json.loads('"' + body + '"')
