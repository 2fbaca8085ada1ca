"""The upstream request body: a translated request (a dict of JSON values) as the bytes sent.

``pydantic_core.to_json`` writes it in Rust, straight to bytes: no ``str`` of the whole body
first, as ``json.dumps(...).encode()`` makes (that str is as large as the body, and json.dumps
builds it from a list of pieces as large again before joining them), and 2-3x faster on a long
history (``bench/request_translate.py``). The JSON is the same value as json.dumps gives, written
compactly (no spaces after ``,`` and ``:``) and with non-ASCII text as UTF-8, which JSON's
interchange encoding is (RFC 8259 §8.1), instead of ``\\uXXXX`` escapes; NaN, which the request
models refuse anyway, would be written as json.dumps writes it.

One string pydantic cannot write: a lone surrogate (half of a UTF-16 pair, e.g. ``"\\ud83d"``
in the client's JSON, which JSON allows and Python keeps). UTF-8 has no encoding for it, so
to_json refuses the whole body; such a body is written by ``json.dumps``, which escapes it as
``\\ud83d`` as the client sent it, compactly too.

A large body (an image of tens of megabytes as a data: URL) is not written out whole. to_json
holds its output twice for a moment (Rust's buffer, then the Python bytes copied from it), and
the body would stay beside the client's own body and the parsed image string for the whole
exchange: four times the image at the peak. Instead, ``json_body`` given a size hint at least
``LARGE_BODY`` returns a ``JsonBody``: the request's JSON with each long string that needs no
escaping (base64 does not) left out, and those strings themselves, the very objects the request
holds. The link writes it to the socket a chunk at a time, as the socket drains
(link/connection.py), so what the body costs beyond the strings the request already holds is one
chunk in flight. ``bytes(body)`` writes it out whole, for whoever must show it (mitmweb's
upstream leg).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator, Mapping
from typing import Any

import pydantic_core

LARGE_BODY = 8 * 1024 * 1024  # a client body this large may hold strings worth leaving out
LONG_STRING = 256 * 1024  # a string this long is left out of a large body's JSON
CHUNK = 1024 * 1024  # what a large body's writer hands the socket at a time

# A character JSON escapes, or one outside printable ASCII (written as UTF-8 or escaped): a
# string with none is written as itself between quotes.
_NOT_PLAIN = re.compile(r"[^ !#-\[\]-~]")


class JsonBody:
    """A large body as its parts (module docstring): pieces of JSON as bytes, and the long
    plain strings between them, written out (with their quotes) chunk by chunk."""

    __slots__ = ("_parts", "_size")

    def __init__(self, parts: list[bytes | str]) -> None:
        self._parts = parts
        self._size = sum(len(p) + 2 if isinstance(p, str) else len(p) for p in parts)

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def __bytes__(self) -> bytes:
        out = bytearray()
        for chunk in self.chunks():
            out += chunk
        return bytes(out)

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        """The body in order, no piece longer than ``size`` bytes."""
        for part in self._parts:
            if isinstance(part, bytes):
                yield from _split(part, size)
                continue
            yield b'"'
            for start in range(0, len(part), size):
                yield part[start : start + size].encode("ascii")
            yield b'"'


type Body = bytes | JsonBody


def json_body(doc: Mapping[str, Any], size_hint: int = 0) -> Body:
    """``doc`` as the JSON of an upstream request; a ``JsonBody`` when ``size_hint`` (the
    client's body's size) is at least ``LARGE_BODY`` and ``doc`` holds long plain strings."""
    if size_hint >= LARGE_BODY:
        token = secrets.token_hex(16)  # a placeholder no client string holds
        long: list[str] = []
        shell = _without_long_strings(doc, token, long)
        if long:
            return _assembled(_dumps(shell), token, long)
    return _dumps(doc)


def _dumps(doc: Any) -> bytes:
    try:
        return pydantic_core.to_json(doc)
    except pydantic_core.PydanticSerializationError:
        # A lone surrogate somewhere (module docstring): ASCII escapes, whatever the strings.
        return json.dumps(doc, separators=(",", ":")).encode()


def _without_long_strings(node: Any, token: str, long: list[str]) -> Any:
    """``node`` with each long plain string replaced by ``token`` and its number in ``long``
    (containers on the way copied, shallowly; the rest shared)."""
    if isinstance(node, str):
        if len(node) >= LONG_STRING and _NOT_PLAIN.search(node) is None:
            long.append(node)
            return f"{token}{len(long) - 1:08d}"
        return node
    if isinstance(node, Mapping):
        items = {k: _without_long_strings(v, token, long) for k, v in node.items()}
        return items if any(items[k] is not v for k, v in node.items()) else node
    if isinstance(node, list | tuple):
        values = [_without_long_strings(v, token, long) for v in node]
        return values if any(a is not b for a, b in zip(values, node, strict=True)) else node
    return node


def _assembled(shell: bytes, token: str, long: list[str]) -> JsonBody:
    parts: list[bytes | str] = []
    at = 0
    for number, string in enumerate(long):
        marker = b'"%s%08d"' % (token.encode(), number)
        found = shell.index(marker, at)
        parts += [shell[at:found], string]
        at = found + len(marker)
    parts.append(shell[at:])
    return JsonBody(parts)


def _split(data: bytes, size: int) -> Iterator[bytes]:
    if len(data) <= size:
        if data:
            yield data
        return
    view = memoryview(data)
    for start in range(0, len(data), size):
        yield bytes(view[start : start + size])
