"""Python stubs and docs for the model, generated from MCP tool definitions.

``server_stub`` renders one server as a small Python "file": one line per tool, a typed signature and a short
comment. ``tool_docs`` renders everything about one tool: signature, description, each parameter from the
``inputSchema`` and the shape of the result from the ``outputSchema``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sandbox.catalog import SANDBOX_MODULES, ToolCatalog, ToolEntry

COMMENT_WIDTH = 90
_SCALARS = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None"}


def schema_type(schema: Any, depth: int = 0) -> str:
    """A compact Python type for a JSON Schema (``list[str]``, ``dict``, ``Literal['a', 'b']``, ``int | None``)."""
    return " | ".join(_members(schema, depth))


def optional_type(schema: Any) -> str:
    """The type of a parameter the caller may leave out (``= None``): ``None`` is added unless the schema already
    admits null, so ``{"type": ["string", "null"]}`` reads ``str | None``, never ``str | None | None``."""
    members = _members(schema, 0)
    return " | ".join(members if "None" in members else [*members, "None"])


def _members(schema: Any, depth: int) -> list[str]:
    """The members of the union a schema stands for, each once, ``None`` last (the way Python code spells it)."""
    if not isinstance(schema, Mapping) or depth > 3:
        return ["Any"]
    members: list[str] = []
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        values = [v for v in enum if v is not None]
        if values:
            shown = ", ".join(repr(v) for v in values[:8]) + (", ..." if len(values) > 8 else "")
            members.append(f"Literal[{shown}]")
        if len(values) < len(enum):
            members.append("None")
    elif "const" in schema:
        members.append("None" if schema["const"] is None else f"Literal[{schema['const']!r}]")
    elif isinstance(schema.get("anyOf"), list) and schema["anyOf"]:
        members = [m for option in schema["anyOf"] for m in _members(option, depth + 1)]
    elif isinstance(schema.get("oneOf"), list) and schema["oneOf"]:
        members = [m for option in schema["oneOf"] for m in _members(option, depth + 1)]
    elif isinstance(schema.get("type"), list) and schema["type"]:
        members = [m for kind in schema["type"] for m in _members({**schema, "type": kind}, depth + 1)]
    else:
        members.append(_single(schema, depth))
    unique = list(dict.fromkeys(members))
    if "Any" in unique:
        return ["Any"]
    return [m for m in unique if m != "None"] + (["None"] if "None" in unique else [])


def _single(schema: Mapping[str, Any], depth: int) -> str:
    kind = schema.get("type")
    if kind == "array":
        return f"list[{schema_type(schema.get('items'), depth + 1)}]"
    if kind == "object":
        return "dict"
    return _SCALARS.get(str(kind), "Any")


def _short(text: str, width: int = COMMENT_WIDTH) -> str:
    first = " ".join(text.split())
    for end in (". ", "\n"):
        if end in first:
            first = first.split(end, 1)[0] + ("." if end == ". " else "")
            break
    return first if len(first) <= width else first[: width - 3].rstrip() + "..."


def signature(entry: ToolEntry) -> str:
    """``create_issue(title: str, *, body: str | None = None) -> dict`` (keyword-friendly, required first)."""
    schema = entry.spec.input_schema
    props = schema.get("properties")
    props = props if isinstance(props, Mapping) else {}
    required = {str(n) for n in schema.get("required") or ()}
    parts: list[str] = []
    for name in entry.params:
        schema_of = props.get(name)
        parts.append(
            f"{name}: {schema_type(schema_of)}" if name in required else f"{name}: {optional_type(schema_of)} = None"
        )
    if len(entry.params) < len(props):
        parts.append("**extra: Any")
    return f"{entry.method}({', '.join(parts)}) -> {_return_type(entry)}"


def _return_type(entry: ToolEntry) -> str:
    output = entry.spec.output_schema
    return schema_type(output) if output else "Any"


def server_stub(catalog: ToolCatalog, server: str) -> str:
    """The stub "file" of one server: a header, then one line per tool.

    Raises:
        KeyError: no such server.
    """
    entries = catalog.servers[server]
    name = catalog.server_names[server]
    lines = [
        f"# {server}: tools of the MCP server {name!r}. Call as {server}.<tool>(...) in execute_tool_code.",
        "# Results are JSON values (dicts, lists, strings); a failed call raises ToolError.",
        f'# Full docs: get_tool_docs("{server}", "<tool>").',
    ]
    if server in SANDBOX_MODULES:
        lines.append(
            f"# `{server}` is this server in programs; the {server} module is `import {server} as {server}_module`."
        )
    for entry in entries:
        comment = _short(entry.spec.description)
        lines.append(f"def {signature(entry)}: ...{f'  # {comment}' if comment else ''}")
    return "\n".join(lines) + "\n"


def _describe(name: str, schema: Any, required: bool, indent: str = "  ") -> list[str]:
    schema = schema if isinstance(schema, Mapping) else {}
    head = f"{indent}{name}: {schema_type(schema)}{'' if required else ' (optional)'}"
    description = " ".join(str(schema.get("description") or "").split())
    lines = [f"{head} - {description}" if description else head]
    keys = ("default", "minimum", "maximum", "minLength", "maxLength", "pattern", "format", "minItems", "maxItems")
    extras = [f"{key} {json.dumps(schema[key])}" for key in keys if key in schema]
    if extras:
        lines.append(f"{indent}    ({', '.join(extras)})")
    props = schema.get("properties")
    items = schema.get("items")
    if schema.get("type") == "array" and isinstance(items, Mapping):
        props = items.get("properties")
        schema = items
    if isinstance(props, Mapping) and len(indent) < 8:
        inner_required = {str(n) for n in schema.get("required") or ()}
        for key, sub in props.items():
            lines.extend(_describe(str(key), sub, str(key) in inner_required, indent + "    "))
    return lines


def tool_docs(entry: ToolEntry) -> str:
    """Full documentation of one tool, from its description, ``inputSchema`` and ``outputSchema``."""
    spec = entry.spec
    lines = [f"{entry.server_ident}.{signature(entry)}", ""]
    if spec.description:
        lines += [spec.description.strip(), ""]
    props = spec.input_schema.get("properties")
    props = props if isinstance(props, Mapping) else {}
    required = {str(n) for n in spec.input_schema.get("required") or ()}
    lines.append("Parameters:" if props else "Parameters: none")
    for name, schema in props.items():
        lines.extend(_describe(str(name), schema, str(name) in required))
    lines.append("")
    if spec.output_schema:
        lines.append(f"Returns: {schema_type(spec.output_schema)}")
        out_props = spec.output_schema.get("properties")
        if isinstance(out_props, Mapping):
            out_required = {str(n) for n in spec.output_schema.get("required") or ()}
            for name, schema in out_props.items():
                lines.extend(_describe(str(name), schema, str(name) in out_required))
    else:
        lines.append("Returns: the tool's output, parsed from JSON when it is JSON, else its text.")
    example = ", ".join(f"{p}=..." for p in entry.params if p in required)
    lines += [
        "",
        f"Example: value = {entry.server_ident}.{entry.method}({example})",
        f'Also: tools.call("{spec.call_name}", {{...}}). A failure raises ToolError.',
    ]
    return "\n".join(lines) + "\n"
