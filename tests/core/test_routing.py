import pytest

from mitmrelay.core.routing import DEFAULT_HOSTS, InterceptRule, Route, classify

RULES = [InterceptRule.parse(s) for s in DEFAULT_HOSTS]


@pytest.mark.parametrize(
    ("method", "host", "path", "reverse", "upgrade", "route"),
    [
        ("POST", "127.0.0.1", "/v1/responses", True, False, Route.RESPONSES),
        ("POST", "127.0.0.1", "/v1/responses?api-version=1", True, False, Route.RESPONSES),
        ("GET", "127.0.0.1", "/v1/responses", True, True, Route.UPGRADE),
        ("GET", "127.0.0.1", "/v1/models?client_version=0.169.0", True, False, Route.MODELS),
        ("GET", "127.0.0.1", "/v1/other", True, False, Route.NOT_FOUND),
        ("POST", "api.openai.com", "/v1/responses", False, False, Route.RESPONSES),
        ("GET", "api.openai.com", "/v1/responses", False, True, Route.UPGRADE),
        ("POST", "chatgpt.com", "/backend-api/codex/responses", False, False, Route.RESPONSES),
        ("GET", "chatgpt.com", "/backend-api/codex/models", False, False, Route.PASS),
        ("POST", "api.openai.com", "/v1/chat/completions", False, False, Route.PASS),
        ("POST", "example.com", "/v1/responses", False, False, Route.PASS),
        ("POST", "API.OpenAI.com", "/v1/responses", False, False, Route.RESPONSES),
    ],
)
def test_classify(method, host, path, reverse, upgrade, route):
    assert classify(method, host, path, reverse=reverse, upgrade=upgrade, rules=RULES) is route


def test_rule_parse():
    assert InterceptRule.parse("https://chatgpt.com/backend-api/codex/") == InterceptRule(
        "chatgpt.com", "/backend-api/codex"
    )
    with pytest.raises(ValueError):
        InterceptRule.parse("/v1")
