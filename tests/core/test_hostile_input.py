"""Hostile request bodies at the core (parse_request + translate_request): every body gets a
Responses-shaped 4xx (``ClientRequestError``) or a translation a strict Chat server accepts,
never another exception. Bodies come from hypothesis strategies built from the wire models, from
random edits of the captured Codex requests, and from raw bytes (support/hostile.py). Plus the
specific refusals: image URL schemes, control characters in identifiers, 64 MB bodies with
bounded memory, and the reasoning key file's permissions."""

from __future__ import annotations

import base64
import gc
import json
import os
import tracemalloc
from collections.abc import Callable

import pydantic_core
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from support.hostile import (
    HOSTILE_STRINGS,
    INJECTED,
    ITEM_TYPES,
    chat_problems,
    fixtures,
    mutate,
    requests,
)

from mitmrelay.core import local_answers
from mitmrelay.core.body import JsonBody, json_body
from mitmrelay.core.carrier import SealedReasoningCarrier
from mitmrelay.core.errors import ClientRequestError
from mitmrelay.core.profiles import PROFILES
from mitmrelay.core.request import parse_request, translate_request
from mitmrelay.keyfile import KEY_FILE, load_or_create_key

CARRIER = SealedReasoningCarrier(bytes(range(32)), os.urandom)
FIXTURES = fixtures()
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def relay_core(raw: bytes, profile: str = "generic") -> dict | ClientRequestError:
    """What the relay's core makes of ``raw``: the Chat body, or the client error. Any other
    exception fails the test that calls it."""
    try:
        request = parse_request(raw)
        chat, _ = translate_request(
            request, upstream_model="upstream-model", profile=PROFILES[profile], carrier=CARRIER
        )
    except ClientRequestError as e:
        return e
    return chat


def assert_sound(result: dict | ClientRequestError) -> None:
    if isinstance(result, ClientRequestError):
        assert 400 <= result.status < 500
        status, headers, body = local_answers.client_error(result)
        error = json.loads(body)["error"]  # OpenAI's shape: Codex and the SDK read it
        assert status == result.status and headers["content-type"] == "application/json"
        assert set(error) == {"message", "type", "param", "code"} and error["message"]
        assert "\n" not in error["message"] and "\r" not in error["message"]
        return
    assert chat_problems(result) == []
    assert result["model"] == "upstream-model"
    json.dumps(result, allow_nan=False)  # what goes upstream is strict JSON


# ---------------------------------------------------------------------- fuzzing


@FUZZ
@given(body=requests(), profile=st.sampled_from(sorted(PROFILES)))
def test_any_body_shaped_by_the_wire_models_gets_a_4xx_or_a_sound_translation(body, profile):
    assert_sound(relay_core(json.dumps(body).encode(), profile))


@FUZZ
@given(
    case=st.sampled_from(FIXTURES),
    rng=st.randoms(use_true_random=False),
    profile=st.sampled_from(sorted(PROFILES)),
)
def test_any_edit_of_a_captured_codex_request_gets_a_4xx_or_a_sound_translation(case, rng, profile):
    _, body = case
    assert_sound(relay_core(json.dumps(mutate(body, rng)).encode(), profile))


@FUZZ
@given(raw=st.binary(max_size=200))
@example(raw=b"")
@example(raw=b"\xff\xfe{")
@example(raw=b'{"model": "m", "input": "x", "temperature": NaN}')
@example(raw=b'{"model": "m", "input": "x", "max_output_tokens": 1e400}')
@example(raw=b'{"model": "m", "input": "x", "metadata": {"a": [Infinity]}}')
@example(
    raw=b'{"model": "m", "input": "x", "tools": '
    b'[{"type": "function", "name": "f", "parameters": {"minimum": -Infinity}}]}'
)
@example(raw=b'{"model": "m", "input": [' * 3000)
def test_any_bytes_get_a_4xx_or_a_sound_translation(raw):
    assert_sound(relay_core(raw))


@FUZZ
@given(case=st.sampled_from(FIXTURES), cut=st.integers(0, 10**6), flip=st.integers(0, 255))
def test_a_truncated_or_bit_flipped_codex_request_gets_a_4xx_or_a_sound_translation(
    case, cut, flip
):
    raw = bytearray(json.dumps(case[1]).encode())
    at = cut % len(raw)
    assert_sound(relay_core(bytes(raw[:at])))
    raw[at] ^= flip
    assert_sound(relay_core(bytes(raw)))


def test_every_captured_request_translates_soundly():
    for name, body in FIXTURES:
        result = relay_core(json.dumps(body).encode())
        assert not isinstance(result, ClientRequestError), (name, result)
        assert_sound(result)


