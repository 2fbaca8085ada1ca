"""The README's recipes for providers that serve the Responses API are routes files the relay
takes: each parses, puts its provider on the Responses wire, and gets the family the recipe
names (guessed from the host, or named), whose Responses row exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mitmrelay.core.responses_wire import RULES
from mitmrelay.core.routes import parse_routes

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Recipes: providers that serve the Responses API"


def recipes() -> list[tuple[str, str]]:
    text = README.read_text()
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n## ", len(SECTION))]
    found = []
    for block in re.split(r"\n(?=\*\*)", section)[1:]:
        family = re.search(r"\(`(\w+)`", block)
        toml = re.search(r"```toml\n(.*?)```", block, re.S)
        assert family and toml, block[:200]
        found.append((family.group(1), toml.group(1)))
    return found


def test_there_is_a_recipe_for_every_provider_that_serves_the_responses_api():
    assert sorted(f for f, _ in recipes()) == sorted(RULES.keys() - {"generic"})


@pytest.mark.parametrize(("family", "toml"), recipes(), ids=[f for f, _ in recipes()])
def test_each_recipe_is_a_routes_file_on_the_responses_wire(family, toml):
    table = parse_routes(toml, source="README", env={}, require_keys=False)
    (provider,) = table.providers.values()
    assert provider.wire == "responses"
    assert provider.profile.name == family
    assert provider.url.endswith("/responses")
    assert table.plan(next(iter(table.models)))
