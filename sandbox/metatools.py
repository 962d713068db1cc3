"""The four Code Mode meta-tools, as data (MCP tool definitions) and as functions the hub calls.

The hub exposes these instead of (or next to) the raw tools: the model lists the server "files", reads the stubs it
needs, asks for full docs of a tool, then sends one program to ``execute_tool_code``. ``list_tool_files``,
``read_tool_file`` and ``get_tool_docs`` are pure; ``execute_tool_code`` runs through a :class:`SandboxPool`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sandbox.bridge import ToolCaller
from sandbox.catalog import ToolCatalog
from sandbox.limits import SandboxLimits
from sandbox.result import RunError, RunResult
from sandbox.stubs import server_stub, tool_docs

if TYPE_CHECKING:
    from sandbox.pool import SandboxPool

FILE_PREFIX = "servers/"
FILE_SUFFIX = ".py"

EXECUTE_DESCRIPTION = (
    "Run a short Python program that calls tools, and get back what it printed and the value of its `result` "
    "variable (JSON). Each server is an object with one method per tool: `value = github.create_issue(title=...)`; "
    "also `tools.call(name, arguments)` and `tools.call_many([(name, arguments), ...])` to run several calls "
    "concurrently (`await` and `asyncio.gather` work too). A failed tool call raises `ToolError`, which the program "
    "may catch. Filter and combine data inside the program and return only what is needed. Available: a subset of "
    "the standard library (json, re, math, datetime, collections, itertools, statistics, ...); no files, no network."
)

META_TOOLS: list[dict[str, Any]] = [
    {
        "name": "list_tool_files",
        "description": "List the tool stub files, one per MCP server (servers/<server>.py), with their tool counts.",
        "inputSchema": {"type": "object", "properties": {}, "additionalProperties": False},
    },
    {
        "name": "read_tool_file",
        "description": "Read a tool stub file: one line per tool with its Python signature and a short comment.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "A path from list_tool_files, e.g. servers/github.py"},
                "start_line": {"type": "integer", "minimum": 1, "description": "First line to return (1-based)."},
                "end_line": {"type": "integer", "minimum": 1, "description": "Last line to return (inclusive)."},
            },
            "required": ["path"],
            "additionalProperties": False,
        },
    },
    {
        "name": "get_tool_docs",
        "description": "Full documentation of one tool: parameters, their types and descriptions, and its result.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "server": {"type": "string", "description": "Server name as in the stub file (e.g. github)."},
                "tool": {"type": "string", "description": "Tool name as in the stub file (e.g. create_issue)."},
            },
            "required": ["server", "tool"],
            "additionalProperties": False,
        },
    },
    {
        "name": "execute_tool_code",
        "description": EXECUTE_DESCRIPTION,
        "inputSchema": {
            "type": "object",
            "properties": {"code": {"type": "string", "description": "The Python program to run."}},
            "required": ["code"],
            "additionalProperties": False,
        },
    },
]
"""MCP tool definitions (name, description, inputSchema) of the four meta-tools."""


class MetaToolError(ValueError):
    """Bad meta-tool arguments (unknown file, server or tool); the message lists what exists."""


def meta_tool_definitions(catalog: ToolCatalog) -> list[dict[str, Any]]:
    """``META_TOOLS`` with a compact index of the catalog (server: tool names) appended to execute's description."""
    index = "; ".join(
        f"{server}: {', '.join(e.method for e in entries)}" for server, entries in catalog.servers.items()
    )
    tools = [dict(tool) for tool in META_TOOLS]
    if index:
        tools[-1]["description"] = f"{EXECUTE_DESCRIPTION}\nServers and tools: {index}"
    return tools


def list_tool_files(catalog: ToolCatalog) -> str:
    """One line per server file: ``servers/github.py  (3 tools)``."""
    lines = [
        f"{FILE_PREFIX}{server}{FILE_SUFFIX}  ({len(entries)} tools)" for server, entries in catalog.servers.items()
    ]
    return "\n".join(lines) + "\n" if lines else "(no tools available)\n"


def read_tool_file(catalog: ToolCatalog, path: str, start_line: int | None = None, end_line: int | None = None) -> str:
    """The stub of one server, optionally a 1-based inclusive line range.

    Raises:
        MetaToolError: unknown path or an empty range.
    """
    server = path.strip().removeprefix("./").removeprefix(FILE_PREFIX).removesuffix(FILE_SUFFIX)
    if server not in catalog.servers:
        files = ", ".join(f"{FILE_PREFIX}{s}{FILE_SUFFIX}" for s in catalog.servers)
        raise MetaToolError(f"no tool file {path!r}; files: {files or 'none'}")
    lines = server_stub(catalog, server).splitlines()
    first = max(1, start_line or 1)
    last = min(len(lines), end_line or len(lines))
    if first > last:
        raise MetaToolError(f"empty line range {first}-{last}; the file has {len(lines)} lines")
    return "\n".join(lines[first - 1 : last]) + "\n"


def get_tool_docs(catalog: ToolCatalog, server: str, tool: str) -> str:
    """Full docs of one tool.

    Raises:
        MetaToolError: unknown server or tool.
    """
    server = server.removeprefix(FILE_PREFIX).removesuffix(FILE_SUFFIX)
    entry = catalog.find(server, tool)
    if entry is None:
        if catalog.find(server, "") is None and server not in catalog.servers:
            raise MetaToolError(f"no server {server!r}; servers: {', '.join(catalog.servers) or 'none'}")
        ident = server if server in catalog.servers else next(i for i, n in catalog.server_names.items() if n == server)
        names = ", ".join(e.method for e in catalog.servers[ident])
        raise MetaToolError(f"server {ident!r} has no tool {tool!r}; its tools: {names}")
    return tool_docs(entry)


async def execute_tool_code(
    pool: SandboxPool,
    code: str,
    tools: ToolCaller,
    *,
    catalog: ToolCatalog,
    limits: SandboxLimits | None = None,
    owner: str | None = None,
) -> RunResult:
    """Run ``code`` in the pool with the catalog's server objects; see :meth:`SandboxPool.run`."""
    return await pool.run(code, tools, catalog=catalog, limits=limits, owner=owner)


def render_result(result: RunResult) -> str:
    """The text the model sees for a run: output, result (JSON) or the error with its traceback."""
    parts: list[str] = []
    if isinstance(result, RunError):
        parts.append(f"Error ({result.kind}): {result.message}")
        if result.traceback:
            parts.append(result.traceback.rstrip())
    if result.stdout:
        parts.append(f"Output:\n{result.stdout.rstrip()}")
    if not isinstance(result, RunError):
        parts.append("Result: " + json.dumps(result.result, ensure_ascii=False, default=str))
    return "\n".join(parts) + "\n"
