"""The routing table: which provider serves a model name, under which upstream name, and what
to try when it fails. Read from the routes file (``relay_routes``) or built from the
single-upstream options.

Theory of operation
-------------------
``parse_routes(text, source=…, env=…)`` turns the TOML text of a routes file into a frozen
``RouteTable``; ``single_upstream_table(...)`` builds the same table from ``relay_upstream``,
``relay_model``, ``relay_model_map``, ``relay_profile`` and ``relay_api_key_env``. Both are
pure: the caller reads the file and hands in the environment the keys are looked up in.
``RouteTable.plan(client_model)`` then answers each request: the targets to try, in order.

Rules:

1. Schema (README "The routes file"): a top-level ``default_model``, ``[providers.<name>]``
   tables (``base_url``, ``api_key_env``, ``profile``, ``wire``, ``headers``) and
   ``[models."<client name>"]`` tables (``provider``, ``upstream_model``, ``context_window``,
   ``max_output_tokens``, ``vision``, ``reasoning``, ``fallbacks``, ``price_input``,
   ``price_cached_input``, ``price_output``). Any other key is an error: a misspelt key that
   silently does nothing is worse than a refusal.
2. Every error is one ``RoutesError`` whose text is one line naming the file, the table and the
   key, so the relay can refuse to start with it (mitmproxy prints a traceback for an
   exception raised while a script loads: the addon logs this line instead).
3. Keys never sit in the file: a provider names the environment variable (``api_key_env``) and
   the key is read from ``env`` at parse time into a ``Secret``, whose ``repr`` and ``str``
   hide it, so no log line, error or mitmweb comment can show it by accident. A named
   variable that is unset (or empty) is an error in a routes file; the single-upstream
   options keep their old leniency (the start line says MISSING) for keyless local servers.
4. Matching (``RouteTable.resolve``): the exact key, else the longest matching glob (``*``,
   ``?``, ``[…]``, case-sensitive, as ``fnmatch.fnmatchcase``; equal lengths: the first in the
   file), else ``default_model``; else nothing, and the relay answers ``model_not_found``. A
   glob without ``upstream_model`` sends the client's own name upstream.
5. Fallbacks name other ``[models]`` keys and are followed transitively, depth first, each
   model once: a model's plan is itself, then each fallback's plan. A cycle is an error, as
   is a fallback (or ``default_model``) naming a glob without ``upstream_model``: it would
   send whatever the client asked for to an unrelated provider.
6. ``wire`` names the API the provider speaks (core/wires.py): ``"chat"`` (the default, Chat
   Completions at ``{base_url}/chat/completions``) or ``"responses"`` (the provider serves
   ``{base_url}/responses`` itself; core/responses_wire/). A plan may mix wires.
7. Several providers may share a host: a provider is its name, not its URL, and each carries
   its own key and headers.
"""

from __future__ import annotations

import fnmatch
import math
import re
import tomllib
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .outcome import Price
from .profiles import PROFILES, Profile, guess_profile
from .wires import WIRES

TOP_KEYS = frozenset({"default_model", "providers", "models"})
PROVIDER_KEYS = frozenset({"base_url", "api_key_env", "profile", "wire", "headers"})
MODEL_KEYS = frozenset(
    {
        "provider",
        "upstream_model",
        "context_window",
        "max_output_tokens",
        "vision",
        "reasoning",
        "fallbacks",
        "price_input",
        "price_cached_input",
        "price_output",
    }
)
# Headers a routes file may not set: the key comes from api_key_env (rule 3); the framing
# ones belong to the relay's HTTP layer.
RESERVED_HEADERS = frozenset(
    {"authorization", "host", "content-length", "content-type", "transfer-encoding", "connection"}
)
_PROVIDER_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token
_GLOB_CHARS = frozenset("*?[")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


class RoutesError(ValueError):
    """A routes table that cannot be used. ``str()`` is one line: file, table, key, problem."""

    def __init__(self, source: str, table: str, key: str, problem: str) -> None:
        self.source, self.table, self.key, self.problem = source, table, key, problem
        where = " ".join(p for p in (table, key) if p)
        super().__init__(f"{source}: {where}: {problem}" if where else f"{source}: {problem}")


