"""Scope: a team-limited (`:own`) grant reaches only targets of the caller's teams, on every admin operation.

The walk below covers every route of the admin API's table: a new operation without a request here fails the
suite, and so does a handler that acts on a target outside the caller's teams."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from hub.app import Hub
from hub.doors.admin.ops import OPERATIONS
from tests.admin.helpers import admin_client, token_with
from tests.hub.harness import base_config, fixture_stdio, running_hub
from tests.tools.patience import PATIENCE

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

RATE = {"requests": 100, "period": "1d"}
GUARDRAIL = {"name": "codename", "kind": "regex", "pattern": "(?i)project falcon", "apply_to": "input"}
EXTRA = {"name": "extra", **fixture_stdio("extra")}

Request = tuple[str, dict[str, Any] | None]
"""A concrete path and its JSON body (None: no body)."""

OUTSIDE: dict[tuple[str, str], Request] = {
    ("GET", "/api/v1/customers"): ("/api/v1/customers", None),
    ("POST", "/api/v1/customers"): ("/api/v1/customers", {"name": "newco"}),
    ("GET", "/api/v1/customers/{name}"): ("/api/v1/customers/acme", None),
    ("PATCH", "/api/v1/customers/{name}"): ("/api/v1/customers/acme", {"rate_limit": None}),
    ("DELETE", "/api/v1/customers/{name}"): ("/api/v1/customers/spare", None),
    ("GET", "/api/v1/teams"): ("/api/v1/teams", None),
    ("POST", "/api/v1/teams"): ("/api/v1/teams", {"name": "newteam"}),
    ("GET", "/api/v1/teams/{name}"): ("/api/v1/teams/payments", None),
    ("PATCH", "/api/v1/teams/{name}"): ("/api/v1/teams/payments", {"rate_limit": None}),
    ("DELETE", "/api/v1/teams/{name}"): ("/api/v1/teams/idle", None),
    ("GET", "/api/v1/keys"): ("/api/v1/keys", None),
    ("POST", "/api/v1/keys"): ("/api/v1/keys", {"name": "sneaky", "team": "payments"}),
    ("GET", "/api/v1/keys/{key}"): ("/api/v1/keys/pay-bot", None),
    ("PATCH", "/api/v1/keys/{key}"): ("/api/v1/keys/pay-bot", {"tools": []}),
    ("DELETE", "/api/v1/keys/{key}"): ("/api/v1/keys/pay-bot", None),
    ("GET", "/api/v1/usage/{kind}/{name}"): ("/api/v1/usage/team/payments", None),
    ("POST", "/api/v1/usage/{kind}/{name}/reset"): ("/api/v1/usage/team/payments/reset", {}),
    ("GET", "/api/v1/servers"): ("/api/v1/servers", None),
    ("POST", "/api/v1/servers"): ("/api/v1/servers", {"name": "s2", "transport": "stdio", "command": "x",
                                                      "enabled": False}),
    ("GET", "/api/v1/servers/{name}"): ("/api/v1/servers/extra", None),
    ("PUT", "/api/v1/servers/{name}"): ("/api/v1/servers/extra", {**EXTRA, "timeout_s": 5}),
    ("DELETE", "/api/v1/servers/{name}"): ("/api/v1/servers/extra", None),
    ("POST", "/api/v1/servers/{name}/auth/login"): ("/api/v1/servers/extra/auth/login", {}),
    ("POST", "/api/v1/servers/{name}/auth/logout"): ("/api/v1/servers/extra/auth/logout", {}),
    ("GET", "/api/v1/virtual-servers"): ("/api/v1/virtual-servers", None),
    ("POST", "/api/v1/virtual-servers"): ("/api/v1/virtual-servers", {"name": "v2", "tools": ["*"]}),
    ("GET", "/api/v1/virtual-servers/{name}"): ("/api/v1/virtual-servers/v2", None),
    ("PUT", "/api/v1/virtual-servers/{name}"): ("/api/v1/virtual-servers/v2", {"tools": []}),
    ("DELETE", "/api/v1/virtual-servers/{name}"): ("/api/v1/virtual-servers/v2", None),
    ("GET", "/api/v1/guardrails"): ("/api/v1/guardrails", None),
    ("POST", "/api/v1/guardrails"): ("/api/v1/guardrails", {**GUARDRAIL, "name": "other"}),
    ("POST", "/api/v1/guardrails/check"): ("/api/v1/guardrails/check", {"text": "project falcon"}),
    ("GET", "/api/v1/guardrails/{name}"): ("/api/v1/guardrails/codename", None),
    ("PUT", "/api/v1/guardrails/{name}"): ("/api/v1/guardrails/codename", {**GUARDRAIL, "action": "log"}),
    ("DELETE", "/api/v1/guardrails/{name}"): ("/api/v1/guardrails/codename", None),
    ("GET", "/api/v1/servers/{name}/pins"): ("/api/v1/servers/extra/pins", None),
    ("POST", "/api/v1/servers/{name}/approve"): ("/api/v1/servers/extra/approve", None),
    ("DELETE", "/api/v1/servers/{name}/pins"): ("/api/v1/servers/extra/pins", None),
    ("GET", "/api/v1/models"): ("/api/v1/models", None),
    ("GET", "/api/v1/roles"): ("/api/v1/roles", None),
    ("POST", "/api/v1/roles"): ("/api/v1/roles", {"name": "r2", "permissions": ["keys:read:own"]}),
    ("GET", "/api/v1/roles/{name}"): ("/api/v1/roles/auditor", None),
    ("PATCH", "/api/v1/roles/{name}"): ("/api/v1/roles/auditor", {"permissions": []}),
    ("DELETE", "/api/v1/roles/{name}"): ("/api/v1/roles/auditor", None),
    ("GET", "/api/v1/tokens"): ("/api/v1/tokens", None),
    ("POST", "/api/v1/tokens"): ("/api/v1/tokens", {"name": "t2", "roles": ["viewer"]}),
    ("DELETE", "/api/v1/tokens/{id}"): ("/api/v1/tokens/{other_token}", None),
    ("GET", "/api/v1/audit"): ("/api/v1/audit", None),
    ("GET", "/api/v1/audit/verify"): ("/api/v1/audit/verify", None),
    ("GET", "/api/v1/audit/export"): ("/api/v1/audit/export", None),
    ("GET", "/api/v1/audit/settings"): ("/api/v1/audit/settings", None),
    ("POST", "/api/v1/audit/purge"): ("/api/v1/audit/purge", {"retention_days": 0}),
    ("GET", "/api/v1/logs"): ("/api/v1/logs", None),
    ("GET", "/api/v1/logs/summary"): ("/api/v1/logs/summary", None),
    ("GET", "/api/v1/logs/{call_id}"): ("/api/v1/logs/call_x", None),
    ("GET", "/api/v1/users"): ("/api/v1/users", None),
    ("GET", "/api/v1/users/{user}"): ("/api/v1/users/user_x", None),
    ("DELETE", "/api/v1/users/{user}/tokens"): ("/api/v1/users/user_x/tokens", None),
}  # fmt: skip
"""For each operation, a request whose target lies outside the caller's team (`platform`)."""

