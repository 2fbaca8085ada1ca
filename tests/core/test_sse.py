"""The SSE decoder: any chunking gives the same events; bounded; spec details."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mitmrelay.core.errors import UpstreamProtocolError
from mitmrelay.core.sse import ServerSentEvent, SSEDecoder, encode_comment, encode_event

STREAM = (
    ": keepalive\r\n\r\n"
    'event: a\r\ndata: {"x": "é\u2028"}\r\n\r\n'
    "data: line1\ndata: line2\n\n"
    "id: 7\nretry: 100\ndata:no-space\r\r"
    "data: [DONE]"
).encode()
EXPECTED = [
    ServerSentEvent("a", '{"x": "é\u2028"}'),
    ServerSentEvent(None, "line1\nline2"),
    ServerSentEvent(None, "no-space"),
    ServerSentEvent(None, "[DONE]"),
]


# The same events with LF line ends only: whole reads take the block-splitting path.
STREAM_LF = (
    ": keepalive\n\n"
    'event: a\ndata: {"x": "é\u2028"}\n\n'
    "data: line1\ndata: line2\n\n"
    "id: 7\nretry: 100\ndata:no-space\n\n\n\n"
    "data: [DONE]"
).encode()


def decode(chunks) -> list[ServerSentEvent]:
    d = SSEDecoder()
    out = []
    for c in chunks:
        out += d.feed(c)
    return out + d.close()


def test_whole_and_byte_at_a_time():
    assert decode([STREAM]) == EXPECTED
    assert decode([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


@given(st.sampled_from([STREAM, STREAM_LF]), st.lists(st.integers(0, 10_000), max_size=20))
def test_any_chunking(stream, cuts):
    bounds = [0, *sorted(c % (len(stream) + 1) for c in cuts), len(stream)]
    assert decode([stream[a:b] for a, b in itertools.pairwise(bounds)]) == EXPECTED


def test_whole_lf_stream_and_byte_at_a_time():
    assert decode([STREAM_LF]) == EXPECTED
    assert decode([STREAM_LF[i : i + 1] for i in range(len(STREAM_LF))]) == EXPECTED


def test_event_size_is_bounded():
    d = SSEDecoder(max_event_bytes=1000)
    with pytest.raises(UpstreamProtocolError):
        for _ in range(100):
            d.feed(b"data: " + b"x" * 50)  # one line that never ends
    d = SSEDecoder(max_event_bytes=1000)
    with pytest.raises(UpstreamProtocolError):
        for _ in range(100):
            d.feed(b"data: " + b"x" * 50 + b"\n")  # many lines of one event
    with pytest.raises(UpstreamProtocolError):
        SSEDecoder(max_event_bytes=1000).feed(b"data: " + b"x" * 1000 + b"\n\n")  # one read
    assert SSEDecoder(max_event_bytes=1000).feed(b"data: " + b"x" * 994 + b"\n\n")


def test_encoder():
    assert encode_event({"type": "response.created", "n": "é"}) == (
        'event: response.created\ndata: {"type":"response.created","n":"é"}\n\n'.encode()
    )
    assert encode_comment() == b": keepalive\n\n"


def test_one_space_after_the_colon_is_dropped_and_no_more():
    events = decode([b"data: \n\ndata:  two\n\ndata:\xff x\n\n"])
    assert [e.data for e in events] == ["", " two", "\ufffd x"]


def test_lines_end_the_same_in_a_big_read_with_mixed_endings():
    """One read holding many LF lines and, later, CR and CRLF lines (the CR search is done once
    per read and again only when passed)."""
    lf = b"".join(b"data: %d\n\n" % i for i in range(200))
    mixed = lf + b"data: cr\r\rdata: crlf\r\n\r\n" + lf
    assert [e.data for e in decode([mixed])] == [
        *(str(i) for i in range(200)),
        "cr",
        "crlf",
        *(str(i) for i in range(200)),
    ]


def test_a_lone_surrogate_is_encoded_as_the_replacement_character():
    """UTF-8 cannot carry one (a JSON ``\\ud83d`` escape without its pair decodes to it): the
    encoder replaces it, as the decoder replaces invalid UTF-8, instead of raising."""
    assert encode_event({"type": "t", "text": "a\ud83db"}) == (
        'event: t\ndata: {"type":"t","text":"a\ufffdb"}\n\n'.encode()
    )
    pair = "\ud83d\ude00"  # two code points that make one character together
    assert encode_event({"type": "t", "text": pair}) == (
        'event: t\ndata: {"type":"t","text":"😀"}\n\n'.encode()
    )
