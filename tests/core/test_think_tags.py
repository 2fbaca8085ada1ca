"""ThinkTagSplitter: ``<think>…</think>`` split out of content the same way in any chunking,
held against a whole-text reference."""

from __future__ import annotations

import itertools
import re

from hypothesis import example, given
from hypothesis import strategies as st

from mitmrelay.core.think_tags import ThinkTagSplitter


def reference(text: str) -> list[tuple[str, str]]:
    """Whole text at once: alternate text / reasoning at each complete tag."""
    out, inside = [], False
    for piece in re.split(r"(<think>|</think>)", text):
        if piece == ("</think>" if inside else "<think>"):
            inside = not inside
        elif piece:
            out.append(("reasoning" if inside else "text", piece))
    return merged(out)


def merged(pieces: list[tuple[str, str]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for kind, text in pieces:
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + text)
        else:
            out.append((kind, text))
    return out


def split(text: str, cuts: list[int]) -> list[tuple[str, str]]:
    splitter = ThinkTagSplitter()
    bounds = [0, *sorted(c % (len(text) + 1) for c in cuts), len(text)]
    out = []
    for a, b in itertools.pairwise(bounds):
        out += splitter.feed(text[a:b])
    return merged(out + splitter.flush())


ALPHABET = st.sampled_from(["<think>", "</think>", "<", "</", "<thi", "nk>", ">", "a", "é", " "])


@given(st.lists(ALPHABET, max_size=30).map("".join), st.lists(st.integers(0, 500), max_size=20))
@example("<think>deep thought</think>visible <b>", list(range(40)))
@example("<think>never closed <thi", [3, 8])
def test_any_chunking_splits_as_the_whole_text(text, cuts):
    assert split(text, cuts) == reference(text)


def test_pieces_without_a_tag_pass_in_one_piece():
    splitter = ThinkTagSplitter()
    assert splitter.feed("plain") == [("text", "plain")]
    assert splitter.feed("") == []
    assert splitter.feed("<think>x") == [("reasoning", "x")]
    assert splitter.feed("more") == [("reasoning", "more")]
    assert splitter.feed("</th") == []  # a possible tag is held back
    assert splitter.feed("ink>out") == [("text", "out")]


def test_an_unfinished_tag_at_the_end_is_what_it_was_inside():
    splitter = ThinkTagSplitter()
    assert splitter.feed("<think>a</thi") == [("reasoning", "a")]
    assert splitter.flush() == [("reasoning", "</thi")]
    assert splitter.flush() == []