class Secret:
    """A key read from the environment. ``repr``/``str`` never show it; ``reveal()`` does,
    for the one place that puts it on the wire."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class Provider:
    """One ``[providers.<name>]`` table. ``base_url`` has no trailing slash."""

    name: str
    base_url: str
    profile: Profile
    api_key_env: str | None = None
    api_key: Secret | None = None  # None: no variable named, or (shorthand only) unset
    wire: str = "chat"
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def url(self) -> str:
        """Where a call to this provider goes: its wire's path under ``base_url``."""
        return self.base_url + WIRES[self.wire].path

    @property
    def models_url(self) -> str:
        return self.base_url + "/models"

    def request_headers(self) -> dict[str, str]:
        """The headers every call to this provider carries: its extra headers, then its key
        (the only place a key leaves its ``Secret``)."""
        headers = dict(self.headers)
        if self.api_key is not None:
            headers["authorization"] = f"Bearer {self.api_key.reveal()}"
        return headers


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """One ``[models."<name>"]`` table. ``vision``/``reasoning`` None: the profile's default.
    ``upstream_model`` None: the key itself for an exact key, the client's name for a glob."""

    name: str
    provider: str
    upstream_model: str | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    vision: bool | None = None
    reasoning: bool | None = None
    fallbacks: tuple[str, ...] = ()
    price: Price | None = None

    @property
    def is_glob(self) -> bool:
        return is_glob(self.name)

    @property
    def fixed_upstream(self) -> bool:
        """Whether every client name routed here goes upstream under the same name."""
        return not self.is_glob or self.upstream_model is not None


@dataclass(frozen=True, slots=True)
class Target:
    """One upstream the relay may call for a request: the route, its provider, the name the
    upstream gets, and the route's switches resolved against the profile's defaults."""

    route: ModelRoute
    provider: Provider
    upstream_model: str

    @property
    def vision(self) -> bool:
        v = self.route.vision
        return self.provider.profile.vision if v is None else v

    @property
    def reasoning(self) -> bool:
        r = self.route.reasoning
        return self.provider.profile.reasoning if r is None else r


@dataclass(frozen=True, slots=True)
class RouteTable:
    """Providers and models by name (in file order), ``default_model``, and where the table
    came from (a path, or the options)."""

    source: str
    providers: Mapping[str, Provider]
    models: Mapping[str, ModelRoute]
    default_model: str | None = None
    _globs: tuple[ModelRoute, ...] = field(default=(), repr=False, compare=False)
    wires: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def __post_init__(self) -> None:
        globs = [m for m in self.models.values() if m.is_glob]
        # Longest pattern first; sorted() is stable, so file order breaks ties (rule 4).
        object.__setattr__(self, "_globs", tuple(sorted(globs, key=lambda m: -len(m.name))))
        # The wires its providers speak (core/client_request.py reads a request for them).
        object.__setattr__(self, "wires", frozenset(p.wire for p in self.providers.values()))

    def resolve(self, client_model: str) -> ModelRoute | None:
        """The route for a client's model name (rule 4), or None."""
        exact = self.models.get(client_model)
        if exact is not None and not exact.is_glob:
            return exact
        for route in self._globs:
            if fnmatch.fnmatchcase(client_model, route.name):
                return route
        if self.default_model is not None:
            return self.models[self.default_model]
        return None

    def plan(self, client_model: str) -> tuple[Target, ...]:
        """The targets to try for a client's model name, in order (rules 4 and 5); empty when
        nothing matches."""
        route = self.resolve(client_model)
        if route is None:
            return ()
        first = self._target(route, client_model)
        return (first, *(self._target(self.models[n], n) for n in self._fallback_order(route)))

    def names(self) -> list[str]:
        """The model names a client may send: exact keys first, then globs, in file order."""
        exact = [n for n, m in self.models.items() if not m.is_glob]
        return exact + [n for n, m in self.models.items() if m.is_glob]

    def exact_names(self) -> list[str]:
        return [n for n, m in self.models.items() if not m.is_glob]

    def catch_all(self) -> ModelRoute | None:
        """The ``*`` route, if any: every name its provider lists can be asked for."""
        return self.models.get("*")

    def _target(self, route: ModelRoute, client_model: str) -> Target:
        upstream = route.upstream_model or (client_model if route.is_glob else route.name)
        return Target(route, self.providers[route.provider], upstream)

    def _fallback_order(self, route: ModelRoute) -> list[str]:
        order: list[str] = []
        seen = {route.name}

        def walk(r: ModelRoute) -> None:
            for name in r.fallbacks:
                if name not in seen:
                    seen.add(name)
                    order.append(name)
                    walk(self.models[name])

        walk(route)
        return order


