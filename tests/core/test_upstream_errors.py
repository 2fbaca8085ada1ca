"""Upstream failures in each provider's real wording -> what Codex acts on
(docs/codex-contract.md §8)."""

from __future__ import annotations

import json
import re

import pytest

from mitmrelay.core.upstream_errors import (
    map_error_payload,
    map_transport_error,
    map_upstream_error,
    parse_duration,
)

OPENAI_CTX = {
    "error": {
        "message": "This model's maximum context length is 128000 tokens. "
        "However, your messages resulted in 130000 tokens.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}
CASES = [
    # provider, status, headers, body, expected http status, code, retry-after header
    ("openai", 400, {}, OPENAI_CTX, 400, "context_length_exceeded", None),
    (
        "deepseek",
        400,
        {},
        {
            "error": {
                "message": "This model's maximum context length is 131072 "
                "tokens. However, you requested 140000 tokens (...). "
                "Please reduce the length of the messages.",
                "type": "invalid_request_error",
            }
        },
        400,
        "context_length_exceeded",
        None,
    ),
    (
        "kimi",
        400,
        {},
        {
            "error": {
                "message": "Invalid request: Your request exceeded model token limit: 262144",
                "type": "invalid_request_error",
            }
        },
        400,
        "context_length_exceeded",
        None,
    ),
    (
        "qwen",
        400,
        {},
        {
            "error": {
                "message": "Range of input length should be [1, 129024]",
                "type": "invalid_request_error",
                "code": "invalid_parameter_error",
            }
        },
        400,
        "context_length_exceeded",
        None,
    ),
    (
        "vllm",
        400,
        {},
        {
            "object": "error",
            "message": "This model's maximum context length is "
            "8192 tokens. However, you requested 9000 tokens.",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        },
        400,
        "context_length_exceeded",
        None,
    ),
    (
        "llama.cpp",
        400,
        {},
        {
            "error": {
                "code": 400,
                "message": "the request exceeds the available context size, try increasing it",
                "type": "exceed_context_size_error",
            }
        },
        400,
        "context_length_exceeded",
        None,
    ),
    (
        "ollama",
        400,
        {},
        {"error": {"message": "prompt too long; exceeded max context length by 100 tokens"}},
        400,
        "context_length_exceeded",
        None,
    ),
    ("any", 413, {}, "Request Entity Too Large", 400, "context_length_exceeded", None),
    (
        "openai",
        429,
        {"retry-after": "7"},
        {
            "error": {
                "message": "Rate limit reached for requests",
                "type": "requests",
                "code": "rate_limit_exceeded",
            }
        },
        429,
        "rate_limit_exceeded",
        "7",
    ),
    (
        "openai",
        429,
        {"x-ratelimit-reset-tokens": "6m0s"},
        {"error": {"message": "slow"}},
        429,
        "rate_limit_exceeded",
        "360",
    ),
    (
        "groq",
        429,
        {"retry-after-ms": "1500"},
        {"error": {"message": "Rate limit"}},
        429,
        "rate_limit_exceeded",
        "2",
    ),
    (
        "openrouter",
        429,
        {},
        {"error": {"message": "Rate limit exceeded. Please try again in 20s.", "code": 429}},
        429,
        "rate_limit_exceeded",
        "20",
    ),
    (
        "openai",
        429,
        {},
        {
            "error": {
                "message": "You exceeded your current quota, please check "
                "your plan and billing details.",
                "type": "insufficient_quota",
                "code": "insufficient_quota",
            }
        },
        429,
        "insufficient_quota",
        None,
    ),
    (
        "deepseek",
        402,
        {},
        {"error": {"message": "Insufficient Balance", "type": "unknown_error"}},
        429,
        "insufficient_quota",
        None,
    ),
    ("any", 500, {}, "<html><body>Internal Server Error</body></html>", 500, "server_error", None),
    ("any", 503, {}, {"error": {"message": "overloaded"}}, 503, "server_error", None),
    (
        "openai",
        401,
        {},
        {"error": {"message": "Incorrect API key provided: sk-abc***", "code": "invalid_api_key"}},
        401,
        "invalid_api_key",
        None,
    ),
    (
        "any",
        400,
        {},
        {"error": {"message": "Unsupported parameter: 'foo'", "param": "foo"}},
        400,
        "invalid_request_error",
        None,
    ),
    ("any", 400, {}, b"\xff\xfe not utf8", 400, "invalid_request_error", None),
    ("any", 400, {}, b"", 400, "invalid_request_error", None),
]


@pytest.mark.parametrize(
    ("provider", "status", "headers", "body", "http", "code", "retry"),
    CASES,
    ids=[f"{c[0]}-{c[1]}-{c[5]}" for c in CASES],
)
def test_mapping(provider, status, headers, body, http, code, retry):
    raw = (
        body
        if isinstance(body, bytes)
        else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
    )
    mapped = map_upstream_error(status, headers, raw, upstream="https://up.example/v1")
    assert (mapped.status, mapped.code) == (http, code)
    assert mapped.headers().get("retry-after") == retry
    body = json.loads(mapped.body())
    assert body["error"]["code"] == code and body["error"]["message"]
    assert mapped.failed_error() == {"code": code, "message": mapped.message}


def test_rate_limit_message_has_the_form_codex_parses():
    mapped = map_upstream_error(
        429, {"retry-after": "1.5"}, b'{"error":{"message":"slow"}}', upstream="up"
    )
    # codex-rs parses "try again in <n>s" out of rate_limit_exceeded messages
    # (docs/codex-contract.md §8)
    assert re.search(r"Please try again in 1\.5s\.$", mapped.message)


def test_auth_errors_say_it_is_the_relays_key():
    mapped = map_upstream_error(401, {}, b'{"error":{"message":"bad key"}}', upstream="deepseek")
    assert "relay's upstream API key" in mapped.message and "not your OpenAI key" in mapped.message


def test_retry_after_http_date():
    mapped = map_upstream_error(
        429,
        {"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"},
        b"{}",
        upstream="up",
        now=lambda: 1445412480.0,
    )
    assert mapped.retry_after_s == 10


def test_mid_stream_error_payloads():
    assert (
        map_error_payload({"code": 502, "message": "provider died"}, upstream="openrouter").code
        == "server_error"
    )
    assert (
        map_error_payload({"message": "maximum context length is 8192 tokens"}, upstream="x").code
        == "context_length_exceeded"
    )


@pytest.mark.parametrize("kind", ["connect", "tls", "timeout", "cut"])
def test_transport_errors_are_retryable(kind):
    mapped = map_transport_error(kind, "detail", upstream="https://up/v1")
    assert mapped.code == "server_error" and mapped.status >= 500
    assert "https://up/v1" in mapped.message


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1), ("6m0s", 360), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("2.5", 2.5), ("soon", None)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds
