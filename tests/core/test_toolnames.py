"""Upstream tool names: valid, stable, shortened with a hash, collisions refused."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mitmrelay.core.errors import ClientRequestError
from mitmrelay.core.toolnames import NameTable, upstream_name

VALID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@pytest.mark.parametrize(
    ("name", "namespace", "expected"),
    [
        ("exec_command", None, "exec_command"),
        ("echo_tool", "mcp__demo", "mcp__demo__echo_tool"),
        ("spawn_agent", "multi_agent_v1", "multi_agent_v1__spawn_agent"),
        ("get.weather", None, "get_weather"),
    ],
)
def test_names(name, namespace, expected):
    assert upstream_name(name, namespace) == expected


def test_long_names_are_shortened_stably_and_stay_valid():
    long = "x" * 80
    a, b = upstream_name(long, "mcp__server"), upstream_name(long + "y", "mcp__server")
    assert VALID.match(a) and VALID.match(b) and a != b
    assert upstream_name(long, "mcp__server") == a


def test_collisions_are_client_errors():
    table = NameTable()
    table.add("a.b")
    with pytest.raises(ClientRequestError, match="both become"):
        table.add("a_b")
    assert table.add("a.b") == "a_b"  # the same tool twice is fine


# Property: whatever the client names its tools, the upstream name is valid and stable, and two
# different tools never silently share one (NameTable raises instead).
names = st.text(min_size=1, max_size=90)
namespaces = st.none() | st.text(min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(names, namespaces), max_size=8))
def test_any_names_are_valid_stable_and_never_silently_merged(tools):
    table = NameTable()
    owners: dict[str, tuple[str, str | None]] = {}
    for name, namespace in tools:
        flat = upstream_name(name, namespace)
        assert VALID.match(flat)
        assert upstream_name(name, namespace) == flat
        try:
            assert table.add(name, namespace) == flat
        except ClientRequestError:
            assert owners[flat] != (name, namespace)
            continue
        assert owners.setdefault(flat, (name, namespace)) == (name, namespace)


def test_shortening_respects_a_profile_limit():
    flat = upstream_name("tool_" * 20, "mcp__server", max_len=40)
    assert len(flat) == 40 and VALID.match(flat)
