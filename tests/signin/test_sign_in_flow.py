"""A client given only the hub's `/mcp` URL signs a person in through the company IdP and calls tools as that
person: the `mcp` SDK's OAuth client against the hub as authorization server, the real `oidc-provider` as IdP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from sqlalchemy import text

from tests.hub.harness import mcp_client
from tests.signin.helpers import VIRTUAL_KEY, Browser, MemoryTokens, oauth_client, signin_hub
from tests.tools.patience import PATIENCE

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def _tool_names(client: Client) -> set[str]:
    return {tool.name for tool in (await client.list_tools()).tools}


async def test_a_person_signs_in_calls_a_tool_refreshes_and_revokes(tmp_path: Path) -> None:
    async with signin_hub(tmp_path) as hub:
        url = hub.url("/mcp")
        dana, storage = Browser("dana"), MemoryTokens()
        auth = oauth_client(url, dana, storage)
        async with (
            httpx2.AsyncClient(auth=auth, timeout=PATIENCE) as http,
            Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
        ):
            assert await _tool_names(client) == {"fixture__echo"}
            echoed = await client.call_tool("fixture__echo", {"message": "hello"})
            assert echoed.content[0].text == "hello"  # pyright: ignore[reportAttributeAccessIssue]
            with pytest.raises(MCPError):
                await client.call_tool("fixture__add", {"a": 1, "b": 2})

        assert len(dana.landed) == 1 and dana.landed[0]["iss"] == hub.base
        assert storage.client is not None and storage.tokens is not None
        first = storage.tokens
        assert first.access_token.startswith("aht-") and first.refresh_token is not None

        # the request log names the person, their team; the budget is their own
        assert hub.hub.request_log is not None
        await hub.hub.request_log.flush()
        with hub.hub.store.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT key_id, key_name, team, operation, target FROM request_log WHERE target = 'fixture__echo'")
            ).all()
        assert len(rows) == 1
        person_id, name, team, operation, _target = rows[0]
        assert (name, team, operation) == ("user:dana@example.com", "platform", "mcp.tool")
        assert person_id.startswith("user_")

        # refresh: the token endpoint rotates the refresh token; the old one, presented again, revokes the family
        token_url = hub.url("/signin/token")
        client_id = storage.client.client_id
        async with httpx2.AsyncClient(timeout=PATIENCE) as http:
            form = {"grant_type": "refresh_token", "refresh_token": first.refresh_token, "client_id": client_id}
            refreshed = await http.post(token_url, data=form)
            assert refreshed.status_code == 200, refreshed.text
            second: dict[str, Any] = refreshed.json()
            assert second["refresh_token"] != first.refresh_token
            assert second["access_token"] != first.access_token

            async with mcp_client(url, second["access_token"]) as client:
                assert await _tool_names(client) == {"fixture__echo"}

            reused = await http.post(token_url, data=form)
            assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
            # reuse detection revoked the whole family: the newest tokens no longer work
            newer = {**form, "refresh_token": second["refresh_token"]}
            assert (await http.post(token_url, data=newer)).json()["error"] == "invalid_grant"
            refused = await http.post(
                url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                headers={"Authorization": f"Bearer {second['access_token']}", "Accept": "application/json"},
            )  # fmt: skip
            assert refused.status_code == 401

        # the virtual key keeps working side by side
        async with mcp_client(url, VIRTUAL_KEY) as client:
            assert "fixture__add" in await _tool_names(client)


async def test_revocation_ends_the_token_and_another_group_sees_other_tools(tmp_path: Path) -> None:
    async with signin_hub(tmp_path) as hub:
        url = hub.url("/mcp")
        eve, storage = Browser("eve"), MemoryTokens()
        async with (
            httpx2.AsyncClient(auth=oauth_client(url, eve, storage), timeout=PATIENCE) as http,
            Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
        ):
            assert await _tool_names(client) == {"fixture__add"}
            with pytest.raises(MCPError):
                await client.call_tool("fixture__echo", {"message": "hello"})
        assert storage.tokens is not None and storage.client is not None
        access = storage.tokens.access_token
        async with httpx2.AsyncClient(timeout=PATIENCE) as http:
            revoked = await http.post(
                hub.url("/signin/revoke"), data={"token": access, "client_id": storage.client.client_id}
            )
            assert revoked.status_code == 200
            refused = await http.post(
                url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                headers={"Authorization": f"Bearer {access}", "Accept": "application/json"},
            )  # fmt: skip
            assert refused.status_code == 401
            challenge = refused.headers["www-authenticate"]
            assert f'resource_metadata="{hub.base}/.well-known/oauth-protected-resource/mcp"' in challenge


async def test_each_person_spends_their_own_budget(tmp_path: Path) -> None:
    grants = [
        {"group": "platform-devs", "tools": ["fixture__echo"], "budget": {"max_usd": 0.02, "reset": "1M"}},
        {"group": "hub-admins", "tools": ["fixture__echo"], "budget": {"max_usd": 0.02, "reset": "1M"}},
    ]
    async with signin_hub(tmp_path, grants=grants, extra={"pricing": {"tools": {"fixture__echo": 0.01}}}) as hub:
        url = hub.url("/mcp")

        async def calls(user: str, count: int) -> list[str]:
            outcomes: list[str] = []
            async with (
                httpx2.AsyncClient(auth=oauth_client(url, Browser(user), MemoryTokens()), timeout=PATIENCE) as http,
                Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
            ):
                for _ in range(count):
                    try:
                        await client.call_tool("fixture__echo", {"message": "hi"})
                        outcomes.append("ok")
                    except MCPError as exc:
                        outcomes.append(f"refused {exc.error.code}")
            return outcomes

        assert await calls("dana", 3) == ["ok", "ok", "refused -32004"]
        assert await calls("alice", 1) == ["ok"]  # the same grant's budget, but alice's own


async def test_a_persons_calls_cross_the_whole_pipeline(tmp_path: Path) -> None:
    """Like a key's: out of the grant is the error of an unknown name, a guardrail blocks, the person's own rate
    limit refuses, and every call is a request-log row naming the person."""
    grants = [{"group": "platform-devs", "tools": ["fixture__echo"], "rate_limit": {"requests": 3, "period": "1h"}}]
    guardrails = [{"name": "no-blockme", "kind": "regex", "pattern": "BLOCK-ME-[0-9]+", "apply_to": "input"}]
    async with signin_hub(tmp_path, grants=grants, extra={"guardrails": guardrails}) as hub:
        url = hub.url("/mcp")
        async with (
            httpx2.AsyncClient(auth=oauth_client(url, Browser("dana"), MemoryTokens()), timeout=PATIENCE) as http,
            Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
        ):

            async def call(name: str, message: str = "hi") -> str:
                try:
                    await client.call_tool(name, {"message": message})
                except MCPError as exc:
                    return f"{exc.error.code} {exc.error.message.replace(name, '<name>')}"
                return "ok"

            assert await call("fixture__add") == await call("fixture__nope")
            assert (await call("fixture__echo", "BLOCK-ME-31415")).startswith("-32003 ")
            outcomes = [await call("fixture__echo") for _ in range(5)]
        assert outcomes[0] == "ok" and outcomes[-1].startswith("-32005 ")
        assert set(outcomes) <= {"ok", outcomes[-1]}

        assert hub.hub.request_log is not None
        await hub.hub.request_log.flush()
        with hub.hub.store.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT key_name, target, status FROM request_log WHERE operation = 'mcp.tool'")
            ).all()
        assert {name for name, _target, _status in rows} == {"user:dana@example.com"}
        assert len(rows) == 3 + len(outcomes)
