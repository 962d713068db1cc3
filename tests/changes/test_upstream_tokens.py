"""Upstream OAuth tokens across two `agenthub serve` processes on one database, against a real local authorization
server: a token one process stored is the one the other uses, a token the upstream refused is renewed once for
both (the processes serialise the renewal through the stored row's lease and the loser uses the winner's token),
and a logout through one process reaches the other, which then stops using the token it held in memory."""

from __future__ import annotations

import sys
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import httpx2
import pytest

from tests.admin.conftest import ADMIN, AUDIT_KEY
from tests.admin.helpers import admin_client, tool_call
from tests.auth.servers import HUB_CLIENT_ID, HUB_CLIENT_SECRET
from tests.auth.test_hub_wiring import MASTER_KEY, Stack, browse, stack
from tests.tools import PATIENCE, ServedProcess, served

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

AGENTHUB = [sys.executable, "-c", "import sys; from hub.cli.main import main; sys.exit(main())"]


CLIENT_CREDENTIALS = (
    '{{ type = "oauth2", grant = "client_credentials", client_id = "{client}", '
    'client_secret = "env:TEST_TICKETS_SECRET", scopes = ["tickets.read"], token_url = "{issuer}/token" }}'
)
AUTHORIZATION_CODE = '{{ type = "oauth2", grant = "authorization_code" }}'
"""The hub's own identity, authorized once by an administrator (the client registers itself)."""


def _config(s: Stack, tmp_path: Path, auth: str = CLIENT_CREDENTIALS, start_timeout: float = PATIENCE) -> Path:
    config = tmp_path / "agenthub.toml"
    config.write_text(
        f"""
[hub]
insecure_loopback = true
upstream_start_timeout_s = {start_timeout}

[servers.tickets]
transport = "http"
url = "{s.upstream_url}"
auth = {auth.format(client=HUB_CLIENT_ID, issuer=s.issuer)}
""",
        encoding="utf-8",
    )
    return config


async def _start(processes: AsyncExitStack, config: Path, tmp_path: Path) -> ServedProcess:
    env = {
        "AGENTHUB_DATABASE_URL": f"sqlite:///{tmp_path / 'shared.db'}",
        "AGENTHUB_ADMIN_TOKEN": ADMIN,
        "AGENTHUB_AUDIT_KEY": AUDIT_KEY,
        "AGENTHUB_MASTER_KEY": MASTER_KEY,
        "AGENTHUB_WORKERS": "1",
        "TEST_TICKETS_SECRET": HUB_CLIENT_SECRET,
    }
    argv = [*AGENTHUB, "serve", "--config", str(config), "--listen", "127.0.0.1:{port}"]
    return await processes.enter_async_context(served(argv, env=env))


async def _whoami(http: httpx2.AsyncClient, hub: ServedProcess, secret: str) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {secret}"}
    return await http.post(hub.url("/v1/mcp/tool/execute"), json=tool_call("tickets__whoami"), headers=headers)


async def test_a_token_stored_by_one_process_is_used_renewed_once_and_signed_out_across_both(tmp_path: Path) -> None:
    async with stack() as s, AsyncExitStack() as processes, httpx2.AsyncClient(timeout=PATIENCE) as http:
        grants = s.provider.requests
        config = _config(s, tmp_path)
        a = await _start(processes, config, tmp_path)
        async with admin_client(a.base_url) as api_a:
            created = await api_a.post("/api/v1/keys", json={"name": "ops", "tools": ["tickets__*"]})
            assert created.status_code == 201, created.text
            secret = created.json()["secret"]
            first = await _whoami(http, a, secret)
            assert first.status_code == 200 and first.json()["content"] == HUB_CLIENT_ID, first.text
            assert grants["client_credentials"] == 1

            b = await _start(processes, config, tmp_path)
            on_b = await _whoami(http, b, secret)
            assert on_b.status_code == 200 and on_b.json()["content"] == HUB_CLIENT_ID, on_b.text
            assert grants["client_credentials"] == 1, "the second process fetched a token of its own"

            s.provider.revoke_access_tokens()  # the upstream refuses the token both processes hold
            statuses: list[int] = []

            async def call(hub: ServedProcess) -> None:
                statuses.append((await _whoami(http, hub, secret)).status_code)

            async with anyio.create_task_group() as tg:
                for n in range(20):
                    tg.start_soon(call, (a, b)[n % 2])
            assert statuses == [200] * 20
            assert grants["client_credentials"] == 2, "both processes renewed the refused token"

            signed_out = await api_a.post("/api/v1/servers/tickets/auth/logout", json={})
            assert signed_out.status_code == 200, signed_out.text
            with anyio.fail_after(PATIENCE):  # B drops the token it holds once it learns of the logout
                while grants["client_credentials"] == 2:
                    assert (await _whoami(http, b, secret)).status_code == 200
                    await anyio.sleep(0.05)
            assert grants["client_credentials"] == 3


async def test_two_processes_renewing_one_rotating_refresh_token_spend_it_once(tmp_path: Path) -> None:
    """The upstream rotates refresh tokens and refuses a used one: if both processes refreshed, one would fail. The
    second process uses the tokens the first stored without having discovered the authorization server itself."""
    async with stack() as s, AsyncExitStack() as processes, httpx2.AsyncClient(timeout=PATIENCE) as http:
        provider = s.provider
        config = _config(s, tmp_path, AUTHORIZATION_CODE, start_timeout=0.5)
        a = await _start(processes, config, tmp_path)
        async with admin_client(a.base_url) as api_a:
            login = await api_a.post("/api/v1/servers/tickets/auth/login", json={})
            assert login.status_code == 200, login.text
            page = await browse(login.json()["url"], "catalog-admin")  # completes on A's callback
            assert page.status_code == 200, page.text
            created = await api_a.post("/api/v1/keys", json={"name": "ops", "tools": ["tickets__*"]})
            secret = created.json()["secret"]
            b = await _start(processes, config, tmp_path)
            for hub in (a, b):  # each connects its catalog session with the stored token, then serves the tool
                with anyio.fail_after(PATIENCE):
                    while (reply := await _whoami(http, hub, secret)).status_code != 200:  # noqa: ASYNC110 - another process
                        await anyio.sleep(0.05)
                assert reply.json()["content"] == "catalog-admin"
            assert provider.requests["authorization_code"] == 1 and provider.requests["refresh_token"] == 0

            provider.revoke_access_tokens()
            statuses: list[int] = []

            async def call(hub: ServedProcess) -> None:
                statuses.append((await _whoami(http, hub, secret)).status_code)

            async with anyio.create_task_group() as tg:
                for n in range(20):
                    tg.start_soon(call, (a, b)[n % 2])
            assert statuses == [200] * 20
            assert provider.requests["refresh_token"] == 1, "the refresh token was presented more than once"

            provider.revoke_access_tokens()  # B, which never discovered the authorization server itself, renews alone
            alone = await _whoami(http, b, secret)
            assert alone.status_code == 200 and alone.json()["content"] == "catalog-admin", alone.text
            sent = len(s.recorder.seen)
            assert (await _whoami(http, b, secret)).status_code == 200
            bare = [h for h in s.recorder.seen[sent:] if "authorization" not in h]
            assert bare == [], "B sent a request without the token it holds (then again with it)"
        assert provider.requests["refresh_token"] == provider.grants["refresh_token"] == 2
