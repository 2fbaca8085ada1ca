"""The relay's configuration: every option read once, when it is set, into one frozen object.

The addon hands ``load_config`` the values of its options (a plain mapping: no mitmproxy here)
and the environment; what comes back is a ``RelayConfig`` the hooks only read, so no request
parses an option. Every problem is one ``ConfigError`` line naming the option (or the routes
file, its table and key): the addon logs it and refuses to start, or, once running, refuses
the change and keeps the previous configuration (docs/mitmproxy-notes.md §7.1).

The routes file (``relay_routes``) is the one input that changes under a running relay:
``RoutesFile`` re-reads it when its modification time, size or inode changes. A valid change
applies to the requests that follow; an invalid one keeps the table in use and is reported
once (the same broken file is not re-parsed, nor reported, until it changes again).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core.access import ClientKeys
from .core.bounds import Limits
from .core.profiles import PROFILES
from .core.routes import (
    RoutesError,
    RouteTable,
    named_profile,
    parse_model_map,
    parse_routes,
    single_upstream_table,
)
from .core.routing import DEFAULT_HOSTS, InterceptRule
from .state.offloop import DEFAULT_DEADLINE_S

REASONING_MODES = ("summary", "raw", "hidden")
# The single-upstream options a routes file overrides (the start line names those set).
SINGLE_UPSTREAM_OPTIONS = (
    "relay_upstream",
    "relay_model",
    "relay_model_map",
    "relay_profile",
    "relay_api_key_env",
)
DEFAULT_KEY_ENV = "CODEX_RELAY_API_KEY"  # relay_api_key_env's default


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One mitmproxy option of the relay: ``loader.add_option(name, typespec, default, help)``."""

    name: str
    typespec: Any
    default: Any
    help: str


