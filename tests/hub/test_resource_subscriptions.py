"""Handshake-era resource subscriptions through the hub: `resources/subscribe` reaches the upstream that owns the
resource, its `notifications/resources/updated` come back to the subscribed clients only, and a key that may not
read a resource cannot subscribe to it either (it fails exactly like an unknown resource)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.session import IncomingMessage
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from connectors.config import StdioConfig
from connectors.upstream import Upstream
from tests.hub.harness import ALICE, BOB, base_config, fixture_stdio, mcp_client, running_hub
from tests.tools import SERVERS_DIR
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

README = "fixture://readme"
LOGO = "fixture://logo.png"


class Updates:
    """The `notifications/resources/updated` a client received, with an event per URI to wait on."""

    def __init__(self) -> None:
        self.uris: list[str] = []
        self._events: dict[str, anyio.Event] = {}

    async def __call__(self, message: IncomingMessage) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            uri = str(message.params.uri)
            self.uris.append(uri)
            self._event(uri).set()

    def _event(self, uri: str) -> anyio.Event:
        return self._events.setdefault(uri, anyio.Event())

    async def wait_for(self, uri: str) -> None:
        with anyio.fail_after(PATIENCE):
            await self._event(uri).wait()
        self._events.pop(uri)


async def subscribe(client: Client, uri: str) -> None:
    request = types.SubscribeRequest(params=types.SubscribeRequestParams(uri=uri))
    await client.session.send_request(request, types.EmptyResult)


async def unsubscribe(client: Client, uri: str) -> None:
    request = types.UnsubscribeRequest(params=types.UnsubscribeRequestParams(uri=uri))
    await client.session.send_request(request, types.EmptyResult)


async def touch(client: Client, tool: str, uri: str) -> None:
    result = await client.call_tool(tool, {"uri": uri})
    assert not result.is_error


async def test_subscribe_update_unsubscribe(tmp_path: Path) -> None:
    updates = Updates()
    async with running_hub(base_config({"fixture": fixture_stdio()}), tmp_path) as hub:
        upstream = hub.hub.registry.upstreams["fixture"]
        async with mcp_client(hub.url(), ALICE, message_handler=updates) as client:
            caps = client.server_capabilities
            assert caps.resources is not None and caps.resources.subscribe
            await subscribe(client, README)
            assert upstream.subscriptions == {README: 1}
            await touch(client, "fixture__touch_resource", README)
            await updates.wait_for(README)
            assert updates.uris == [README]

            await unsubscribe(client, README)
            assert upstream.subscriptions == {}
            # The upstream reports updates in order: once the logo's update is here, a readme update would be too.
            await subscribe(client, LOGO)
            await touch(client, "fixture__touch_resource", README)
            await touch(client, "fixture__touch_resource", LOGO)
            await updates.wait_for(LOGO)
            assert updates.uris == [README, LOGO]
        # The client went away: its subscription is released upstream.
        with anyio.fail_after(PATIENCE):
            while upstream.subscriptions:  # noqa: ASYNC110 - the release runs when the server notices the close
                await anyio.sleep(0.02)


async def test_each_client_gets_only_its_subscriptions(tmp_path: Path) -> None:
    alice_updates, bob_updates = Updates(), Updates()
    async with (
        running_hub(base_config({"fixture": fixture_stdio()}), tmp_path) as hub,
        mcp_client(hub.url(), ALICE, message_handler=alice_updates) as alice,
        mcp_client(hub.url(), BOB, message_handler=bob_updates) as bob,
    ):
        upstream = hub.hub.registry.upstreams["fixture"]
        await subscribe(alice, README)
        await subscribe(bob, README)
        await subscribe(alice, LOGO)
        # One upstream subscription per resource, however many clients hold it.
        assert upstream.subscriptions == {README: 1, LOGO: 1}
        await touch(alice, "fixture__touch_resource", LOGO)
        await touch(alice, "fixture__touch_resource", README)
        await alice_updates.wait_for(LOGO)
        await alice_updates.wait_for(README)
        await bob_updates.wait_for(README)
        assert sorted(alice_updates.uris) == [LOGO, README]
        assert bob_updates.uris == [README]

        await unsubscribe(alice, README)
        assert upstream.subscriptions == {README: 1, LOGO: 1}
        await touch(alice, "fixture__touch_resource", README)
        await bob_updates.wait_for(README)
        # The hub has passed the readme's update on by now; one for alice would reach her before the logo's.
        await touch(alice, "fixture__touch_resource", LOGO)
        await alice_updates.wait_for(LOGO)
        assert sorted(alice_updates.uris[:2]) == [LOGO, README] and alice_updates.uris[2:] == [LOGO]
        assert bob_updates.uris == [README, README]


async def test_key_without_the_resource_fails_like_unknown(tmp_path: Path) -> None:
    async with (
        running_hub(base_config({"fixture": fixture_stdio()}), tmp_path) as hub,
        mcp_client(hub.url(), BOB) as bob,
    ):
        with pytest.raises(MCPError) as read_error:
            await bob.read_resource(LOGO)
        with pytest.raises(MCPError) as denied:
            await subscribe(bob, LOGO)
        with pytest.raises(MCPError) as unknown:
            await subscribe(bob, "fixture://nothing-here")
        assert denied.value.error.code == read_error.value.error.code == unknown.value.error.code
        assert denied.value.error.message == read_error.value.error.message == f"unknown resource: {LOGO}"
        assert unknown.value.error.message == "unknown resource: fixture://nothing-here"
        assert hub.hub.registry.upstreams["fixture"].subscriptions == {}


async def test_single_server_endpoint_uses_original_uris(tmp_path: Path) -> None:
    updates = Updates()
    async with (
        running_hub(base_config({"fixture": fixture_stdio()}), tmp_path) as hub,
        mcp_client(hub.url("/mcp/fixture"), ALICE, message_handler=updates) as client,
    ):
        await subscribe(client, "fixture://items/7")
        await touch(client, "touch_resource", "fixture://items/7")
        await updates.wait_for("fixture://items/7")
        assert updates.uris == ["fixture://items/7"]


async def test_handshake_era_upstream_subscription() -> None:
    """A handshake-era upstream session subscribes with `resources/subscribe` and reports updates by notification."""
    seen: list[str] = []
    arrived = anyio.Event()

    async def on_updated(upstream: Upstream, uri: str) -> None:
        seen.append(uri)
        arrived.set()

    config = StdioConfig(
        name="fixture", transport="stdio", command=sys.executable, args=[str(SERVERS_DIR / "fixture_server.py")]
    )
    upstream = Upstream(config, mode="legacy", on_resource_updated=on_updated)
    async with anyio.create_task_group() as tg:
        tg.start_soon(upstream.run)
        try:
            assert await upstream.wait_ready(PATIENCE)
            assert upstream.catalog.protocol_version not in MODERN_PROTOCOL_VERSIONS
            await upstream.subscribe_resource(README)
            await upstream.subscribe_resource(README)
            assert upstream.subscriptions == {README: 2}
            result: Any = await upstream.call_tool("touch_resource", {"uri": README})
            assert result.content[0].text == "notified 1 subscriber(s)"
            with anyio.fail_after(PATIENCE):
                await arrived.wait()
            assert seen == [README]
            await upstream.unsubscribe_resource(README)
            await upstream.unsubscribe_resource(README)
            assert upstream.subscriptions == {}
            result = await upstream.call_tool("touch_resource", {"uri": README})
            assert result.content[0].text == "notified 0 subscriber(s)"
        finally:
            upstream.stop()
