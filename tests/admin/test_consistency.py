"""A key under a team belongs to that team's customer: naming another customer is refused on create and update,
and a team cannot move to another customer while its keys name a different one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.admin.helpers import admin_client
from tests.hub.harness import base_config, running_hub

pytestmark = pytest.mark.anyio

REQUESTS: list[tuple[str, str, str, dict[str, Any], int]] = [
    ("other customer", "POST", "/api/v1/keys", {"name": "k1", "team": "platform", "customer": "globex"}, 400),
    ("team without customer", "POST", "/api/v1/keys", {"name": "k2", "team": "loose", "customer": "acme"}, 400),
    ("same customer", "POST", "/api/v1/keys", {"name": "k3", "team": "platform", "customer": "acme"}, 201),
    ("inherited", "POST", "/api/v1/keys", {"name": "k4", "team": "platform"}, 201),
    ("no team", "POST", "/api/v1/keys", {"name": "k5", "customer": "globex"}, 201),
    ("customer of a teamed key", "PATCH", "/api/v1/keys/k4", {"customer": "globex"}, 400),
    ("team under another customer", "PATCH", "/api/v1/keys/k5", {"team": "platform"}, 400),
    ("team and its customer", "PATCH", "/api/v1/keys/k5", {"team": "platform", "customer": "acme"}, 200),
    ("move a team whose key names acme", "PATCH", "/api/v1/teams/platform", {"customer": "globex"}, 409),
    ("move a team to no customer", "PATCH", "/api/v1/teams/platform", {"customer": None}, 409),
]
"""Requests in order, as (what, method, path, body, status): customers acme and globex, team platform of acme,
team loose of no customer."""


async def test_a_keys_customer_is_its_teams_customer(tmp_path: Path) -> None:
    async with running_hub(base_config({}, keys=[]), tmp_path) as hub, admin_client(hub.base) as admin:
        for path, body in [
            ("/api/v1/customers", {"name": "acme", "budget": {"max_usd": 10, "reset": "1M"}}),
            ("/api/v1/customers", {"name": "globex"}),
            ("/api/v1/teams", {"name": "platform", "customer": "acme"}),
            ("/api/v1/teams", {"name": "loose"}),
        ]:
            assert (await admin.post(path, json=body)).status_code == 201
        dev = await admin.post("/api/v1/tokens", json={"name": "dev", "roles": ["developer"], "teams": ["platform"]})
        async with admin_client(hub.base, dev.json()["secret"]) as d:
            escape = await d.post("/api/v1/keys", json={"name": "escape", "team": "platform", "customer": "globex"})
        answers: dict[str, httpx2.Response] = {}
        for what, method, path, body, _status in REQUESTS:
            answers[what] = await admin.request(method, path, json=body)
        keys = {k["name"]: (k.get("team"), k.get("customer")) for k in (await admin.get("/api/v1/keys")).json()["data"]}
        team = (await admin.get("/api/v1/teams/platform")).json()
    assert escape.status_code == 400 and "customer" in escape.json()["error"]["message"]
    assert {what: r.status_code for what, r in answers.items()} == {what: status for what, *_, status in REQUESTS}
    assert "acme" in answers["other customer"].json()["error"]["message"]
    assert "k3" in answers["move a team whose key names acme"].json()["error"]["message"]
    assert keys == {"k3": ("platform", "acme"), "k4": ("platform", None), "k5": ("platform", "acme")}
    assert team["customer"] == "acme"


async def test_a_team_moves_to_another_customer_when_its_keys_inherit(tmp_path: Path) -> None:
    async with running_hub(base_config({}, keys=[]), tmp_path) as hub, admin_client(hub.base) as admin:
        for path, body in [
            ("/api/v1/customers", {"name": "acme"}),
            ("/api/v1/customers", {"name": "globex"}),
            ("/api/v1/teams", {"name": "platform", "customer": "acme"}),
            ("/api/v1/keys", {"name": "k1", "team": "platform"}),
        ]:
            assert (await admin.post(path, json=body)).status_code == 201
        moved = await admin.patch("/api/v1/teams/platform", json={"customer": "globex"})
        assert moved.status_code == 200 and moved.json()["customer"] == "globex"
