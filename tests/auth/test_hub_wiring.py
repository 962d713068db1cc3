"""Upstream auth through the running hub: the `mcp` SDK client and REST calls on the hub's doors, a real local
authorization server, and protected upstreams that record every header they receive."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp.server.mcpserver import MCPServer
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from mcp.shared.exceptions import MCPError
from pydantic import AnyUrl
from sqlalchemy import create_engine
from starlette.types import ASGIApp, Receive, Scope, Send

from connectors.auth import MemoryTokenStore
from hub.cli.main import main as cli
from hub.settings import ConfigError, settings_from_dict
from hub.upstream_auth.manager import open_token_store
from tests.auth.browser import Browser
from tests.auth.servers import (
    HUB_CLIENT_ID,
    HUB_CLIENT_SECRET,
    REDIRECT,
    Provider,
    auth_server_app,
    bound_socket,
    serve,
    upstream_app,
)
from tests.hub.harness import ALICE, BOB, RunningHub, base_config, mcp_client, running_hub
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

CAROL = "ahk-carol-test-secret-000000000000000000000000"
MASTER_KEY = "master-key-for-tests-0123456789abcdefghij"
ADMIN_TOKEN = "admin-bootstrap-token-for-tests-0123456789"
API_KEY = "upstream-api-key-0123456789"
KEYS = [
    {"name": "alice", "secret": ALICE, "tools": ["*"]},
    {"name": "bob", "secret": BOB, "tools": ["*"]},
    {"name": "carol", "secret": CAROL, "tools": ["*"]},
]


class Recorder:
    """ASGI wrapper: keeps every HTTP request's headers; with `api_key`, refuses requests without it (401)."""

    def __init__(self, app: ASGIApp, api_key: str | None = None) -> None:
        self.app = app
        self.api_key = api_key
        self.seen: list[dict[str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            self.seen.append(headers)
            if self.api_key is not None and headers.get("x-api-key") != self.api_key:
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)

    def values(self) -> list[str]:
        return [v for headers in self.seen for v in headers.values()]


@dataclass
class Stack:
    provider: Provider
    issuer: str
    upstream_url: str
    recorder: Recorder
    headers_url: str = ""
    headers_recorder: Recorder | None = None
    issued: set[str] = field(default_factory=set[str])


def headers_upstream() -> ASGIApp:
    server = MCPServer("search")

    @server.tool()
    def ping() -> str:
        """Answer pong."""
        return "pong"

    return server.streamable_http_app(stateless_http=True, json_response=True)


@contextlib.asynccontextmanager
async def stack(*, lifetime_s: int = 3600) -> AsyncGenerator[Stack]:
    """The authorization server, the OAuth-protected upstream and an API-key upstream, on free ports."""
    as_sock, rs_sock, hs_sock = bound_socket(), bound_socket(), bound_socket()
    issuer = f"http://127.0.0.1:{as_sock.getsockname()[1]}"
    upstream_url = f"http://127.0.0.1:{rs_sock.getsockname()[1]}/mcp"
    provider = Provider(issuer=issuer, lifetime_s=lifetime_s)
    provider.clients[HUB_CLIENT_ID] = OAuthClientInformationFull(
        client_id=HUB_CLIENT_ID,
        client_secret=HUB_CLIENT_SECRET,
        token_endpoint_auth_method="client_secret_basic",
        grant_types=["client_credentials", "authorization_code", "refresh_token"],
        redirect_uris=[AnyUrl(REDIRECT)],
        scope="tickets.read",
    )
    recorder = Recorder(upstream_app(provider, upstream_url))
    headers_recorder = Recorder(headers_upstream(), api_key=API_KEY)
    issued: set[str] = set()
    original = provider.issue

    def issue(
        client_id: str, scopes: list[str], resource: str | None, subject: str | None, with_refresh: bool
    ) -> OAuthToken:
        tokens = original(client_id, scopes, resource, subject, with_refresh)
        issued.add(tokens.access_token)
        return tokens

    provider.issue = issue  # the stack keeps every access token it ever issued, for the header checks
    apps = [(auth_server_app(provider), as_sock), (recorder, rs_sock), (headers_recorder, hs_sock)]
    async with serve(apps):
        yield Stack(
            provider,
            issuer,
            upstream_url,
            recorder,
            f"http://127.0.0.1:{hs_sock.getsockname()[1]}/mcp",
            headers_recorder,
            issued,
        )


def client_credentials(s: Stack) -> dict[str, Any]:
    return {
        "transport": "http",
        "url": s.upstream_url,
        "auth": {
            "type": "oauth2",
            "grant": "client_credentials",
            "client_id": HUB_CLIENT_ID,
            "client_secret": "env:TEST_TICKETS_SECRET",
            "scopes": ["tickets.read"],
            "token_url": f"{s.issuer}/token",
        },
    }


def per_user(s: Stack) -> dict[str, Any]:
    return {"transport": "http", "url": s.upstream_url, "auth": {"type": "oauth2", "grant": "authorization_code",
            "per_user": True}}  # fmt: skip


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTHUB_MASTER_KEY", MASTER_KEY)
    monkeypatch.setenv("TEST_TICKETS_SECRET", HUB_CLIENT_SECRET)
    monkeypatch.setenv("TEST_API_KEY", API_KEY)
    monkeypatch.setenv("AGENTHUB_ADMIN_TOKEN", ADMIN_TOKEN)


async def call_text(url: str, key: str, tool: str) -> str:
    async with mcp_client(url, key) as client:
        return await text_of(client, tool)


async def text_of(client: Any, tool: str) -> str:
    result = await client.call_tool(tool, {})
    assert not result.is_error, result
    block = result.content[0]
    assert block.type == "text"
    return str(block.text)


async def browse(url: str, user: str) -> httpx2.Response:
    """Open an upstream's authorization URL as `user` (the server approves at once) and follow the redirect to the
    hub (an administrator authorizing the hub's own identity)."""
    async with httpx2.AsyncClient(follow_redirects=False, timeout=20) as browser:
        approved = await browser.get(url, headers={"X-Test-User": user})
        assert approved.status_code == 302, approved.text
        return await browser.get(approved.headers["location"])


def assert_only_hub_credentials(s: Stack, recorder: Recorder | None = None) -> None:
    """No virtual key ever reached the upstream, and every bearer token it saw was issued by its own server."""
    rec = recorder or s.recorder
    assert rec.seen, "the upstream was called"
    for value in rec.values():
        for secret in (ALICE, BOB, CAROL, ADMIN_TOKEN):
            assert secret not in value
    for headers in rec.seen:
        auth = headers.get("authorization")
        if auth is not None:
            assert auth.startswith("Bearer ") and auth[7:] in s.issued, "only tokens from the upstream's issuer"


async def rest_call(hub: RunningHub, key: str, tool: str) -> httpx2.Response:
    body = {"id": "c1", "type": "function", "function": {"name": tool, "arguments": "{}"}}
    async with httpx2.AsyncClient(timeout=20) as http:
        return await http.post(hub.url("/v1/mcp/tool/execute"), json=body, headers={"Authorization": f"Bearer {key}"})


async def test_client_credentials_shared_identity_through_both_doors(tmp_path: Path) -> None:
    async with stack() as s:
        config = base_config({"tickets": client_credentials(s)}, KEYS, insecure_loopback=True)
        async with running_hub(config, tmp_path) as hub:
            with anyio.fail_after(PATIENCE):
                assert await call_text(hub.url(), ALICE, "tickets__whoami") == HUB_CLIENT_ID
                assert await call_text(hub.url("/mcp/tickets"), BOB, "whoami") == HUB_CLIENT_ID
                rest = await rest_call(hub, CAROL, "tickets__whoami")
            assert rest.status_code == 200 and rest.json()["content"] == HUB_CLIENT_ID
            upstream = hub.hub.registry.upstreams["tickets"]
            assert upstream._fast is not None, "plain calls took the lean path"
        assert s.provider.requests["client_credentials"] == 1, "one token for every caller"
        assert_only_hub_credentials(s)


async def test_per_user_authorization_keeps_keys_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with stack() as s:
        config = base_config({"tickets": per_user(s)}, KEYS, insecure_loopback=True, upstream_start_timeout_s=0.5)
        async with running_hub(config, tmp_path) as hub:
            cfg = tmp_path / "agenthub.toml"
            cfg.write_text(
                f'[hub]\nlisten = "127.0.0.1:{hub.port}"\ndatabase = "sqlite:///{tmp_path / "hub.db"}"\n'
                f"insecure_loopback = true\n[servers.tickets]\n"
                f'transport = "http"\nurl = "{s.upstream_url}"\n'
                'auth = { type = "oauth2", grant = "authorization_code", per_user = true }\n'
            )
            with anyio.fail_after(PATIENCE):
                # The catalog session runs as the hub's own identity, which an admin authorizes once (the CLI,
                # here on the database directly: without an admin token it does not ask the running hub).
                monkeypatch.delenv("AGENTHUB_ADMIN_TOKEN")
                assert await anyio.to_thread.run_sync(cli, ["auth", "login", "tickets", "--config", str(cfg)]) == 0
                monkeypatch.setenv("AGENTHUB_ADMIN_TOKEN", ADMIN_TOKEN)
                url = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("http"))
                page = await browse(url, "catalog-admin")
                assert page.status_code == 200 and "You can close this tab" in page.text
                assert await hub.hub.registry.upstreams["tickets"].wait_ready(PATIENCE)

                async with mcp_client(hub.url(), ALICE) as alice, mcp_client(hub.url(), BOB) as bob:
                    tools = await alice.list_tools()
                    assert [t.name for t in tools.tools] == ["tickets__whoami"]
                    with pytest.raises(MCPError) as needed:
                        await alice.call_tool("tickets__whoami", {})
                    assert needed.value.error.code == -32042
                    data: Any = needed.value.error.data
                    (elicitation,) = data["elicitations"]
                    assert elicitation["mode"] == "url" and elicitation["elicitationId"]
                    assert elicitation["url"].startswith(hub.url("/oauth/start?flow="))
                    assert (
                        elicitation["url"] in elicitation["message"]
                        and elicitation["url"] in needed.value.error.message
                    )

                    denied = await rest_call(hub, BOB, "tickets__whoami")
                    assert denied.status_code == 403
                    error = denied.json()["error"]
                    assert error["type"] == "permission_error" and error["code"] == "upstream_authorization_required"
                    assert hub.url("/oauth/start?flow=") in error["message"]

                    async with Browser("alice-user") as browser:
                        assert (await browser.authorize(elicitation["url"])).status_code == 200
                    assert await text_of(alice, "tickets__whoami") == "alice-user"
                    with pytest.raises(MCPError):
                        await bob.call_tool("tickets__whoami", {})

                    async with httpx2.AsyncClient(timeout=20) as admin:
                        started = await admin.post(
                            hub.url("/api/v1/servers/tickets/auth/login"),
                            json={"subject": "bob"},
                            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                        )
                    assert started.status_code == 200, started.text
                    async with Browser("bob-user") as browser:
                        assert (await browser.authorize(started.json()["url"])).status_code == 200
                    for _ in range(3):
                        assert await text_of(bob, "tickets__whoami") == "bob-user"
                        assert await text_of(alice, "tickets__whoami") == "alice-user"
                    rest = await rest_call(hub, BOB, "tickets__whoami")
                    assert rest.status_code == 200 and rest.json()["content"] == "bob-user"

                    replayed = await browse_callback_again(hub)
                    assert replayed.status_code == 400

                    logout = ["auth", "logout", "tickets", "--subject", "bob", "--config", str(cfg)]
                    assert await anyio.to_thread.run_sync(cli, logout) == 0
                    with pytest.raises(MCPError) as again:
                        await bob.call_tool("tickets__whoami", {})
                    assert again.value.error.code == -32042
                    assert await text_of(alice, "tickets__whoami") == "alice-user"
        assert s.provider.registrations == 1, "one dynamic registration serves the hub and every user"
        assert s.provider.grants["authorization_code"] == 3
        assert_only_hub_credentials(s)


