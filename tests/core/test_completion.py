"""Non-streaming Chat completions -> Response objects, validated by the openai SDK."""

from __future__ import annotations

import itertools
import json

from chat_streams import CTX
from openai.types.responses import Response

from mitmrelay.core.completion import translate_completion


def translate(message: dict, finish: str = "stop", **extra) -> dict:
    ids = itertools.count(1)
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "up",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        **extra,
    }
    response = translate_completion(
        json.dumps(body).encode(),
        CTX,
        response_id="resp_9",
        created_at=5,
        new_id=lambda p: f"{p}_{next(ids)}",
        upstream="vllm",
    )
    Response.model_validate(response)  # the SDK's own model accepts it
    return response


def test_message_reasoning_calls_and_usage():
    r = translate(
        {
            "role": "assistant",
            "reasoning_content": "think",
            "content": "hello",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "exec_command", "arguments": '{"cmd":"ls"}'},
                },
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "apply_patch", "arguments": '{"input":"*** Begin Patch"}'},
                },
            ],
        },
        finish="tool_calls",
    )
    assert r["status"] == "completed"
    assert [i["type"] for i in r["output"]] == [
        "reasoning",
        "message",
        "function_call",
        "custom_tool_call",
    ]
    assert r["output"][3]["input"] == "*** Begin Patch"
    assert r["usage"]["total_tokens"] == 18


def test_length_is_incomplete():
    r = translate({"role": "assistant", "content": "cut"}, finish="length")
    assert r["status"] == "incomplete"
    assert r["incomplete_details"] == {"reason": "max_output_tokens"}


def test_not_json_fails():
    r = translate_completion(
        b"<html>", CTX, response_id="r", created_at=1, new_id=lambda p: p, upstream="vllm"
    )
    assert r["status"] == "failed" and r["error"]["code"] == "server_error"


def test_feeding_the_chunk_parsed_or_as_sse_gives_the_same_bytes():
    """The addon may feed a completion as SSE bytes; translate_completion hands the parsed
    chunk over. Both are the same translation."""
    from chat_streams import translator
    from test_stream_golden import COMPLETIONS

    from mitmrelay.core.completion import completion_as_sse, completion_chunk

    for name, body in COMPLETIONS.items():
        try:
            chunk = completion_chunk(body)
        except ValueError:
            continue
        as_sse, parsed = translator(), translator()
        assert as_sse.feed(completion_as_sse(body)) + as_sse.finish() == (
            parsed.feed_chunk(chunk) + parsed.finish()
        ), name
    done = translator()
    done.fail("x", "y")
    assert done.feed_chunk({}) == b""
