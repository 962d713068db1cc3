"""Which operation each MCP request is: the one table the door, the router (for refusals it answers itself) and
the door-matrix test read.

`tools/call` is `mcp.tool`, except the Code Mode meta-tools (`code.read` for the three reading tools, `code.run`
for `execute_tool_code`); requests that set up or keep a session (`initialize`, `ping`, `server/discover`,
`subscriptions/listen`, `logging/setLevel`, the `GET` stream and `DELETE`) are `mcp.session`.
"""

from __future__ import annotations

from typing import Any

from hub.call import Operation

MCP_OPERATIONS: dict[str, Operation] = {
    "initialize": "mcp.session",
    "ping": "mcp.session",
    "server/discover": "mcp.session",
    "subscriptions/listen": "mcp.session",
    "logging/setLevel": "mcp.session",
    "tools/list": "mcp.list",
    "prompts/list": "mcp.list",
    "resources/list": "mcp.list",
    "resources/templates/list": "mcp.list",
    "tools/call": "mcp.tool",
    "prompts/get": "mcp.prompt",
    "resources/read": "mcp.resource",
    "completion/complete": "mcp.complete",
    "resources/subscribe": "mcp.subscribe",
    "resources/unsubscribe": "mcp.subscribe",
}
"""Every request method the MCP door serves, and its operation."""

LIST_KINDS = {
    "tools/list": "tools",
    "prompts/list": "prompts",
    "resources/list": "resources",
    "resources/templates/list": "templates",
}
"""The target of an `mcp.list` call: what is listed."""

CODE_READERS = frozenset({"list_tool_files", "read_tool_file", "get_tool_docs"})
CODE_RUNNER = "execute_tool_code"


def classify(method: str, params: Any) -> tuple[Operation, str]:
    """`(operation, target)` of a request (an unknown method is `mcp.session`, target the method)."""
    operation = MCP_OPERATIONS.get(method, "mcp.session")
    params = params if isinstance(params, dict) else {}
    if operation == "mcp.tool":
        name = params.get("name")
        name = name if isinstance(name, str) else ""
        if name == CODE_RUNNER:
            return "code.run", name
        if name in CODE_READERS:
            return "code.read", name
        return operation, name
    if operation == "mcp.list":
        return operation, LIST_KINDS[method]
    if operation == "mcp.prompt":
        return operation, _text(params.get("name"))
    if operation in ("mcp.resource", "mcp.subscribe"):
        return operation, _text(params.get("uri"))
    if operation == "mcp.complete":
        ref = params.get("ref")
        ref = ref if isinstance(ref, dict) else {}
        return operation, _text(ref.get("name") or ref.get("uri"))
    return operation, method


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
