import re

import pytest

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
