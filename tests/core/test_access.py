"""core/access.py: client keys (parsed from a variable, compared in constant time, refused with
OpenAI's 401) and which listeners other machines can reach."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mitmrelay.core.access import ClientKeys, beyond_loopback, invalid_api_key

KEYS = ClientKeys.parse(" sk-team-alice , sk-team-bob,,", variable="$RELAY_CLIENT_KEYS")


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        ("Bearer sk-team-alice", True),
        ("bearer sk-team-bob", True),
        ("BEARER   sk-team-bob  ", True),
        ("Bearer sk-team-carol", False),
        ("Bearer sk-team-alic", False),  # a prefix
        ("Bearer sk-team-alicex", False),
        ("Basic sk-team-alice", False),
        ("sk-team-alice", False),
        ("Bearer ", False),
        ("", False),
        (None, False),
    ],
)
def test_only_bearer_with_one_of_the_keys_is_allowed(header, allowed):
    assert KEYS.allows(header) is allowed


def test_the_keys_are_not_kept_only_their_digests():
    assert "sk-team-alice" not in repr(KEYS) and len(KEYS.digests) == 2


@pytest.mark.parametrize("text", ["", " ", ",", " , ,"])
def test_a_variable_without_keys_is_an_error_naming_it(text):
    with pytest.raises(ValueError, match=r"^\$RELAY_CLIENT_KEYS is set but holds no client key"):
        ClientKeys.parse(text, variable="$RELAY_CLIENT_KEYS")


@given(st.text(max_size=40), st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=4))
def test_allowed_exactly_when_the_token_is_one_of_the_keys(token, keys):
    keys = [k.strip() for k in keys if k.strip() and "," not in k]
    if not keys:
        return
    parsed = ClientKeys.parse(",".join(keys))
    assert parsed.allows(f"Bearer {token}") is (token.strip() in keys)


def test_the_refusal_is_openais_401_and_names_no_key():
    status, headers, body = invalid_api_key()
    error = json.loads(body)["error"]
    assert status == 401 and headers["content-type"] == "application/json"
    assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
    assert "sk-" not in error["message"]


@pytest.mark.parametrize(
    ("hosts", "exposed"),
    [
        (["127.0.0.1", "::1", "[::1]", "localhost", "127.5.0.1"], []),
        ([""], ["every interface"]),
        (["0.0.0.0", "::"], ["0.0.0.0", "::"]),
        (["192.168.1.5", "relay.example"], ["192.168.1.5", "relay.example"]),
    ],
)
def test_listeners_beyond_loopback(hosts, exposed):
    assert beyond_loopback(hosts) == exposed