# ---------------------------------------------------------------------- specific refusals


def message_with_image(url: str) -> dict:
    return {
        "model": "gpt-5.5",
        "input": [
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "look"},
                    {"type": "input_image", "image_url": url},
                ],
            }
        ],
    }


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("file:///etc/passwd", "'file'"),
        ("FTP://host/x.png", "'FTP'"),
        ("gopher://127.0.0.1:6379/_x", "'gopher'"),
        ("javascript:alert(1)", "'javascript'"),
        ("/etc/passwd", "none"),
        ("", "none"),
    ],
)
def test_image_url_schemes_other_than_http_https_data_are_a_400_naming_the_field(url, scheme):
    result = relay_core(json.dumps(message_with_image(url)).encode())
    assert isinstance(result, ClientRequestError) and result.status == 400
    assert result.param == "input[0].content[1].image_url"
    assert f"must be an http(s) URL or a data: URL (scheme {scheme})" in result.message
    assert "passwd" not in result.message  # the URL itself is never echoed


def test_image_url_in_a_tool_output_is_checked_too():
    body = {
        "model": "gpt-5.5",
        "input": [
            {"type": "function_call", "call_id": "c1", "name": "view_image", "arguments": "{}"},
            {
                "type": "function_call_output",
                "call_id": "c1",
                "output": [{"type": "input_image", "image_url": "file:///x.png"}],
            },
        ],
    }
    result = relay_core(json.dumps(body).encode())
    assert isinstance(result, ClientRequestError) and result.param == "input[1].output[0].image_url"


@pytest.mark.parametrize(
    "url", ["https://example.com/a.png", "HTTP://example.com/a.png", "data:image/png;base64,AA"]
)
def test_http_https_and_data_image_urls_pass(url):
    chat = relay_core(json.dumps(message_with_image(url)).encode())
    assert not isinstance(chat, ClientRequestError)
    assert chat["messages"][0]["content"][1]["image_url"]["url"] == url