def is_glob(name: str) -> bool:
    return not _GLOB_CHARS.isdisjoint(name)


# ---------------------------------------------------------------------- the routes file


def parse_routes(
    text: str | bytes, *, source: str, env: Mapping[str, str], require_keys: bool = True
) -> RouteTable:
    """The table a routes file describes. ``source`` names the file in errors; ``env`` is where
    the providers' keys are read (``require_keys=False``: an unset one is no error, for tools
    that only read the names). Raises ``RoutesError`` (one line) for anything unusable."""
    try:
        raw = tomllib.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except UnicodeDecodeError as e:
        raise RoutesError(source, "", "", f"not UTF-8 text ({e.reason} at byte {e.start})") from e
    except tomllib.TOMLDecodeError as e:
        raise RoutesError(source, "", "", f"not valid TOML: {e}") from e
    _unknown_keys(source, "", raw, TOP_KEYS)
    providers_raw = _table(source, "", "providers", raw.get("providers", {}))
    models_raw = _table(source, "", "models", raw.get("models", {}))
    if not providers_raw:
        raise RoutesError(source, "", "providers", "no [providers.<name>] table")
    providers = {
        name: _provider(source, name, _table(source, "providers", name, spec), env, require_keys)
        for name, spec in providers_raw.items()
    }
    if not models_raw:
        raise RoutesError(source, "", "models", 'no [models."<name>"] table')
    models = {
        name: _model(source, name, _table(source, "models", name, spec), providers)
        for name, spec in models_raw.items()
    }
    default = raw.get("default_model")
    if default is not None:
        default = _string(source, "", "default_model", default)
    table = RouteTable(source, providers, models, default)
    check_links(table)
    return table


def check_links(table: RouteTable) -> None:
    """Fallbacks and ``default_model`` name usable models, and fallbacks form no cycle
    (rule 5). Raises ``RoutesError``."""
    source, models = table.source, table.models
    if table.default_model is not None:
        _fixed_model(source, "", "default_model", table.default_model, models)
    for route in models.values():
        for name in route.fallbacks:
            _fixed_model(source, _model_table(route.name), "fallbacks", name, models)
    for route in models.values():
        cycle = _cycle_from(route, models)
        if cycle:
            raise RoutesError(
                source, _model_table(route.name), "fallbacks", "a cycle: " + " -> ".join(cycle)
            )


def _cycle_from(route: ModelRoute, models: Mapping[str, ModelRoute]) -> list[str]:
    path: list[str] = []

    def visit(name: str) -> list[str]:
        if name in path:
            return [*path[path.index(name) :], name]
        path.append(name)
        for nxt in models[name].fallbacks:
            found = visit(nxt)
            if found:
                return found
        path.pop()
        return []

    return visit(route.name)


def _fixed_model(
    source: str, table: str, key: str, name: str, models: Mapping[str, ModelRoute]
) -> None:
    route = models.get(name)
    if route is None:
        raise RoutesError(
            source, table, key, f'unknown model "{name}" (models: {_listing(models)})'
        )
    if not route.fixed_upstream:
        raise RoutesError(
            source,
            table,
            key,
            f'"{name}" is a glob without upstream_model: give it an upstream_model, or name '
            "an exact model",
        )