# Every relay option, declared once (the addon's ``load`` adds them in this order).
OPTION_SPECS = (
    OptionSpec(
        "relay_routes",
        str,
        "",
        "Path of a routes file (TOML): providers, model names and fallbacks (README: The "
        "routes file). Set, it overrides relay_upstream, relay_model, relay_model_map, "
        "relay_profile and relay_api_key_env.",
    ),
    OptionSpec(
        "relay_upstream",
        str,
        os.environ.get("CODEX_RELAY_UPSTREAM", ""),
        "Chat Completions base URL of the one upstream, e.g. https://api.deepseek.com/v1 "
        "(default: $CODEX_RELAY_UPSTREAM); shorthand for a one-provider routes file.",
    ),
    OptionSpec(
        "relay_api_key_env",
        str,
        DEFAULT_KEY_ENV,
        "Name of the environment variable holding relay_upstream's API key. The key itself is "
        "never an option, so it never appears on a command line or in a saved config.",
    ),
    OptionSpec(
        "relay_model",
        str,
        "",
        "Upstream model for requests whose model is not mapped by relay_model_map (an "
        "unmodified Codex sends gpt-5.5). Empty: the client's model is sent as is.",
    ),
    OptionSpec(
        "relay_model_map",
        Sequence[str],
        [],
        "Model mappings client=upstream, e.g. gpt-5.5=deepseek-chat.",
    ),
    OptionSpec(
        "relay_profile",
        str,
        "",
        f"relay_upstream's provider profile ({', '.join(sorted(PROFILES))}); empty: guessed "
        "from its host, else generic.",
    ),
    OptionSpec(
        "relay_hosts",
        Sequence[str],
        list(DEFAULT_HOSTS),
        "In proxy modes, host/path prefixes whose /responses endpoint is relayed.",
    ),
    OptionSpec(
        "relay_reasoning",
        str,
        "summary",
        "How upstream reasoning is shown to Codex: summary | raw | hidden.",
    ),
    OptionSpec(
        "relay_timeout",
        str,
        "300",
        "Seconds the upstream may stay silent (connecting, before its headers, or between "
        "stream chunks) before the relay gives up on it; Codex then retries.",
    ),
    OptionSpec(
        "relay_keepalive",
        str,
        "10",
        "Seconds of upstream silence after which the client is sent a sign of life "
        "(response.in_progress), so its idle timeout does not fire while a model thinks.",
    ),
    OptionSpec(
        "relay_retry_wait",
        str,
        "2",
        "Seconds: an upstream 429 whose Retry-After is at most this long is retried on the "
        "same provider after that delay, before any fallback; 0 never waits.",
    ),
    OptionSpec(
        "relay_state",
        str,
        "sqlite",
        "Where conversations for previous_response_id are kept: sqlite (a file in the "
        "confdir; survives restarts), sqlite:///path, memory, or redis://host:port/db "
        "(shared by several relays).",
    ),
    OptionSpec(
        "relay_history_entries",
        str,
        str(Limits().max_entries),
        "Conversations kept for previous_response_id (least recently used evicted first).",
    ),
    OptionSpec(
        "relay_history_mb",
        str,
        str(Limits().max_bytes // (1024 * 1024)),
        "Megabytes of conversations kept for previous_response_id.",
    ),
    OptionSpec(
        "relay_history_ttl",
        str,
        str(int(Limits().ttl_s)),
        "Seconds a conversation is kept for previous_response_id.",
    ),
    OptionSpec(
        "relay_state_deadline_ms",
        str,
        str(round(DEFAULT_DEADLINE_S * 1000)),
        "Milliseconds a state store call (conversation read or write, kept reasoning) may "
        "take; past it the exchange goes on without stored state (a previous_response_id that "
        "cannot be read is answered 503, which Codex retries) and other exchanges never wait.",
    ),
    OptionSpec(
        "relay_client_keys_env",
        str,
        "",
        "Name of an environment variable holding comma-separated client keys. Set, every "
        "relayed request needs Authorization: Bearer <one of them> (else 401 invalid_api_key, "
        "before any upstream call). Empty: no client key is asked for.",
    ),
)
# The script's options that take exactly one value: the relay's but the lists, and the usage
# addon's (usage_addon.py), which mitmproxy loads from the same script.
SINGLE_VALUE_OPTIONS = (
    *(o.name for o in OPTION_SPECS if o.typespec is str),
    "relay_usage_days",
    "relay_metrics_port",
)
# What ``load_config`` reads: the relay's options and mitmproxy's confdir.
OPTIONS = (*(o.name for o in OPTION_SPECS), "confdir")


class ConfigError(ValueError):
    """A configuration the relay cannot run with; ``str()`` is one line."""


@dataclass(frozen=True, slots=True)
class StateConfig:
    """Where conversations and kept reasoning live (``relay_state``) and their bounds."""

    url: str
    limits: Limits
    confdir: Path
    deadline_s: float  # relay_state_deadline_ms: what one store call may take


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """Everything the hooks read.

    routes:       the table in force at start (None: nowhere to relay to); with
                  ``routes_file`` set, its ``table`` supersedes it as the file changes.
    ignored:      single-upstream options that are set but overridden by ``relay_routes``.
    client_keys:  the keys a relayed request must carry (None: no key asked for), read from
                  the variable ``client_keys_env`` names.
    """

    routes: RouteTable | None
    routes_file: RoutesFile | None
    ignored: tuple[str, ...]
    reasoning_mode: str
    rules: tuple[InterceptRule, ...]
    timeout_s: float
    keepalive_s: float
    retry_wait_s: float
    state: StateConfig
    client_keys: ClientKeys | None = None
    client_keys_env: str = ""


def load_config(options: Mapping[str, Any], env: Mapping[str, str]) -> RelayConfig:
    """The configuration the options describe. ``options`` maps every relay option (and
    ``confdir``) to its value. Raises ``ConfigError``."""
    mode = options["relay_reasoning"]
    if mode not in REASONING_MODES:
        raise ConfigError(
            f"relay_reasoning must be one of {', '.join(REASONING_MODES)}, got {mode!r}"
        )
    timeout_s = number(options, "relay_timeout", "a positive number of seconds")
    keepalive_s = number(options, "relay_keepalive", "a positive number of seconds")
    retry_wait_s = number(
        options, "relay_retry_wait", "0 (never wait) or a number of seconds", zero_ok=True
    )
    try:
        rules = tuple(InterceptRule.parse(s) for s in options["relay_hosts"])
    except ValueError as e:
        raise ConfigError(f"relay_hosts: {e}") from e
    routes, routes_file, ignored = _routes(options, env)
    keys_env = options["relay_client_keys_env"].strip()
    return RelayConfig(
        routes=routes,
        routes_file=routes_file,
        ignored=ignored,
        reasoning_mode=mode,
        rules=rules,
        timeout_s=timeout_s,
        keepalive_s=keepalive_s,
        retry_wait_s=retry_wait_s,
        state=_state(options),
        client_keys=_client_keys(keys_env, env),
        client_keys_env=keys_env,
    )


def number(options: Mapping[str, Any], name: str, what: str, *, zero_ok: bool = False) -> float:
    """Option ``name`` as a finite number (decimals allowed), positive or, with ``zero_ok``,
    at least 0. The relay's number options are declared as strings and parsed here:
    mitmproxy's own ``int`` parse fails while it loads the script, before any hook of ours
    runs, and the script is then never registered, so flows pass through unrelayed, the
    client's key included (docs/mitmproxy-notes.md §4, §7.3). Raises ``ConfigError``."""
    return _parsed(options, name, what, float, zero_ok)


def whole_number(options: Mapping[str, Any], name: str, what: str, *, zero_ok: bool = False) -> int:
    """Like ``number``, for options that count things."""
    return int(_parsed(options, name, what, int, zero_ok))


def _parsed(
    options: Mapping[str, Any],
    name: str,
    what: str,
    kind: Callable[[str], float],
    zero_ok: bool,
) -> float:
    text = str(options[name]).strip()
    try:
        value = kind(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        raise ConfigError(f"{name} must be {what}, got {text!r}")
    return value


def take_unusable(deferred: MutableMapping[str, Any], names: Sequence[str]) -> str | None:
    """What is wrong with the ``--set`` values mitmproxy holds back for ``names`` until the
    script declares them (``OptionManager.deferred``), after removing the unusable ones.

    mitmproxy parses them after the script's ``load``: ``--set relay_upstream`` without a
    value, or an option set twice, fails that parse, and the script is then never registered,
    so its hooks never run and every flow passes through unrelayed, the client's key included
    (docs/mitmproxy-notes.md §4, §7.3). Taken out here, the script loads and refuses to start."""
    problems = []
    for name in names:
        values = getattr(deferred.get(name), "val", None)
        if not isinstance(values, list) or len(values) == 1:
            continue
        del deferred[name]
        if values:
            problems.append(f"{name} is set {len(values)} times; set it once")
        else:
            problems.append(f"{name} needs a value (--set {name}=VALUE)")
    return "; ".join(problems) or None


def _client_keys(variable: str, env: Mapping[str, str]) -> ClientKeys | None:
    """The keys in ``$variable`` (core/access.py). A named variable that is unset or empty is
    an error, never "no keys": a typo must not open the relay to everyone."""
    if not variable:
        return None
    text = env.get(variable)
    if text is None:
        raise ConfigError(f"relay_client_keys_env names ${variable}, which is not set")
    try:
        return ClientKeys.parse(text, variable=f"${variable}")
    except ValueError as e:
        raise ConfigError(f"relay_client_keys_env: {e}") from None


def _routes(
    options: Mapping[str, Any], env: Mapping[str, str]
) -> tuple[RouteTable | None, RoutesFile | None, tuple[str, ...]]:
    try:  # checked even when unused, so a typo is seen at once
        named_profile(options["relay_profile"])
        parse_model_map(options["relay_model_map"])
    except RoutesError as e:
        raise ConfigError(str(e)) from e
    path = options["relay_routes"]
    if path:
        routes_file = RoutesFile(Path(path).expanduser(), env)
        ignored = tuple(name for name in SINGLE_UPSTREAM_OPTIONS if _is_set(name, options[name]))
        return routes_file.table, routes_file, ignored
    if not options["relay_upstream"]:
        return None, None, ()
    try:
        table = single_upstream_table(
            base_url=options["relay_upstream"],
            api_key_env=options["relay_api_key_env"],
            model=options["relay_model"],
            model_map=options["relay_model_map"],
            profile=options["relay_profile"],
            env=env,
        )
    except RoutesError as e:
        raise ConfigError(str(e)) from e
    return table, None, ()


def _is_set(name: str, value: Any) -> bool:
    if name == "relay_api_key_env":
        return value != DEFAULT_KEY_ENV
    return bool(value)


def _state(options: Mapping[str, Any]) -> StateConfig:
    entries = whole_number(
        options, "relay_history_entries", "a positive whole number of conversations"
    )
    mb = whole_number(options, "relay_history_mb", "a positive whole number of megabytes")
    ttl = number(options, "relay_history_ttl", "a positive number of seconds")
    deadline_ms = number(options, "relay_state_deadline_ms", "a positive number of milliseconds")
    return StateConfig(
        options["relay_state"],
        Limits(entries, mb * 1024 * 1024, ttl),
        Path(options["confdir"]).expanduser(),
        deadline_ms / 1000,
    )


# ---------------------------------------------------------------------- the routes file


def _signature(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_mtime_ns, st.st_size, st.st_ino


class RoutesFile:
    """A routes file and the table it holds. Building one reads and checks the file (raises
    ``ConfigError``); ``check()`` re-reads it when it changed since."""

    def __init__(
        self,
        path: Path,
        env: Mapping[str, str],
        *,
        stat: Callable[[Path], os.stat_result] = os.stat,
    ) -> None:
        self.path = path
        self._env = env
        self._stat = stat
        try:
            self._seen: object = _signature(stat(path))
            self.table = self._read()
        except OSError as e:
            raise ConfigError(f"{path}: cannot be read ({e.strerror or e})") from e
        except RoutesError as e:
            raise ConfigError(str(e)) from e

    def _read(self) -> RouteTable:
        return parse_routes(self.path.read_bytes(), source=str(self.path), env=self._env)

    def check(self) -> tuple[RouteTable | None, str | None]:
        """``(table, None)`` when the file changed and its new table is in force now;
        ``(None, why)`` when it changed but cannot be used (the old table stays; said once
        per change); ``(None, None)`` when nothing changed."""
        try:
            seen = _signature(self._stat(self.path))
        except OSError as e:
            return self._refuse(("gone", str(e)), f"{self.path}: cannot be read ({e.strerror})")
        if seen == self._seen:
            return None, None
        self._seen = seen
        try:
            self.table = self._read()
        except OSError as e:
            return None, f"{self.path}: cannot be read ({e.strerror or e})"
        except RoutesError as e:
            return None, str(e)
        return self.table, None

    def _refuse(self, seen: object, why: str) -> tuple[None, str | None]:
        if seen == self._seen:
            return None, None
        self._seen = seen
        return None, why


# ---------------------------------------------------------------------- the start line


def table_line(table: RouteTable) -> str:
    """Providers (URL, profile, key variable and whether it is set: never the key) and what
    each model name goes to."""
    providers = "; ".join(
        f"{p.name} = {p.base_url} (profile {p.profile.name}, "
        + (
            f"key ${p.api_key_env} {'set' if p.api_key else 'MISSING'})"
            if p.api_key_env
            else "no key)"
        )
        for p in table.providers.values()
    )
    models = ", ".join(
        f"{m.name} -> {m.provider}:{m.upstream_model or ('(as asked)' if m.is_glob else m.name)}"
        + (f" (then {', '.join(m.fallbacks)})" if m.fallbacks else "")
        for m in table.models.values()
    )
    default = f"; default {table.default_model}" if table.default_model else ""
    return f"providers {providers}; models {models}{default}"


def start_line(config: RelayConfig) -> str:
    table = config.routes
    assert table is not None
    source = str(config.routes_file.path) if config.routes_file else table.source
    line = f"routes from {source}: {table_line(table)}"
    if config.ignored:
        line += f"; {', '.join(config.ignored)} ignored (relay_routes is set)"
    return line
