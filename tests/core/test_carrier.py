"""The sealed reasoning carrier: round trip, and every blob it must refuse quietly."""

from __future__ import annotations

import base64
import itertools
import os
import stat

import pytest

from mitmrelay.core.carrier import PREFIX, SealedReasoningCarrier
from mitmrelay.core.reasoning import ReasoningPayload
from mitmrelay.keyfile import KEY_FILE, load_or_create_key

KEY = bytes(range(32))
PAYLOAD = ReasoningPayload(
    text="I should run ls — carefully.",
    details=({"type": "reasoning.encrypted", "data": "opaque=="},),
    signatures={"call_1": "sig/+=="},
    call_ids=("call_1", "call_2"),
)


def carrier(key: bytes = KEY) -> SealedReasoningCarrier:
    counter = itertools.count()
    return SealedReasoningCarrier(key, lambda n: next(counter).to_bytes(n, "big"))


def test_round_trip_and_versioned_text_blob():
    blob = carrier().seal(PAYLOAD)
    assert blob.startswith(PREFIX) and blob.isascii()
    assert "carefully" not in blob  # encrypted, not encoded
    assert carrier().open(blob) == PAYLOAD


# Sealed by the carrier before it encoded with surrogatepass (KEY, the counting nonces): the
# plaintext of every string without a lone surrogate is the same bytes, so these still open.
OLD_BLOB = (
    "mr1.AAAAAAAAAAAAAAAAdZ7B_I8Oyp17wMZAdEix66ctdj9boYKvFL7Q4reaOyMiM5-SCN6aYhH5Ko7juhA-zCV7xAsU"
    "J9Y_2FZILU4rioodR3rltDTA_6u3pmJFaqN_ekb4Ud0gfAmEaR7SfaKS7SpsZE0zgPYoW1wW8E3dcgeAb0mVUDP_8ih8"
    "2AdFV-4hj7SgyUpuFXA56tkd2hfNDC2rM95fBYVPYKo7HXQ"
)
OLD_COMPACTION_BLOB = "mrc1.AAAAAAAAAAAAAAAAXH8crcBBQBQyiMVGOM4RDfInOT1NoYKzEwKaihQoFVXs4x3dpLJWq9s"


def test_blobs_sealed_before_surrogatepass_open_unchanged_and_seal_the_same():
    assert carrier().open(OLD_BLOB) == PAYLOAD
    assert carrier().seal(PAYLOAD) == OLD_BLOB
    summary = "Résumé: ls — done ✓"
    assert carrier().open_compaction(OLD_COMPACTION_BLOB) == summary
    assert carrier().seal_compaction(summary) == OLD_COMPACTION_BLOB


def test_lone_surrogates_from_the_upstream_round_trip():
    """JSON lets an upstream send half a surrogate pair (valid JSON, not UTF-8); sealing must
    not raise on it (it failed the stream as relay_internal_error) and the text that comes back
    is exactly what was sealed, so the upstream gets its own reasoning back."""
    payload = ReasoningPayload(
        text="a\ud83d b \ude00 c \U0001f600",
        details=({"type": "reasoning.text", "text": "\udfff"},),
        signatures={"call_1": "sig\ud800"},
        call_ids=("call_1",),
    )
    c = carrier()
    blob = c.seal(payload)
    assert blob.isascii()
    assert c.open(blob) == payload
    assert c.open_compaction(c.seal_compaction("sum\ud83dmary")) == "sum\ud83dmary"


def test_nonces_differ_per_seal():
    c = carrier()
    assert c.seal(PAYLOAD) != c.seal(PAYLOAD)


@pytest.mark.parametrize(
    "blob",
    [
        "gAAAAA-FAKE-ENCRYPTED-REASONING-BLOB-0123456789",  # OpenAI's own (fixture 02)
        PREFIX,
        PREFIX + "!!!not base64!!!",
        PREFIX + base64.urlsafe_b64encode(b"short").decode(),
        "mr2." + "A" * 40,
    ],
)
def test_foreign_or_malformed_blobs_are_ignored(blob):
    assert carrier().open(blob) is None


def test_tampered_and_other_key_blobs_are_ignored():
    blob = carrier().seal(PAYLOAD)
    flipped = blob[:-3] + ("A" if blob[-3] != "A" else "B") + blob[-2:]
    assert carrier().open(flipped) is None
    assert carrier(bytes(32)).open(blob) is None


def test_key_length_is_checked():
    with pytest.raises(ValueError):
        SealedReasoningCarrier(b"short", os.urandom)


def test_key_file_is_created_once_private_and_reused(tmp_path):
    key = load_or_create_key(tmp_path / "conf")
    path = tmp_path / "conf" / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(tmp_path / "conf") == key and len(key) == 32


def test_a_corrupt_key_file_is_an_error_not_a_new_key(tmp_path):
    (tmp_path / KEY_FILE).write_text("nope")
    with pytest.raises(ValueError, match="does not hold"):
        load_or_create_key(tmp_path)


@pytest.mark.parametrize("length", range(0, 40))
def test_every_length_round_trips_for_both_blob_kinds(length):
    # Regression: padding was once computed over the prefixed blob, which broke "mrc1." blobs
    # whose body length was not a multiple of 4 after the prefix.
    c = carrier()
    text = "s" * length
    assert c.open_compaction(c.seal_compaction(text or " ")) == (text or " ")
    assert c.open(c.seal(ReasoningPayload(text=text))) == ReasoningPayload(text=text)
