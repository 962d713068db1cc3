"""The admin API: CRUD that takes effect at once in the running hub, strict input, run-time servers, OpenAPI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from tests.admin.helpers import admin_client, tool_call
from tests.hub.harness import ALICE, base_config, fixture_stdio, running_hub
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio


async def test_the_openapi_document_describes_every_admin_route(tmp_path: Path) -> None:
    async with running_hub(base_config({}, keys=[]), tmp_path) as hub, httpx2.AsyncClient() as http:
        doc = (await http.get(hub.url("/api/v1/openapi.json"))).json()
    assert doc["openapi"] == "3.1.0"
    paths = doc["paths"]
    for path, method in [
        ("/api/v1/customers", "post"), ("/api/v1/teams/{name}", "patch"), ("/api/v1/keys", "post"),
        ("/api/v1/keys/{key}", "delete"), ("/api/v1/servers", "post"), ("/api/v1/servers/{name}", "put"),
        ("/api/v1/usage/{kind}/{name}/reset", "post"), ("/api/v1/roles", "post"), ("/api/v1/tokens", "post"),
        ("/api/v1/audit/export", "get"), ("/api/v1/auth/login", "get"),
    ]:  # fmt: skip
        assert method in paths[path], (path, method)
    assert paths["/api/v1/keys"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/KeyIn"
    }
    key_schema = doc["components"]["schemas"]["KeyIn"]
    assert key_schema["additionalProperties"] is False and "rate_limit" in key_schema["properties"]


async def test_customers_teams_and_keys_made_through_the_api_govern_calls_at_once(tmp_path: Path) -> None:
    config = base_config({"fixture": fixture_stdio()}, keys=[])
    async with (
        running_hub(config, tmp_path) as hub,
        admin_client(hub.base) as api,
        httpx2.AsyncClient(timeout=20) as http,
    ):
        customer = {"name": "acme", "budget": {"max_usd": 100, "reset": "1M"}}
        assert (await api.post("/api/v1/customers", json=customer)).status_code == 201
        team = {"name": "platform", "customer": "acme", "rate_limit": {"requests": 2, "period": "1h"}}
        assert (await api.post("/api/v1/teams", json=team)).status_code == 201
        created = await api.post("/api/v1/keys", json={"name": "ci", "team": "platform", "tools": ["fixture__*"]})
        assert created.status_code == 201
        secret, key_id = created.json()["secret"], created.json()["id"]
        assert secret.startswith("ahk-")
        shown = (await api.get(f"/api/v1/keys/{key_id}")).json()
        assert "secret" not in shown and shown["team"] == "platform" and shown["prefix"] == secret[:8]

        async def call(name: str = "fixture__echo", args: str = '{"message": "hi"}') -> int:
            response = await http.post(
                hub.url("/v1/mcp/tool/execute"),
                json=tool_call(name, args),
                headers={"Authorization": f"Bearer {secret}"},
            )
            return response.status_code

        assert [await call(), await call(), await call()] == [200, 200, 429]
        usage = (await api.get("/api/v1/usage/team/platform")).json()["limits"]
        assert [(u["metric"], u["used"], u["limit"]) for u in usage] == [("requests", 2, 2)]

        raised = await api.patch("/api/v1/teams/platform", json={"rate_limit": {"requests": 3, "period": "1h"}})
        assert raised.status_code == 200 and raised.json()["rate_limit"]["requests"] == 3
        assert [await call(), await call()] == [200, 429]

        reset = await api.post("/api/v1/usage/team/platform/reset", json={})
        assert reset.status_code == 200 and reset.json()["limits"][0]["used"] == 0
        assert await call() == 200

        narrowed = await api.patch(f"/api/v1/keys/{key_id}", json={"tools": ["fixture__add"]})
        assert narrowed.status_code == 200 and narrowed.json()["tools"] == ["fixture__add"]
        assert await call() == 404
        await api.patch("/api/v1/teams/platform", json={"rate_limit": None})
        assert await call("fixture__add", '{"a": 1, "b": 2}') == 200

        expired = await api.patch(f"/api/v1/keys/{key_id}", json={"expires_at": "2001-01-01T00:00:00Z"})
        assert expired.status_code == 200 and expired.json()["expires_at"].startswith("2001-01-01")
        assert await call("fixture__add", '{"a": 1, "b": 2}') == 401
        renewed = await api.patch(f"/api/v1/keys/{key_id}", json={"expires_at": None})
        assert renewed.status_code == 200 and renewed.json()["expires_at"] is None
        assert await call("fixture__add", '{"a": 1, "b": 2}') == 200

        revoked = await api.delete(f"/api/v1/keys/{key_id}")
        assert revoked.status_code == 200 and revoked.json()["revoked"] is True
        assert await call("fixture__add", '{"a": 1, "b": 2}') == 401
        listed = (await api.get("/api/v1/keys", params={"include_revoked": "true"})).json()["data"]
        assert [(k["name"], k["revoked"]) for k in listed] == [("ci", True)]


async def _state(api: httpx2.AsyncClient) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for what in ("customers", "teams", "keys", "roles", "tokens"):
        out[what] = (await api.get(f"/api/v1/{what}")).json()["data"]
    out["servers"] = [s["name"] for s in (await api.get("/api/v1/servers")).json()["data"]]
    return out


async def test_bad_input_is_refused_with_a_clear_4xx_and_changes_nothing(tmp_path: Path) -> None:
    config = base_config({"fixture": fixture_stdio()}, keys=[])
    async with running_hub(config, tmp_path) as hub, admin_client(hub.base) as api:
        await api.post("/api/v1/customers", json={"name": "acme"})
        await api.post("/api/v1/teams", json={"name": "platform", "customer": "acme"})
        before = await _state(api)
        cases: list[tuple[str, str, dict[str, Any], int, str]] = [
            ("POST", "/api/v1/customers", {"json": {"name": 5}}, 400, "name"),
            ("POST", "/api/v1/customers", {"json": {"name": "x", "colour": "red"}}, 400, "colour"),
            ("POST", "/api/v1/customers", {"json": {"name": "acme"}}, 409, "exists already"),
            ("POST", "/api/v1/customers", {"content": b"{oops"}, 400, "not valid JSON"),
            ("POST", "/api/v1/customers", {"content": b"[1, 2]"}, 400, "JSON object"),
            ("POST", "/api/v1/customers", {"json": {"name": "big", "pad": "x" * 70_000}}, 413, "larger than"),
            ("PATCH", "/api/v1/customers/ghost", {"json": {"budget": None}}, 404, "ghost"),
            ("DELETE", "/api/v1/customers/acme", {}, 409, "still used"),
            ("POST", "/api/v1/teams", {"json": {"name": "t2", "customer": "nobody"}}, 400, "unknown customer"),
            ("POST", "/api/v1/keys", {"json": {"name": "k", "rate_limit": {"requests": "many", "period": "1m"}}},
             400, "rate_limit.requests"),
            ("POST", "/api/v1/keys", {"json": {"name": "k", "budget": {"max_usd": 1, "reset": "1mo"}}}, 400,
             "budget.reset"),
            ("POST", "/api/v1/keys", {"json": {"name": "k", "team": "ghosts"}}, 400, "unknown team"),
            ("POST", "/api/v1/keys", {"json": {"name": "k", "tools": "fixture__*"}}, 400, "tools"),
            ("PATCH", "/api/v1/keys/ghost", {"json": {"tools": []}}, 404, "ghost"),
            ("DELETE", "/api/v1/keys/ghost", {}, 404, "ghost"),
            ("POST", "/api/v1/servers", {"json": {"name": "fixture", "transport": "stdio", "command": "x"}}, 409,
             "exists already"),
            ("POST", "/api/v1/servers", {"json": {"name": "bad name!", "transport": "stdio", "command": "x"}}, 400,
             "name"),
            ("POST", "/api/v1/servers", {"json": {"name": "s", "transport": "pigeon"}}, 400, "transport"),
            ("POST", "/api/v1/servers", {"json": {"name": "s", "transport": "http", "url": "ftp://x"}}, 400, "url"),
            ("PUT", "/api/v1/servers/fixture", {"json": {"transport": "stdio", "command": "x"}}, 409, "config file"),
            ("DELETE", "/api/v1/servers/nothing", {}, 404, "nothing"),
            ("POST", "/api/v1/roles", {"json": {"name": "r", "permissions": ["keys:fly"]}}, 400, "unknown action"),
            ("POST", "/api/v1/roles", {"json": {"name": "admin", "permissions": []}}, 409, "exists already"),
            ("DELETE", "/api/v1/roles/viewer", {}, 409, "built-in"),
            ("POST", "/api/v1/tokens", {"json": {"name": "t", "roles": ["wizard"]}}, 400, "unknown roles"),
            ("POST", "/api/v1/usage/team/platform/reset", {"json": {"metric": "apples"}}, 400, "metric"),
            ("GET", "/api/v1/usage/planet/earth", {}, 404, "kind"),
            ("GET", "/api/v1/audit", {"params": {"after": "-1"}}, 400, "after"),
        ]  # fmt: skip
        for method, path, kwargs, status, words in cases:
            response = await api.request(method, path, **kwargs)
            assert response.status_code == status, (method, path, response.text)
            error = response.json()["error"]
            assert error["type"] == "invalid_request_error" if status in (400, 409, 413) else "not_found_error"
            assert words in error["message"], (method, path, error["message"])
        assert await _state(api) == before
        failures = [e for e in (await api.get("/api/v1/audit", params={"limit": 1000})).json()["data"]
                    if e["outcome"] == "failure"]  # fmt: skip
        assert len(failures) == sum(1 for c in cases if c[0] != "GET")


async def test_servers_are_added_changed_and_removed_at_run_time_and_kept_across_a_restart(tmp_path: Path) -> None:
    config = base_config({"fixture": fixture_stdio()})
    alice = {"Authorization": f"Bearer {ALICE}"}

    async def wait_ready(api: httpx2.AsyncClient, name: str) -> dict[str, Any]:
        with anyio.fail_after(PATIENCE):
            while True:
                response = await api.get(f"/api/v1/servers/{name}")
                if response.status_code == 200 and response.json()["state"] == "ready":
                    return response.json()
                await anyio.sleep(0.05)

    async with running_hub(config, tmp_path) as hub, admin_client(hub.base) as api, httpx2.AsyncClient() as http:
        added = await api.post("/api/v1/servers", json={"name": "extra", **fixture_stdio("extra")})
        assert added.status_code == 201, added.text
        assert (await wait_ready(api, "extra"))["source"] == "api"
        echo = await http.post(hub.url("/v1/mcp/tool/execute"), json=tool_call("extra__echo", '{"message": "x"}'),
                               headers=alice)  # fmt: skip
        assert echo.status_code == 200 and echo.json()["content"] == "x"
        changed = await api.put("/api/v1/servers/extra", json={**fixture_stdio("extra"), "timeout_s": 12})
        assert changed.status_code == 200 and changed.json()["config"]["timeout_s"] == 12
        assert (await wait_ready(api, "extra"))["config"]["timeout_s"] == 12

    async with running_hub(config, tmp_path) as hub, admin_client(hub.base) as api, httpx2.AsyncClient() as http:
        assert (await wait_ready(api, "extra"))["config"]["timeout_s"] == 12
        removed = await api.delete("/api/v1/servers/extra")
        assert removed.status_code == 200
        assert (await api.get("/api/v1/servers/extra")).status_code == 404
        gone = await http.post(hub.url("/v1/mcp/tool/execute"), json=tool_call("extra__echo", '{"message": "x"}'),
                               headers=alice)  # fmt: skip
        assert gone.status_code == 404
        assert [s["name"] for s in (await api.get("/api/v1/servers")).json()["data"]] == ["fixture"]


async def test_a_server_added_at_run_time_may_not_collide_with_another(tmp_path: Path) -> None:
    """Names equal but for case, or `-` against `_`, collide (`agenthub config check` refuses them in the file), and
    a name outside the grammar (a trailing `_` would look like another server's prefix) is refused."""
    config = base_config({"my-tools": fixture_stdio("my-tools")})
    async with running_hub(config, tmp_path) as hub, admin_client(hub.base) as api:
        clash = await api.post("/api/v1/servers", json={"name": "My_Tools", **fixture_stdio("My_Tools")})
        prefix = await api.post("/api/v1/servers", json={"name": "my_", **fixture_stdio("my_")})
        listed = [s["name"] for s in (await api.get("/api/v1/servers")).json()["data"]]
    assert clash.status_code == 409 and "collides with 'my-tools'" in clash.json()["error"]["message"]
    assert prefix.status_code == 400
    assert listed == ["my-tools"]
