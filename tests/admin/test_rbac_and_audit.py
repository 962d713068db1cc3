"""Roles on the admin API (viewer, developer, admin, custom) and the audit trail of changes and refusals."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from hub.governance.rbac import AdminPrincipal, Permission, resolve_roles
from tests.admin.helpers import admin_client
from tests.hub.harness import base_config, running_hub

pytestmark = pytest.mark.anyio


def test_roles_resolve_to_permissions_and_team_scoped_grants_need_the_team() -> None:
    roles, perms = resolve_roles(["Developer", "auditor", "nonsense"], {"auditor": ["audit:read", "audit:export"]})
    assert roles == ("developer", "auditor")
    dev = AdminPrincipal("dana", roles, frozenset({"platform"}), perms)
    assert dev.allowed("keys", "create", "platform")
    assert not dev.allowed("keys", "create", "payments") and not dev.allowed("keys", "create", None)
    assert dev.allowed("audit", "export") and not dev.allowed("servers", "create")
    assert Permission.parse("keys:update:own") == Permission("keys", "update", True)
    with pytest.raises(ValueError, match="unknown resource"):
        Permission.parse("planets:read")


async def _token(api: httpx2.AsyncClient, name: str, roles: list[str], teams: list[str] | None = None) -> str:
    response = await api.post("/api/v1/tokens", json={"name": name, "roles": roles, "teams": teams or []})
    assert response.status_code == 201, response.text
    secret: str = response.json()["secret"]
    assert secret.startswith("aht-")
    return secret


async def test_viewer_reads_developer_manages_its_teams_keys_and_only_admin_manages_servers_roles_audit(
    tmp_path: Path,
) -> None:
    async with running_hub(base_config({}, keys=[]), tmp_path) as hub, admin_client(hub.base) as admin:
        for team in ("platform", "payments"):
            assert (await admin.post("/api/v1/teams", json={"name": team})).status_code == 201
        other = (await admin.post("/api/v1/keys", json={"name": "pay-bot", "team": "payments"})).json()["id"]
        await admin.post("/api/v1/roles", json={"name": "auditor", "permissions": ["audit:read"]})
        viewer = await _token(admin, "viewer-1", ["viewer"])
        dev = await _token(admin, "dev-1", ["developer"], ["platform"])
        auditor = await _token(admin, "auditor-1", ["auditor"])

        async with admin_client(hub.base, viewer) as v:
            assert (await v.get("/api/v1/keys")).status_code == 200
            assert (await v.get("/api/v1/servers")).status_code == 200
            assert (await v.post("/api/v1/customers", json={"name": "c"})).status_code == 403
            assert (await v.delete(f"/api/v1/keys/{other}")).status_code == 403
            assert (await v.get("/api/v1/audit")).status_code == 403

        async with admin_client(hub.base, dev) as d:
            mine = await d.post("/api/v1/keys", json={"name": "plat-bot", "team": "platform", "tools": ["*"]})
            assert mine.status_code == 201
            assert (await d.patch(f"/api/v1/keys/{mine.json()['id']}", json={"tools": []})).status_code == 200
            assert (await d.post("/api/v1/keys", json={"name": "x", "team": "payments"})).status_code == 403
            assert (await d.post("/api/v1/keys", json={"name": "y"})).status_code == 403
            assert (await d.patch(f"/api/v1/keys/{mine.json()['id']}", json={"team": "payments"})).status_code == 403
            assert (await d.delete(f"/api/v1/keys/{other}")).status_code == 403
            assert [k["name"] for k in (await d.get("/api/v1/keys")).json()["data"]] == ["plat-bot"]
            assert (await d.get(f"/api/v1/keys/{other}")).status_code == 403
            server = {"name": "s", "transport": "http", "url": "http://127.0.0.1:1/mcp"}
            assert (await d.post("/api/v1/servers", json=server)).status_code == 403
            assert (await d.post("/api/v1/roles", json={"name": "r", "permissions": []})).status_code == 403
            assert (await d.post("/api/v1/audit/purge", json={"retention_days": 0})).status_code == 403
            assert (await d.post("/api/v1/tokens", json={"name": "t", "roles": ["admin"]})).status_code == 403
            assert (await d.get("/api/v1/me")).json()["teams"] == ["platform"]

        async with admin_client(hub.base, auditor) as a:
            assert (await a.get("/api/v1/audit")).status_code == 200
            assert (await a.get("/api/v1/audit/export")).status_code == 403

        async with admin_client(hub.base, "aht-not-a-real-token") as nobody:
            refused = await nobody.get("/api/v1/keys")
            assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
        tokens = (await admin.get("/api/v1/tokens")).json()["data"]
        viewer_id = next(t["id"] for t in tokens if t["name"] == "viewer-1")
        assert (await admin.delete(f"/api/v1/tokens/{viewer_id}")).status_code == 200
        async with admin_client(hub.base, viewer) as v:
            assert (await v.get("/api/v1/keys")).status_code == 401

        entries = (await admin.get("/api/v1/audit", params={"limit": 1000})).json()["data"]
        denied = [(e["actor"], e["action"]) for e in entries if e["outcome"] == "denied"]
        assert ("token:viewer-1", "customers.create") in denied
        assert ("token:dev-1", "servers.create") in denied
        assert ("token:dev-1", "keys.create") in denied
        assert ("anonymous", "keys.read") in denied
        assert ("token:auditor-1", "audit.export") in denied
        assert ("token:dev-1", "key.create") in [
            (e["actor"], e["action"]) for e in entries if e["outcome"] == "success"
        ]


async def test_every_change_is_audited_with_actor_source_and_scrubbed_before_and_after(tmp_path: Path) -> None:
    config = base_config({}, keys=[])
    config["admin"] = {"allowed_endpoints": ["http://127.0.0.1:*"]}
    async with running_hub(config, tmp_path) as hub, admin_client(hub.base) as admin:
        key = (await admin.post("/api/v1/keys", json={"name": "bot", "tools": ["a__*"]})).json()
        await admin.patch(f"/api/v1/keys/{key['id']}", json={"tools": ["b__*"]})
        server = {"name": "remote", "transport": "http", "url": "http://127.0.0.1:9/mcp",
                  "headers": {"Authorization": "Bearer upstream-secret-value-123"}, "enabled": False}  # fmt: skip
        assert (await admin.post("/api/v1/servers", json=server)).status_code == 201
        export = await admin.get("/api/v1/audit/export", params={"format": "jsonl"})
        entries = (await admin.get("/api/v1/audit")).json()["data"]
        verdict = (await admin.get("/api/v1/audit/verify")).json()
    assert export.status_code == 200
    assert key["secret"] not in export.text and "upstream-secret-value-123" not in export.text
    actions = [e["action"] for e in entries]
    assert actions[:4] == ["key.create", "key.update", "server.create", "audit.export"]
    update = entries[1]
    assert update["actor"] == "bootstrap" and update["resource_type"] == "key" and update["resource_id"] == key["id"]
    assert update["before"]["tools"] == ["a__*"] and update["after"]["tools"] == ["b__*"]
    assert update["source_ip"] == "127.0.0.1" and update["user_agent"] == "admin-tests/1.0"
    assert entries[2]["after"]["headers"] == {"Authorization": "[REDACTED]"}
    assert [e["seq"] for e in entries] == [1, 2, 3, 4] and entries[1]["prev_mac"] == entries[0]["mac"]
    assert verdict == {"ok": True, "checked": 4, "first_bad_seq": None, "reason": None}