def _call(**fields: str) -> dict:
    item = {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": "{}"}
    return {**item, **fields}


IDENTIFIER_CASES = {
    "model": ({"model": "m\r\nX-Injected: 1", "input": "hi"}, "model"),
    "previous_response_id": (
        {"model": "m", "input": "hi", "previous_response_id": "resp_1\n" + INJECTED},
        "previous_response_id",
    ),
    "call_id": ({"model": "m", "input": [_call(call_id="c\x00")]}, "input[0].call_id"),
    "item id": ({"model": "m", "input": [_call(id="fc\u2028x")]}, "input[0].id"),
    "call name": ({"model": "m", "input": [_call(name="exec\rx")]}, "input[0].name"),
    "namespace": ({"model": "m", "input": [_call(namespace="mcp\n")]}, "input[0].namespace"),
    "tool name": (
        {"model": "m", "input": "hi", "tools": [{"type": "function", "name": "a\nb"}]},
        "tools[0].name",
    ),
    "custom tool name": (
        {"model": "m", "input": "hi", "tools": [{"type": "custom", "name": "patch\x85"}]},
        "tools[0].name",
    ),
    "namespaced tool name": (
        {
            "model": "m",
            "input": "hi",
            "tools": [
                {
                    "type": "namespace",
                    "name": "mcp__s",
                    "tools": [{"type": "function", "name": "x\x1b[2J"}],
                }
            ],
        },
        "tools[0].tools[0].name",
    ),
}


@pytest.mark.parametrize("case", IDENTIFIER_CASES, ids=list(IDENTIFIER_CASES))
def test_control_characters_in_names_and_ids_are_a_400_naming_the_field(case):
    body, field = IDENTIFIER_CASES[case]
    result = relay_core(json.dumps(body).encode())
    assert isinstance(result, ClientRequestError) and result.status == 400
    assert result.param == field
    assert "must not contain control characters or line breaks" in result.message
    assert INJECTED not in result.message and "\n" not in result.message


def test_ordinary_unicode_in_names_and_ids_passes():
    body = {"model": "modèle-😀", "input": [_call(call_id="call_ü", name="exec_command")]}
    assert not isinstance(relay_core(json.dumps(body).encode()), ClientRequestError)


def test_hostile_strings_in_free_text_are_content_not_errors():
    # Prompts may contain anything: they are JSON-escaped on the way up, never refused.
    body = {"model": "m", "input": "\n".join(HOSTILE_STRINGS), "instructions": "\r\n\x00"}
    chat = relay_core(json.dumps(body).encode())
    assert not isinstance(chat, ClientRequestError)
    assert chat["messages"][1]["content"] == "\n".join(HOSTILE_STRINGS)


# ---------------------------------------------------------------------- 64 MB bodies

BODY_MB = 64


def big_image_body(mb: int) -> bytes:
    raw_image = os.urandom(mb * 1024 * 1024 * 3 // 4)
    url = "data:image/png;base64," + base64.b64encode(raw_image).decode()
    del raw_image
    return json.dumps(message_with_image(url)).encode()


def peak_ratio(body: bytes, serialise: Callable[[dict], bytes]) -> float:
    """Peak traced memory of validating, translating and serialising ``body`` for the upstream,
    over the body's size (the body itself was allocated before)."""
    gc.collect()
    tracemalloc.start()
    try:
        chat, _ = translate_request(
            parse_request(body), upstream_model="up", profile=PROFILES["generic"], carrier=CARRIER
        )
        upstream_body = serialise(chat)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(upstream_body) > len(body) * 0.99  # the image went through whole
    return peak / len(body)


@pytest.fixture(scope="module")
def body_64mb() -> bytes:
    return big_image_body(BODY_MB)


def test_a_64_mb_image_body_is_validated_translated_and_serialised_within_3x(body_64mb):
    # Validation and translation keep the image as the one string pydantic made (1.0x);
    # pydantic_core.to_json writes the upstream body as bytes in one go (1.0x more).
    ratio = peak_ratio(body_64mb, pydantic_core.to_json)
    print(f"64 MB body, core + to_json: peak {ratio:.2f}x the body")
    assert ratio <= 3.0


def test_serialising_and_sending_as_the_exchange_does_stays_within_3x(body_64mb):
    # As an attempt's body is made (core/body.py) and then written by the link, chunk by chunk:
    # the image string is the request's own, never copied whole (tracemalloc sees the chunks;
    # the shell's JSON, written by pydantic in Rust, is small).
    def serialise_and_send(chat: dict) -> JsonBody:
        upstream = json_body(chat, len(body_64mb))
        assert isinstance(upstream, JsonBody)
        assert sum(len(chunk) for chunk in upstream.chunks()) == len(upstream)
        return upstream

    ratio = peak_ratio(body_64mb, serialise_and_send)
    print(f"64 MB body, core + the body sent in chunks: peak {ratio:.2f}x the body")
    assert ratio <= 1.5


# ---------------------------------------------------------------------- the reasoning key


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606, 0o700, 0o620])
def test_a_key_file_open_to_other_users_is_refused_with_the_fix(tmp_path, mode):
    key = load_or_create_key(tmp_path)
    path = tmp_path / KEY_FILE
    os.chmod(path, mode)
    if mode & 0o077 == 0:  # 0700: owner only (the exec bit is harmless)
        assert load_or_create_key(tmp_path) == key
        return
    with pytest.raises(ValueError) as raised:
        load_or_create_key(tmp_path)
    message = str(raised.value)
    assert message == (
        f"{path} is open to other users (mode {mode:04o}); it must be private to its owner: "
        f"run chmod 600 {path}"
    )
    assert raised.value.__context__ is None  # one exception, whoever prints it
    os.chmod(path, 0o600)  # the fix it names works
    assert load_or_create_key(tmp_path) == key


def test_a_new_key_file_is_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        load_or_create_key(tmp_path)
    finally:
        os.umask(old)
    assert os.stat(tmp_path / KEY_FILE).st_mode & 0o077 == 0


def test_a_key_file_with_binary_junk_is_refused(tmp_path):
    path = tmp_path / KEY_FILE
    path.write_bytes(b"\xff" * 64)
    os.chmod(path, 0o600)
    with pytest.raises(ValueError, match="does not hold a 32-byte hex key"):
        load_or_create_key(tmp_path)


def test_the_model_built_strategy_reaches_the_item_types():
    # Not vacuous: the bodies the fuzz tests draw carry items of many types. Derandomized, so
    # the same sample every run (a random one sometimes drew only four types).
    seen = set()

    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests())
    def sample(body):
        items = body.get("input")
        for item in items if isinstance(items, list) else ():
            if isinstance(item, dict) and isinstance(item.get("type"), str):
                seen.add(item["type"])

    sample()
    assert len(seen & set(ITEM_TYPES)) >= 4, seen


def test_the_model_built_strategy_reaches_both_outcomes():
    outcomes = set()

    @settings(
        max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(requests())
    def sample(body):
        outcomes.add(type(relay_core(json.dumps(body).encode())).__name__)

    sample()
    assert outcomes == {"dict", "ClientRequestError"}
