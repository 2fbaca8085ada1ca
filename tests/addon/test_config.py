"""Options into one frozen RelayConfig, and the routes file re-read when it changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mitmrelay.config import ConfigError, RoutesFile, load_config, start_line

ENV = {"K1": "sk-one", "K2": "sk-two", "TEAM_KEYS": " k1, k2 ", "EMPTY_KEYS": " , "}
ROUTES = """
[providers.one]
base_url = "http://127.0.0.1:1/v1"
api_key_env = "K1"

[models.a]
provider = "one"
"""
DEFAULTS = {
    "relay_routes": "",
    "relay_upstream": "",
    "relay_api_key_env": "CODEX_RELAY_API_KEY",
    "relay_model": "",
    "relay_model_map": [],
    "relay_profile": "",
    "relay_hosts": ["api.openai.com/v1"],
    "relay_reasoning": "summary",
    "relay_timeout": "300",
    "relay_keepalive": "10",
    "relay_retry_wait": "2",
    "relay_state": "memory",
    "relay_history_entries": "10",
    "relay_history_mb": "1",
    "relay_history_ttl": "60",
    "relay_state_deadline_ms": "200",
    "relay_client_keys_env": "",
    "confdir": "~/.mitmproxy",
}


def config(**options):
    return load_config({**DEFAULTS, **options}, ENV)


def test_every_option_is_read_once_into_a_frozen_object():
    c = config(relay_upstream="https://api.deepseek.com/v1", relay_retry_wait="0")
    assert c.routes is not None and c.routes_file is None
    assert (c.timeout_s, c.keepalive_s, c.retry_wait_s) == (300.0, 10.0, 0.0)
    assert c.state.limits.max_bytes == 1024 * 1024 and c.state.confdir == Path.home() / ".mitmproxy"
    assert c.rules[0].host == "api.openai.com"
    with pytest.raises(AttributeError):
        c.timeout_s = 1  # type: ignore[misc]


def test_number_options_are_strings_parsed_here_decimals_allowed_for_times():
    c = config(relay_timeout=" 1.5 ", relay_keepalive="0.25", relay_state_deadline_ms="50")
    assert (c.timeout_s, c.keepalive_s, c.state.deadline_s) == (1.5, 0.25, 0.05)
    assert config().state.deadline_s == 0.2


def test_client_keys_are_read_from_the_variable_named():
    c = config(relay_client_keys_env="TEAM_KEYS")
    assert c.client_keys is not None and c.client_keys_env == "TEAM_KEYS"
    assert c.client_keys.allows("Bearer k2") and not c.client_keys.allows("Bearer k3")
    assert config().client_keys is None


def test_nothing_to_relay_to_is_no_error_here():
    assert config().routes is None  # the start line says so (addon.running)


def test_a_routes_file_wins_and_the_overridden_options_are_named(tmp_path):
    path = tmp_path / "routes.toml"
    path.write_text(ROUTES)
    c = config(
        relay_routes=str(path),
        relay_upstream="https://x/v1",
        relay_model_map=["a=b"],
        relay_api_key_env="OTHER",
    )
    assert c.routes is not None and list(c.routes.providers) == ["one"]
    assert c.routes_file is not None and c.routes_file.table is c.routes
    assert c.ignored == ("relay_upstream", "relay_model_map", "relay_api_key_env")
    assert config(relay_routes=str(path)).ignored == ()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"relay_reasoning": "loud"}, "relay_reasoning must be one of"),
        ({"relay_keepalive": "0"}, "relay_keepalive must be a positive"),
        ({"relay_timeout": "5s"}, "relay_timeout must be a positive number of seconds, got '5s'"),
        ({"relay_timeout": "inf"}, "relay_timeout must be a positive number of seconds"),
        ({"relay_retry_wait": "-1"}, "relay_retry_wait must be 0"),
        ({"relay_hosts": ["/x"]}, "relay_hosts: "),
        ({"relay_history_mb": "0"}, "relay_history_mb must be a positive whole number"),
        ({"relay_history_entries": "1e3"}, "relay_history_entries must be a positive whole"),
        ({"relay_state_deadline_ms": "-5"}, "relay_state_deadline_ms must be a positive"),
        (
            {"relay_client_keys_env": "NO_SUCH_KEYS_VAR"},
            r"names \$NO_SUCH_KEYS_VAR, which is not set",
        ),
        ({"relay_client_keys_env": "EMPTY_KEYS"}, r"\$EMPTY_KEYS is set but holds no client key"),
        ({"relay_profile": "nope"}, "relay_profile: 'nope' is unknown"),
        ({"relay_model_map": ["a:b"]}, "relay_model_map: entries are client=upstream"),
        ({"relay_upstream": "api.deepseek.com"}, r"relay_upstream: must be an http\(s\) URL"),
        ({"relay_routes": "/nonexistent.toml"}, "/nonexistent.toml: cannot be read"),
    ],
)
def test_bad_options_are_one_line(options, message):
    with pytest.raises(ConfigError, match=message) as caught:
        config(**options)
    assert "\n" not in str(caught.value)


def test_a_provider_on_the_responses_wire_is_served(tmp_path):
    path = tmp_path / "routes.toml"
    path.write_text(ROUTES.replace('api_key_env = "K1"', 'api_key_env = "K1"\nwire = "responses"'))
    table = config(relay_routes=str(path)).routes_file.table
    assert table.providers["one"].wire == "responses"


def touch(path: Path, text: str, stamp: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(stamp, stamp))  # a distinct mtime whatever the clock's resolution


def test_the_routes_file_is_read_again_only_when_it_changes(tmp_path):
    path = tmp_path / "routes.toml"
    touch(path, ROUTES, 1)
    reads = []
    watched = RoutesFile(path, ENV, stat=lambda p: (reads.append(p), os.stat(p))[1])
    first = watched.table
    assert watched.check() == (None, None)  # unchanged: nothing read, nothing said
    touch(path, ROUTES.replace("[models.a]", "[models.b]"), 2)
    table, why = watched.check()
    assert why is None and table is watched.table and list(table.models) == ["b"]
    assert first is not table and len(reads) == 3


def test_a_broken_change_keeps_the_last_good_table_and_is_said_once(tmp_path):
    path = tmp_path / "routes.toml"
    touch(path, ROUTES, 1)
    watched = RoutesFile(path, ENV)
    good = watched.table
    touch(path, ROUTES + '\n[models.c]\nprovider = "two"\n', 2)
    table, why = watched.check()
    assert table is None and 'unknown provider "two"' in why and why.startswith(str(path))
    assert watched.check() == (None, None)  # the same broken file: not said again
    assert watched.table is good
    touch(path, ROUTES + '\n[models.c]\nprovider = "one"\napi_key = "sk-x"\n', 3)
    assert "api_key: unknown key" in watched.check()[1]
    os.remove(path)
    table, why = watched.check()
    assert table is None and "cannot be read" in why
    assert watched.check() == (None, None)  # still gone: said once
    touch(path, ROUTES, 4)
    table, why = watched.check()
    assert why is None and table is not None and table is watched.table


def test_a_change_to_a_key_variable_that_is_unset_is_refused(tmp_path):
    path = tmp_path / "routes.toml"
    touch(path, ROUTES, 1)
    watched = RoutesFile(path, ENV)
    touch(path, ROUTES.replace('"K1"', '"K_UNSET"'), 2)
    table, why = watched.check()
    assert table is None and "$K_UNSET is not set" in why
    assert "sk-one" not in why


def test_an_unreadable_routes_file_after_a_change_is_said(tmp_path):
    path = tmp_path / "routes.toml"
    touch(path, ROUTES, 1)
    watched = RoutesFile(path, ENV)
    touch(path, ROUTES, 2)

    def unreadable(self):
        raise PermissionError(13, "Permission denied")

    watched.path = type("P", (type(path),), {"read_bytes": unreadable})(path)
    table, why = watched.check()
    assert table is None and why.endswith("cannot be read (Permission denied)")


def test_the_start_line_names_every_route_and_key_variable_never_a_key(tmp_path):
    path = tmp_path / "routes.toml"
    path.write_text(
        ROUTES
        + '[providers.local]\nbase_url = "http://127.0.0.1:2/v1"\n'
        + '[models."q/*"]\nprovider = "local"\n'
        + '[models.b]\nprovider = "one"\nupstream_model = "bee"\nfallbacks = ["a"]\n'
    )
    line = start_line(config(relay_routes=str(path), relay_model="x"))
    assert line == (
        f"routes from {path}: providers one = http://127.0.0.1:1/v1 (profile generic, key $K1 "
        "set); local = http://127.0.0.1:2/v1 (profile generic, no key); models a -> one:a, "
        "q/* -> local:(as asked), b -> one:bee (then a); relay_model ignored (relay_routes "
        "is set)"
    )
    assert "sk-one" not in line


def test_the_start_line_of_the_single_upstream_options_says_a_missing_key():
    c = load_config(
        {**DEFAULTS, "relay_upstream": "https://api.deepseek.com/v1", "relay_model": "m"}, {}
    )
    assert start_line(c) == (
        "routes from the relay_upstream options: providers api.deepseek.com = "
        "https://api.deepseek.com/v1 (profile deepseek, key $CODEX_RELAY_API_KEY MISSING); "
        "models * -> api.deepseek.com:m"
    )
