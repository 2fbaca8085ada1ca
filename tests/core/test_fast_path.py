"""The two branches of every union in models/responses.py agree (see its docstring).

Each union tries a fast branch (pydantic's str discriminator, known types only) before the
tolerant one (Python discriminator, ``Unknown*`` catch-all, typeless messages). The fast branch
must accept only what the tolerant one accepts, giving the same models; otherwise the result
would depend on which branch ran. Checked three ways:

- per union, on generated values (valid, unknown, typeless, broken): fast success implies the
  same tolerant result; the union as a whole gives exactly the tolerant result, or fails with
  the same one-line error (``describe``);
- per request: ``parse_request`` against a reference model whose item and tool unions are the
  tolerant branches alone, for the result, the translation and the 400's message;
- every captured Codex request takes the fast branch everywhere (else no speed-up in practice).
"""

from __future__ import annotations

import json
from contextlib import suppress
from functools import cache
from typing import Annotated, Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field, TypeAdapter, ValidationError, create_model
from support.captured import request_bodies

from mitmrelay.core.errors import ClientRequestError
from mitmrelay.core.request import parse_request, translate_request
from mitmrelay.models.responses import (
    ContentPart,
    InputItem,
    NestedTool,
    ResponsesRequest,
    Tool,
    UnknownTool,
    describe,
)

BODIES = request_bodies()


def branches(union: Any) -> tuple[Any, Any]:
    """``(fast, tolerant)`` of a union built by ``_union``, each with its discriminator."""
    both = get_args(union)[0]  # Annotated[fast, Tag] | Annotated[tolerant, Tag]
    # Nested Annotated flatten: Annotated[members, discriminator, branch tag].
    fast, tolerant = (Annotated[get_args(branch)[:-1]] for branch in get_args(both))
    return fast, tolerant


@cache
def adapters(union: Any) -> tuple[TypeAdapter, TypeAdapter, TypeAdapter]:
    fast, tolerant = branches(union)
    return TypeAdapter(list[fast]), TypeAdapter(list[tolerant]), TypeAdapter(list[union])


def same(a: list[Any], b: list[Any]) -> bool:
    """Same classes, same fields, same extras (``==`` on models ignores none of these; items
    and parts are dicts, told apart by their ``type``)."""
    return [type(x) for x in a] == [type(x) for x in b] and a == b


# ----------------------------------------------------------------------------- generated values