FILTERED_LISTS = {("GET", "/api/v1/keys"): "pay-bot", ("GET", "/api/v1/teams"): "payments"}
"""Lists of team-owned targets answer 200 with only the caller's own; the value must not be listed."""


async def _snapshot(api: httpx2.AsyncClient) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for what in ("customers", "teams", "roles", "tokens", "guardrails"):
        out[what] = (await api.get(f"/api/v1/{what}")).json()["data"]
    out["keys"] = (await api.get("/api/v1/keys", params={"include_revoked": "true"})).json()["data"]
    out["servers"] = [(s["name"], s["source"]) for s in (await api.get("/api/v1/servers")).json()["data"]]
    out["virtual servers"] = (await api.get("/api/v1/virtual-servers")).json()["data"]
    out["extra"] = (await api.get("/api/v1/servers/extra")).json()["config"]
    out["pins"] = (await api.get("/api/v1/servers/extra/pins")).json()
    out["usage"] = (await api.get("/api/v1/usage/team/payments")).json()
    out["first audit entry"] = (await api.get("/api/v1/audit", params={"limit": 1})).json()["data"][0]["seq"]
    return out


async def _setup(api: httpx2.AsyncClient, hub: Hub) -> str:
    """Targets outside team `platform`; returns the id of an admin token that is one of them."""
    for path, body in [
        ("/api/v1/customers", {"name": "acme"}),
        ("/api/v1/customers", {"name": "spare"}),
        ("/api/v1/teams", {"name": "platform", "customer": "acme"}),
        ("/api/v1/teams", {"name": "payments", "customer": "acme", "rate_limit": RATE}),
        ("/api/v1/teams", {"name": "idle"}),
        ("/api/v1/keys", {"name": "plat-bot", "team": "platform"}),
        ("/api/v1/keys", {"name": "pay-bot", "team": "payments"}),
        ("/api/v1/roles", {"name": "auditor", "permissions": ["audit:read"]}),
        ("/api/v1/guardrails", GUARDRAIL),
        ("/api/v1/servers", EXTRA),
    ]:
        created = await api.post(path, json=body)
        assert created.status_code == 201, (path, created.text)
    with anyio.fail_after(PATIENCE):
        assert await hub.registry.upstreams["extra"].wait_ready(PATIENCE)
    assert (await api.post("/api/v1/servers/extra/approve")).status_code == 200
    other = await api.post("/api/v1/tokens", json={"name": "other", "roles": ["viewer"]})
    assert other.status_code == 201
    token_id: str = other.json()["id"]
    return token_id


