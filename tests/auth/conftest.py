"""Fixtures for upstream-auth tests: a running OAuth stack and a hub-side client for it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from connectors.auth import UpstreamAuths


@contextlib.asynccontextmanager
async def upstream_client(
    auths: UpstreamAuths, server: str, url: str, subject: str | None = None
) -> AsyncIterator[Client]:
    """An `mcp` SDK client to the upstream over an httpx2 client carrying the hub's auth for `subject`."""
    async with (
        httpx2.AsyncClient(auth=auths.http_auth(server, subject), timeout=20, follow_redirects=False) as http,
        Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
    ):
        yield client


async def whoami(client: Client) -> str:
    """Call the upstream's `whoami` tool and return its text."""
    result = await client.call_tool("whoami", {})
    assert not result.is_error, result
    block = result.content[0]
    assert block.type == "text"
    return block.text
