"""`agenthub servers add/remove` and `agenthub keys create/update/revoke` change a running hub through the database."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import httpx2
import pytest

from hub.cli.main import main as cli
from tests.admin.helpers import admin_client, tool_call
from tests.hub.harness import base_config, running_hub
from tests.tools import SERVERS_DIR
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio


async def _wait_status(http: httpx2.AsyncClient, url: str, secret: str, tool: str, status: int) -> None:
    with anyio.fail_after(PATIENCE):
        while True:
            response = await http.post(url, json=tool_call(tool, '{"message": "m"}'),
                                       headers={"Authorization": f"Bearer {secret}"})  # fmt: skip
            if response.status_code == status:
                return
            await anyio.sleep(0.05)


async def test_cli_server_and_key_changes_reach_a_running_hub_and_are_audited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = tmp_path / "agenthub.toml"
    config_file.write_text(f'[hub]\ndatabase = "sqlite:///{tmp_path / "hub.db"}"\n', encoding="utf-8")
    cfg = str(config_file)
    async with running_hub(base_config({}, keys=[]), tmp_path) as hub, httpx2.AsyncClient() as http:
        url = hub.url("/v1/mcp/tool/execute")
        assert (
            await anyio.to_thread.run_sync(cli, ["keys", "create", "--config", cfg, "--name", "ops", "--tools", "*"])
            == 0
        )
        secret = capsys.readouterr().out.strip().splitlines()[-1]
        argv = ["servers", "add", "extra", "--config", cfg, "--transport", "stdio", "--command", sys.executable,
                "--arg", str(SERVERS_DIR / "fixture_server.py")]  # fmt: skip
        assert await anyio.to_thread.run_sync(cli, argv) == 0
        await _wait_status(http, url, secret, "extra__echo", 200)
        assert await anyio.to_thread.run_sync(cli, ["servers", "add", "extra", "--config", cfg, "--transport", "http",
                                                    "--url", "http://127.0.0.1:1/mcp"]) == 1  # fmt: skip
        assert "exists already" in capsys.readouterr().err

        update = ["keys", "update", "ops", "--config", cfg, "--tools", "extra__add"]
        assert await anyio.to_thread.run_sync(cli, update) == 0
        await _wait_status(http, url, secret, "extra__echo", 404)

        assert await anyio.to_thread.run_sync(cli, ["servers", "remove", "extra", "--config", cfg]) == 0
        with anyio.fail_after(PATIENCE):
            while "extra" in hub.hub.registry.upstreams:  # noqa: ASYNC110 - the hub polls the database
                await anyio.sleep(0.05)
        assert await anyio.to_thread.run_sync(cli, ["keys", "revoke", "ops", "--config", cfg]) == 0
        await _wait_status(http, url, secret, "extra__add", 401)

        async with admin_client(hub.base) as api:
            entries = (await api.get("/api/v1/audit")).json()["data"]
    actions = [(e["action"], e["outcome"]) for e in entries]
    assert actions == [("key.create", "success"), ("server.create", "success"), ("key.update", "success"),
                       ("server.delete", "success"), ("key.revoke", "success")]  # fmt: skip
    assert all(e["actor"].startswith("cli:") and e["user_agent"] == "agenthub-cli" for e in entries)
    assert secret not in str(entries)
