"""The upstream request body (core/body.py): the same JSON value as json.dumps wrote, as bytes
at once or, for a large client body, as parts whose chunks make exactly those bytes."""

from __future__ import annotations

import json
from typing import Any

import pydantic_core
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mitmrelay.core import body as body_module
from mitmrelay.core.body import LARGE_BODY, JsonBody, json_body

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), json_values, max_size=6))
@settings(max_examples=300, deadline=None)
def test_any_request_is_the_json_value_json_dumps_wrote(doc: dict[str, Any]):
    out = json_body(doc)
    assert isinstance(out, bytes)
    assert json.loads(out) == json.loads(json.dumps(doc))


def test_non_ascii_goes_as_utf8_and_controls_escaped():
    doc = {"content": "modèle 😀 \u2028", "c": '\x00\n"'}
    out = json_body(doc)
    assert out == '{"content":"modèle 😀 \u2028","c":"\\u0000\\n\\""}'.encode()
    assert json.loads(out) == doc


def test_a_lone_surrogate_is_escaped_as_the_client_sent_it():
    doc = {"messages": [{"content": "half \ud83d of a pair", "x": "é"}]}
    with pytest.raises(pydantic_core.PydanticSerializationError):
        pydantic_core.to_json(doc)  # why the fallback exists
    out = json_body(doc)
    assert out == b'{"messages":[{"content":"half \\ud83d of a pair","x":"\\u00e9"}]}'
    assert json.loads(out) == doc


def test_a_small_client_body_is_bytes_whatever_its_strings():
    doc = {"url": "data:image/png;base64," + "A" * (body_module.LONG_STRING * 2)}
    assert isinstance(json_body(doc, LARGE_BODY - 1), bytes)


def image_request(*strings: str) -> dict[str, Any]:
    return {
        "model": "m",
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": s}}]}
            for s in strings
        ]
        + [{"role": "user", "content": "after"}],
        "stream": True,
    }


def test_a_large_body_leaves_its_long_plain_strings_out_and_writes_the_same_bytes(monkeypatch):
    monkeypatch.setattr(body_module, "LONG_STRING", 64)
    plain = "data:image/png;base64," + "QUJD+/=" * 40
    escaped = 'needs "escaping" ' * 10  # long, but not plain: written inline by pydantic
    doc = image_request(plain, escaped, plain)
    out = json_body(doc, LARGE_BODY)
    assert isinstance(out, JsonBody)
    assert out._parts.count(plain) == 2 and escaped not in out._parts
    assert all(p is plain for p in out._parts if isinstance(p, str))  # the request's own string
    whole = pydantic_core.to_json(doc)
    assert bytes(out) == whole and len(out) == len(whole)
    chunks = list(out.chunks(size=50))
    assert b"".join(chunks) == whole and max(map(len, chunks)) <= 50
    assert out and not JsonBody([])


def test_a_large_body_with_a_lone_surrogate_elsewhere_is_still_the_same_json(monkeypatch):
    monkeypatch.setattr(body_module, "LONG_STRING", 64)
    plain = "A" * 100
    doc = {"a": plain, "b": "x\udc00y"}
    out = json_body(doc, LARGE_BODY)
    assert isinstance(out, JsonBody)
    assert bytes(out) == b'{"a":"' + plain.encode() + b'","b":"x\\udc00y"}'
