"""An upstream MCP server that misbehaves on purpose, one way per `--mode`.

    python tests/servers/faulty_server.py --mode MODE [--tool NAME] [--transport ...] [--port N]

Modes:
    crash     the process exits (code 3, no reply) in the middle of a call to `--tool` (default `boom`)
    hang      a call to `--tool` (default `boom`) never gets an answer; the server stays alive
    garbage   stdio only: a non-JSON line is written to stdout before every valid message
    exit      the process exits (code 4) at start-up, before speaking MCP
Every mode except `exit` serves `echo(message)` normally, plus the tool named by `--tool`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server

if __package__ in (None, ""):  # run as a script: make `tests.servers` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.servers._common import serve, transport_parser

MODES = ("crash", "hang", "garbage", "exit")
CRASH_EXIT_CODE = 3
STARTUP_EXIT_CODE = 4
GARBAGE_LINE = "this line is not JSON-RPC"


def build_server(mode: str, tool: str = "boom") -> MCPServer:
    """The server for `mode` (`crash`, `hang` or `garbage`)."""
    server = MCPServer(f"faulty-{mode}", version="1.0.0", log_level="WARNING")

    @server.tool()
    def echo(message: str) -> str:
        """Return the message unchanged."""
        return message

    async def faulty(message: str = "") -> str:
        if mode == "crash":
            os._exit(CRASH_EXIT_CODE)
        if mode == "hang":
            await anyio.sleep_forever()
        return f"{tool}: {message}"

    server.add_tool(faulty, name=tool, description=f"Misbehaves in mode {mode!r}.")
    return server


class _GarbageStdout:
    """Duck-types the `anyio.AsyncFile[str]` that `stdio_server` writes to, adding a junk line per message."""

    def __init__(self, target: anyio.AsyncFile[str]) -> None:
        self._target = target

    async def write(self, data: str) -> int:
        await self._target.write(GARBAGE_LINE + "\n")
        return await self._target.write(data)

    async def flush(self) -> None:
        await self._target.flush()


async def _serve_garbage_stdio(server: MCPServer) -> None:
    lowlevel = server._lowlevel_server
    stdout: Any = _GarbageStdout(anyio.wrap_file(sys.stdout))
    async with stdio_server(stdout=stdout) as (read_stream, write_stream):
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())


def main(argv: list[str] | None = None) -> None:
    parser = transport_parser("MCP server with deliberate faults")
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--tool", default="boom", help="the tool that crashes or hangs (default boom)")
    args = parser.parse_args(argv)
    if args.mode == "exit":
        print("faulty_server: exiting at start-up as asked", file=sys.stderr)
        sys.exit(STARTUP_EXIT_CODE)
    server = build_server(args.mode, args.tool)
    if args.mode == "garbage":
        if args.transport != "stdio":
            parser.error("--mode garbage needs --transport stdio")
        anyio.run(_serve_garbage_stdio, server)
        return
    serve(server, args)


if __name__ == "__main__":
    main()
