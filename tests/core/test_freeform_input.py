"""FreeformInputDecoder: a freeform call's raw input, decoded live from JSON-wrapped arguments
in any chunking; whatever it cannot decode safely waits, and what is not JSON stops it."""

from __future__ import annotations

import itertools
import json

from hypothesis import example, given
from hypothesis import strategies as st

from mitmrelay.core.freeform_input import FreeformInputDecoder

PATCH = '*** Begin Patch\n*** Add File: a.txt\n+héllo "q" \\ 😀 \u2028\t\x01\n*** End Patch\n'


def decode(arguments: str, cuts: list[int], param: str = "input") -> tuple[str, bool]:
    decoder = FreeformInputDecoder(param)
    bounds = [0, *sorted(c % (len(arguments) + 1) for c in cuts), len(arguments)]
    pieces = [decoder.feed(arguments[a:b]) for a, b in itertools.pairwise(bounds)]
    return "".join(pieces), decoder.failed


# Text with what makes escapes hard: backslashes, quotes, surrogate pairs, control characters,
# and the letters of a surrogate escape written as plain text.
TRICKY = st.lists(
    st.sampled_from(["\\", '"', "😀", "\n", "\x01", "\\ud83d", "ud83d", "u", "é"])
    | st.text(max_size=3)
).map("".join)


@given(TRICKY, st.lists(st.integers(0, 10_000), max_size=30), st.booleans())
@example(PATCH, list(range(1000)), False)  # one character at a time
@example("😀", [11, 12, 13, 14, 15, 16, 17], False)  # a surrogate pair cut everywhere
def test_any_chunking_decodes_exactly_the_input(text, cuts, ascii_only):
    arguments = json.dumps({"input": text}, ensure_ascii=ascii_only)
    assert decode(arguments, cuts) == (text, False)


def test_nothing_is_returned_before_it_can_be_decoded_whole():
    decoder = FreeformInputDecoder("input")
    assert decoder.feed('{"inp') == ""
    assert decoder.feed('ut": "a\\') == "a"  # a cut escape waits
    assert decoder.feed("u00") == ""
    assert decoder.feed("e9\\ud83d") == "é"  # a high surrogate waits for its pair
    assert decoder.feed('\\ude00"}') == "😀"
    assert decoder.feed("more") == ""  # the string closed: nothing after it is input


def test_spaces_around_the_opening_are_allowed():
    assert decode(' {\n "input" :  "x"}', [3, 9]) == ("x", False)


def test_another_shape_gives_up_without_output():
    assert decode('{"patch": "' + "x" * 100 + '"}', [5, 50]) == ("", True)
    assert decode('"a bare string"', []) == ("", True)


def test_a_raw_control_character_or_bad_escape_stops_decoding():
    """Not JSON: the caller's final parse fails the call; the decoder must not raise."""
    assert decode('{"input": "ab\ncd"}', []) == ("", True)
    assert decode('{"input": "ab\\xcd"}', [13]) == ("ab", True)


def test_only_undecoded_characters_are_kept():
    """Memory and time stay in proportion to the input, whatever the piece sizes."""
    decoder = FreeformInputDecoder("input")
    decoder.feed('{"input": "')
    for _ in range(5_000):
        assert decoder.feed("abc\\u00") == "abc"
        assert decoder._pending == "\\u00"
        assert decoder.feed("e9") == "é"
        assert decoder._pending == ""


def test_an_escaped_backslash_before_u_d83d_is_text_not_a_surrogate():
    """``\\\\ud83d`` in JSON is a backslash and five letters: nothing to hold back."""
    arguments = json.dumps({"input": "a\\ud83d more"})
    cut = arguments.index("d83d") + 4
    assert decode(arguments, [cut]) == ("a\\ud83d more", False)
    decoder = FreeformInputDecoder("input")
    assert decoder.feed(arguments[:cut]) == "a\\ud83d"
