"""Deferred tools: Codex's client-executed ``tool_search``, for upstreams that have no such tool.

Theory of operation
-------------------
With ``gpt-5.5`` (and so every unmodified Codex), Codex leaves MCP tools out of ``tools``. It
offers ``{"type": "tool_search", "execution": "client", ...}`` instead, expects the model to
answer with a ``tool_search_call`` item, runs the search itself (BM25 over the deferred tools'
metadata) and sends the tools it found in a ``tool_search_output`` item of the next request;
``tools`` itself never changes (docs/tool-search.md §2, captures in
``tests/fixtures/tool-search/``). An upstream without that tool would never learn the MCP tools
exist, so this module plays the part the Responses API plays for OpenAI's models:

1. The search is offered as an ordinary function named ``tool_search`` with the description and
   parameter schema Codex sent (``query``, ``limit``), or ours when a client sent none. Only the
   client-executed form: a hosted search (``execution`` absent or ``"server"``) searches tools
   the request declares with ``defer_loading``, which an upstream is simply offered outright.
2. A replayed ``tool_search_call`` is a call of that function (``arguments`` is a JSON object on
   the Responses side, a JSON string on the Chat side).
3. A ``tool_search_output`` is that call's answer: a compact list of the tools found, by the
   names the upstream calls them. Its tools, functions and namespaces alike, are added to the
   upstream's tools for this request, so the model can call what it found (the caller flattens
   them exactly as it flattens ``tools``: core/toolnames.py). A tool found twice is offered once.
4. Bound: a provider refuses a request with too many tools (OpenAI: "A max of 128 functions are
   supported", openai-python ``types/evals/create_eval_completions_run_data_source.py``). The
   client's own tools are always kept; found tools fill what is left of ``max_tools``, those
   found last first (the model is most likely to want what it just searched for), and are
   offered in the order they were found (a stable prefix for the upstream's prompt cache). A tool
   left out is named as such in its search's answer and logged at DEBUG; searching again
   brings it back.
5. Response side: the model's call of the function goes back to Codex as a ``tool_search_call``
   item with ``execution: "client"`` and ``arguments`` a JSON object ``{"query", "limit"}``.
   Codex reads it into ``SearchToolCallParams {query: String, limit: Option<usize>}``
   (openai/codex ``codex-rs/protocol/src/models.rs``, ``codex-rs/core/src/tools/router.rs``)
   and answers anything else with an empty result and no error (captures ``limit-float``,
   ``string-arguments``, ``bad-arguments``): so ``limit`` goes out as a positive integer or not
   at all, and a query the model put under another name is moved to ``query``.

Everything here reads the client's items and tools through ``_get``, so the same functions serve
the pydantic models of the Chat path and the plain dicts of the Responses wire.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

logger = logging.getLogger(__name__)

SEARCH_FUNCTION_NAME: Final = "tool_search"
# Rule 4: OpenAI's documented maximum number of functions per request; providers that take
# fewer say so in their profile (``max_tools`` passed by the caller).
DEFAULT_MAX_TOOLS: Final = 128
# One line per tool in a search's answer; the full description is in the tool itself.
MAX_LISTED_DESCRIPTION_CHARS: Final = 160

# For a client-executed search that came without its own text (Codex always sends both:
# tests/fixtures/tool-search/codex-0.169/search-01.request.json).
DEFAULT_DESCRIPTION: Final = (
    "Searches the tools that were not provided up front (deferred tools, such as MCP tools) by "
    "keywords. The tools found become callable functions from your next step on."
)
DEFAULT_PARAMETERS: Final[Mapping[str, Any]] = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "description": "Search query for deferred tools."},
        "limit": {
            "type": "number",
            "description": "Maximum number of tools to return. Defaults to 8.",
        },
    },
    "required": ["query"],
    "additionalProperties": False,
}


def _get(obj: Any, name: str) -> Any:
    """A field of a client item or tool: a pydantic model (Chat path) or a dict (Responses)."""
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


# ----------------------------------------------------------------------------- request side


def is_client_search(tool: Any) -> bool:
    """Whether ``tool`` is a ``tool_search`` the client runs itself (rule 1)."""
    return _get(tool, "type") == "tool_search" and _get(tool, "execution") == "client"


@dataclass(frozen=True, slots=True)
class SearchFunction:
    """The search as an ordinary function: what the upstream is offered (rule 1)."""

    name: str
    description: str
    parameters: Mapping[str, Any]


def search_function(tool: Any) -> SearchFunction:
    """The function offered upstream for a client-executed ``tool_search`` tool."""
    parameters = _get(tool, "parameters")
    return SearchFunction(
        name=SEARCH_FUNCTION_NAME,
        description=_get(tool, "description") or DEFAULT_DESCRIPTION,
        parameters=parameters if isinstance(parameters, Mapping) else DEFAULT_PARAMETERS,
    )


def history_arguments(arguments: Any) -> str:
    """A replayed search's arguments as the JSON string a function call carries (rule 2)."""
    if isinstance(arguments, str):
        return arguments.strip() or "{}"
    if arguments is None:
        return "{}"
    return json.dumps(arguments, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class FoundTool:
    """One tool a search returned. ``tool`` is the client's definition (a function or a freeform
    tool), ``namespace`` the namespace it came in, if any."""

    name: str
    namespace: str | None
    tool: Any


def found_tools(tools: Iterable[Any]) -> list[FoundTool]:
    """The tools of a ``tool_search_output``, namespaces opened. Other entries (a hosted tool,
    an unknown type) cannot be called through a function: left out, one DEBUG line each."""
    out: list[FoundTool] = []
    for tool in tools:
        kind = _get(tool, "type")
        if kind == "namespace" and isinstance(_get(tool, "name"), str):
            namespace = _get(tool, "name")
            inners = _get(tool, "tools")
            for inner in inners if isinstance(inners, list) else ():
                if _callable(inner):
                    out.append(FoundTool(_get(inner, "name"), namespace, inner))
                else:
                    logger.debug(
                        "tool_search found a %r in %s; not offered", _get(inner, "type"), namespace
                    )
        elif _callable(tool):
            out.append(FoundTool(_get(tool, "name"), None, tool))
        else:
            logger.debug("tool_search found a tool of type %r; not offered", kind)
    return out


def _callable(tool: Any) -> bool:
    """A function or a freeform tool with a name: what an upstream can be offered."""
    name = _get(tool, "name")
    return _get(tool, "type") in ("function", "custom") and isinstance(name, str) and bool(name)


@dataclass(slots=True)
class _Search:
    arguments: Any = None  # as the replayed call carried them (rule 5 explains empty answers)
    found: list[FoundTool] | None = None  # None until its output is read


@dataclass(slots=True)
class Discoveries:
    """The searches of one request's history and the tools they found (rules 2-4).

    Feed it in history order: ``add_call`` for each ``tool_search_call``, ``add_output`` for
    each ``tool_search_output``; then ``offered(budget)`` once, then ``answer(call_id, ...)``
    for each output. Mutable, per request; never shared.
    """

    _searches: dict[str, _Search] = field(default_factory=dict)
    _order: list[FoundTool] = field(default_factory=list)  # every found tool, as found
    _callable: set[tuple[str | None, str]] | None = None  # set by offered()
    _budget: int = 0

    def __bool__(self) -> bool:
        return bool(self._searches or self._order)

    def add_call(self, call_id: str, arguments: Any) -> None:
        self._searches.setdefault(call_id, _Search()).arguments = arguments

    def add_output(self, call_id: str | None, tools: Iterable[Any]) -> None:
        """A search's result. ``call_id`` None: a search the provider ran (never seen from
        Codex); its tools are offered all the same."""
        found = found_tools(tools)
        if call_id is not None:
            self._searches.setdefault(call_id, _Search()).found = found
        self._order.extend(found)

    def offered(
        self, budget: int, declared: Callable[[FoundTool], bool] = lambda tool: False
    ) -> list[FoundTool]:
        """The found tools to offer upstream: at most ``budget``, the last found first, in the
        order found; each tool once; none for which ``declared`` is true (the request offers
        it already, or a tool of the same upstream name) (rule 4)."""
        last_seen: dict[tuple[str | None, str], int] = {}
        already: set[tuple[str | None, str]] = set()
        for position, tool in enumerate(self._order):
            key = (tool.namespace, tool.name)
            if declared(tool):
                already.add(key)
            else:
                last_seen[key] = position
        by_recency = sorted(last_seen, key=last_seen.__getitem__, reverse=True)
        kept = set(by_recency[: max(budget, 0)])
        self._callable, self._budget = kept | already, max(budget, 0)
        if len(kept) < len(by_recency):
            dropped = [f"{ns}.{name}" if ns else name for ns, name in by_recency[len(kept) :]]
            logger.debug(
                "tool_search: %d found tools over the upstream's budget of %d not offered: %s",
                len(dropped),
                self._budget,
                ", ".join(dropped),
            )
        first_seen: dict[tuple[str | None, str], FoundTool] = {}
        for tool in self._order:
            key = (tool.namespace, tool.name)
            if key in kept:
                first_seen.setdefault(key, tool)
        return list(first_seen.values())

    def answered(self) -> list[str]:
        """The call ids of the searches whose output the history holds, in history order."""
        return [call_id for call_id, search in self._searches.items() if search.found is not None]

    def answer(self, call_id: str, upstream_name: Callable[[str, str | None], str]) -> str:
        """The text the upstream reads as the search's result (rule 3). ``upstream_name`` maps
        a client tool to the function name the upstream knows it by."""
        search = self._searches.get(call_id) or _Search()
        found = search.found or []
        if not found:
            return "No tools found." + _why_empty(search.arguments)
        lines = []
        for tool in found:
            name = upstream_name(tool.name, tool.namespace)
            if self._callable is not None and (tool.namespace, tool.name) not in self._callable:
                lines.append(
                    f"- {name}: not offered (the upstream takes at most {self._budget} found "
                    "tools per request; search for it again to use it)"
                )
            else:
                lines.append(f"- {found_line(tool, name)}")
        noun = "tool" if len(found) == 1 else "tools"
        return f"Found {len(found)} {noun}, callable as functions from now on:\n" + "\n".join(lines)


def found_line(tool: FoundTool, name: str) -> str:
    """``name(a, b?): first line of the description``: one found tool, for people and models;
    ``name`` is what the reader calls it by."""
    return f"{name}({_parameter_list(tool.tool)}){_summary(tool.tool)}"


def _why_empty(arguments: Any) -> str:
    """Codex answers a search it could not run like one that found nothing (captures
    ``empty-query``, ``bad-arguments``): say what was wrong, so the model can search again."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return " (the search's arguments were not JSON)"
    if not isinstance(arguments, Mapping):
        return ' (the search\'s arguments must be an object like {"query": "..."})'
    query = arguments.get("query")
    if not isinstance(query, str) or not query.strip():
        return " (the search had no query: pass keywords in `query`)"
    return ""


def _parameter_list(tool: Any) -> str:
    """``text, limit?``: the parameters, the optional ones marked; ``input`` for a freeform
    tool (the upstream sees it with one string parameter)."""
    if _get(tool, "type") == "custom":
        return "input"
    schema = _get(tool, "parameters")
    if not isinstance(schema, Mapping):
        return ""
    properties = schema.get("properties")
    required = schema.get("required")
    required = set(required) if isinstance(required, list) else set()
    if not isinstance(properties, Mapping):
        return ""
    return ", ".join(p if p in required else f"{p}?" for p in properties)


def _summary(tool: Any) -> str:
    description = _get(tool, "description")
    if not isinstance(description, str) or not description.strip():
        return ""
    line = description.strip().splitlines()[0]
    if len(line) > MAX_LISTED_DESCRIPTION_CHARS:
        line = line[: MAX_LISTED_DESCRIPTION_CHARS - 1].rstrip() + "…"
    return ": " + line


# ----------------------------------------------------------------------------- response side


def search_arguments(arguments: str) -> Any:
    """The model's arguments (a JSON string) as the object Codex parses (rule 5): see
    ``codex_search_arguments``. Raises ``ValueError`` when ``arguments`` is not JSON."""
    return codex_search_arguments(json.loads(arguments.strip() or "{}"))


def codex_search_arguments(parsed: Any) -> Any:
    """The model's parsed arguments as the object Codex parses (rule 5).

    ``{"query": str, "limit": int}`` with ``limit`` only when it is a positive whole number
    (``8``, ``8.0``, ``"8"``); a query under another name (the object's only string) is moved
    to ``query``; other keys are dropped. Arguments that hold no query are returned as parsed,
    so the replay shows what the model sent (the answer then says why nothing was found).
    """
    if isinstance(parsed, str):  # a model that encoded its JSON twice
        try:
            parsed = json.loads(parsed)
        except ValueError:
            return parsed
    if not isinstance(parsed, dict):
        return parsed
    query = parsed.get("query")
    if not isinstance(query, str):
        strings = [v for k, v in parsed.items() if isinstance(v, str) and k != "limit"]
        if len(strings) != 1:
            return parsed
        query = strings[0]
    out: dict[str, Any] = {"query": query}
    limit = _positive_int(parsed.get("limit"))
    if limit is not None:
        out["limit"] = limit
    if out != parsed:
        logger.debug("tool_search arguments %s sent to the client as %s", parsed, out)
    return out


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    whole = isinstance(value, int | float) and math.isfinite(value) and value == int(value)
    return int(value) if whole and value >= 1 else None


def search_call_item(
    *, item_id: str, call_id: str, arguments: Any, status: str = "completed"
) -> dict[str, Any]:
    """The ``tool_search_call`` output item Codex executes (rule 5; shape of OpenAI's own, as
    Codex parses it: openai/codex ``codex-rs/codex-api/src/sse/responses.rs``, test
    ``parses_tool_search_call_items``; the openai SDK's ``ResponseToolSearchCall``)."""
    return {
        "id": item_id,
        "type": "tool_search_call",
        "status": status,
        "call_id": call_id,
        "execution": "client",
        "arguments": arguments,
    }
