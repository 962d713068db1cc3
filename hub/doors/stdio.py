"""The stdio door: `agenthub stdio`, for MCP clients that launch a command (Claude Desktop).

Two modes:
- `--config FILE`: an embedded hub in this process, serving the hub's own MCP door (`McpDoor`) over stdio; the
  caller's key comes from `AGENTHUB_KEY` (started by `hub.cli.stdio`, which composes the hub).
- `--url URL`: a bridge to a running hub's `/mcp` (this module), sending `AGENTHUB_KEY` as the bearer token;
  tools, prompts and resources are relayed as the hub exposes them, list changes included.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

from connectors.config import HttpConfig
from connectors.errors import UpstreamError, UpstreamProtocolError
from connectors.upstream import Upstream
from hub.doors.mcp import wants_progress

logger = logging.getLogger(__name__)


def _bridge_server(upstream: Upstream) -> Server[Any]:
    def fail(exc: UpstreamError) -> MCPError:
        code = exc.code if isinstance(exc, UpstreamProtocolError) else types.INTERNAL_ERROR
        return MCPError(code=code, message=exc.message)

    async def list_tools(ctx: ServerRequestContext[Any, Any], params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=list(upstream.catalog.tools))

    async def list_prompts(ctx: ServerRequestContext[Any, Any], params: Any) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=list(upstream.catalog.prompts))

    async def list_resources(ctx: ServerRequestContext[Any, Any], params: Any) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=list(upstream.catalog.resources))

    async def list_templates(ctx: ServerRequestContext[Any, Any], params: Any) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=list(upstream.catalog.templates))

    async def call_tool(ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams) -> Any:
        progress = None
        if wants_progress(ctx):
            session = ctx.session

            async def forward(progress: float, total: float | None, message: str | None) -> None:
                await session.report_progress(progress, total, message)

            progress = forward
        try:
            return await upstream.call_tool(params.name, params.arguments or {}, progress=progress)
        except UpstreamError as exc:
            raise fail(exc) from None

    async def get_prompt(ctx: ServerRequestContext[Any, Any], params: types.GetPromptRequestParams) -> Any:
        try:
            return await upstream.get_prompt(params.name, params.arguments)
        except UpstreamError as exc:
            raise fail(exc) from None

    async def read_resource(ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams) -> Any:
        try:
            return await upstream.read_resource(str(params.uri))
        except UpstreamError as exc:
            raise fail(exc) from None

    server: Server[Any] = Server(
        "agenthub",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_read_resource=read_resource,
    )
    server.middleware = []
    return server


async def serve_bridge(url: str, key: str | None, timeout_s: float = 300.0) -> None:
    """Relay stdin/stdout MCP to a running hub at `url`."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    config = HttpConfig(name="hub", transport="http", url=url, headers=headers, timeout_s=timeout_s)
    upstream = Upstream(config)
    refused = False
    async with anyio.create_task_group() as tg:
        tg.start_soon(upstream.run)
        refused = not await upstream.wait_attempt(config.connect_timeout_s) and upstream.health.unauthorized
        if not refused:
            if not await upstream.wait_ready(config.connect_timeout_s):
                logger.error("cannot reach the hub at %s: %s", url, upstream.health.error)
            server = _bridge_server(upstream)
            options = server.create_initialization_options(
                NotificationOptions(prompts_changed=True, resources_changed=True, tools_changed=True)
            )
            async with stdio_server() as (read, write):
                await server.run(read, write, options)
        upstream.stop()
        tg.cancel_scope.cancel()
    if refused:
        # A key the hub refuses will not start working by retrying: stop with a message the MCP client shows.
        why = "no key in AGENTHUB_KEY" if not key else "it refused the key in AGENTHUB_KEY"
        raise SystemExit(f"agenthub stdio: the hub at {url} requires a valid virtual key; {why}")
