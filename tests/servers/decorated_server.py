"""An upstream MCP server whose one tool carries every optional field of a tool definition.

    python tests/servers/decorated_server.py --transport streamable-http --port N     (Streamable HTTP only)

Tool `forecast(city)`: `title`, `annotations` (read-only, idempotent, with its own title), `icons`, `_meta`,
`execution` (task support), an `outputSchema`; its result carries text, structured content and result `_meta`.
A relay that re-builds tool definitions from a subset of their fields drops some of them; the hub's listings and
every relay of them must pass each one on.

`execution` exists only up to 2025-11-25, so this server speaks only the handshake era: it has no
`server/discover`, and clients fall back to `initialize`. That takes HTTP, where each request names its era; on
stdio the SDK fixes a connection's era with its first message.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import uvicorn
from mcp.server import Server
from mcp_types import (
    CallToolRequestParams,
    CallToolResult,
    Icon,
    ListToolsResult,
    TextContent,
    Tool,
    ToolAnnotations,
    ToolExecution,
)

if __package__ in (None, ""):  # run as a script: make `tests.servers` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.servers._common import transport_parser

FORECAST = Tool(
    name="forecast",
    title="Weather forecast",
    description="Tomorrow's weather for a city.",
    input_schema={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    output_schema={
        "type": "object",
        "properties": {"city": {"type": "string"}, "temperature_c": {"type": "number"}},
        "required": ["city", "temperature_c"],
    },
    annotations=ToolAnnotations(title="Forecast", read_only_hint=True, idempotent_hint=True, open_world_hint=False),
    icons=[Icon(src="https://example.invalid/sun.png", mime_type="image/png", sizes=["48x48"])],
    execution=ToolExecution(task_support="optional"),
    _meta={"example.com/owner": "weather-team"},
)


def build_server() -> Server[Any]:
    async def list_tools(ctx: Any, params: Any) -> ListToolsResult:
        return ListToolsResult(tools=[FORECAST])

    async def call_tool(ctx: Any, params: CallToolRequestParams) -> CallToolResult:
        city = str((params.arguments or {}).get("city", ""))
        return CallToolResult(
            content=[TextContent(type="text", text=f"{city}: 21.5 C")],
            structured_content={"city": city, "temperature_c": 21.5},
            _meta={"example.com/source": "decorated"},
        )

    server: Server[Any] = Server("decorated", version="2.0.0", on_list_tools=list_tools, on_call_tool=call_tool)
    del server._request_handlers["server/discover"]  # handshake era only: this server misbehaves on purpose
    return server


def main(argv: list[str] | None = None) -> None:
    args = transport_parser(__doc__.splitlines()[0] if __doc__ else "decorated server").parse_args(argv)
    if args.transport != "streamable-http":
        raise SystemExit("decorated_server.py serves --transport streamable-http only")
    app = build_server().streamable_http_app(host=args.host)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