def _provider(
    source: str, name: str, spec: Mapping[str, Any], env: Mapping[str, str], require_keys: bool
) -> Provider:
    table = f"[providers.{name}]"
    if not _PROVIDER_NAME.match(name):
        raise RoutesError(
            source, table, "", "a provider name is 1-64 letters, digits, '_', '-' or '.'"
        )
    _unknown_keys(source, table, spec, PROVIDER_KEYS)
    if "base_url" not in spec:
        raise RoutesError(source, table, "base_url", "missing (e.g. https://api.example.com/v1)")
    base_url = _base_url(source, table, spec["base_url"])
    profile_name = spec.get("profile")
    if profile_name is None:
        profile = guess_profile(base_url)
    else:
        profile_name = _string(source, table, "profile", profile_name)
        if profile_name not in PROFILES:
            raise RoutesError(
                source,
                table,
                "profile",
                f'unknown profile "{profile_name}" (profiles: {", ".join(sorted(PROFILES))})',
            )
        profile = PROFILES[profile_name]
    wire = _string(source, table, "wire", spec.get("wire", "chat"))
    if wire not in WIRES:
        raise RoutesError(source, table, "wire", f'"{wire}" is not one of {", ".join(WIRES)}')
    key_env, key = None, None
    if "api_key_env" in spec:
        key_env = _string(source, table, "api_key_env", spec["api_key_env"])
        if not _ENV_NAME.match(key_env):
            raise RoutesError(
                source,
                table,
                "api_key_env",
                f'"{key_env}" is not an environment variable name (the NAME of the variable '
                "holding the key, e.g. DEEPSEEK_API_KEY; keys never sit in this file)",
            )
        value = env.get(key_env, "")
        if not value and require_keys:
            raise RoutesError(
                source, table, "api_key_env", f"${key_env} is not set (export it with the key)"
            )
        key = Secret(value) if value else None
    headers = _headers(source, table, spec.get("headers", {}))
    return Provider(name, base_url, profile, key_env, key, wire, headers)


def _model(
    source: str, name: str, spec: Mapping[str, Any], providers: Mapping[str, Provider]
) -> ModelRoute:
    table = _model_table(name)
    if not name or _CONTROL.search(name):
        raise RoutesError(source, table, "", "a model name has no spaces or control characters")
    _unknown_keys(source, table, spec, MODEL_KEYS)
    if "provider" not in spec:
        raise RoutesError(source, table, "provider", "missing: the [providers.<name>] to use")
    provider = _string(source, table, "provider", spec["provider"])
    if provider not in providers:
        raise RoutesError(
            source,
            table,
            "provider",
            f'unknown provider "{provider}" (providers: {", ".join(providers)})',
        )
    upstream = spec.get("upstream_model")
    if upstream is not None:
        upstream = _string(source, table, "upstream_model", upstream)
        if _CONTROL.search(upstream):
            raise RoutesError(source, table, "upstream_model", "has spaces or control characters")
    fallbacks = spec.get("fallbacks", [])
    if not isinstance(fallbacks, list) or not all(isinstance(f, str) for f in fallbacks):
        raise RoutesError(source, table, "fallbacks", "must be a list of model names")
    return ModelRoute(
        name=name,
        provider=provider,
        upstream_model=upstream,
        context_window=_positive_int(source, table, "context_window", spec),
        max_output_tokens=_positive_int(source, table, "max_output_tokens", spec),
        vision=_bool(source, table, "vision", spec),
        reasoning=_bool(source, table, "reasoning", spec),
        fallbacks=tuple(fallbacks),
        price=_price(source, table, spec),
    )


def _price(source: str, table: str, spec: Mapping[str, Any]) -> Price | None:
    values = {}
    for key in ("price_input", "price_cached_input", "price_output"):
        if key in spec:
            value = spec[key]
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or value < 0
                or not math.isfinite(value)
            ):
                raise RoutesError(source, table, key, "must be a number >= 0 (per million tokens)")
            values[key] = float(value)
    if not values:
        return None
    for key in ("price_input", "price_output"):
        if key not in values:
            raise RoutesError(
                source, table, key, "missing: a price needs both price_input and price_output"
            )
    return Price(values["price_input"], values["price_output"], values.get("price_cached_input"))


def _headers(source: str, table: str, value: Any) -> tuple[tuple[str, str], ...]:
    headers = _table(source, table, "headers", value)
    out = []
    for name, v in headers.items():
        if not _HEADER_NAME.match(name):
            raise RoutesError(source, table, "headers", f'"{name}" is not a header name')
        if name.lower() in RESERVED_HEADERS:
            why = (
                "the key comes from api_key_env; keys never sit in this file"
                if name.lower() == "authorization"
                else "the relay sets it"
            )
            raise RoutesError(source, table, "headers", f'"{name}" may not be set here ({why})')
        if not isinstance(v, str) or re.search(r"[\x00\r\n]", v):
            raise RoutesError(source, table, "headers", f'"{name}" must be a string on one line')
        out.append((name.lower(), v))
    return tuple(out)