ODD = st.one_of(
    st.none(), st.integers(), st.booleans(), st.just([]), st.just({}), st.just([{"x": 1}])
)
TEXT = st.text("ab \n", max_size=4)


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` as is (often), or with a field dropped or replaced, or an extra field."""
    value = dict(base)
    for key in draw(st.lists(st.sampled_from(sorted(base)), max_size=2, unique=True)):
        if draw(st.booleans()):
            del value[key]
        else:
            value[key] = draw(ODD)
    if draw(st.integers(0, 3)) == 0:
        value["future_field"] = draw(TEXT)
    return value


def one_of_mutated(*bases: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy:
    return st.one_of(*(base.flatmap(mutated) for base in bases))


def fixed(**fields: Any) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {k: v if isinstance(v, st.SearchStrategy) else st.just(v) for k, v in fields.items()}
    )


PARTS = one_of_mutated(
    fixed(type="input_text", text=TEXT),
    fixed(type="output_text", text=TEXT, annotations=st.just([])),
    fixed(type="refusal", refusal=TEXT),
    fixed(type="input_image", image_url=st.sampled_from(["data:x", "https://h/i.png"])),
    fixed(type=st.sampled_from(["input_audio", "input_file"]), data=TEXT),  # unknown
)
CONTENT = st.one_of(TEXT, st.lists(PARTS, max_size=3))
FUNCTION = fixed(type="function", name=st.sampled_from(["f", "g"]), parameters=st.just({}))
CUSTOM = fixed(type="custom", name="apply_patch", format=st.just({"type": "text"}))
NESTED_TOOLS = one_of_mutated(FUNCTION, CUSTOM, fixed(type="brand_new_tool"))
TOOLS = one_of_mutated(
    FUNCTION,
    CUSTOM,
    fixed(type="namespace", name="mcp__s", tools=st.lists(NESTED_TOOLS, max_size=2)),
    fixed(type=st.sampled_from(["web_search", "local_shell", "mcp"])),  # hosted
    fixed(type="brand_new_tool", x=TEXT),  # unknown
)
ROLE = st.sampled_from(["user", "assistant", "developer", "system"])
ITEMS = one_of_mutated(
    fixed(type="message", role=ROLE, content=CONTENT),
    fixed(role=ROLE, content=CONTENT),  # typeless: a message
    fixed(
        type="reasoning",
        summary=st.lists(fixed(type="summary_text", text=TEXT), max_size=2),
        encrypted_content=st.none(),
    ),
    fixed(type="function_call", call_id="c1", name="f", arguments="{}"),
    fixed(type="function_call_output", call_id="c1", output=CONTENT),
    fixed(type="custom_tool_call", call_id="c2", name="apply_patch", input=TEXT),
    fixed(type="custom_tool_call_output", call_id="c2", output=CONTENT),
    fixed(type="compaction", encrypted_content=TEXT),
    fixed(type="compaction_trigger"),
    fixed(type="additional_tools", tools=st.lists(TOOLS, max_size=2)),
    fixed(type=st.sampled_from(["tool_search_call", "tool_search_output"]), call_id="t"),
    fixed(type="agent_message", text=TEXT),  # unknown
)


def check_union(union: Any, values: list[Any]) -> None:
    fast, tolerant, both = adapters(union)
    try:
        expected = tolerant.validate_python(values)
    except ValidationError as e:
        with pytest.raises(ValidationError) as got:
            both.validate_python(values)
        assert describe(got.value) == describe(e)
        with pytest.raises(ValidationError):
            fast.validate_python(values)
        return
    assert same(both.validate_python(values), expected)
    assert same(both.validate_json(json.dumps(values)), expected)
    with suppress(ValidationError):  # unknown or typeless: the tolerant branch's job
        assert same(fast.validate_python(values), expected)


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.lists(PARTS, max_size=3))
def test_content_part_branches_agree(values):
    check_union(ContentPart, values)


@SETTINGS
@given(st.lists(TOOLS, max_size=3))
def test_tool_branches_agree(values):
    check_union(Tool, values)


@SETTINGS
@given(st.lists(NESTED_TOOLS, max_size=3))
def test_nested_tool_branches_agree(values):
    check_union(NestedTool, values)


@SETTINGS
@given(st.lists(ITEMS, max_size=4))
def test_input_item_branches_agree(values):
    check_union(InputItem, values)


# ----------------------------------------------------------------------------- whole requests

# The request with only the tolerant branches at its top level (nested unions are checked
# above): what parse_request returned before the fast branches existed.
TolerantRequest = create_model(
    "ResponsesRequest",
    __base__=ResponsesRequest,
    input=(str | list[branches(InputItem)[1]], Field(default_factory=list)),
    tools=(list[branches(Tool)[1]] | None, None),
)


def reference(body: bytes) -> ResponsesRequest | str:
    try:
        return TolerantRequest.model_validate_json(body)
    except ValidationError as e:
        return describe(e)


@SETTINGS
@given(
    st.lists(ITEMS, max_size=5),
    st.one_of(st.none(), st.lists(TOOLS, max_size=3)),
)
def test_parse_request_matches_the_tolerant_reference(items, tools):
    body = {"model": "m", "input": items, **({"tools": tools} if tools is not None else {})}
    raw = json.dumps(body).encode()
    want = reference(raw)
    if isinstance(want, str):
        with pytest.raises(ClientRequestError) as err:
            parse_request(raw)
        assert err.value.message == f"invalid Responses request: {want}"
        return
    got = parse_request(raw)
    assert same(got.input, want.input) and same(got.tools or [], want.tools or [])
    assert got.model_dump() == want.model_dump()
    try:
        expected = translate_request(want, upstream_model="up")
    except ClientRequestError as e:
        with pytest.raises(ClientRequestError) as err:
            translate_request(got, upstream_model="up")
        assert err.value.message == e.message
        return
    chat, context = translate_request(got, upstream_model="up")
    assert chat == expected[0] and context == expected[1]


@pytest.mark.parametrize("name", sorted(BODIES))
def test_captured_requests_take_the_fast_branch_everywhere(name):
    body = BODIES[name]
    fast_items, fast_parts, fast_tools, fast_nested = (
        adapters(u)[0] for u in (InputItem, ContentPart, Tool, NestedTool)
    )
    fast_items.validate_python(body["input"])
    for item in body["input"]:
        for key in ("content", "output"):
            if isinstance(item.get(key), list) and item.get("type") != "reasoning":
                fast_parts.validate_python(item[key])
    tools = [*body.get("tools", ())]
    tools += [t for i in body["input"] if i.get("type") == "additional_tools" for t in i["tools"]]
    fast_tools.validate_python(tools)
    for tool in tools:
        if tool["type"] == "namespace":
            fast_nested.validate_python(tool["tools"])
    raw = json.dumps(body).encode()
    assert parse_request(raw).model_dump() == TolerantRequest.model_validate_json(raw).model_dump()


def test_unknown_types_fail_the_fast_branch_and_are_kept_by_the_tolerant_one():
    fast_items, _, items = adapters(InputItem)
    value = [{"type": "agent_message", "text": "?"}, {"role": "user", "content": "typeless"}]
    with pytest.raises(ValidationError):
        fast_items.validate_python(value[:1])
    with pytest.raises(ValidationError):
        fast_items.validate_python(value[1:])
    # Items and parts are plain dicts (models/responses.py): kept as they came, no type added.
    assert items.validate_python(value) == value
    fast_parts, _, parts = adapters(ContentPart)
    with pytest.raises(ValidationError):
        fast_parts.validate_python([{"type": "input_audio"}])
    assert parts.validate_python([{"type": "input_audio"}]) == [{"type": "input_audio"}]
    assert isinstance(adapters(Tool)[2].validate_python([{"type": "brand_new"}])[0], UnknownTool)


@pytest.mark.parametrize("kind", [[], {}, ["message"]])
def test_a_type_that_is_not_a_string_is_a_400_naming_it(kind):
    with pytest.raises(ClientRequestError) as err:
        parse_request(json.dumps({"model": "m", "input": [{"type": kind}]}).encode())
    assert err.value.param == "input[0].type" and err.value.status == 400
