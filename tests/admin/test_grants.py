"""A grant never exceeds its granter's permissions: admin tokens and custom roles carry only what the caller
holds itself, with team-limited (`:own`) permissions only for the caller's own teams."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hub.governance.rbac import Permission, parse_permissions, uncovered
from tests.admin.helpers import admin_client, token_with
from tests.hub.harness import base_config, running_hub

pytestmark = pytest.mark.anyio


MINTER_REQUESTS: list[tuple[str, str, str, dict[str, Any], int]] = [
    ("admin", "POST", "/api/v1/tokens", {"name": "t1", "roles": ["admin"]}, 403),
    ("developer", "POST", "/api/v1/tokens", {"name": "t2", "roles": ["developer"], "teams": ["platform"]}, 403),
    ("unscoped keys", "POST", "/api/v1/tokens", {"name": "t3", "roles": ["key-reader"]}, 403),
    ("wider role", "POST", "/api/v1/roles", {"name": "r1", "permissions": ["keys:read"]}, 403),
    ("wildcard role", "POST", "/api/v1/roles", {"name": "r2", "permissions": ["*:*"]}, 403),
    ("own role", "POST", "/api/v1/roles", {"name": "mine", "permissions": ["keys:read:own", "keys:update:own"]}, 201),
    ("own token, own team", "POST", "/api/v1/tokens", {"name": "t4", "roles": ["mine"], "teams": ["platform"]}, 201),
    ("own token, other team", "POST", "/api/v1/tokens", {"name": "t5", "roles": ["mine"], "teams": ["payments"]}, 403),
    ("widen own role", "PATCH", "/api/v1/roles/mine", {"permissions": ["keys:read"]}, 403),
    ("widen to admin", "PATCH", "/api/v1/roles/mine", {"permissions": ["*:*"]}, 403),
    ("narrow own role", "PATCH", "/api/v1/roles/mine", {"permissions": ["keys:read:own"]}, 200),
    ("unscoped minter", "POST", "/api/v1/roles", {"name": "minting", "permissions": ["tokens:create"]}, 201),
    ("its token, any team", "POST", "/api/v1/tokens", {"name": "t6", "roles": ["minting"], "teams": ["payments"]}, 201),
]
"""What a minter holding `tokens:create`, `roles:create/update` and `keys:*:own` for team `platform` asks, and the
answer: (what, method, path, body, status)."""


def _perms(*texts: str) -> tuple[Permission, ...]:
    return parse_permissions(texts)


def test_a_permission_is_covered_only_by_an_equal_or_wider_grant_of_the_holder() -> None:
    held = _perms("keys:*:own", "tokens:create", "audit:read")
    platform = frozenset({"platform"})
    assert uncovered(_perms("keys:read:own", "keys:update:own", "audit:read"), {"platform"}, held, platform) == ()
    assert uncovered(_perms("tokens:create"), {"payments"}, held, platform) == ()  # unscoped: any teams
    assert uncovered(_perms("keys:read"), set(), held, platform) == _perms("keys:read")  # wider than :own
    assert uncovered(_perms("keys:read:own"), {"payments"}, held, platform) == _perms("keys:read:own")
    assert uncovered(_perms("keys:read:own"), {"platform", "payments"}, held, platform) == _perms("keys:read:own")
    assert uncovered(_perms("*:read"), set(), held, platform) == _perms("*:read")  # a wildcard needs a wildcard
    assert uncovered(_perms("audit:*"), set(), held, platform) == _perms("audit:*")
    assert uncovered(_perms("*:*"), {"x"}, _perms("*:*"), frozenset()) == ()
    assert uncovered(_perms("teams:update:own"), {"x"}, _perms("*:*:own"), frozenset({"x"})) == ()
    assert uncovered(_perms("teams:update"), set(), _perms("*:*:own"), frozenset({"x"})) == _perms("teams:update")


async def test_a_token_minter_cannot_grant_roles_or_teams_beyond_its_own(tmp_path: Path) -> None:
    async with running_hub(base_config({}, keys=[]), tmp_path) as hub, admin_client(hub.base) as admin:
        for team in ("platform", "payments"):
            assert (await admin.post("/api/v1/teams", json={"name": team})).status_code == 201
        own_minter = await token_with(admin, "own-minter", ["tokens:create:own"], ["platform"])
        minter = await token_with(
            admin, "minter", ["tokens:create", "tokens:read", "roles:create", "roles:update", "keys:*:own"],
            ["platform"],
        )  # fmt: skip
        reader = await admin.post("/api/v1/roles", json={"name": "key-reader", "permissions": ["keys:read"]})
        assert reader.status_code == 201

        async with admin_client(hub.base, own_minter) as m:
            escalated = await m.post("/api/v1/tokens", json={"name": "root", "roles": ["admin"]})
            assert escalated.status_code == 403, escalated.text

        async with admin_client(hub.base, minter) as m:
            answers: dict[str, int] = {}
            for what, method, path, body, _status in MINTER_REQUESTS:
                answers[what] = (await m.request(method, path, json=body)).status_code
            unscoped = await m.post("/api/v1/tokens", json={"name": "t7", "roles": ["key-reader"]})
        assert answers == {what: status for what, _, _, _, status in MINTER_REQUESTS}
        assert unscoped.status_code == 403 and "keys:read" in unscoped.json()["error"]["message"]
        names = {t["name"] for t in (await admin.get("/api/v1/tokens")).json()["data"]}
        assert names == {"own-minter", "minter", "t4", "t6"}
        roles = {r["name"]: r["permissions"] for r in (await admin.get("/api/v1/roles")).json()["data"]}
        assert roles["mine"] == ["keys:read:own"] and "r1" not in roles and "r2" not in roles
        entries = (await admin.get("/api/v1/audit", params={"limit": 1000})).json()["data"]
        denied = [(e["actor"], e["action"]) for e in entries if e["outcome"] == "denied"]
        assert ("token:own-minter", "tokens.create") in denied and ("token:minter", "tokens.create") in denied
        assert ("token:minter", "roles.create") in denied and ("token:minter", "roles.update") in denied
