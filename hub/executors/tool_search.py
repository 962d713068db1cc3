"""Tool search: two meta-tools in place of a very large tool list.

With `tool_search = true` a caller's tool list holds `search_tools` and `call_tool` only. `search_tools` ranks the
tools the caller may see (its listing, already filtered by its grant) against a query with BM25 over the words of
each tool's name, description and argument names, and returns the best matches with their input schemas, so a
model reads a handful of definitions instead of hundreds. `call_tool` names one of them: it becomes the plain
`mcp.tool` call of that tool, under its real name, so grants, limits, guardrails and the request log apply
exactly as to a direct call.

Pure Python and in memory: an index is built once per listing (the listing is cached per key and catalog version)
and a query scores only the tools that share a word with it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import orjson

from hub.call import Call, Principal
from hub.pipeline import Handler

SEARCH = "search_tools"
CALL = "call_tool"
NAMES = frozenset({SEARCH, CALL})
DEFAULT_LIMIT = 5
MAX_LIMIT = 50
NAME_WEIGHT = 3
"""A word of a tool's name counts as this many words of its description."""
ARGUMENT_WEIGHT = 2
K1 = 1.2
B = 0.75

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")

SEARCH_DEFINITION: dict[str, Any] = {
    "name": SEARCH,
    "description": (
        "Search the tools available here by what they do. Returns the best matching tools with their names, "
        "descriptions and input schemas; call one with call_tool."
    ),
    "inputSchema": {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "Words describing the task, e.g. 'create a calendar event'"},
            "limit": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_LIMIT,
                "description": f"How many tools to return (default {DEFAULT_LIMIT})",
            },
        },
        "required": ["query"],
    },
}
CALL_DEFINITION: dict[str, Any] = {
    "name": CALL,
    "description": "Call a tool found with search_tools, by its name, with arguments that follow its input schema.",
    "inputSchema": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "The tool's name, as search_tools returned it"},
            "arguments": {"type": "object", "description": "The tool's arguments"},
        },
        "required": ["name"],
    },
}
DEFINITIONS: list[dict[str, Any]] = [SEARCH_DEFINITION, CALL_DEFINITION]
"""The tool list a `tool_search` caller sees."""


def words(text: str) -> list[str]:
    """The lower-case words of a text, splitting `snake_case`, `camelCase` and `server__tool` names; a trailing
    plural `s` is dropped so "tickets" finds "ticket"."""
    found: list[str] = []
    for word in _WORD.findall(text):
        lowered = word.lower()
        if len(lowered) > 3 and lowered.endswith("s") and not lowered.endswith(("ss", "us", "is")):
            lowered = lowered[:-1]
        found.append(lowered)
    return found


def _document(tool: Mapping[str, Any]) -> Counter[str]:
    """A tool's weighted bag of words: name, argument names (and their descriptions), description."""
    bag: Counter[str] = Counter()
    for word in words(str(tool.get("name", ""))):
        bag[word] += NAME_WEIGHT
    schema = tool.get("inputSchema")
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if isinstance(properties, dict):
        for argument, spec in properties.items():
            for word in words(str(argument)):
                bag[word] += ARGUMENT_WEIGHT
            if isinstance(spec, dict) and isinstance(spec.get("description"), str):
                bag.update(words(spec["description"]))
    description = tool.get("description")
    if isinstance(description, str):
        bag.update(words(description))
    title = tool.get("title")
    if isinstance(title, str):
        bag.update(words(title))
    return bag


class ToolIndex:
    """A BM25 index over a tool list (the wire dicts of a `tools/list` result)."""

    def __init__(self, tools: Sequence[Mapping[str, Any]]) -> None:
        self.tools = list(tools)
        self._lengths: list[int] = []
        self._postings: dict[str, list[tuple[int, int]]] = {}
        for position, tool in enumerate(self.tools):
            bag = _document(tool)
            self._lengths.append(sum(bag.values()))
            for word, count in bag.items():
                self._postings.setdefault(word, []).append((position, count))
        self._average = (sum(self._lengths) / len(self._lengths)) if self._lengths else 0.0

    def search(self, query: str, limit: int = DEFAULT_LIMIT) -> list[Mapping[str, Any]]:
        """The `limit` best tools for `query`, best first (ties in catalog order); none when no word matches."""
        total = len(self.tools)
        scores: dict[int, float] = {}
        for word in set(words(query)):
            postings = self._postings.get(word)
            if not postings:
                continue
            idf = math.log(1 + (total - len(postings) + 0.5) / (len(postings) + 0.5))
            for position, count in postings:
                norm = K1 * (1 - B + B * self._lengths[position] / self._average)
                scores[position] = scores.get(position, 0.0) + idf * count * (K1 + 1) / (count + norm)
        ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
        return [self.tools[position] for position, _ in ranked[:limit]]


