"""Admin login with OIDC (authorization code + PKCE) against a real OpenID provider (`oidc-provider` on Node)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import pytest

from tests.admin.helpers import admin_client, hub_on_port
from tests.hub.harness import RunningHub, base_config
from tests.tools import NodeToolsMissing, ServedProcess, free_port, node_tools, served
from tests.tools.node import INSTALL_HINT
from tests.tools.requirements import unavailable

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SCRIPT = Path(__file__).with_name("oidc_provider.mjs")
CLIENT_ID = "agenthub-admin"
CLIENT_SECRET = "client-secret-for-the-oidc-tests-0123456789"
REFUSE_AUDIT = (
    "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'the audit log refuses the entry'); END"
)
"""Makes every audit append fail (the hub's database is SQLite in the test's folder)."""


@pytest.fixture
async def oidc_hub(tmp_path: Path) -> AsyncGenerator[tuple[RunningHub, ServedProcess]]:
    try:
        tools = node_tools()
    except NodeToolsMissing as exc:
        unavailable(f"the Node tools ({exc})", INSTALL_HINT)
    package = tools.root / "node_modules" / "oidc-provider"
    if not (package / "package.json").is_file():
        unavailable("oidc-provider", INSTALL_HINT)
    hub_port = free_port()
    redirect = f"http://127.0.0.1:{hub_port}/api/v1/auth/callback"
    argv = [str(tools.node22), str(SCRIPT), "{port}", CLIENT_ID, CLIENT_SECRET, redirect, str(package)]
    async with served(argv, env=tools.env()) as idp:
        config = base_config({}, keys=[])
        config["admin"] = {
            "oidc": {
                "issuer": idp.base_url,
                "client_id": CLIENT_ID,
                "client_secret": "env:AGENTHUB_TEST_OIDC_SECRET",
                "redirect_uri": redirect,
                "scopes": ["openid", "email", "groups"],
                "roles": {"hub-admins": ["admin"], "platform-devs": ["developer"]},
                "teams": {"platform-devs": ["platform"]},
            }
        }
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("AGENTHUB_TEST_OIDC_SECRET", CLIENT_SECRET)
            async with hub_on_port(config, tmp_path, hub_port) as hub:
                yield hub, idp


async def _login(hub: RunningHub, user: str, *, tamper_state: bool = False) -> httpx2.Response:
    """Play the browser: start at the hub, log in at the provider, come back to the hub's callback."""
    async with httpx2.AsyncClient(timeout=20) as browser:
        start = await browser.get(hub.url("/api/v1/auth/login"))
        assert start.status_code == 302
        location = start.headers["location"]
        query = parse_qs(urlsplit(location).query)
        assert query["code_challenge_method"] == ["S256"] and query["response_type"] == ["code"]
        assert len(query["code_challenge"][0]) == 43 and query["nonce"][0]
        callback_prefix = hub.url("/api/v1/auth/callback")
        response = await browser.get(location)
        for _ in range(10):
            assert response.status_code in (302, 303), response.text
            location = str(response.next_request.url) if response.next_request else response.headers["location"]
            if location.startswith(callback_prefix):
                break
            if "/interaction/" in location and not location.endswith("/login"):
                await browser.get(location)
                response = await browser.post(location + "/login", data={"user": user})
            else:
                response = await browser.get(location)
        else:
            pytest.fail("the provider never redirected back to the hub")
        if tamper_state:
            location = location.replace("state=", "state=x")
        return await browser.get(location)


async def test_an_admin_group_logs_in_and_gets_a_session_that_manages_the_hub(
    oidc_hub: tuple[RunningHub, ServedProcess],
) -> None:
    hub, _idp = oidc_hub
    done = await _login(hub, "alice")
    assert done.status_code == 200, done.text
    session: dict[str, Any] = done.json()
    assert session["roles"] == ["admin"] and session["subject"] == "alice@example.com"
    assert session["token"].startswith("ahs-") and done.cookies.get("agenthub_admin") == session["token"]
    async with admin_client(hub.base, session["token"]) as api:
        me = (await api.get("/api/v1/me")).json()
        assert (me["subject"], me["via"], me["roles"]) == ("alice@example.com", "oidc", ["admin"])
        assert (await api.post("/api/v1/teams", json={"name": "platform"})).status_code == 201
        entries = (await api.get("/api/v1/audit")).json()["data"]
    login = entries[0]
    assert (login["action"], login["actor"], login["outcome"]) == ("auth.login", "oidc:alice@example.com", "success")
    assert login["after"]["groups"] == ["hub-admins"]
    assert entries[1]["actor"] == "oidc:alice@example.com" and entries[1]["action"] == "team.create"


async def test_groups_map_to_developer_with_its_teams_and_unmapped_users_are_refused(
    oidc_hub: tuple[RunningHub, ServedProcess],
) -> None:
    hub, _idp = oidc_hub
    async with admin_client(hub.base) as admin:
        await admin.post("/api/v1/teams", json={"name": "platform"})
        await admin.post("/api/v1/teams", json={"name": "payments"})
    dana = (await _login(hub, "dana")).json()
    assert (dana["roles"], dana["teams"]) == (["developer"], ["platform"])
    async with admin_client(hub.base, dana["token"]) as api:
        assert (await api.post("/api/v1/keys", json={"name": "k1", "team": "platform"})).status_code == 201
        assert (await api.post("/api/v1/keys", json={"name": "k2", "team": "payments"})).status_code == 403
        assert (await api.post("/api/v1/teams", json={"name": "t3"})).status_code == 403

    eve = await _login(hub, "eve")
    assert eve.status_code == 403 and "no admin role" in eve.json()["error"]["message"]
    tampered = await _login(hub, "alice", tamper_state=True)
    assert tampered.status_code == 400 and "state" in tampered.json()["error"]["message"]
    async with admin_client(hub.base) as admin:
        entries = (await admin.get("/api/v1/audit", params={"limit": 1000})).json()["data"]
    denied = [(e["actor"], e["action"]) for e in entries if e["outcome"] == "denied"]
    assert ("oidc:eve@example.com", "auth.login") in denied
    assert ("anonymous", "auth.login") in denied


async def test_a_login_whose_audit_entry_cannot_be_written_opens_no_session(
    oidc_hub: tuple[RunningHub, ServedProcess], tmp_path: Path
) -> None:
    hub, _idp = oidc_hub

    def sql(statement: str) -> None:
        with sqlite3.connect(tmp_path / "hub.db") as conn:
            conn.execute(statement)

    await anyio.to_thread.run_sync(sql, REFUSE_AUDIT)
    refused = await _login(hub, "alice")
    await anyio.to_thread.run_sync(sql, "DROP TRIGGER refuse_audit")
    assert refused.status_code == 500 and "agenthub_admin" not in refused.cookies
    async with admin_client(hub.base) as admin:
        assert [t for t in (await admin.get("/api/v1/tokens")).json()["data"] if t["kind"] == "session"] == []
    assert (await _login(hub, "alice")).status_code == 200
