"""Codex's model catalog for the routed model names (``model_catalog_json``).

Theory of operation
-------------------
Codex shapes its requests by the model's catalog entry (docs/codex-contract.md §1.2, §1.3):
a name it does not know gets fallback metadata, no ``apply_patch`` tool, and a context window
of about 272 000 tokens (docs/codex-contract.md §1.4), while auto-compaction fires at 90 % of
the window (docs/codex-contract.md §9.1): too late for a smaller model, too early for a
larger. ``mitmrelay codex-config --catalog`` writes a catalog with one entry per exact
``[models]`` name. The entries are not
written from memory: ``build_catalog`` starts from an entry of the catalog the user's own
Codex ships (``codex debug models --bundled``), so every field that Codex version requires is
there with a value it accepts, and overrides only what the route knows.

Rules:

1. The template is the bundled entry Codex uses for a plain coding model: not "lite"
   (``use_responses_lite`` moves tools into an ``additional_tools`` item, §1.3), freeform
   ``apply_patch``, offered in the API (``pick_template``). Its prompt (``base_instructions``,
   ``model_messages``) is Codex's own, kept as it is.
2. Per route: ``slug`` and ``display_name`` are the model name Codex sends; the context window
   is the route's (``context_window``, else ``DEFAULT_CONTEXT_WINDOW``), so compaction follows
   the routed model; ``apply_patch_tool_type = "freeform"`` (the only way Codex offers
   ``apply_patch`` to a custom slug, §1.2); input modalities from ``vision`` (text only: Codex
   sends no image); reasoning levels only when ``reasoning``.
3. What only OpenAI's service has goes (the bundled fields: docs/codex-contract.md §1.4):
   upgrade prompts, speed and service tiers, the
   websocket preference, and the ``tool_search`` tool (a model the relay serves gets its MCP
   tools directly in ``tools``, §16). The output bound (``max_output_tokens``) has no field in
   Codex's entry: the relay applies it to the upstream request (core/exchange.py rule 4).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .routes import RouteTable, Target

# A window common to the hosted open-weight models (DeepSeek V3.x, Qwen3, GLM); a route
# should say its own.
DEFAULT_CONTEXT_WINDOW = 128_000
# Fields of OpenAI's service that a relayed model must not claim (rule 3), with the value
# that says "none"; keys absent from the template stay absent.
SERVICE_ONLY = {
    "upgrade": None,
    "availability_nux": None,
    "additional_speed_tiers": [],
    "service_tiers": [],
    "default_service_tier": None,
    "prefer_websockets": False,
    "supports_search_tool": False,
    "use_responses_lite": False,
    "auto_compact_token_limit": None,
}


class CatalogError(ValueError):
    """The bundled catalog has no entry to build on."""


def pick_template(bundled: Mapping[str, Any]) -> dict[str, Any]:
    """The bundled entry the routed entries are built on (rule 1). Raises ``CatalogError``."""
    models = bundled.get("models")
    if not isinstance(models, list):
        raise CatalogError("the bundled catalog has no models list")
    for entry in models:
        if (
            isinstance(entry, dict)
            and not entry.get("use_responses_lite")
            and entry.get("apply_patch_tool_type") == "freeform"
            and entry.get("supported_in_api")
            and (entry.get("base_instructions") or entry.get("model_messages"))
        ):
            return entry
    raise CatalogError(
        "the bundled catalog has no plain (non-lite) model with freeform apply_patch to build on"
    )


def catalog_entry(
    template: Mapping[str, Any], name: str, target: Target, priority: int
) -> dict[str, Any]:
    """One routed name's entry (rules 2 and 3)."""
    entry = copy.deepcopy(dict(template))
    window = target.route.context_window or DEFAULT_CONTEXT_WINDOW
    provider = target.provider
    entry.update(
        slug=name,
        display_name=name,
        description=f"{target.upstream_model} at {provider.name} ({provider.base_url}), "
        "through mitmrelay",
        context_window=window,
        max_context_window=window,
        apply_patch_tool_type="freeform",
        input_modalities=["text", "image"] if target.vision else ["text"],
        visibility="list",
        supported_in_api=True,
        priority=priority,
    )
    if "supports_image_detail_original" in entry:
        entry["supports_image_detail_original"] = bool(
            target.vision and template.get("supports_image_detail_original")
        )
    for key, none in SERVICE_ONLY.items():
        if key in entry:
            entry[key] = copy.deepcopy(none)
    if not target.reasoning:
        entry["supported_reasoning_levels"] = []
        entry["default_reasoning_level"] = None
        entry["supports_reasoning_effort_updates"] = False
    return entry


def build_catalog(bundled: Mapping[str, Any], table: RouteTable) -> dict[str, Any]:
    """``{"models": [...]}`` with an entry per exact model name of ``table``, in file order.
    Raises ``CatalogError``."""
    template = pick_template(bundled)
    entries = []
    for priority, name in enumerate(table.exact_names(), start=1):
        target = table.plan(name)[0]
        entries.append(catalog_entry(template, name, target, priority))
    return {"models": entries}
