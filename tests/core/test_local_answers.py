import json

from openai.types import Model

from mitmrelay.core.errors import ClientRequestError
from mitmrelay.core.local_answers import client_error, internal_error, model_list


def test_client_error_names_the_problem_and_field():
    status, headers, body = client_error(ClientRequestError("input[0]: bad", param="input[0]"))
    error = json.loads(body)["error"]
    assert status == 400 and headers["content-type"] == "application/json"
    assert error == {
        "message": "input[0]: bad",
        "type": "invalid_request_error",
        "param": "input[0]",
        "code": "invalid_request_error",
    }


def test_internal_error_says_nothing_of_the_exception():
    assert b"log" in internal_error("translate this request")[2]


def test_model_list_reads_openai_and_ollama_shapes_for_both_clients():
    openai_style = b'{"object":"list","data":[{"id":"deepseek-chat"},{"id":"deepseek-chat"}]}'
    ollama_style = b'{"models":[{"name":"qwen3:8b"}]}'
    for raw, expected in (
        (openai_style, ["relay-model", "deepseek-chat"]),
        (ollama_style, ["relay-model", "qwen3:8b"]),
        (b"<html>", ["relay-model"]),
    ):
        status, _, body = model_list(raw, ["relay-model"])
        answer = json.loads(body)
        assert status == 200 and answer["models"] == []
        assert [Model.model_validate(m).id for m in answer["data"]] == expected


def test_model_list_keeps_the_routed_names_first_in_order_once():
    _, _, body = model_list(b'{"data":[{"id":"b"},{"id":"z"}]}', ["a", "b", "a", ""])
    assert [m["id"] for m in json.loads(body)["data"]] == ["a", "b", "z"]
    _, _, body = model_list(b"", ["only-routed"])
    assert [m["id"] for m in json.loads(body)["data"]] == ["only-routed"]
