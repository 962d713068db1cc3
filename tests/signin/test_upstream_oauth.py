"""Per-user upstream OAuth for a person who signed in: the upstream account binds to the person (their id, the same
for every token they hold and after each refresh), not to one token; another person authorizes their own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp.shared.exceptions import MCPError

from tests.admin.helpers import hub_on_port
from tests.auth.browser import Browser as UpstreamBrowser
from tests.auth.test_hub_wiring import ADMIN_TOKEN, HUB_CLIENT_SECRET, MASTER_KEY, per_user, stack
from tests.hub.harness import RunningHub, mcp_client
from tests.signin.helpers import identity_provider, signin_config
from tests.signin.test_sign_in_refusals import pkce, redeem, register, sign_in
from tests.tools import free_port
from tests.tools.patience import PATIENCE

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTHUB_MASTER_KEY", MASTER_KEY)
    monkeypatch.setenv("TEST_TICKETS_SECRET", HUB_CLIENT_SECRET)
    monkeypatch.setenv("AGENTHUB_ADMIN_TOKEN", ADMIN_TOKEN)


async def _link(hub: RunningHub, token: str) -> str:
    async with mcp_client(hub.url(), token) as client:
        with pytest.raises(MCPError) as needed:
            await client.call_tool("tickets__whoami", {})
    assert needed.value.error.code == -32042
    data: Any = needed.value.error.data
    return str(data["elicitations"][0]["url"])


async def _whoami(hub: RunningHub, token: str) -> str:
    async with mcp_client(hub.url(), token) as client:
        result = await client.call_tool("tickets__whoami", {})
    assert not result.is_error, result
    block = result.content[0]
    assert block.type == "text"
    return block.text


async def _person_tokens(http: httpx2.AsyncClient, hub: RunningHub, client_id: str, user: str) -> dict[str, Any]:
    verifier, challenge = pkce()
    landed = await sign_in(hub, client_id, challenge, user=user)
    tokens: dict[str, Any] = (await redeem(http, hub, client_id, landed["code"], verifier)).json()
    return tokens


async def test_a_persons_upstream_account_binds_to_the_person_across_tokens_and_refreshes(tmp_path: Path) -> None:
    port = free_port()
    grants = [{"group": "platform-devs", "tools": ["tickets__*"]}, {"group": "marketing", "tools": ["tickets__*"]}]
    async with stack() as s, identity_provider(port) as idp:
        config = signin_config(port, idp, grants=grants)
        config["servers"] = {"tickets": per_user(s)}
        config["hub"]["upstream_start_timeout_s"] = 0.5
        async with hub_on_port(config, tmp_path, port) as hub, httpx2.AsyncClient(timeout=PATIENCE) as http:
            with anyio.fail_after(PATIENCE):  # the catalog identity, authorized once by an admin
                started = await http.post(hub.url("/api/v1/servers/tickets/auth/login"), json={},
                                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})  # fmt: skip
                assert started.status_code == 200, started.text
                async with UpstreamBrowser("catalog-admin") as browser:
                    assert (await browser.authorize(started.json()["url"])).status_code == 200
                assert await hub.hub.registry.upstreams["tickets"].wait_ready(PATIENCE)

            client_id = (await register(http, hub)).json()["client_id"]
            first = await _person_tokens(http, hub, client_id, "dana")
            link = await _link(hub, first["access_token"])
            async with UpstreamBrowser("dana-at-tickets") as browser:
                page = await browser.open(link)
                assert "<dd>dana@example.com</dd>" in page.text and "AgentHub key" not in page.text, page.text
                done = await browser.follow(await browser.submit(page))
                assert done.status_code == 200, done.text
            assert await _whoami(hub, first["access_token"]) == "dana-at-tickets"

            # a refreshed token, and a token from a second sign-in: the same person, the same upstream account
            form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"], "client_id": client_id}
            refreshed = (await http.post(hub.url("/signin/token"), data=form)).json()
            assert refreshed["access_token"] != first["access_token"]
            assert await _whoami(hub, refreshed["access_token"]) == "dana-at-tickets"
            second = await _person_tokens(http, hub, client_id, "dana")
            assert await _whoami(hub, second["access_token"]) == "dana-at-tickets"

            # another person is asked to authorize their own account
            eve = await _person_tokens(http, hub, client_id, "eve")
            assert (await _link(hub, eve["access_token"])).startswith(hub.url("/oauth/start?flow="))
        assert s.provider.grants["authorization_code"] == 2, "the catalog's and dana's: once for all her tokens"
