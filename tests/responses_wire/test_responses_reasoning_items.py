"""Reasoning items on the Responses wire: what the sealed record keeps of a provider's item,
and the item each provider gets back (core/responses_wire/reasoning_items.py, and the
``origin``/``item`` fields the carrier seals for it)."""

from __future__ import annotations

import json

import pytest
from wire_helpers import carrier

from mitmrelay.core.carrier import PREFIX
from mitmrelay.core.reasoning import ReasoningPayload
from mitmrelay.core.responses_wire.reasoning_items import (
    native_item,
    native_record,
    readable_text,
    shaped,
)

PROVIDER_ITEMS = {
    # DeepSeek (vercel/ai deepseek-tool-call fixture): raw text as content, empty summary.
    "deepseek": {
        "type": "reasoning",
        "id": "2745e232-0a17-4f92-8d72-122b2683de48",
        "status": "completed",
        "content": [{"type": "reasoning_text", "text": "The user asks."}],
        "summary": [],
    },
    # Kimi: summary only, encrypted_content null.
    "kimi": {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": "Plan."}],
        "encrypted_content": None,
    },
    # Ollama: the plain thinking in both summary and encrypted_content.
    "ollama": {
        "type": "reasoning",
        "id": "rs_resp",
        "summary": [{"type": "summary_text", "text": "thinking"}],
        "encrypted_content": "thinking",
    },
    # OpenRouter (an OpenAI model): summary parts plus a blob only it can read.
    "openrouter": {
        "type": "reasoning",
        "id": "rs_or",
        "summary": [{"type": "summary_text", "text": "a"}, {"type": "summary_text", "text": "b"}],
        "encrypted_content": "gAAAAB-opaque",
    },
    # An OpenAI-style server with both a summary and raw content.
    "both": {
        "type": "reasoning",
        "id": "rs_2",
        "summary": [{"type": "summary_text", "text": "short"}],
        "content": [
            {"type": "reasoning_text", "text": "long "},
            {"type": "reasoning_text", "text": "raw"},
        ],
    },
    # A blob with no readable text at all.
    "opaque": {"type": "reasoning", "id": "rs_3", "summary": [], "encrypted_content": "gAAAAB-x"},
}


@pytest.mark.parametrize("name", sorted(PROVIDER_ITEMS))
def test_a_providers_item_comes_back_as_it_gave_it(name):
    item = PROVIDER_ITEMS[name]
    text, record = native_record(item)
    rebuilt = native_item(text, record)
    expected = {k: v for k, v in item.items() if k != "status" and v is not None}
    expected.setdefault("summary", [])
    assert rebuilt == expected
    if name not in ("openrouter", "both"):  # single parts: the text is not kept twice
        assert not text or text not in json.dumps(record)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("deepseek", "The user asks."),
        ("kimi", "Plan."),
        ("openrouter", "a\n\nb"),
        ("both", "long raw"),
        ("opaque", ""),
    ],
)
def test_the_readable_text_is_the_raw_content_else_the_summary(name, text):
    assert readable_text(PROVIDER_ITEMS[name]) == text
    assert native_record(PROVIDER_ITEMS[name])[0] == text


@pytest.mark.parametrize(
    ("form", "item"),
    [
        ("summary", {"type": "reasoning", "summary": [{"type": "summary_text", "text": "t"}]}),
        (
            "content",
            {
                "type": "reasoning",
                "summary": [],
                "content": [{"type": "reasoning_text", "text": "t"}],
            },
        ),
        (
            "encrypted_text",
            {
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "t"}],
                "encrypted_content": "t",
            },
        ),
    ],
)
def test_foreign_text_takes_the_receiving_familys_form(form, item):
    assert shaped("t", form) == item


def test_the_carrier_seals_origin_and_record_and_old_blobs_open_as_before():
    c = carrier()
    payload = ReasoningPayload(
        text="why", origin="deepseek-main", item={"id": "x", "form": "content"}
    )
    blob = c.seal(payload)
    assert blob.startswith(PREFIX) and "deepseek" not in blob
    assert c.open(blob) == payload
    plain = ReasoningPayload(text="why", call_ids=("c",))
    assert c.open(c.seal(plain)) == plain  # no origin: the Chat wire's blob, unchanged


def test_an_item_without_an_id_comes_back_without_one():
    item = {"type": "reasoning", "summary": [{"type": "summary_text", "text": "x"}]}
    text, record = native_record(item)
    assert "id" not in record and native_item(text, record) == item
