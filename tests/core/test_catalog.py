"""Codex's model catalog built from a bundled entry and the routes: what each route changes,
and what is kept as Codex shipped it. (The same from the real ``codex debug models
--bundled`` is in tests/addon/test_cli.py; Codex using it in tests/e2e/test_routing_codex.py.)"""

from __future__ import annotations

import copy

import pytest

from mitmrelay.core.catalog import (
    DEFAULT_CONTEXT_WINDOW,
    CatalogError,
    build_catalog,
    catalog_entry,
    pick_template,
)
from mitmrelay.core.routes import parse_routes

LEVELS = [{"effort": e, "description": e} for e in ("low", "medium", "high")]
PLAIN = {
    "slug": "gpt-plain",
    "display_name": "GPT plain",
    "description": "A coding model.",
    "default_reasoning_level": "medium",
    "supported_reasoning_levels": LEVELS,
    "shell_type": "unified_exec",
    "visibility": "list",
    "supported_in_api": True,
    "priority": 13,
    "additional_speed_tiers": ["fast"],
    "service_tiers": [{"id": "priority", "name": "Fast"}],
    "availability_nux": None,
    "upgrade": {"model": "gpt-next", "migration_markdown": "upgrade!"},
    "base_instructions": "You are Codex.",
    "model_messages": {"instructions_template": "You are Codex, {{ personality }}"},
    "apply_patch_tool_type": "freeform",
    "truncation_policy": {"mode": "tokens", "limit": 10000},
    "supports_image_detail_original": True,
    "context_window": 272000,
    "max_context_window": 272000,
    "effective_context_window_percent": 95,
    "input_modalities": ["text", "image"],
    "supports_search_tool": True,
    "use_responses_lite": False,
    "supports_reasoning_effort_updates": False,
}
LITE = {**PLAIN, "slug": "gpt-lite", "use_responses_lite": True, "prefer_websockets": True}
BUNDLED = {"models": [LITE, {"slug": "broken"}, PLAIN]}

ROUTES = """
[providers.deepseek]
base_url = "https://api.deepseek.com/v1"
api_key_env = "UNSET_FOR_CATALOG"

[models."deepseek-chat"]
provider = "deepseek"
context_window = 131072
vision = false
reasoning = false

[models."kimi-k2"]
provider = "deepseek"
upstream_model = "kimi-k2-thinking"
vision = true

[models."qwen/*"]
provider = "deepseek"
"""


def table():
    # The catalog needs names and limits, not keys: an unset key variable is no error here.
    return parse_routes(ROUTES, source="routes.toml", env={}, require_keys=False)


def test_the_template_is_the_plain_freeform_model():
    assert pick_template(BUNDLED) is PLAIN


@pytest.mark.parametrize(
    "bundled",
    [{}, {"models": "x"}, {"models": [LITE]}, {"models": [{**PLAIN, "supported_in_api": False}]}],
)
def test_no_usable_template_is_an_error(bundled):
    with pytest.raises(CatalogError):
        build_catalog(bundled, table())


def test_one_entry_per_exact_name_in_file_order():
    catalog = build_catalog(BUNDLED, table())
    assert [m["slug"] for m in catalog["models"]] == ["deepseek-chat", "kimi-k2"]  # no glob
    assert [m["priority"] for m in catalog["models"]] == [1, 2]


def test_each_entry_carries_what_its_route_says():
    chat, kimi = build_catalog(BUNDLED, table())["models"]
    assert chat["display_name"] == "deepseek-chat"
    assert chat["context_window"] == chat["max_context_window"] == 131072
    assert kimi["context_window"] == DEFAULT_CONTEXT_WINDOW
    assert chat["apply_patch_tool_type"] == kimi["apply_patch_tool_type"] == "freeform"
    assert chat["input_modalities"] == ["text"] and chat["supports_image_detail_original"] is False
    assert kimi["input_modalities"] == ["text", "image"]  # the route overrides the profile
    assert kimi["supports_image_detail_original"] is True
    assert chat["supported_reasoning_levels"] == [] and chat["default_reasoning_level"] is None
    assert kimi["supported_reasoning_levels"] == LEVELS
    assert kimi["default_reasoning_level"] == "medium"
    assert "kimi-k2-thinking at deepseek" in kimi["description"]


def test_what_only_openais_service_has_is_dropped_and_the_rest_kept():
    before = copy.deepcopy(PLAIN)
    entry = catalog_entry(PLAIN, "m", table().plan("kimi-k2")[0], 1)
    assert before == PLAIN  # the template is not changed
    assert entry["upgrade"] is None and entry["service_tiers"] == []
    assert entry["additional_speed_tiers"] == [] and entry["supports_search_tool"] is False
    assert entry["use_responses_lite"] is False
    assert "prefer_websockets" not in entry and "default_service_tier" not in entry
    for kept in ("base_instructions", "model_messages", "truncation_policy", "shell_type"):
        assert entry[kept] == PLAIN[kept]
    assert set(entry) == set(PLAIN)  # the entry shape is the template's


def test_fields_the_template_lacks_are_not_added():
    template = {k: v for k, v in PLAIN.items() if k != "supports_image_detail_original"}
    entry = catalog_entry(template, "m", table().plan("deepseek-chat")[0], 1)
    assert "supports_image_detail_original" not in entry


def test_switches_a_route_leaves_out_come_from_the_profile():
    t = parse_routes(
        ROUTES + '[models."plain"]\nprovider = "deepseek"\n', source="r", env={}, require_keys=False
    )
    entry = build_catalog(BUNDLED, t)["models"][-1]
    target = t.plan("plain")[0]
    assert entry["slug"] == "plain"
    assert (entry["input_modalities"] == ["text", "image"]) is target.provider.profile.vision
    assert bool(entry["supported_reasoning_levels"]) is target.provider.profile.reasoning