def _base_url(source: str, table: str, value: Any) -> str:
    text = _string(source, table, "base_url", value)
    url = urllib.parse.urlsplit(text)
    if url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment:
        raise RoutesError(
            source,
            table,
            "base_url",
            f'"{text}" is not an http(s) base URL such as https://api.deepseek.com/v1',
        )
    return text.rstrip("/")


def _positive_int(source: str, table: str, key: str, spec: Mapping[str, Any]) -> int | None:
    if key not in spec:
        return None
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise RoutesError(source, table, key, "must be a whole number of tokens > 0")
    return value


def _bool(source: str, table: str, key: str, spec: Mapping[str, Any]) -> bool | None:
    if key not in spec:
        return None
    if not isinstance(spec[key], bool):
        raise RoutesError(source, table, key, "must be true or false")
    return spec[key]


def _string(source: str, table: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise RoutesError(source, table, key, "must be a non-empty string")
    return value


def _table(source: str, table: str, key: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        where = f"{table}.{key}" if table else key
        raise RoutesError(source, table, key, f"{where} must be a table")
    return value


def _unknown_keys(source: str, table: str, spec: Mapping[str, Any], known: Iterable[str]) -> None:
    for key in spec:
        if key not in known:
            raise RoutesError(
                source, table, key, f"unknown key (known: {', '.join(sorted(known))})"
            )


def _model_table(name: str) -> str:
    return f'[models."{name}"]'


def _listing(models: Mapping[str, ModelRoute]) -> str:
    return ", ".join(models) or "none"


# ---------------------------------------------------------------------- the options


SINGLE_SOURCE = "the relay_upstream options"


def single_upstream_table(
    *,
    base_url: str,
    api_key_env: str,
    model: str = "",
    model_map: Sequence[str] = (),
    profile: str = "",
    env: Mapping[str, str],
) -> RouteTable:
    """The one-provider table the single-upstream options mean: ``relay_model_map`` pairs
    ``client=upstream`` as exact routes, and a ``*`` route to ``relay_model`` (or, unset, to
    the client's own name). The provider is named after the upstream's host. Its key variable
    may be unset (keyless local servers; the start line says so). Raises ``RoutesError``
    naming the option."""
    url = urllib.parse.urlsplit(base_url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise RoutesError(
            "relay_upstream",
            "",
            "",
            f"must be an http(s) URL such as https://api.deepseek.com/v1, got {base_url!r}",
        )
    chosen = named_profile(profile) or guess_profile(base_url)
    value = env.get(api_key_env, "")
    name = url.hostname
    provider = Provider(
        name=name,
        base_url=base_url.rstrip("/"),
        profile=chosen,
        api_key_env=api_key_env,
        api_key=Secret(value) if value else None,
    )
    models = {
        client: ModelRoute(client, name, upstream)
        for client, upstream in parse_model_map(model_map).items()
    }
    models["*"] = ModelRoute("*", name, model or None)
    return RouteTable(SINGLE_SOURCE, {name: provider}, models)


def named_profile(name: str) -> Profile | None:
    """``relay_profile``: a profile by name, None for "" (guess from the host). Raises
    ``RoutesError`` for an unknown name."""
    if not name:
        return None
    if name not in PROFILES:
        raise RoutesError(
            "relay_profile",
            "",
            "",
            f"{name!r} is unknown; choose one of {', '.join(sorted(PROFILES))}",
        )
    return PROFILES[name]


def parse_model_map(specs: Sequence[str]) -> dict[str, str]:
    """``relay_model_map``: ``client=upstream`` pairs. Raises ``RoutesError``."""
    pairs = {}
    for spec in specs:
        client, sep, upstream = spec.partition("=")
        client, upstream = client.strip(), upstream.strip()
        if not sep or not client or not upstream or is_glob(client):
            raise RoutesError(
                "relay_model_map", "", "", f"entries are client=upstream, got {spec!r}"
            )
        pairs[client] = upstream
    return pairs
