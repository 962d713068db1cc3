"""An upstream MCP server whose one tool reports the trace context its request carried.

`python tests/telemetry/trace_server.py [--transport stdio|streamable-http] [--port N]`: the tool `seen` returns,
as JSON, the request's `params._meta`, (over HTTP) its headers, lower-cased, and the protocol revision.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mcp.server.mcpserver import Context, MCPServer

from tests.servers._common import serve, transport_parser


def build_server() -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer("traced")

    @server.tool()
    def seen(ctx: Context) -> str:
        """Return the request's `_meta` and HTTP headers as JSON."""
        meta: Any = ctx.request_context.meta or {}
        headers = {k.lower(): v for k, v in dict(ctx.headers or {}).items()}
        protocol = ctx.request_context.protocol_version
        return json.dumps({"meta": dict(meta), "headers": headers, "protocol": protocol}, sort_keys=True, default=str)

    return server


def main() -> None:
    args = transport_parser("traced upstream").parse_args()
    serve(build_server(), args)


if __name__ == "__main__":
    main()
