"""An admin change and its audit entry are one database transaction: when the audit entry cannot be written, the
change is rolled back, so the log never misses a change that happened.

The audit append is made to fail for real: a trigger in the hub's SQLite database refuses every insert into the
audit log while it exists."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from tests.admin.helpers import admin_client, tool_call
from tests.hub.harness import base_config, fixture_stdio, running_hub
from tests.tools.patience import PATIENCE

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

REFUSE = (
    "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'the audit log refuses the entry'); END"
)
ALLOW = "DROP TRIGGER refuse_audit"
BOT = "ahk-platform-bot-secret-0000000000000000000"
RULE = {"name": "codename", "kind": "regex", "pattern": "(?i)project falcon", "apply_to": "input"}
EXTRA = {"name": "extra", **fixture_stdio("extra")}

CHANGES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/api/v1/customers", {"name": "newco"}),
    ("PATCH", "/api/v1/customers/acme", {"budget": {"max_usd": 5, "reset": "1M"}}),
    ("DELETE", "/api/v1/customers/spare", None),
    ("POST", "/api/v1/teams", {"name": "newteam"}),
    ("PATCH", "/api/v1/teams/platform", {"rate_limit": None}),
    ("DELETE", "/api/v1/teams/idle", None),
    ("POST", "/api/v1/keys", {"name": "k2", "team": "platform"}),
    ("PATCH", "/api/v1/keys/k1", {"tools": ["fixture__add"]}),
    ("DELETE", "/api/v1/keys/k1", None),
    ("POST", "/api/v1/servers", {"name": "s2", "transport": "stdio", "command": "x", "enabled": False}),
    ("PUT", "/api/v1/servers/extra", {**EXTRA, "timeout_s": 7}),
    ("DELETE", "/api/v1/servers/extra", None),
    ("POST", "/api/v1/roles", {"name": "r2", "permissions": ["audit:read"]}),
    ("PATCH", "/api/v1/roles/auditor", {"permissions": ["audit:read", "audit:export"]}),
    ("DELETE", "/api/v1/roles/auditor", None),
    ("POST", "/api/v1/tokens", {"name": "t2", "roles": ["viewer"]}),
    ("DELETE", "/api/v1/tokens/{token}", None),
    ("POST", "/api/v1/guardrails", {**RULE, "name": "other"}),
    ("PUT", "/api/v1/guardrails/codename", {**RULE, "action": "log"}),
    ("DELETE", "/api/v1/guardrails/codename", None),
    ("POST", "/api/v1/servers/fixture/approve", None),
    ("DELETE", "/api/v1/servers/extra/pins", None),
    ("POST", "/api/v1/usage/team/platform/reset", {}),
    ("POST", "/api/v1/audit/purge", {"retention_days": 0}),
]  # fmt: skip


async def _state(api: httpx2.AsyncClient) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for what in ("customers", "teams", "roles", "tokens", "guardrails"):
        out[what] = (await api.get(f"/api/v1/{what}")).json()["data"]
    out["keys"] = (await api.get("/api/v1/keys", params={"include_revoked": "true"})).json()["data"]
    out["servers"] = [(s["name"], s["source"]) for s in (await api.get("/api/v1/servers")).json()["data"]]
    out["extra"] = (await api.get("/api/v1/servers/extra")).json()["config"]
    for server in ("fixture", "extra"):
        pins = (await api.get(f"/api/v1/servers/{server}/pins")).json()
        out[f"{server} pins"] = (pins["pinned"], pins.get("approved_at"))
    out["usage"] = [(u["metric"], u["used"]) for u in (await api.get("/api/v1/usage/team/platform")).json()["limits"]]
    out["audit"] = [e["seq"] for e in (await api.get("/api/v1/audit", params={"limit": 1000})).json()["data"]]
    return out


async def _sql(db: Path, statement: str) -> None:
    def run() -> None:
        with sqlite3.connect(db) as conn:
            conn.execute(statement)

    await anyio.to_thread.run_sync(run)


async def test_a_change_whose_audit_entry_cannot_be_written_is_rolled_back(tmp_path: Path) -> None:
    keys = [{"name": "bot", "secret": BOT, "team": "platform", "tools": ["*"]}]
    config = base_config({"fixture": fixture_stdio()}, keys=keys)
    config["customers"] = [{"name": "acme"}]
    config["teams"] = [{"name": "platform", "customer": "acme", "rate_limit": {"requests": 100, "period": "1d"}}]
    async with (
        running_hub(config, tmp_path) as hub,
        admin_client(hub.base) as admin,
        httpx2.AsyncClient(timeout=20) as http,
    ):
        for path, body in [
            ("/api/v1/customers", {"name": "spare"}),
            ("/api/v1/teams", {"name": "idle"}),
            ("/api/v1/keys", {"name": "k1", "team": "platform", "tools": ["*"]}),
            ("/api/v1/roles", {"name": "auditor", "permissions": ["audit:read"]}),
            ("/api/v1/guardrails", RULE),
            ("/api/v1/servers", EXTRA),
        ]:
            assert (await admin.post(path, json=body)).status_code == 201, path
        token = (await admin.post("/api/v1/tokens", json={"name": "t1", "roles": ["viewer"]})).json()["id"]
        with anyio.fail_after(PATIENCE):
            for server in ("fixture", "extra"):
                assert await hub.hub.registry.upstreams[server].wait_ready(PATIENCE)
        assert (await admin.post("/api/v1/servers/extra/approve")).status_code == 200
        called = await http.post(hub.url("/v1/mcp/tool/execute"), json=tool_call("fixture__echo", '{"message": "x"}'),
                                 headers={"Authorization": f"Bearer {BOT}"})  # fmt: skip
        assert called.status_code == 200, called.text
        before = await _state(admin)
        assert ("requests", 1) in before["usage"]

        await _sql(tmp_path / "hub.db", REFUSE)
        answers: dict[str, httpx2.Response] = {}
        for method, path, body in CHANGES:
            path = path.format(token=token)
            answers[f"{method} {path}"] = await admin.request(method, path, json=body)
            assert await _state(admin) == before, f"{method} {path} changed state without its audit entry"
        await _sql(tmp_path / "hub.db", ALLOW)

        assert {what: r.status_code for what, r in answers.items()} == dict.fromkeys(answers, 500)
        assert {r.json()["error"]["type"] for r in answers.values()} == {"internal_error"}
        assert (await admin.get("/api/v1/audit/verify")).json()["ok"] is True
        assert (await admin.post("/api/v1/customers", json={"name": "newco"})).status_code == 201
        purged = await admin.post("/api/v1/audit/purge", json={"retention_days": 0})
        assert purged.status_code == 200 and purged.json()["checkpoint"] is not None
        (entry,) = (await admin.get("/api/v1/audit")).json()["data"]
        assert (entry["action"], entry["source_ip"]) == ("audit.purge", "127.0.0.1")
        assert (await admin.get("/api/v1/audit/verify")).json()["ok"] is True
