"""`/api/v1/virtual-servers`: virtual servers managed at run time, with RBAC and audit like upstream servers, stored
and followed by every other hub process on the same database through the change log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from tests.admin.conftest import ADMIN, AUDIT_KEY
from tests.admin.helpers import admin_client, token_with
from tests.hub.harness import ALICE, base_config, fixture_stdio, mcp_client, running_hub
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


@pytest.fixture(autouse=True)
def admin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTHUB_ADMIN_TOKEN", ADMIN)
    monkeypatch.setenv("AGENTHUB_AUDIT_KEY", AUDIT_KEY)
    monkeypatch.delenv("AGENTHUB_MASTER_KEY", raising=False)
    monkeypatch.delenv("AGENTHUB_DATABASE_URL", raising=False)
    monkeypatch.delenv("AGENTHUB_REDIS_URL", raising=False)


def _config(database: Path) -> dict[str, Any]:
    config = base_config({"fixture": fixture_stdio()}, change_poll_s=0.05, database=f"sqlite:///{database}")
    config["virtual_servers"] = {"fixed": {"tools": ["fixture__echo"]}}
    return config


async def _status(url: str) -> int:
    headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {ALICE}"}
    async with httpx2.AsyncClient() as http:
        return (await http.post(url, json=INIT, headers=headers)).status_code


async def test_virtual_servers_are_managed_audited_and_reach_other_processes(tmp_path: Path) -> None:
    database = tmp_path / "hub.db"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ops = {"name": "ops", "tools": ["fixture__add"], "tools_override": {"fixture__add": {"name": "sum"}}}
    async with (
        running_hub(_config(database), tmp_path / "a") as a,
        running_hub(_config(database), tmp_path / "b") as b,
        admin_client(a.base) as api,
    ):
        assert await _status(a.url("/mcp/v/ops")) == 404
        created = await api.post("/api/v1/virtual-servers", json=ops)
        assert created.status_code == 201, created.text
        assert created.json()["endpoint"] == "/mcp/v/ops"
        async with mcp_client(a.url("/mcp/v/ops"), ALICE) as client:
            assert [t.name for t in (await client.list_tools()).tools] == ["sum"]
        with anyio.fail_after(PATIENCE):
            while b.hub.virtual.get("ops") is None:  # noqa: ASYNC110 - the other hub polls the change log
                await anyio.sleep(0.05)
        async with mcp_client(b.url("/mcp/v/ops"), ALICE) as client:
            assert [t.name for t in (await client.list_tools()).tools] == ["sum"]

        listed = (await api.get("/api/v1/virtual-servers")).json()["data"]
        assert [(row["name"], row["source"]) for row in listed] == [("fixed", "config"), ("ops", "api")]
        duplicate = await api.post("/api/v1/virtual-servers", json=ops)
        assert duplicate.status_code == 409
        bad = await api.post("/api/v1/virtual-servers", json={"name": "x", "tools": [], "tool_overrides": {}})
        assert bad.status_code == 400 and "tool_overrides" in bad.json()["error"]["message"]
        fixed = await api.put("/api/v1/virtual-servers/fixed", json={"tools": ["*"]})
        assert fixed.status_code == 409 and "config file" in fixed.json()["error"]["message"]

        replaced = await api.put("/api/v1/virtual-servers/ops", json={"tools": ["fixture__echo"], "tool_search": True})
        assert replaced.status_code == 200, replaced.text
        async with mcp_client(a.url("/mcp/v/ops"), ALICE) as client:
            assert [t.name for t in (await client.list_tools()).tools] == ["search_tools", "call_tool"]

        viewer = await token_with(api, "watcher", ["servers:read"])
        async with admin_client(a.base, viewer) as read_only:
            assert (await read_only.get("/api/v1/virtual-servers/ops")).status_code == 200
            refused = await read_only.delete("/api/v1/virtual-servers/ops")
            assert refused.status_code == 403

        deleted = await api.delete("/api/v1/virtual-servers/ops")
        assert deleted.status_code == 200
        assert (await api.get("/api/v1/virtual-servers/ops")).status_code == 404
        assert await _status(a.url("/mcp/v/ops")) == 404
        with anyio.fail_after(PATIENCE):
            while b.hub.virtual.get("ops") is not None:  # noqa: ASYNC110 - the other hub polls the change log
                await anyio.sleep(0.05)
        assert await _status(b.url("/mcp/v/ops")) == 404

        audit = (await api.get("/api/v1/audit")).json()["data"]
        actions = [(e["action"], e["resource_id"]) for e in audit if e["resource_type"] == "virtual_server"]
        assert actions == [
            ("virtual_server.create", "ops"),
            ("virtual_server.update", "ops"),
            ("virtual_server.delete", "ops"),
        ]


async def test_a_key_made_with_tool_search_through_the_api_gets_the_meta_tools(tmp_path: Path) -> None:
    async with running_hub(_config(tmp_path / "hub.db"), tmp_path) as hub, admin_client(hub.base) as api:
        created = await api.post("/api/v1/keys", json={"name": "finder", "tools": ["fixture__*"], "tool_search": True})
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        async with mcp_client(hub.url("/mcp"), secret) as client:
            assert [t.name for t in (await client.list_tools()).tools] == ["search_tools", "call_tool"]
        changed = await api.patch("/api/v1/keys/finder", json={"tool_search": False})
        assert changed.status_code == 200, changed.text
        async with mcp_client(hub.url("/mcp"), secret) as client:
            assert "fixture__echo" in [t.name for t in (await client.list_tools()).tools]