def match(tool: Mapping[str, Any]) -> dict[str, Any]:
    """What `search_tools` returns of a tool: what a model needs to call it."""
    found = {k: tool[k] for k in ("name", "description", "inputSchema") if k in tool}
    return found


def search_limit(arguments: Mapping[str, Any]) -> int:
    """The `limit` argument, clamped to 1..`MAX_LIMIT` (`DEFAULT_LIMIT` when absent or not an integer)."""
    value = arguments.get("limit")
    if isinstance(value, bool) or not isinstance(value, int):
        return DEFAULT_LIMIT
    return max(1, min(MAX_LIMIT, value))


Show = Callable[[dict[str, Any]], list[dict[str, Any]]]
"""A page of the caller's `tools/list` result -> the tools as its endpoint shows them."""


class ToolSearch:
    """Serves `search_tools` and `call_tool` for one endpoint (the caller's tool list is read through the
    pipeline, as `mcp.list` calls, and indexed once per key, narrowing, endpoint definition and catalog version)."""

    def __init__(self) -> None:
        self._indexes: dict[str, tuple[tuple[Any, ...], ToolIndex]] = {}

    async def search(
        self,
        pipeline: Handler,
        principal: Principal | None,
        credential: str | None,
        arguments: Mapping[str, Any],
        *,
        scope: str | None,
        show: Show,
        version: tuple[Any, ...],
    ) -> dict[str, Any]:
        """`search_tools`: the best matches as a tool result (`version`: what else the shown list depends on).

        Raises:
            HubError: the listing was refused (no key, over a limit, a guardrail hit on the query).
        """
        query = arguments.get("query")
        if not isinstance(query, str) or not query.strip():
            return error_result("search_tools needs a non-empty 'query' string")
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            # The query is the call's input: input guardrails read it.
            payload: dict[str, Any] = {"query": query} | ({"cursor": cursor} if cursor else {})
            call = Call(
                door="mcp",
                operation="mcp.list",
                target="tools",
                payload=payload,
                principal=principal,
                credential=credential,
                scope=scope,
            )
            outcome = await pipeline(call)
            principal = outcome.principal or principal
            page: dict[str, Any] = outcome.value
            tools.extend(show(page))
            following = page.get("nextCursor")
            if not isinstance(following, str) or not following:
                break
            cursor = following
        index = self._index(principal, tools, version)
        found = [match(tool) for tool in index.search(query, search_limit(arguments))]
        # Text only: structured content would repeat it (a model reads both) and make clients fetch the tool list
        # to validate it against an output schema.
        return {"content": [{"type": "text", "text": orjson.dumps({"tools": found}).decode()}]}

    def _index(self, principal: Principal | None, tools: list[dict[str, Any]], version: tuple[Any, ...]) -> ToolIndex:
        key = principal.key if principal is not None else None
        identity = (key, principal.narrowing if principal is not None else None, *version)
        slot = key.id if key is not None else ""
        hit = self._indexes.get(slot)
        same = hit is not None and len(hit[0]) == len(identity)
        if hit is not None and same and all(a is b or a == b for a, b in zip(hit[0], identity, strict=True)):
            return hit[1]
        index = ToolIndex([t for t in tools if t.get("name") not in NAMES])
        if len(self._indexes) > 1024:
            self._indexes.clear()
        self._indexes[slot] = (identity, index)
        return index


def call_arguments(arguments: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | dict[str, Any]:
    """`call_tool`'s `(name, arguments)`, or the error result for arguments that do not say them."""
    name = arguments.get("name")
    inner = arguments.get("arguments")
    inner = {} if inner is None else inner
    if not isinstance(name, str) or not isinstance(inner, dict):
        return error_result("call_tool needs a 'name' string and an 'arguments' object")
    if name in NAMES:
        return error_result(f"'{name}' cannot be called through call_tool")
    return name, {str(k): v for k, v in cast(dict[Any, Any], inner).items()}


def error_result(message: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": message}], "isError": True}