async def browse_callback_again(hub: RunningHub) -> httpx2.Response:
    """A callback with an unknown state is refused with a page, not an error trace."""
    async with httpx2.AsyncClient(timeout=20) as browser:
        return await browser.get(hub.url("/oauth/callback"), params={"state": "forged", "code": "x"})


async def test_fifty_calls_on_a_revoked_token_cause_one_new_token(tmp_path: Path) -> None:
    async with stack() as s:
        config = base_config({"tickets": client_credentials(s)}, KEYS, insecure_loopback=True)
        async with running_hub(config, tmp_path) as hub, mcp_client(hub.url(), ALICE) as client:
            with anyio.fail_after(PATIENCE):
                assert await text_of(client, "tickets__whoami") == HUB_CLIENT_ID
                before = s.provider.requests["client_credentials"]
                s.provider.revoke_access_tokens()
                results: list[str] = []

                async def one() -> None:
                    results.append(await text_of(client, "tickets__whoami"))

                async with anyio.create_task_group() as tg:
                    for _ in range(50):
                        tg.start_soon(one)
            assert results == [HUB_CLIENT_ID] * 50
            assert s.provider.requests["client_credentials"] - before == 1
        assert_only_hub_credentials(s)


async def test_short_lived_tokens_under_load_through_the_hub_never_fail(tmp_path: Path) -> None:
    async with stack(lifetime_s=2) as s:
        config = base_config({"tickets": client_credentials(s)}, KEYS, insecure_loopback=True)
        began = time.monotonic()
        async with running_hub(config, tmp_path) as hub, mcp_client(hub.url(), ALICE) as client:
            start = s.provider.requests["client_credentials"]

            async def worker() -> None:
                # Each worker calls until one of its calls began after the token was renewed twice under the load,
                # however long that takes here: the load spans the renewals by construction.
                while True:
                    renewed = s.provider.requests["client_credentials"] - start
                    assert await text_of(client, "tickets__whoami") == HUB_CLIENT_ID
                    if renewed >= 2:
                        return

            with anyio.fail_after(PATIENCE):
                async with anyio.create_task_group() as tg:
                    for _ in range(20):
                        tg.start_soon(worker)
        span = time.monotonic() - began
        requests = s.provider.requests["client_credentials"]
        # A token is renewed half-way through its two seconds: one request a second at most, over however long the
        # hub ran on this machine (about 3 s when idle, longer when busy), never one per concurrent call.
        assert start + 2 <= requests <= int(span) + 3, (requests, span)
        assert s.provider.grants["client_credentials"] == requests, "no token request was refused"
        assert_only_hub_credentials(s)


