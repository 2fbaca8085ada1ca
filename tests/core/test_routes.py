"""The routes file: schema, matching, fallback plans, and one-line errors for every bad input."""

from __future__ import annotations

import pytest

from mitmrelay.core.outcome import Price
from mitmrelay.core.profiles import GENERIC, PROFILES
from mitmrelay.core.routes import (
    RoutesError,
    Secret,
    parse_routes,
    single_upstream_table,
)

ENV = {"DEEPSEEK_API_KEY": "sk-deepseek-secret", "KIMI_API_KEY": "sk-kimi-secret"}
SOURCE = "/etc/mitmrelay/routes.toml"

FULL = """
default_model = "deepseek-chat"

[providers.deepseek]
base_url = "https://api.deepseek.com/v1/"
api_key_env = "DEEPSEEK_API_KEY"
headers = { "X-Title" = "codex" }

[providers.kimi]
base_url = "https://api.moonshot.ai/v1"
api_key_env = "KIMI_API_KEY"
profile = "kimi"

[providers.local]
base_url = "http://127.0.0.1:11434/v1"

[models."deepseek-chat"]
provider = "deepseek"
context_window = 131072
max_output_tokens = 8192
vision = false
reasoning = true
fallbacks = ["kimi-k2"]
price_input = 0.28
price_cached_input = 0.028
price_output = 0.42

[models."kimi-k2"]
provider = "kimi"
upstream_model = "kimi-k2-thinking"
fallbacks = ["offline"]

[models."offline"]
provider = "local"
upstream_model = "qwen3-coder"

[models."qwen/*"]
provider = "local"

[models."qwen/qwen3-*"]
provider = "kimi"

[models."q*"]
provider = "deepseek"
upstream_model = "deepseek-chat"
"""


def table(text: str = FULL, env: dict[str, str] | None = None):
    return parse_routes(text, source=SOURCE, env=ENV if env is None else env)


def test_the_issues_schema_is_read_into_frozen_tables():
    t = table()
    deepseek = t.providers["deepseek"]
    assert deepseek.base_url == "https://api.deepseek.com/v1"  # trailing slash dropped
    assert deepseek.url == "https://api.deepseek.com/v1/chat/completions"
    assert deepseek.profile is PROFILES["deepseek"]  # guessed from the host
    assert deepseek.wire == "chat"
    assert deepseek.request_headers() == {
        "x-title": "codex",
        "authorization": "Bearer sk-deepseek-secret",
    }
    assert t.providers["kimi"].profile is PROFILES["kimi"]
    local = t.providers["local"]
    assert local.profile is GENERIC and local.api_key is None
    assert local.request_headers() == {}  # keyless local server: no authorization at all
    chat = t.models["deepseek-chat"]
    assert (chat.context_window, chat.max_output_tokens, chat.vision, chat.reasoning) == (
        131072,
        8192,
        False,
        True,
    )
    assert chat.price == Price(input=0.28, output=0.42, cached_input=0.028)
    assert t.models["kimi-k2"].price is None
    assert t.default_model == "deepseek-chat"
    with pytest.raises(AttributeError):
        chat.provider = "kimi"  # type: ignore[misc]


def test_keys_never_show_in_reprs():
    t = table()
    shown = repr(t) + str(t.providers["deepseek"]) + repr(t.providers["kimi"].api_key)
    assert "sk-deepseek-secret" not in shown and "sk-kimi-secret" not in shown
    assert "***" in shown
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")
    assert len({Secret("a"), Secret("a")}) == 1
    assert t.providers["local"].models_url == "http://127.0.0.1:11434/v1/models"


@pytest.mark.parametrize(
    ("client", "route", "upstream"),
    [
        ("deepseek-chat", "deepseek-chat", "deepseek-chat"),  # exact, upstream = the key
        ("kimi-k2", "kimi-k2", "kimi-k2-thinking"),
        ("qwen/qwen3-coder", "qwen/qwen3-*", "qwen/qwen3-coder"),  # the longest glob wins
        ("qwen/qwq", "qwen/*", "qwen/qwq"),  # a glob sends the client's own name
        ("qwq", "q*", "deepseek-chat"),  # a glob with upstream_model
        ("gpt-5.5", "deepseek-chat", "deepseek-chat"),  # default_model
    ],
)
def test_matching_exact_then_longest_glob_then_default(client, route, upstream):
    first = table().plan(client)[0]
    assert (first.route.name, first.upstream_model) == (route, upstream)


def test_equal_globs_the_first_in_the_file_wins():
    t = table(
        """
[providers.a]
base_url = "http://127.0.0.1:1/v1"
[providers.b]
base_url = "http://127.0.0.1:2/v1"
[models."x*"]
provider = "a"
[models."*y"]
provider = "b"
"""
    )
    assert t.plan("xy")[0].provider.name == "a"
    assert t.plan("nothing") == ()  # no default_model: no route
    assert t.names() == ["x*", "*y"]


