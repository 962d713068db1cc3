"""Removing a run-time server while calls to it are running: the removal answers 200 and is audited, the calls in
flight fail cleanly as upstream errors, and nothing of the server is left behind, even when the hub's change
follower (which applies changes made by other processes) applies the same removal while it is under way."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx2
import pytest

from connectors.registry import RegistryView
from hub.store.sql import read_all_meta
from tests.admin.helpers import admin_client, tool_call
from tests.hub.harness import ALICE, base_config, running_hub
from tests.tools import served, server_argv
from tests.tools.patience import PATIENCE

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_removing_a_connected_server_with_calls_in_flight_answers_200_and_fails_the_calls_cleanly(
    tmp_path: Path,
) -> None:
    argv = server_argv("fixture_server", "--transport", "streamable-http", "--port", "{port}", "--name", "slowpoke")
    config = base_config({})
    config["admin"] = {"allowed_endpoints": ["http://127.0.0.1:*"]}
    async with (
        served(argv) as upstream,
        running_hub(config, tmp_path) as hub,
        admin_client(hub.base) as api,
        httpx2.AsyncClient(timeout=60) as http,
    ):
        control, registry = hub.hub.control, hub.hub.registry
        assert control is not None
        url = f"http://127.0.0.1:{upstream.port}/mcp"
        added = await api.post("/api/v1/servers", json={"name": "slowpoke", "transport": "http", "url": url})
        assert added.status_code == 201, added.text
        with anyio.fail_after(PATIENCE):
            assert await registry.upstreams["slowpoke"].wait_ready(PATIENCE)

        followed = False

        async def follow_while_removing(_view: RegistryView) -> None:
            """What the hub's change follower does when its poll lands in the middle of the removal."""
            nonlocal followed
            if "slowpoke" not in registry.upstreams and not followed:
                followed = True
                await control.follow(await anyio.to_thread.run_sync(read_all_meta, hub.hub.store.engine))

        registry.add_listener(follow_while_removing)
        answers: list[httpx2.Response] = []

        async def slow_call() -> None:
            body = tool_call("slowpoke__slow", '{"seconds": 30, "steps": 30}')
            headers = {"Authorization": f"Bearer {ALICE}"}
            answers.append(await http.post(hub.url("/v1/mcp/tool/execute"), json=body, headers=headers))

        removed: httpx2.Response | None = None
        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(slow_call)
                while registry.upstreams["slowpoke"].health.calls < 3:  # noqa: ASYNC110 - a counter, no event
                    await anyio.sleep(0.01)
                removed = await api.delete("/api/v1/servers/slowpoke")
        assert followed and removed is not None
        assert removed.status_code == 200, removed.text
        assert [a.status_code for a in answers] == [502, 502, 502], [a.text for a in answers]
        assert {a.json()["error"]["type"] for a in answers} == {"upstream_error"}
        assert "slowpoke" not in registry.upstreams and "slowpoke" not in hub.hub.server_doors
        assert "slowpoke" not in control.runtime_servers
        assert (await api.get("/api/v1/servers/slowpoke")).status_code == 404
        entries = (await api.get("/api/v1/audit")).json()["data"]
        assert [(e["action"], e["outcome"]) for e in entries if e["resource_id"] == "slowpoke"] == [
            ("server.create", "success"),
            ("server.delete", "success"),
        ]