async def test_headers_auth_and_a_run_time_oauth_server(tmp_path: Path) -> None:
    async with stack() as s:
        search = {"transport": "http", "url": s.headers_url, "headers": {"Authorization": "Bearer not-forwarded"},
                  "auth": {"type": "headers", "headers": {"X-Api-Key": "env:TEST_API_KEY"}}}  # fmt: skip
        config = base_config({"search": search}, KEYS, insecure_loopback=True)
        config["admin"] = {"allowed_secret_refs": ["env:TEST_TICKETS_SECRET"]}
        async with running_hub(config, tmp_path) as hub:
            with anyio.fail_after(PATIENCE):
                assert await call_text(hub.url(), ALICE, "search__ping") == "pong"
                async with httpx2.AsyncClient(timeout=20) as admin:
                    added = await admin.post(
                        hub.url("/api/v1/servers"),
                        json={"name": "tickets", **client_credentials(s)},
                        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                    )
                assert added.status_code == 201, added.text
                assert HUB_CLIENT_SECRET not in added.text
                assert await hub.hub.registry.upstreams["tickets"].wait_ready(PATIENCE)
                assert await call_text(hub.url(), BOB, "tickets__whoami") == HUB_CLIENT_ID
        assert s.headers_recorder is not None
        assert all(h.get("x-api-key") == API_KEY for h in s.headers_recorder.seen)
        assert all("authorization" not in h for h in s.headers_recorder.seen), "configured headers lose to auth"
        assert_only_hub_credentials(s, s.headers_recorder)
        assert_only_hub_credentials(s)


def test_an_oauth_server_without_the_master_key_stops_the_hub(tmp_path: Path) -> None:
    raw = {"hub": {"insecure_loopback": True}, "servers": {"tickets": {"transport": "http",
           "url": "http://127.0.0.1:9/mcp", "auth": {"type": "oauth2", "grant": "authorization_code"}}}}  # fmt: skip
    settings = settings_from_dict(raw, tmp_path / "agenthub.toml")
    engine = create_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    with pytest.raises(ConfigError, match="AGENTHUB_MASTER_KEY.*tickets"):
        open_token_store(settings, engine, environ={})
    assert isinstance(open_token_store(settings_from_dict({}), engine, environ={}), MemoryTokenStore)
    engine.dispose()