def test_fallbacks_are_followed_in_order_each_model_once():
    t = table()
    plan = t.plan("deepseek-chat")
    assert [(x.route.name, x.provider.name, x.upstream_model) for x in plan] == [
        ("deepseek-chat", "deepseek", "deepseek-chat"),
        ("kimi-k2", "kimi", "kimi-k2-thinking"),
        ("offline", "local", "qwen3-coder"),  # kimi-k2's own fallback
    ]
    # A name that reached deepseek-chat through default_model gets the same plan.
    assert [x.route.name for x in t.plan("gpt-5.5")] == ["deepseek-chat", "kimi-k2", "offline"]


def test_diamond_fallbacks_visit_each_model_once():
    t = table(
        """
[providers.p]
base_url = "http://127.0.0.1:1/v1"
[models.a]
provider = "p"
fallbacks = ["b", "c"]
[models.b]
provider = "p"
fallbacks = ["d"]
[models.c]
provider = "p"
fallbacks = ["d"]
[models.d]
provider = "p"
"""
    )
    assert [x.route.name for x in t.plan("a")] == ["a", "b", "d", "c"]


def test_switches_default_to_the_profile():
    t = table()
    chat, kimi = t.plan("deepseek-chat")[:2]
    assert chat.vision is False and chat.reasoning is True  # the route's own
    assert kimi.vision is PROFILES["kimi"].vision and kimi.reasoning is PROFILES["kimi"].reasoning


def test_several_providers_may_share_a_host_with_their_own_keys():
    t = table(
        """
[providers.work]
base_url = "https://openrouter.ai/api/v1"
api_key_env = "DEEPSEEK_API_KEY"
[providers.home]
base_url = "https://openrouter.ai/api/v1"
api_key_env = "KIMI_API_KEY"
[models.a]
provider = "work"
[models.b]
provider = "home"
"""
    )
    assert t.plan("a")[0].provider.request_headers()["authorization"].endswith("deepseek-secret")
    assert t.plan("b")[0].provider.request_headers()["authorization"].endswith("kimi-secret")


MIN_PROVIDER = '[providers.p]\nbase_url = "http://127.0.0.1:1/v1"\n'
MIN_MODEL = '[models.m]\nprovider = "p"\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[providers\n", "not valid TOML: "),
        ("colour = 1\n" + MIN_PROVIDER + MIN_MODEL, ": colour: unknown key (known: "),
        (MIN_PROVIDER, ": models: no [models."),
        (MIN_MODEL, ": providers: no [providers."),
        ("providers = 3\n", ": providers: providers must be a table"),
        (
            MIN_PROVIDER + 'api_key = "sk-1"\n' + MIN_MODEL,
            ": [providers.p] api_key: unknown key",
        ),
        ('[providers.p]\nwire = "chat"\n' + MIN_MODEL, ": [providers.p] base_url: missing"),
        (
            '[providers.p]\nbase_url = "ftp://x"\n' + MIN_MODEL,
            ': [providers.p] base_url: "ftp://x" is not an http(s) base URL',
        ),
        (
            MIN_PROVIDER + 'profile = "nope"\n' + MIN_MODEL,
            ': [providers.p] profile: unknown profile "nope"',
        ),
        (
            MIN_PROVIDER + 'wire = "grpc"\n' + MIN_MODEL,
            ': [providers.p] wire: "grpc" is not one of chat, responses',
        ),
        (
            MIN_PROVIDER + 'api_key_env = "MISSING_KEY"\n' + MIN_MODEL,
            ": [providers.p] api_key_env: $MISSING_KEY is not set",
        ),
        (
            MIN_PROVIDER + 'api_key_env = "sk-live-123"\n' + MIN_MODEL,
            ': [providers.p] api_key_env: "sk-live-123" is not an environment variable name',
        ),
        (
            MIN_PROVIDER + 'headers = { Authorization = "Bearer x" }\n' + MIN_MODEL,
            ': [providers.p] headers: "Authorization" may not be set here (the key comes',
        ),
        (
            MIN_PROVIDER + 'headers = { "X-A" = "1\\r\\nX-B: 2" }\n' + MIN_MODEL,
            ': [providers.p] headers: "X-A" must be a string on one line',
        ),
        ('[providers."a b"]\nbase_url = "http://x/v1"\n', ": [providers.a b]: a provider name"),
        (MIN_PROVIDER + "[models.m]\n", ': [models."m"] provider: missing'),
        (
            MIN_PROVIDER + '[models.m]\nprovider = "q"\n',
            ': [models."m"] provider: unknown provider "q" (providers: p)',
        ),
        (
            MIN_PROVIDER + MIN_MODEL + "context_window = 0\n",
            ': [models."m"] context_window: must be a whole number of tokens > 0',
        ),
        (
            MIN_PROVIDER + MIN_MODEL + "max_output_tokens = true\n",
            ': [models."m"] max_output_tokens: must be a whole number',
        ),
        (MIN_PROVIDER + MIN_MODEL + 'vision = "no"\n', ': [models."m"] vision: must be true'),
        (
            MIN_PROVIDER + MIN_MODEL + 'fallbacks = "m2"\n',
            ': [models."m"] fallbacks: must be a list of model names',
        ),
        (
            MIN_PROVIDER + MIN_MODEL + 'fallbacks = ["m2"]\n',
            ': [models."m"] fallbacks: unknown model "m2" (models: m)',
        ),
        (
            MIN_PROVIDER + MIN_MODEL + 'fallbacks = ["m"]\n',
            ': [models."m"] fallbacks: a cycle: m -> m',
        ),
        (
            MIN_PROVIDER
            + MIN_MODEL
            + 'fallbacks = ["n"]\n[models.n]\nprovider = "p"\nfallbacks = ["m"]\n',
            ': [models."m"] fallbacks: a cycle: m -> n -> m',
        ),
        (
            MIN_PROVIDER + MIN_MODEL + 'fallbacks = ["x*"]\n[models."x*"]\nprovider = "p"\n',
            ': [models."m"] fallbacks: "x*" is a glob without upstream_model',
        ),
        (
            'default_model = "zz"\n' + MIN_PROVIDER + MIN_MODEL,
            ': default_model: unknown model "zz"',
        ),
        (
            MIN_PROVIDER + MIN_MODEL + "price_input = 1\n",
            ': [models."m"] price_output: missing: a price needs both',
        ),
        (
            MIN_PROVIDER + MIN_MODEL + "price_input = -1\nprice_output = 1\n",
            ': [models."m"] price_input: must be a number >= 0',
        ),
        (MIN_PROVIDER + MIN_MODEL + "colour = 1\n", ': [models."m"] colour: unknown key'),
        (MIN_PROVIDER + '[models."a b"]\nprovider = "p"\n', ': [models."a b"]: a model name'),
        (
            MIN_PROVIDER + MIN_MODEL + 'upstream_model = "x\\ny"\n',
            ': [models."m"] upstream_model: has spaces or control characters',
        ),
        (
            MIN_PROVIDER + 'headers = { "a b" = "1" }\n' + MIN_MODEL,
            ': [providers.p] headers: "a b" is not a header name',
        ),
        (MIN_PROVIDER + MIN_MODEL + 'upstream_model = ""\n', "upstream_model: must be a non-empty"),
    ],
)
def test_every_bad_input_is_one_line_naming_file_table_and_key(text, expected):
    with pytest.raises(RoutesError) as caught:
        table(text)
    message = str(caught.value)
    assert message.startswith(SOURCE + ": ")
    assert expected in message
    assert "\n" not in message
    assert "sk-" not in message.replace("sk-live-123", "")  # only the wrongly placed value


