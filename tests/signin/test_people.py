"""People who signed in, visible and revocable: the admin API (`/api/v1/users`) and `agenthub users list|revoke`.
A revocation at one replica ends the person's tokens there at once and at the other through its poll of the shared
database (the test waits for that, bounded only against a hang); each is an entry of the audit chain."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import httpx2
import pytest

from hub.cli.main import main as cli
from tests.admin.helpers import admin_client, hub_on_port
from tests.signin.helpers import Browser, identity_provider, signin_config
from tests.signin.test_sign_in_refusals import authorize_url, open_session, pkce, redeem, register, sign_in
from tests.signin.test_two_replicas import _until
from tests.tools import free_port
from tests.tools.patience import PATIENCE

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ADMIN = "bootstrap-admin-token-for-the-sign-in-tests"


@pytest.fixture(autouse=True)
def admin_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTHUB_ADMIN_TOKEN", ADMIN)
    monkeypatch.setenv("AGENTHUB_AUDIT_KEY", "audit-key-for-the-sign-in-tests-0123456789abcdef")


async def test_people_are_listed_and_a_revocation_reaches_every_replica_and_is_audited(tmp_path: Path) -> None:
    port_a, port_b = free_port(), free_port()
    async with identity_provider(port_a) as idp:
        config = signin_config(port_a, idp)
        async with (
            hub_on_port(config, tmp_path, port_a) as a,
            hub_on_port(config, tmp_path, port_b) as b,
            httpx2.AsyncClient(timeout=PATIENCE) as http,
            admin_client(a.base, ADMIN) as admin_a,
            admin_client(b.base, ADMIN) as admin_b,
        ):
            client_id = (await register(http, a)).json()["client_id"]
            verifier, challenge = pkce()
            landed = await sign_in(a, client_id, challenge)
            tokens = (await redeem(http, a, client_id, landed["code"], verifier)).json()
            access, refresh = tokens["access_token"], tokens["refresh_token"]
            await _until(http, b, access, 200)

            listed = (await admin_b.get("/api/v1/users")).json()["data"]
            assert [(p["name"], p["team"], p["tools"], p["access_tokens"]) for p in listed] == [
                ("user:dana@example.com", "platform", ["fixture__echo"], 1)
            ]
            person = listed[0]
            assert person["groups"] == ["platform-devs", "staff"] and person["clients"] == [client_id]
            by_email = await admin_a.get("/api/v1/users/dana@example.com")
            assert by_email.status_code == 200 and by_email.json()["id"] == person["id"]
            unknown = await admin_a.get("/api/v1/users/nobody@example.com")
            assert unknown.status_code == 404 and "nobody@example.com" in unknown.json()["error"]["message"]
            anonymous = await http.get(a.url("/api/v1/users"))
            assert anonymous.status_code == 401

            revoked = await admin_a.delete(f"/api/v1/users/{person['id']}/tokens")
            assert revoked.status_code == 200 and revoked.json()["access_tokens"] == 1
            assert (await open_session(http, a.url("/mcp"), access)).status_code == 401  # at once where revoked
            await _until(http, b, access, 401)  # the other replica follows
            form = {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": client_id}
            assert (await http.post(b.url("/signin/token"), data=form)).json()["error"] == "invalid_grant"
            assert (await admin_b.get("/api/v1/users")).json()["data"][0]["access_tokens"] == 0

            audit = (await admin_a.get("/api/v1/audit")).json()["data"]
            actions = [(e["actor"], e["action"], e["resource_id"], e["outcome"]) for e in audit]
            assert ("user:dana@example.com", "signin.login", person["id"], "success") in actions
            assert ("bootstrap", "user.revoke", person["id"], "success") in actions

            # the consent went with the revocation: the next sign-in asks again
            again = Browser("dana")
            await again.visit(authorize_url(a, client_id, pkce()[1]))
            assert len(again.consents) == 1 and "code" in again.landed[-1]


async def test_the_cli_lists_and_revokes_people_for_running_hubs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = tmp_path / "agenthub.toml"
    config_file.write_text(f'[hub]\ndatabase = "sqlite:///{tmp_path / "hub.db"}"\n', encoding="utf-8")
    cfg = str(config_file)
    port = free_port()
    async with (
        identity_provider(port) as idp,
        hub_on_port(signin_config(port, idp), tmp_path, port) as hub,
        httpx2.AsyncClient(timeout=PATIENCE) as http,
    ):
        client_id = (await register(http, hub)).json()["client_id"]
        verifier, challenge = pkce()
        landed = await sign_in(hub, client_id, challenge, user="eve")
        access = (await redeem(http, hub, client_id, landed["code"], verifier)).json()["access_token"]
        assert (await open_session(http, hub.url("/mcp"), access)).status_code == 200

        capsys.readouterr()
        assert await anyio.to_thread.run_sync(cli, ["users", "list", "--config", cfg, "--json"]) == 0
        people = json.loads(capsys.readouterr().out)
        assert [(p["email"], p["groups"], p["access_tokens"]) for p in people] == [
            ("eve@example.com", ["marketing"], 1)
        ]
        assert await anyio.to_thread.run_sync(cli, ["users", "revoke", "nobody@example.com", "--config", cfg]) == 1
        assert "no person 'nobody@example.com'" in capsys.readouterr().err
        assert await anyio.to_thread.run_sync(cli, ["users", "revoke", "eve@example.com", "--config", cfg]) == 0
        assert "1 live access tokens" in capsys.readouterr().out
        await _until(http, hub, access, 401)  # the running hub follows the database

        assert hub.hub.control is not None
        entries = hub.hub.control.audit.entries()
        revocations = [(e.action, e.resource_id, e.user_agent) for e in entries if e.action == "user.revoke"]
        assert revocations == [("user.revoke", people[0]["id"], "agenthub-cli")]