async def test_every_operation_refuses_a_team_limited_grant_for_a_target_outside_the_callers_teams(
    tmp_path: Path,
) -> None:
    routed = {(op.method, op.path) for op in OPERATIONS if op.resource is not None}
    assert routed == set(OUTSIDE), "every admin operation needs a request in OUTSIDE"
    assert {op.path for op in OPERATIONS if op.resource is None} == {
        "/api/v1/me", "/api/v1/auth/login", "/api/v1/auth/callback"
    }  # fmt: skip
    config = base_config({"fixture": fixture_stdio()}, keys=[])
    async with running_hub(config, tmp_path) as hub, admin_client(hub.base) as admin:
        other_token = await _setup(admin, hub.hub)
        callers: dict[tuple[str, str], str] = {}
        for n, op in enumerate(op for op in OPERATIONS if op.resource is not None):
            grant = f"{op.resource}:{op.action}:own"
            callers[(op.method, op.path)] = await token_with(admin, f"own-{n}", [grant], ["platform"])
        before = await _snapshot(admin)
        outcomes: dict[tuple[str, str], str] = {}
        for op in (op for op in OPERATIONS if op.resource is not None):
            path, body = OUTSIDE[(op.method, op.path)]
            path = path.format(other_token=other_token)
            async with admin_client(hub.base, callers[(op.method, op.path)]) as caller:
                response = await caller.request(op.method, path, json=body)
            hidden = FILTERED_LISTS.get((op.method, op.path))
            if hidden is not None:
                listed = [item["name"] for item in response.json()["data"]]
                outcome = "filtered" if response.status_code == 200 and hidden not in listed else response.text
            else:
                outcome = "refused" if response.status_code == 403 else f"{response.status_code} {response.text}"
            outcomes[(op.method, op.path)] = outcome
            assert await _snapshot(admin) == before, (op.method, op.path, "changed its target")
    wanted = {k: ("filtered" if k in FILTERED_LISTS else "refused") for k in OUTSIDE}
    assert outcomes == wanted


async def test_a_team_limited_grant_acts_on_its_own_team_but_cannot_move_it_to_another_customer(
    tmp_path: Path,
) -> None:
    async with running_hub(base_config({}, keys=[]), tmp_path) as hub, admin_client(hub.base) as admin:
        for path, body in [
            ("/api/v1/customers", {"name": "acme"}),
            ("/api/v1/customers", {"name": "globex"}),
            ("/api/v1/teams", {"name": "platform", "customer": "acme"}),
            ("/api/v1/teams", {"name": "payments"}),
        ]:
            assert (await admin.post(path, json=body)).status_code == 201
        lead = await token_with(admin, "lead", ["teams:*:own", "usage:read:own"], ["platform"])
        async with admin_client(hub.base, lead) as api:
            assert [t["name"] for t in (await api.get("/api/v1/teams")).json()["data"]] == ["platform"]
            assert (await api.get("/api/v1/teams/platform")).status_code == 200
            assert (await api.patch("/api/v1/teams/platform", json={"rate_limit": RATE})).status_code == 200
            assert (await api.get("/api/v1/usage/team/platform")).status_code == 200
            moved = await api.patch("/api/v1/teams/platform", json={"customer": "globex"})
            assert moved.status_code == 403, moved.text
            assert (await api.get("/api/v1/usage/customer/acme")).status_code == 403
        team = (await admin.get("/api/v1/teams/platform")).json()
        assert team["customer"] == "acme" and team["rate_limit"]["requests"] == RATE["requests"]