def test_bytes_that_are_not_utf8_are_one_line_too():
    with pytest.raises(RoutesError, match="not UTF-8"):
        parse_routes(b"\xff\xfe", source=SOURCE, env={})


def test_a_provider_on_the_responses_wire_is_called_at_its_responses_path():
    t = table(MIN_PROVIDER + 'wire = "responses"\n' + MIN_MODEL)
    provider = t.providers["p"]
    assert provider.wire == "responses"
    assert provider.url == provider.base_url + "/responses"
    assert t.wires == {"responses"} and table().wires == {"chat"}


def test_the_single_upstream_options_are_a_one_provider_table():
    t = single_upstream_table(
        base_url="https://api.deepseek.com/v1",
        api_key_env="CODEX_RELAY_API_KEY",
        model="deepseek-chat",
        model_map=["gpt-5.5=deepseek-reasoner"],
        env={"CODEX_RELAY_API_KEY": "sk-1"},
    )
    (provider,) = t.providers.values()
    assert provider.name == "api.deepseek.com" and provider.profile is PROFILES["deepseek"]
    assert provider.request_headers() == {"authorization": "Bearer sk-1"}
    assert t.plan("gpt-5.5")[0].upstream_model == "deepseek-reasoner"
    assert t.plan("anything")[0].upstream_model == "deepseek-chat"
    assert t.catch_all() is not None and t.exact_names() == ["gpt-5.5"]


def test_without_relay_model_the_clients_name_goes_upstream_and_no_key_is_allowed():
    t = single_upstream_table(
        base_url="http://127.0.0.1:11434/v1", api_key_env="NONE", profile="groq", env={}
    )
    target = t.plan("qwen3:8b")[0]
    assert target.upstream_model == "qwen3:8b" and target.provider.profile.name == "groq"
    assert target.provider.api_key is None and target.provider.request_headers() == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_url": "ftp://x"}, r"relay_upstream: must be an http\(s\) URL"),
        ({"profile": "nope"}, "relay_profile: 'nope' is unknown"),
        ({"model_map": ["justone"]}, "relay_model_map: entries are client=upstream"),
    ],
)
def test_bad_single_upstream_options_name_the_option(kwargs, message):
    args = {"base_url": "http://127.0.0.1:1/v1", "api_key_env": "K", "env": {}, **kwargs}
    with pytest.raises(RoutesError, match=message):
        single_upstream_table(**args)
