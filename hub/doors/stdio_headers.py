"""The HTTP headers a JSON-RPC message needs on `/mcp`, for the stdio bridge (`hub.doors.stdio`).

On stdio a message is only its JSON; over Streamable HTTP some of it is repeated in headers, which the hub checks
against the body. Under the 2026-07-28 revision every request names its protocol version, method and (for
`tools/call`, `prompts/get`, `resources/read`) its name in headers, and a `tools/call` mirrors each argument whose
input-schema property carries an `x-mcp-header` annotation into an `Mcp-Param-<token>` header. Handshake-era
requests only repeat the version negotiated by `initialize`.

The `mcp` SDK computes the same headers (`mcp.shared.inbound`), but importing any of it loads the whole SDK, about
a second of start-up, which the bridge must not spend before its first answer; so the few rules are restated here,
and `tests/e2e/test_stdio_bridge.py` checks them against the SDK's own functions.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Mapping
from typing import Any, cast

PROTOCOL_VERSION_META = "io.modelcontextprotocol/protocolVersion"
"""The `_meta` key in which a 2026-07-28 request carries its protocol version."""
NAMED_BY = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
"""Method -> the parameter whose value is repeated in `Mcp-Name`."""
PARAM_PREFIX = "Mcp-Param-"

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_SAFE = re.compile(r"^[\x20-\x7E]*$")
_SENTINEL = re.compile(r"^=\?base64\?.*\?=$")
_BRANCHES = frozenset(
    {
        "items",
        "contains",
        "unevaluatedItems",
        "additionalProperties",
        "propertyNames",
        "unevaluatedProperties",
        "not",
        "if",
        "then",
        "else",
        "contentSchema",
    }
)
_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_MAPS = frozenset({"patternProperties", "dependentSchemas", "$defs", "definitions"})

HeaderMap = dict[tuple[str, ...], str]
"""Argument path (property keys from the schema root) -> the `x-mcp-header` token it is mirrored into."""


def encode_value(value: str) -> str:
    """`value` as a header value: verbatim when it is printable ASCII without edge spaces, otherwise (or when it
    looks like the sentinel itself) wrapped as `=?base64?...?=` so the receiver recovers the exact text."""
    if _SAFE.fullmatch(value) and value == value.strip() and not _SENTINEL.fullmatch(value):
        return value
    return f"=?base64?{base64.b64encode(value.encode()).decode('ascii')}?="


def modern_version(params: Any) -> str | None:
    """The protocol version a 2026-07-28 request names in its `_meta`, or None (a handshake-era message)."""
    meta = params.get("_meta") if isinstance(params, dict) else None
    version = meta.get(PROTOCOL_VERSION_META) if isinstance(meta, dict) else None
    return version if isinstance(version, str) else None


def header_map(input_schema: Any) -> HeaderMap:
    """The `x-mcp-header` annotations of a tool's input schema that clients mirror: on properties reached from the
    root through `properties` alone, naming an HTTP token. (A schema the hub finds invalid is not checked by it, so
    headers sent for it are ignored.)"""
    found: HeaderMap = {}
    for path, schema in _positions(input_schema):
        token = schema.get("x-mcp-header")
        if path and isinstance(token, str) and _TOKEN.fullmatch(token):
            found[path] = token
    return found


def param_headers(mapping: HeaderMap, arguments: Any) -> dict[str, str]:
    """`Mcp-Param-*` headers of a `tools/call` with `arguments`: one per mapped argument that is present and a
    string, integer, float or boolean."""
    headers: dict[str, str] = {}
    for path, token in mapping.items():
        value = _at(arguments, path)
        if isinstance(value, bool):
            rendered = "true" if value else "false"
        elif isinstance(value, str | int | float):
            try:
                rendered = str(value)
            except ValueError:  # an int beyond the interpreter's digit limit has no header form
                continue
        else:
            continue
        headers[PARAM_PREFIX + token] = encode_value(rendered)
    return headers


def request_headers(method: str, params: Any, version: str, mapping: HeaderMap | None) -> dict[str, str]:
    """The routing headers of a 2026-07-28 request: its version, method, name, and mirrored arguments."""
    headers = {"mcp-protocol-version": version, "mcp-method": method}
    key = NAMED_BY.get(method)
    name = params.get(key) if key is not None and isinstance(params, dict) else None
    if isinstance(name, str):
        headers["mcp-name"] = encode_value(name)
    if method == "tools/call" and mapping and isinstance(params, dict):
        headers.update(param_headers(mapping, cast(dict[str, Any], params).get("arguments")))
    return headers


def _positions(root: Any) -> Iterator[tuple[tuple[str, ...] | None, dict[str, Any]]]:
    """Every schema position in `root` with its `properties` path (None once another keyword was crossed)."""
    stack: list[tuple[tuple[str, ...] | None, Any]] = [((), root)]
    while stack:
        path, node = stack.pop()
        if not isinstance(node, dict):
            continue
        schema = cast(dict[str, Any], node)
        yield path, schema
        for keyword, value in schema.items():
            if keyword == "properties" and isinstance(value, dict):
                for name, sub in cast(dict[str, Any], value).items():
                    stack.append(((*path, name) if path is not None else None, sub))
            elif keyword in _BRANCHES:
                stack.append((None, value))
            elif keyword in _LISTS and isinstance(value, list):
                stack.extend((None, sub) for sub in cast(list[Any], value))
            elif keyword in _MAPS and isinstance(value, dict):
                stack.extend((None, sub) for sub in cast(dict[str, Any], value).values())


def _at(arguments: Any, path: tuple[str, ...]) -> Any:
    node: Any = arguments
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = cast(Mapping[str, Any], node).get(key)
    return node
