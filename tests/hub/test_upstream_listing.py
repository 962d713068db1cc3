"""The tool catalog of a Streamable HTTP upstream is read through the lean session and absorbed by the SDK session.

Whatever path the listing takes, the catalog must be exactly what the SDK client would list, in both protocol eras:
on 2026-07-28 a tool with an invalid `x-mcp-header` annotation is dropped, and the SDK session still mirrors valid
annotations into `Mcp-Param-*` headers on the calls it carries. A listing the lean session cannot read falls back to
the SDK client's own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from connectors.config import HttpConfig
from connectors.errors import UpstreamUnavailable
from connectors.rawhttp import LeanSessions, RawHttpSession
from connectors.upstream import Upstream
from tests.tools import PATIENCE, ServedProcess, served, server_argv

pytestmark = pytest.mark.anyio

SDK_FALLBACK = "listing tools on the SDK session"


@asynccontextmanager
async def fixture_http() -> AsyncGenerator[ServedProcess]:
    argv = server_argv("fixture_server", "--transport", "streamable-http", "--port", "{port}")
    async with served([*argv, "--extra-tools", "30", "--header-tools"]) as process:
        yield process


def mcp_url(process: ServedProcess) -> str:
    return f"http://127.0.0.1:{process.port}/mcp"


@asynccontextmanager
async def connected(url: str, mode: str) -> AsyncGenerator[Upstream]:
    upstream = Upstream(HttpConfig(name="fixture", transport="http", url=url), mode=mode)
    async with anyio.create_task_group() as tg:
        tg.start_soon(upstream.run)
        try:
            assert await upstream.wait_ready(PATIENCE)
            yield upstream
        finally:
            upstream.stop()


async def sdk_listing(url: str, mode: str) -> list[dict[str, Any]]:
    async with Client(streamable_http_client(url), mode=mode, cache=None) as client:
        listed = await client.list_tools()
    return [tool.model_dump(by_alias=True, mode="json", exclude_none=True) for tool in listed.tools]


def dumped(tools: tuple[types.Tool, ...]) -> list[dict[str, Any]]:
    return [tool.model_dump(by_alias=True, mode="json", exclude_none=True) for tool in tools]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_catalog_is_what_the_sdk_client_lists(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="connectors.upstream")
    async with fixture_http() as process:
        url = mcp_url(process)
        async with connected(url, mode) as upstream:
            catalog = dumped(upstream.catalog.tools)
            modern = upstream.catalog.protocol_version in MODERN_PROTOCOL_VERSIONS
        assert catalog == await sdk_listing(url, mode)
    assert SDK_FALLBACK not in caplog.text
    names = {tool["name"] for tool in catalog}
    assert modern == (mode == "auto")
    assert {"echo", "rich_content", "regional", "crm_search_records_0000"} <= names
    assert len(names) == len(catalog) > 30
    # 2026-07-28 clients must drop a tool whose header annotation is invalid; earlier revisions have no such rule.
    assert ("misplaced_header" in names) is not modern
    rich = next(tool for tool in catalog if tool["name"] == "rich_content")
    assert rich["outputSchema"]["type"] == "object"


async def test_the_sdk_session_still_mirrors_header_annotations_after_the_lean_listing() -> None:
    async with fixture_http() as process, connected(mcp_url(process), "auto") as upstream:
        assert upstream.catalog.protocol_version in MODERN_PROTOCOL_VERSIONS
        result = await upstream.call_tool("regional", {"region": "eu-west"})  # the SDK session carries this call
    assert not result.is_error
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    assert json.loads(block.text).get("mcp-param-region") == "eu-west"


async def test_a_listing_the_lean_session_cannot_read_falls_back_to_the_sdk_client(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def refuse(self: RawHttpSession, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise UpstreamUnavailable(self.server, f"upstream '{self.server}' sent a malformed result")

    monkeypatch.setattr(RawHttpSession, "request_stateless", refuse)
    caplog.set_level(logging.INFO, logger="connectors.upstream")
    async with fixture_http() as process:
        url = mcp_url(process)
        async with connected(url, "auto") as upstream:
            catalog = dumped(upstream.catalog.tools)
            answer = await upstream.call_tool_raw("echo", {"message": "still fast"})
        assert catalog == await sdk_listing(url, "auto")
    assert SDK_FALLBACK in caplog.text
    assert answer["content"][0]["text"] == "still fast"


async def test_busy_calls_open_more_lean_sessions_up_to_four_and_spread_over_them() -> None:
    async with fixture_http() as process:
        url = mcp_url(process)
        lean = LeanSessions(
            "fixture", lambda size: RawHttpSession("fixture", url, {}, max_connections=100 // size), size=4
        )
        await lean.open()
        try:
            assert len(lean) == 1
            one = await lean.request("tools/call", {"name": "echo", "arguments": {"message": "a"}}, timeout=10)
            assert one["structuredContent"] == {"result": "a"} and len(lean) == 1  # one at a time: one session
            slow = {"name": "slow", "arguments": {"seconds": 0.2, "steps": 1}}
            answers: list[dict[str, Any]] = []

            async def call() -> None:
                answers.append(await lean.request("tools/call", slow, timeout=10))

            for burst in range(4):  # each burst of busy calls opens one more session, up to four
                async with anyio.create_task_group() as tg:
                    for _ in range(8):
                        tg.start_soon(call)
                assert len(lean) == min(2 + burst, 4)
            assert [a["content"][0]["text"] for a in answers] == ["slept 0.2s"] * 32
            whoami = {"name": "whoami", "arguments": {}}
            seen: set[str] = set()

            async def who() -> None:
                answer = await lean.request("tools/call", whoami, timeout=10)
                seen.add(json.loads(answer["content"][0]["text"])["mcp-session-id"])

            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(who)
            assert len(seen) >= 2, "concurrent calls went to different upstream sessions"
        finally:
            await lean.aclose()
        assert len(lean) == 0
        with pytest.raises(UpstreamUnavailable, match="not connected"):  # a call that raced the close
            await lean.request("tools/call", {"name": "echo", "arguments": {"message": "late"}}, timeout=10)


async def test_an_upstream_that_refuses_another_session_keeps_the_ones_it_has() -> None:
    async with fixture_http() as process:
        url = mcp_url(process)
        made: list[RawHttpSession] = []

        def new_session(size: int) -> RawHttpSession:
            # The second session points at a path the server does not serve: its handshake fails.
            session = RawHttpSession("fixture", url if not made else url + "-nowhere", {})
            made.append(session)
            return session

        lean = LeanSessions("fixture", new_session, size=4)
        await lean.open()
        try:
            slow = {"name": "slow", "arguments": {"seconds": 0.2, "steps": 1}}
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(lambda: lean.request("tools/call", slow, timeout=10))
            assert len(lean) == 1 and len(made) == 2, "one refused attempt, then no more"
        finally:
            await lean.aclose()
